"""The routes as urls.py wires them: HEAD wherever GET, and the set-password and
password-reset pages against hostile forms, cookies and links."""

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import mail
from django.test import AsyncClient

from asgi_project import urls
from mailer.messages import set_password_link
from signup.models import User

pytestmark = pytest.mark.django_db(transaction=True)

FORM = "application/x-www-form-urlencoded"
PASSWORD = "a-Long-unusual-passphrase-42"


async def opened_link() -> tuple[AsyncClient, str, User]:
    """A browser that followed a mail's link: the set-password form, its token in the session."""
    user = await sync_to_async(User.objects.create_user)("owner@example.com")
    link = await sync_to_async(set_password_link)(user)
    browser = AsyncClient(enforce_csrf_checks=True)
    page = await browser.get(link.split("8000", 1)[1], follow=True)
    assert b"<h1>Choose your password</h1>" in page.content
    return browser, page.redirect_chain[-1][0], user


async def same_answer_to_head(browser: AsyncClient, path: str) -> None:
    get = await browser.get(path)
    head = await browser.head(path)

    def lasting(headers: Any) -> dict[str, str]:  # Expires is "now": it may tick between.
        return {name: value for name, value in headers.items() if name != "Expires"}

    assert (head.status_code, lasting(head.headers)) == (get.status_code, lasting(get.headers))
    assert ("Expires" in head.headers) == ("Expires" in get.headers)
    assert head.cookies.keys() == get.cookies.keys()


# A request for every route that answers GET (the set-password link has its own
# test): HEAD answers it alike, without the body, as HTTP asks.
HEAD_PATHS = {
    "": "/",
    "signup/": "/signup/",
    "account/set-password/done/": "/account/set-password/done/",
    "healthz": "/healthz",
    "metrics": "/metrics",
    "password-reset/": "/password-reset/",
    "password-reset/done/": "/password-reset/done/",
    "admin/": "/admin/login/",  # Django's admin: its views answer HEAD as GET.
}
SET_PASSWORD_ROUTE = "account/set-password/<uidb64>/<token>/"


def test_every_route_is_checked_for_head() -> None:
    routes = {str(pattern.pattern) for pattern in urls.urlpatterns}
    assert routes == {*HEAD_PATHS, SET_PASSWORD_ROUTE}, "a new route: add it to HEAD_PATHS"


@pytest.mark.parametrize("path", HEAD_PATHS.values())
async def test_head_is_answered_as_get(path: str) -> None:
    await same_answer_to_head(AsyncClient(), path)


async def test_head_is_answered_as_get_on_the_set_password_pages() -> None:
    user = await sync_to_async(User.objects.create_user)("head@example.com")
    link = (await sync_to_async(set_password_link)(user)).split("8000", 1)[1]
    browser = AsyncClient()
    head = await browser.head(link)  # Like GET, it keeps the token in the session.
    assert head.status_code == 302
    await same_answer_to_head(browser, head["Location"])
    assert b"<h1>Choose your password</h1>" in (await browser.get(head["Location"])).content


async def password_unchanged(user: User) -> bool:
    await user.arefresh_from_db()
    return not user.has_usable_password()


def form(token: str, **fields: str) -> bytes:
    values = {"new_password1": PASSWORD, "new_password2": PASSWORD, **fields}
    values["csrfmiddlewaretoken"] = token
    return "&".join(f"{name}={value}" for name, value in values.items()).encode()


@pytest.mark.parametrize(
    ("content_type", "body_for"),
    [
        pytest.param(f"{FORM}; charset=utf-32", lambda token: form(token), id="charset-utf-32"),
        pytest.param(f"{FORM}; charset=utf-16", lambda token: form(token), id="charset-utf-16"),
        pytest.param("multipart/form-data", lambda token: form(token), id="multipart-no-boundary"),
        pytest.param(FORM, lambda token: form(token) + b"&x=1" * 1000, id="1000-extra-fields"),
    ],
)
async def test_an_unreadable_set_password_form_gets_400_and_changes_nothing(
    content_type: str, body_for: Callable[[str], bytes]
) -> None:
    browser, url, user = await opened_link()
    body = body_for(browser.cookies["csrftoken"].value)
    response = await browser.generic("POST", url, body, content_type=content_type)
    assert response.status_code == 400
    assert b"Malformed form data." in response.content
    assert await password_unchanged(user)
    # The link still works afterwards with a proper form.
    retry = await browser.generic(
        "POST", url, form(browser.cookies["csrftoken"].value), content_type=FORM
    )
    assert retry.status_code == 302
    assert not await password_unchanged(user)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"new_password2": "different-Passphrase-43"}, id="mismatch"),
        pytest.param({"new_password1": "", "new_password2": ""}, id="empty"),
        pytest.param({"new_password1": "%ff%fe", "new_password2": "%ff%fe"}, id="not-utf-8"),
        pytest.param({"new_password1": "x" * 10_000, "new_password2": "y"}, id="10-kb"),
    ],
)
async def test_an_invalid_password_form_is_shown_again(fields: dict[str, str]) -> None:
    browser, url, user = await opened_link()
    body = form(browser.cookies["csrftoken"].value, **fields)
    response = await browser.generic("POST", url, body, content_type=FORM)
    assert response.status_code == 200
    assert b"<h1>Choose your password</h1>" in response.content
    assert await password_unchanged(user)


