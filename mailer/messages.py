"""What the account mails say: rendered from templates, addressed, identified."""

from email.message import EmailMessage
from email.utils import parseaddr

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode


def set_password_link(user: AbstractBaseUser) -> str:
    """A one-time signed link to choose a password; using it also proves the address."""
    path = reverse(
        "password_set",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    return f"{settings.SITE_URL}{path}"


def message_id_for(job_id: str) -> str:
    """The same job always gets the same Message-ID, so a resent mail is one mail."""
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "localhost"
    return f"<{job_id}@{domain}>"


def account_mail(template: str, subject: str, email: str, job_id: str) -> EmailMessage | None:
    """Render ``mailer/<template>.txt`` and ``.html`` for the account ``email``.

    None if there is no such account any more (nothing to say).
    """
    user = get_user_model()._default_manager.filter(email=email).first()
    if user is None:
        return None
    context = {"email": email, "link": set_password_link(user), "site_url": settings.SITE_URL}
    mail = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"mailer/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[email],
        headers={"Message-ID": message_id_for(job_id)},
    )
    mail.attach_alternative(render_to_string(f"mailer/{template}.html", context), "text/html")
    return mail.message()
