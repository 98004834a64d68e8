"""The project's one middleware: Host validation, unreadable forms, security headers.

Both refusals must hold on every path, since the middleware is the only thing
every request passes through, and log one line without a traceback.
"""

import logging

import pytest
from django.test import AsyncClient, Client

from asgi_project.asgi import django_application
from asgi_project.middleware import HEADERS
from background.models import Job
from signup.models import User
from tests.support.asgi_client import ScriptedClient, call
from tests.support.log_records import log_records

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/", "/signup/", "/healthz", "/account/set-password/MQ/set-password/", "/no-such-page"]
CSRF_COOKIE = "abcdefghijklmnopqrstuvwxyzABCDEF"  # Well-formed: the check goes on to read the form.
FORM = "application/x-www-form-urlencoded"


def assert_one_short_line(records: list[logging.LogRecord], text: str) -> None:
    assert len(records) == 1
    (record,) = records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert text in record.getMessage()
    assert "\n" not in record.getMessage()


async def request_with_host(method: str, path: str, host: bytes) -> ScriptedClient:
    # The test client adds its own Host header; this sends exactly one.
    body = b'{"email": "evil@example.com"}' if method == "POST" else b""
    headers = [(b"host", host), (b"content-type", b"application/json")]
    return await call(django_application, ScriptedClient([body]), method, path, headers)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_host_not_allowed_gets_400_on_every_path(path: str, method: str) -> None:
    with log_records("django.security.DisallowedHost") as records:
        response = await request_with_host(method, path, b"evil.example")
    assert response.status == 400
    assert response.json() == {"detail": "Invalid Host header."}
    assert response.headers[b"x-frame-options"] == HEADERS["X-Frame-Options"].encode()
    assert_one_short_line(records, "Invalid HTTP_HOST header: 'evil.example'")
    assert not await User.objects.aexists()


async def test_a_huge_host_is_logged_shortened() -> None:
    with log_records("django.security.DisallowedHost") as records:
        assert (await request_with_host("GET", "/healthz", b"a" * 10_000)).status == 400
    assert_one_short_line(records, "Invalid HTTP_HOST header: 'aaaa")
    assert len(records[0].getMessage()) < 300


async def test_an_unreadable_form_on_a_huge_path_is_logged_shortened() -> None:
    path = "/" + "p" * 10_000
    body, content_type = b"a=1", f"{FORM}; charset=utf-32"
    with log_records("django.request") as records:
        response = await AsyncClient().post(path, body, content_type=content_type)
    assert response.status_code == 400
    assert_one_short_line(records, "Unreadable form (BadRequest): /ppp")
    assert len(records[0].getMessage()) < 300


@pytest.mark.parametrize(
    "host",
    [b"evil.example:80", b"testserver.evil.example", b"[::1]", b"test server", b"testserver@evil",
     b"testserver,evil.example", b"", b"\xff", b"testserver:80:80"],
)  # fmt: skip
async def test_hosts_that_only_look_allowed_are_refused(host: bytes) -> None:
    assert (await request_with_host("GET", "/healthz", host)).status == 400


@pytest.mark.parametrize("host", [b"testserver", b"testserver:8000", b"TestServer", b"127.0.0.1"])
async def test_allowed_hosts_pass_with_any_port_or_case(host: bytes) -> None:
    assert (await request_with_host("GET", "/healthz", host)).status == 200


def test_the_sync_path_checks_the_host_too() -> None:
    # Sync callers (Django's test Client, a WSGI server) get the same middleware.
    assert Client(headers={"host": "evil.example"}).get("/healthz").status_code == 400
    assert Client().get("/healthz").status_code == 200


def multipart(*parts: bytes) -> bytes:
    """A multipart/form-data body with the boundary ``x``."""
    return b"".join(b"--x\r\n" + each + b"\r\n" for each in parts) + b"--x--\r\n"


def part(disposition: bytes, value: bytes = b"1", headers: bytes = b"") -> bytes:
    return b"Content-Disposition: form-data; " + disposition + b"\r\n" + headers + b"\r\n" + value


MULTIPART = "multipart/form-data; boundary=x"

# Each made the form unreadable to Django: before, with a CSRF cookie, the
# error escaped the view and Django's own 400 page (which reads the form
# again) failed too, so the client got a 500.
UNREADABLE_FORMS = [
    pytest.param(b"email=a%40example.com", f"{FORM}; charset=utf-32", id="urlencoded-utf-32"),
    pytest.param(b"email=a%40example.com", f"{FORM}; charset=utf-16", id="urlencoded-utf-16"),
    pytest.param(b"email=a%40example.com", f"{FORM}; charset=latin-1", id="urlencoded-latin-1"),
    pytest.param(b"email=a%40example.com", f"{FORM}; charset=ascii", id="urlencoded-ascii"),
    pytest.param(b"&".join(b"f%d=1" % i for i in range(1001)), FORM, id="urlencoded-1001-fields"),
    pytest.param(b"--x\r\nbroken", "multipart/form-data", id="multipart-no-boundary"),
    pytest.param(b"email=a", "multipart/form-data; boundary=", id="multipart-empty-boundary"),
    pytest.param(
        multipart(
            part(b'name="f"; filename="f.txt"', b"QUJDR", b"Content-Transfer-Encoding: base64\r\n")
        ),
        MULTIPART,
        id="multipart-truncated-base64",
    ),
    pytest.param(
        multipart(*(part(b'name="f"; filename="%d"' % i) for i in range(101))),
        MULTIPART,
        id="multipart-101-files",
    ),
    pytest.param(
        multipart(part(b"name=a" + b"a" * 9000)), MULTIPART, id="multipart-9-kb-part-header"
    ),
    pytest.param(
        multipart(*(part(b'name="f%d"' % i) for i in range(1001))),
        MULTIPART,
        id="multipart-1001-fields",
    ),
]


@pytest.mark.parametrize(("body", "content_type"), UNREADABLE_FORMS)
@pytest.mark.parametrize("path", PATHS)
async def test_an_unreadable_form_gets_400_on_every_path(
    body: bytes, content_type: str, path: str
) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    client.cookies["csrftoken"] = CSRF_COOKIE
    with log_records("django.request") as records:
        response = await client.post(path, body, content_type=content_type)
    assert response.status_code == 400
    assert b"Malformed form data." in response.content
    assert response["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
    assert_one_short_line(records, "Unreadable form (")
    assert not await User.objects.aexists()
    assert not await Job.objects.aexists()


async def test_a_form_over_the_size_limit_gets_413() -> None:
    # Under uvicorn the ASGI body limit answers first; the test client has none.
    body = b"email=a%40example.com&pad=" + b"x" * 70_000
    response = await AsyncClient().post("/signup/", body, content_type=FORM)
    assert response.status_code == 413


async def test_readable_forms_and_json_pass_untouched() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.get("/signup/")
    token = client.cookies["csrftoken"].value
    form = await client.post(
        "/signup/",
        f"email=form%40example.com&csrfmiddlewaretoken={token}",
        content_type=f"{FORM}; charset=UTF-8",
    )
    assert form.status_code == 201
    multipart = await client.post(
        "/signup/", {"email": "multipart@example.com", "csrfmiddlewaretoken": token}
    )
    assert multipart.status_code == 201
    as_json = await client.post(
        "/signup/", {"email": "json@example.com"}, content_type="application/json"
    )
    assert as_json.status_code == 201
    assert await User.objects.acount() == 3
