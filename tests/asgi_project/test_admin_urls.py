"""The admin's URLs (asgi_project/admin_urls.py): its middleware on its pages only, CSRF, CSP."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.test import Client

from asgi_project.admin_urls import CONTENT_SECURITY_POLICY
from asgi_project.middleware import HEADERS
from background.models import Job
from signup.models import User

pytestmark = pytest.mark.django_db

OPERATOR, PASSWORD = "operator@example.com", "a-long-operator-passphrase"
LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def _fresh_content_types() -> Iterator[None]:
    ContentType.objects.clear_cache()  # The admin's log must not use another test's rows.
    yield
    ContentType.objects.clear_cache()


@pytest.fixture
def middleware_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the admin's middleware classes, each time one handles a request."""
    calls: list[str] = []
    for middleware in (SessionMiddleware, AuthenticationMiddleware, MessageMiddleware):
        original = middleware.process_request

        def counted(self: Any, request: Any, original: Any = original) -> Any:
            calls.append(type(self).__name__)
            return original(self, request)

        monkeypatch.setattr(middleware, "process_request", counted)
    return calls


@pytest.mark.django_db(transaction=True)  # The signup's own database threads write.
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/signup/", 201),
        ("GET", "/signup/", 200),
        ("GET", "/healthz", 200),
    ],
)
def test_the_service_pages_run_none_of_the_admins_middleware(
    middleware_calls: list[str], method: str, path: str, status: int
) -> None:
    body = b'{"email": "ada@example.com"}' if method == "POST" else b""
    response = Client().generic(method, path, body, content_type="application/json")
    assert response.status_code == status
    assert middleware_calls == []


def test_an_admin_page_runs_session_then_user_then_messages(middleware_calls: list[str]) -> None:
    response = Client().get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=/admin/"
    assert middleware_calls == [
        "SessionMiddleware",
        "AuthenticationMiddleware",
        "MessageMiddleware",
    ]


def login_form(client: Client, **fields: str) -> dict[str, str]:
    """The login page's form as a browser posts it, filled in."""
    page = client.get(LOGIN)
    return {
        "csrfmiddlewaretoken": page.context["csrf_token"],
        "next": page.context["next"],
        "username": OPERATOR,
        "password": PASSWORD,
        **fields,
    }


def test_logging_in_needs_the_csrf_token_and_a_staff_account() -> None:
    User.objects.create_superuser(OPERATOR, PASSWORD)
    User.objects.create_user("member@example.com", PASSWORD)
    browser = Client(enforce_csrf_checks=True)

    no_token = login_form(browser)
    del no_token["csrfmiddlewaretoken"]
    assert browser.post(LOGIN, no_token).status_code == 403
    member = browser.post(LOGIN, login_form(browser, username="member@example.com"))
    assert b"enter the correct email and password for a staff account" in member.content
    assert "sessionid" not in browser.cookies

    # Any spelling of the address finds the account.
    logged_in = browser.post(LOGIN, login_form(browser, username=OPERATOR.upper()))
    assert (logged_in.status_code, logged_in["Location"]) == (302, "/admin/")
    assert browser.get("/admin/").status_code == 200


def test_an_action_without_the_csrf_token_is_refused() -> None:
    User.objects.create_superuser(OPERATOR, PASSWORD)
    Job.objects.create(id="failed", task_path="t.t", backend="default", queue_name="default",
                       status="FAILED")  # fmt: skip
    browser = Client(enforce_csrf_checks=True)
    browser.post(LOGIN, login_form(browser))
    action = {"action": "run_again_now", "_selected_action": ["failed"]}

    assert browser.post("/admin/background/job/", action).status_code == 403
    assert Job.objects.get(id="failed").status == "FAILED"
    action["csrfmiddlewaretoken"] = browser.cookies["csrftoken"].value
    assert browser.post("/admin/background/job/", action).status_code == 302
    assert Job.objects.get(id="failed").status == "READY"


def test_admin_pages_may_load_the_admins_files_and_the_service_pages_may_not() -> None:
    admin_page = Client().get(LOGIN)
    assert admin_page["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert admin_page["X-Frame-Options"] == "DENY"
    signup_page = Client().get("/signup/")
    assert signup_page["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        pytest.param("GET", "/admin/background/job/a%00b/change/", {}, id="job-id-in-path"),
        pytest.param("GET", "/admin/background/job/", {"q": "a\x00b"}, id="search"),
        pytest.param("GET", "/admin/background/job/", {"status__exact\x00": "x"}, id="filter-name"),
        pytest.param(
            "POST",
            "/admin/background/job/",
            {"action": "run_again_now", "_selected_action": ["ok", "a\x00b"]},
            id="selected-job",
        ),
    ],
)
def test_null_characters_get_400_not_a_database_error(
    method: str, path: str, data: dict[str, Any]
) -> None:
    browser = Client()
    browser.force_login(User.objects.create_superuser(OPERATOR, PASSWORD))
    response = browser.get(path, data) if method == "GET" else browser.post(path, data)
    assert response.status_code == 400
    assert response.content == b"Null characters are not allowed."
