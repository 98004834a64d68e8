"""The HTML pages: one stylesheet and one form style for all of them, error pages included."""

import re

import pytest
from asgiref.sync import sync_to_async
from django.http import HttpRequest
from django.test import AsyncClient, RequestFactory
from django.views import defaults

from mailer.messages import set_password_link
from signup.models import User
from tests.support.service import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

BASE = (ROOT / "signup" / "templates" / "signup" / "base.html").read_text()
STYLESHEET = BASE[BASE.index("<style>") : BASE.index("</style>") + len("</style>")]
FORM = "application/x-www-form-urlencoded"


def styled(content: bytes) -> bool:
    """Whether a page carries the shared stylesheet, inline (as the CSP allows) and whole."""
    return STYLESHEET.encode() in content


async def signup_pages() -> dict[str, bytes]:
    browser = AsyncClient(enforce_csrf_checks=True)
    form = await browser.get("/signup/")
    token = browser.cookies["csrftoken"].value

    async def post(body: str, content_type: str = FORM) -> bytes:
        response = await browser.post("/signup/", body, content_type=content_type)
        return response.content

    return {
        "form": form.content,
        "form with errors": await post(f"email=nobody&csrfmiddlewaretoken={token}"),
        "registered": await post(f"email=ada%40example.com&csrfmiddlewaretoken={token}"),
        "unreadable form": await post("email=x", f"{FORM}; charset=utf-16"),
        "csrf failure": (await AsyncClient(enforce_csrf_checks=True).post("/signup/", {})).content,
    }


async def set_password_pages() -> dict[str, bytes]:
    user = await sync_to_async(User.objects.create_user)("pages@example.com")
    link = (await sync_to_async(set_password_link)(user)).split("8000", 1)[1]
    browser = AsyncClient()
    page = await browser.get(link, follow=True)
    url = page.redirect_chain[-1][0]
    mismatch = await browser.post(url, {"new_password1": "one-Passphrase-1", "new_password2": "x"})
    done = await browser.post(
        url, {"new_password1": "one-Passphrase-1", "new_password2": "one-Passphrase-1"}, follow=True
    )
    invalid = await AsyncClient().get("/account/set-password/MQ/abc-def/", follow=True)
    return {
        "set password": page.content,
        "set password with errors": mismatch.content,
        "done": done.content,
        "expired link": invalid.content,
    }


def error_pages() -> dict[str, bytes]:
    request: HttpRequest = RequestFactory().get("/")
    return {
        "400": defaults.bad_request(request, Exception()).content,
        "404": defaults.page_not_found(request, Exception()).content,
        "500": defaults.server_error(request).content,
    }


async def test_every_page_carries_the_shared_stylesheet() -> None:
    pages = {**await signup_pages(), **await set_password_pages(), **error_pages()}
    assert [name for name, content in pages.items() if not styled(content)] == []
    assert (await AsyncClient().get("/no-such-page")).status_code == 404


def field_markup(content: bytes) -> list[str]:
    """Each form field's parts in order: label, input, help, errors."""
    fields = re.findall(r'<div class="field">(.*?)\n  </div>', content.decode(), re.S)
    part = re.compile(r'<(label|input|div class="help"|ul class="errorlist")')
    return [" ".join(part.findall(field)) for field in fields]


async def test_both_forms_show_fields_and_errors_alike() -> None:
    signup = await signup_pages()
    set_password = await set_password_pages()
    assert field_markup(signup["form with errors"]) == ['label input ul class="errorlist"']
    assert field_markup(set_password["set password with errors"]) == [
        'label input div class="help"',
        'label input div class="help" ul class="errorlist"',
    ]
    labels = re.findall(rb"<label[^>]*>([^<]*)</label>", set_password["set password"])
    assert labels == [b"New password", b"New password confirmation"]  # No colon, as on signup.
    assert "ul.errorlist {" in STYLESHEET
