"""What the mails say, and that their link really lets the owner choose a password."""

import pytest
from django.test import Client

from mailer.messages import account_mail, message_id_for
from signup.models import User

pytestmark = pytest.mark.django_db


def test_welcome_mail_has_text_html_and_a_working_set_password_link() -> None:
    user = User.objects.create_user("owner@example.com")
    message = account_mail("welcome", "Welcome!", "owner@example.com", "job123")
    assert message is not None
    assert message["To"] == "owner@example.com"
    assert message["Message-ID"] == message_id_for("job123") == "<job123@example.com>"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    link = next(word for word in text.get_content().split() if "/account/set-password/" in word)
    assert link in html.get_content()
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


def test_no_mail_for_an_address_without_account() -> None:
    assert account_mail("welcome", "Welcome!", "nobody@example.com", "job1") is None
