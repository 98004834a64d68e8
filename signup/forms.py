"""Django's password-reset form, for the service's canonical accounts and its mail limit."""

from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string

from mailer.addresses import UndeliverableAddress, canonical_mailbox

from . import ratelimit
from .models import User


class PasswordResetForm(auth_forms.PasswordResetForm):
    def send_mail(
        self,
        subject_template_name: str,
        email_template_name: str,
        context: dict[str, Any],
        from_email: str | None,
        to_email: str,
        html_email_template_name: str | None = None,
    ) -> None:
        """Django's reset mail, queued; a mail that could not be queued fails the request.

        Django's own form logs a failed send and still says "check your
        inbox". Through the outbox a failure means the database did not take
        the job: the client gets a 503 and tries again, rather than waiting
        for a mail that was never queued.
        """
        subject = "".join(render_to_string(subject_template_name, context).splitlines())
        body = render_to_string(email_template_name, context)
        message = EmailMultiAlternatives(subject, body, from_email, [to_email])
        if html_email_template_name is not None:
            html = render_to_string(html_email_template_name, context)
            message.attach_alternative(html, "text/html")
        message.send()

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
