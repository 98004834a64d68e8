"""What the mails say, and that their link really lets the owner choose a password."""

from email import message_from_bytes, policy
from typing import Any

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.utils import timezone

from mailer.messages import account_for, account_mail, message_id_for
from signup.models import User

pytestmark = pytest.mark.django_db


def test_welcome_mail_has_text_html_and_a_working_set_password_link() -> None:
    user = User.objects.create_user("owner@example.com")
    raw = account_mail("welcome", "Welcome!", "owner@example.com", "job123")
    assert raw is not None
    message = message_from_bytes(raw, policy=policy.SMTP)
    assert [part.defects for part in message.walk()] == [[], [], []]
    assert message.get_content_type() == "multipart/alternative"
    assert message["To"] == "owner@example.com"
    assert message["Message-ID"] == message_id_for("job123") == "<job123@example.com>"
    parts = {
        part.get_content_type(): bytes(part.get_payload(decode=True)).decode()
        for part in message.walk()
        if not part.is_multipart()
    }
    assert set(parts) == {"text/plain", "text/html"}
    link = next(word for word in parts["text/plain"].split() if "/account/set-password/" in word)
    assert link in parts["text/html"]
    assert link.startswith("http://127.0.0.1:8000/")

    browser = Client(enforce_csrf_checks=True)
    form_page = browser.get(link.removeprefix("http://127.0.0.1:8000"), follow=True)
    assert b"Choose your password" in form_page.content
    password = "a-Long-unusual-passphrase-42"
    done = browser.post(
        form_page.redirect_chain[-1][0],
        {
            "new_password1": password,
            "new_password2": password,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"].value,
        },
        follow=True,
    )
    assert b"Password saved" in done.content
    user.refresh_from_db()
    assert user.check_password(password)
    # One-time: the same link no longer works.
    again = Client().get(link.removeprefix("http://127.0.0.1:8000"), follow=True)
    assert b"This link has expired" in again.content


def test_headers_stay_ascii_for_unicode_names_and_domains(settings: Any) -> None:
    settings.DEFAULT_FROM_EMAIL = "Zoë's Café <hello@café.example>"
    User.objects.create_user("owner@bücher.example")
    raw = account_mail("welcome", "Grüße", "owner@bücher.example", "j1")
    assert raw is not None
    assert raw.isascii()
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["To"] == "owner@xn--bcher-kva.example"
    assert parsed["From"].addresses[0].display_name == "Zoë's Café"
    assert parsed["Subject"] == "Grüße"
    assert parsed["Message-ID"] == "<j1@xn--caf-dma.example>"


def test_no_mail_for_an_address_without_account() -> None:
    assert account_mail("welcome", "Welcome!", "nobody@example.com", "job1") is None


def test_the_account_lookup_reads_the_fields_as_the_orm_does() -> None:
    User.objects.create_user("other@example.com")
    user = User.objects.create_user("owner@example.com")
    user.last_login = timezone.now()
    user.save()

    found = account_for("owner@example.com")
    assert isinstance(found, User)
    orm = User.objects.get(email="owner@example.com")
    fields = [field.attname for field in User._meta.concrete_fields]
    assert {name: getattr(found, name) for name in fields} == {
        name: getattr(orm, name) for name in fields
    }
    # The link's token is made from these fields: the password view must accept it.
    assert default_token_generator.check_token(orm, default_token_generator.make_token(found))
    assert account_for("OWNER@example.com") is None  # Addresses are stored canonical.
