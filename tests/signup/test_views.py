"""POST /signup/ as clients hit it: the validation matrix, CSRF, limits, no enumeration."""

import json
from typing import Any

import pytest
from django.test import AsyncClient

from background.models import Job
from signup.models import User

pytestmark = pytest.mark.django_db(transaction=True)

JSON = "application/json"


async def post_json(email: Any, client: AsyncClient | None = None) -> Any:
    return await (client or AsyncClient()).post("/signup/", {"email": email}, content_type=JSON)


async def nothing_written() -> bool:
    return not await User.objects.aexists() and not await Job.objects.aexists()


async def test_json_signup_creates_the_account_and_queues_the_welcome_mail() -> None:
    # Stored as its canonical mailbox: unquoted, lowercase, IDNA-folded domain.
    response = await post_json('  "Ada.Lovelace"@\uff25xample.COM. ')
    assert response.status_code == 201
    assert response.json() == {"detail": "User registered"}
    user = await User.objects.aget()
    assert user.email == "ada.lovelace@example.com"
    assert not user.has_usable_password()
    job = await Job.objects.aget()
    assert (job.task_path, job.args) == ("mailer.tasks.send_welcome_email", [user.email])


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("", "This field is required."),
        (None, "This field is required."),
        ("   ", "This field is required."),
        (42, "Must be a string."),
        (["a@example.com"], "Must be a string."),
        ({"x": 1}, "Must be a string."),
        ("no-at-sign.example.com", "Enter a valid email address."),
        ("two@@example.com", "Enter a valid email address."),
        ("spa ce@example.com", "Enter a valid email address."),
        ("a@example", "Enter a valid email address."),
        ("nul\x00@example.com", "Must not contain control characters."),
        ("line\nbreak@example.com", "Must not contain control characters."),
        ("bcc@example.com\r\nBcc: victim@example.org", "Must not contain control characters."),
        ("zero\u200bwidth@example.com", "Must not contain control characters."),
        ("rtl\u202e@example.com", "Must not contain control characters."),
        ("a" * 64 + "@" + "b" * 186 + ".com", "Must be at most 254 characters."),
        ("user@[127.0.0.1]", "Addresses at an IP address are not accepted."),
        ("user@[IPv6:::1]", "Addresses at an IP address are not accepted."),
        ('"a b"@example.com', "Addresses that need quotes before the @ are not accepted."),
        ("a" * 65 + "@example.com", "The part before the @ must be at most 64 characters."),
        ("josé@example.com", "Only ASCII characters are accepted before the @."),
        ("a@localhost", "Enter a valid email address."),
    ],
)
async def test_invalid_addresses_get_a_reason_and_write_nothing(email: Any, reason: str) -> None:
    response = await post_json(email)
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid input.", "errors": {"email": [reason]}}
    assert await nothing_written()


async def test_missing_email_field_is_required() -> None:
    response = await AsyncClient().post("/signup/", {"name": "x"}, content_type=JSON)
    assert response.status_code == 400
    assert response.json()["errors"] == {"email": ["This field is required."]}


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", JSON, 400),
        (b'["a@example.com"]', JSON, 400),
        (b'"a@example.com"', JSON, 400),
        (b"[" * 50_000, JSON, 400),
        (b"\xff\xfe\x00", JSON, 400),
        (json.dumps({"email": "a@example.com", "pad": "x" * 70_000}).encode(), JSON, 413),
        (b"email=a@example.com", "text/plain", 415),
        (b"<email>a@example.com</email>", "application/xml", 415),
        (b"email=a@example.com", "", 415),
    ],
)
async def test_hostile_bodies_get_4xx_and_write_nothing(
    body: bytes, content_type: str, status: int
) -> None:
    response = await AsyncClient().post("/signup/", body, content_type=content_type)
    assert response.status_code == status
    assert "detail" in response.json()
    assert await nothing_written()


async def test_other_methods_are_refused() -> None:
    client = AsyncClient()
    assert (await client.put("/signup/", {}, content_type=JSON)).status_code == 405
    assert (await client.delete("/signup/")).status_code == 405


async def test_form_signup_with_csrf_token_renders_registered_page() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    form_page = await client.get("/signup/")
    assert form_page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in form_page.content
    token = client.cookies["csrftoken"].value

    response = await client.post(
        "/signup/", {"email": "form@example.com", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 201
    assert b"User registered" in response.content
    assert await User.objects.filter(email="form@example.com").aexists()


async def test_form_post_without_csrf_token_is_forbidden_and_writes_nothing() -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    response = await client.post("/signup/", {"email": "forged@example.com"})
    assert response.status_code == 403
    assert await nothing_written()


async def test_json_needs_no_csrf_token() -> None:
    response = await post_json("api@example.com", AsyncClient(enforce_csrf_checks=True))
    assert response.status_code == 201


async def test_invalid_form_post_re_renders_the_form_with_the_reason() -> None:
    response = await AsyncClient().post("/signup/", {"email": "not an address"})
    assert response.status_code == 400
    assert b"Enter a valid email address." in response.content
    assert b'value="not an address"' in response.content
    assert await nothing_written()


async def test_existing_address_gets_the_same_answer_and_a_different_mail() -> None:
    first = await post_json("taken@example.com")
    second = await post_json('"TAKEN"@example.com.')
    assert (second.status_code, second.content) == (first.status_code, first.content)
    assert await User.objects.acount() == 1
    paths = [job.task_path async for job in Job.objects.order_by("enqueued_at")]
    assert paths == ["mailer.tasks.send_welcome_email", "mailer.tasks.send_existing_account_email"]


@pytest.mark.usefixtures("fresh_rate_window")
async def test_signups_over_the_per_ip_rate_get_429_with_retry_after(settings: Any) -> None:
    settings.SIGNUP_RATE_PER_IP = "3/m"
    statuses = [(await post_json(f"ip{i}@example.com")).status_code for i in range(4)]
    assert statuses == [201, 201, 201, 429]
    refused = await post_json("ip-late@example.com")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json() == {"detail": "Too many signups; try again later."}
    assert await User.objects.acount() == 3


@pytest.mark.usefixtures("fresh_rate_window")
async def test_mails_over_the_per_address_rate_are_dropped_silently(settings: Any) -> None:
    settings.MAIL_RATE_PER_ADDRESS = "2/h"
    answers = [(await post_json("spam-me@example.com")).content for _ in range(4)]
    assert len(set(answers)) == 1
    assert await Job.objects.acount() == 2


@pytest.mark.parametrize("enforce_csrf", [False, True])
async def test_no_hostile_input_produces_a_server_error(enforce_csrf: bool) -> None:
    client = AsyncClient(enforce_csrf_checks=enforce_csrf)
    bodies: list[tuple[bytes, str]] = [
        (b"", JSON),
        (b"null", JSON),
        (b"1e999999", JSON),
        (b'{"email": "\\ud800@example.com"}', JSON),
        (b'{"email": "' + b"a" * 60_000 + b'"}', JSON),
        (b"email=%ff%fe", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--", "multipart/form-data"),
        (b"email=a@example.com", "multipart/form-data; boundary="),
        (b"&".join(b"f%d=1" % i for i in range(2000)), "application/x-www-form-urlencoded"),
    ]
    for body, content_type in bodies:
        response = await client.post("/signup/", body, content_type=content_type)
        assert 400 <= response.status_code < 500, (body[:40], response.status_code)
    assert await nothing_written()
