"""POST /signup/ against hostile bodies, content types and cookies: a 4xx or a 201, never a 500.

Requests go through the whole Django stack (the middleware included) with
CSRF enforced and a well-formed CSRF cookie, so form bodies are really read.
What only a real server shows (Host, body limits, raw bytes) is in
tests/e2e/test_hostile_input.py.
"""

import json

import pytest
from django.test import AsyncClient
from django.test.client import MULTIPART_CONTENT

from background.models import Job
from signup.models import User

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
CSRF_COOKIE = "abcdefghijklmnopqrstuvwxyzABCDEF"
MALFORMED = "Malformed JSON."
UNSUPPORTED = "Send application/json or a form."
ADDRESS = b'{"email": "a@example.com"}'
FORM_BODY = b"email=a%40example.com"


async def post(
    body: bytes, content_type: str, cookies: dict[str, str] | None = None
) -> tuple[int, bytes]:
    client = AsyncClient(enforce_csrf_checks=True)
    for name, value in ({"csrftoken": CSRF_COOKIE} if cookies is None else cookies).items():
        client.cookies[name] = value
    # generic() sends the bytes as given; post() would re-encode them.
    response = await client.generic("POST", "/signup/", body, content_type=content_type)
    return response.status_code, response.content


async def accounts() -> list[str]:
    return [email async for email in User.objects.order_by("email").values_list("email", flat=True)]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "detail"),
    [
        pytest.param(b'{"email": "caf\xe9@example.com"}', JSON, 400, MALFORMED, id="latin-1-byte"),
        pytest.param(b"\xff\xfe{}", JSON, 400, MALFORMED, id="utf-16-bom-odd-length"),
        pytest.param(
            b'{"email": "\xed\xa0\x80@example.com"}',
            JSON,
            400,
            "Invalid input.",
            id="utf-8-surrogate",
        ),
        pytest.param(
            b'{"email": "\xc0\xafa@example.com"}', JSON, 400, MALFORMED, id="overlong-utf-8"
        ),
        pytest.param(
            b'{"a":' * 10_000 + b"1" + b"}" * 10_000, JSON, 400, MALFORMED, id="10000-deep-objects"
        ),
        pytest.param(b"[" * 10_000 + b"]" * 10_000, JSON, 400, MALFORMED, id="10000-deep-arrays"),
        pytest.param(b'{"email": "a@example.com"', JSON, 400, MALFORMED, id="truncated"),
        pytest.param(b'{"email": "a@example.com"} {}', JSON, 400, MALFORMED, id="trailing-data"),
        pytest.param(b"NaN", JSON, 400, "Expected a JSON object.", id="nan"),
        pytest.param(ADDRESS, "", 415, UNSUPPORTED, id="no-content-type"),
        pytest.param(ADDRESS, "text/json", 415, UNSUPPORTED, id="text-json"),
        pytest.param(ADDRESS, "application/json-patch+json", 415, UNSUPPORTED, id="json-suffix"),
        pytest.param(ADDRESS, "application/jsonx", 415, UNSUPPORTED, id="jsonx"),
    ],
)
async def test_bad_json_gets_4xx_with_a_reason_and_writes_nothing(
    body: bytes, content_type: str, status: int, detail: str
) -> None:
    answer_status, content = await post(body, content_type)
    assert answer_status == status
    assert json.loads(content)["detail"] == detail
    assert await accounts() == []
    assert not await Job.objects.aexists()