@pytest.mark.parametrize(
    ("cookies", "status"),
    [
        pytest.param({"csrftoken": "short"}, 403, id="short-csrf-token"),
        pytest.param({"csrftoken": "!" * 32}, 403, id="csrf-token-bad-characters"),
        pytest.param({"sessionid": "x" * 32}, 200, id="unknown-session"),
        pytest.param({"sessionid": "\\x00;;"}, 200, id="garbage-session"),
    ],
)
async def test_bad_cookies_are_refused_and_change_nothing(
    cookies: dict[str, str], status: int
) -> None:
    browser, url, user = await opened_link()
    token = browser.cookies["csrftoken"].value
    for name, value in cookies.items():
        browser.cookies[name] = value
    response = await browser.generic("POST", url, form(token), content_type=FORM)
    assert response.status_code == status
    if status == 200:  # Without its session the token is gone: the link proves nothing.
        assert b"This link has expired" in response.content
    assert await password_unchanged(user)


@pytest.mark.parametrize(
    "path",
    [
        "/account/set-password/!!!/set-password/",
        "/account/set-password/MTIzNDU2Nzg5/abc-def/",
        "/account/set-password/%ff%fe/x/",
        "/account/set-password/" + "A" * 5000 + "/x/",
    ],
)
async def test_a_forged_link_shows_the_expired_page(path: str) -> None:
    response = await AsyncClient().get(path, follow=True)
    assert response.status_code == 200
    assert b"This link has expired" in response.content


def reset_form(token: str, email: str) -> bytes:
    return f"csrfmiddlewaretoken={token}&email={email}".encode()


async def test_a_password_reset_mails_a_link_on_site_url_that_opens_the_set_password_form(
    settings: Any,
) -> None:
    await sync_to_async(User.objects.create_user)("owner@example.com", PASSWORD)
    browser = AsyncClient(enforce_csrf_checks=True)
    page = await browser.get("/password-reset/")
    assert b"<h1>Forgot your password?</h1>" in page.content
    body = reset_form(browser.cookies["csrftoken"].value, "owner@example.com")
    response = await browser.post(
        "/password-reset/", body, content_type=FORM, SERVER_NAME="localhost"
    )
    assert (response.status_code, response["Location"]) == (302, "/password-reset/done/")

    (message,) = mail.outbox
    assert (message.to, message.subject) == (["owner@example.com"], "Choose a new password")
    (link,) = [word for word in message.body.split() if "/account/set-password/" in word]
    assert link.startswith(f"{settings.SITE_URL}/account/set-password/")  # Not the Host sent.
    assert (
        message.alternatives[0].mimetype == "text/html" and link in message.alternatives[0].content
    )
    opened = await AsyncClient().get(link.removeprefix(settings.SITE_URL), follow=True)
    assert b"<h1>Choose your password</h1>" in opened.content


async def test_a_password_reset_without_its_csrf_token_is_refused() -> None:
    await sync_to_async(User.objects.create_user)("owner@example.com", PASSWORD)
    browser = AsyncClient(enforce_csrf_checks=True)
    await browser.get("/password-reset/")
    response = await browser.post(
        "/password-reset/", reset_form("x" * 32, "owner@example.com"), content_type=FORM
    )
    assert response.status_code == 403
    assert mail.outbox == []


async def test_a_password_reset_for_an_unknown_address_looks_the_same() -> None:
    browser = AsyncClient(enforce_csrf_checks=True)
    await browser.get("/password-reset/")
    body = reset_form(browser.cookies["csrftoken"].value, "nobody@example.com")
    response = await browser.post("/password-reset/", body, content_type=FORM)
    assert (response.status_code, response["Location"]) == (302, "/password-reset/done/")
    assert mail.outbox == []
