"""Django's password-reset form, for the service's canonical accounts and its mail limit."""

from collections.abc import Iterator

from django.conf import settings
from django.contrib.auth import forms as auth_forms

from mailer.addresses import UndeliverableAddress, canonical_mailbox

from . import ratelimit
from .models import User


class PasswordResetForm(auth_forms.PasswordResetForm):
    def get_users(self, email: str) -> Iterator[User]:
        """The account whose canonical mailbox ``email`` names, if it may have a reset mail.

        Only an active account with a password (one that never chose a
        password gets "choose your password" by signing up again), and only
        within MAIL_RATE_PER_ADDRESS, which the signup mails count against
        too: else anyone could flood a mailbox with reset mails. The page
        says the same whether or not a mail goes out.
        """
        try:
            mailbox = canonical_mailbox(email, smtputf8=settings.EMAIL_SMTPUTF8)
        except UndeliverableAddress:
            return
        user = User._default_manager.filter(email=mailbox, is_active=True).first()
        if user is None or not user.has_usable_password():
            return
        if ratelimit.hit(ratelimit.address_key(mailbox), ratelimit.mail_rate()) is None:
            yield user