@pytest.mark.parametrize(
    ("body", "content_type", "account"),
    [
        pytest.param(
            '{"email": "bom@example.com"}'.encode("utf-8-sig"),
            JSON,
            "bom@example.com",
            id="utf-8-bom",
        ),
        pytest.param(
            '{"email": "u16@example.com"}'.encode("utf-16"), JSON, "u16@example.com", id="utf-16"
        ),
        pytest.param(
            '{"email": "u32@example.com"}'.encode("utf-32"), JSON, "u32@example.com", id="utf-32"
        ),
        # Last one wins, as in JSON.parse; the address is validated either way.
        pytest.param(
            b'{"email": "first@example.com", "email": "last@example.com"}',
            JSON,
            "last@example.com",
            id="duplicate-keys",
        ),
        pytest.param(
            b'{"email": "p@example.com"}',
            "application/json; charset=utf-8",
            "p@example.com",
            id="charset-param",
        ),
        # The body's own encoding counts (RFC 8259 has no charset parameter).
        pytest.param(
            b'{"email": "p@example.com"}',
            "application/json; charset=utf-32",
            "p@example.com",
            id="wrong-charset-param",
        ),
        pytest.param(
            b'{"email": "p@example.com"}',
            "application/json; charset=no-such-codec",
            "p@example.com",
            id="unknown-charset",
        ),
        pytest.param(
            b'{"email": "p@example.com"}', "Application/JSON", "p@example.com", id="upper-case-type"
        ),
        pytest.param(
            b'{"email": "p@example.com"}',
            "application/json;;; x",
            "p@example.com",
            id="junk-params",
        ),
    ],
)
async def test_unusual_but_valid_json_signs_up(
    body: bytes, content_type: str, account: str
) -> None:
    status, content = await post(body, content_type)
    assert status == 201, content
    assert await accounts() == [account]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        # Readable forms without a token: refused by CSRF, before anything is written.
        pytest.param(b"email=%zz%", FORM, 403, id="invalid-percent-encoding"),
        pytest.param(b"email=%E9%ff%40example.com", FORM, 403, id="percent-encoded-non-utf-8"),
        pytest.param(b"=&&==&;;", FORM, 403, id="empty-names"),
        pytest.param(FORM_BODY, f"{FORM}; charset=no-such-codec", 403, id="unknown-charset"),
        pytest.param(
            FORM_BODY, f"{MULTIPART_CONTENT}; charset=utf-32", 403, id="multipart-charset"
        ),
        pytest.param(
            b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x", 403, id="multipart-no-headers"
        ),
        pytest.param(b"garbage", "multipart/form-data; boundary=x", 403, id="multipart-no-parts"),
        # Unreadable forms: refused before the view by the middleware.
        pytest.param(FORM_BODY, f"{FORM}; charset=utf-32", 400, id="charset-utf-32"),
        pytest.param(FORM_BODY, f"{FORM}; charset=utf-8; charset=utf-32", 400, id="two-charsets"),
        pytest.param(b"--x\r\nbroken", "multipart/form-data", 400, id="multipart-no-boundary"),
        pytest.param(b"&".join(b"f%d=1" % i for i in range(5000)), FORM, 400, id="5000-fields"),
    ],
)
async def test_hostile_forms_get_4xx_and_write_nothing(
    body: bytes, content_type: str, status: int
) -> None:
    answer_status, content = await post(body, content_type)
    assert answer_status == status
    assert b"<html" in content.lower()  # Form posts come from browsers: a page.
    assert await accounts() == []


@pytest.mark.parametrize(
    "cookies",
    [
        pytest.param({}, id="none"),
        pytest.param({"csrftoken": "short"}, id="short-token"),
        pytest.param({"csrftoken": "!" * 32}, id="bad-characters"),
        pytest.param({"csrftoken": "a" * 4000}, id="4-kb-token"),
        pytest.param({"csrftoken": '"unterminated'}, id="unterminated-quote"),
        pytest.param({"sessionid": "x" * 100, "csrftoken": ""}, id="empty-token"),
    ],
)
async def test_bad_csrf_cookies_get_403_and_write_nothing(cookies: dict[str, str]) -> None:
    status, _ = await post(b"email=a%40example.com&csrfmiddlewaretoken=" + b"a" * 32, FORM, cookies)
    assert status == 403
    assert await accounts() == []


async def test_a_malformed_cookie_header_does_not_break_a_json_signup() -> None:
    client = AsyncClient()
    response = await client.generic(
        "POST",
        "/signup/",
        b'{"email": "cookie@example.com"}',
        content_type=JSON,
        headers={"cookie": '=;;=; csrftoken="x; \\"; a=b=c; ' + "k" * 5000},
    )
    assert response.status_code == 201
    assert await accounts() == ["cookie@example.com"]
