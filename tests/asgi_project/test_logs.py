"""What a log line carries (asgi_project/logs.py, LOGGING in settings.py)."""

import json
import logging
import sys

import pytest

from asgi_project.logs import (
    JobFields,
    RedactPrivateData,
    job_log_context,
    redact,
    uvicorn_access_log_on,
)
from tests.support.processes import FreshProcess


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "recipients refused (550 5.1.1 <ada@example.com>: Recipient address rejected)",
            "recipients refused (550 5.1.1 <[address]>: Recipient address rejected)",
        ),
        ("'o'brien+tag@mail.example.org'", "[address]'"),
        (
            "Key (email)=(jörg@exämple.de) already exists.",
            "Key (email)=([address]) already exists.",
        ),
        ("to: ADA@EXAMPLE.COM, bob@example.com.", "to: [address], [address]"),
        # Characters an address may hold are taken with it: more hidden, never less.
        ("GET /x?to=a/b=c@example.com HTTP/1.1", "GET [address] HTTP/1.1"),
        (
            '"GET /account/set-password/MQ/cxgpkz-8f14e45fceea167a5a36dedd4bea2543/ HTTP/1.1" 302',
            '"GET /account/set-password/MQ/[token]/ HTTP/1.1" 302',
        ),
        # Django's stand-in for the token once it is in the session: nothing to hide.
        ("/account/set-password/MQ/set-password/", "/account/set-password/MQ/set-password/"),
        ("Job runner host:123:abc started; 3 jobs", "Job runner host:123:abc started; 3 jobs"),
    ],
)
def test_addresses_and_set_password_tokens_are_replaced(line: str, expected: str) -> None:
    assert redact(line) == expected


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.makeLogRecord({"name": "test", "msg": message, "args": args, **extra})
    return made


def test_the_handler_gets_a_clean_copy_and_other_handlers_the_original() -> None:
    try:
        raise ValueError("refused ada@example.com")
    except ValueError:
        original = record(
            "Job %s failed: %s", "j1", "550 <ada@example.com>", reason="550 <ada@example.com>",
            attempt=2, exc_info=sys.exc_info(),
        )  # fmt: skip
    cleaned = RedactPrivateData().filter(original)
    assert cleaned.getMessage() == "Job j1 failed: 550 <[address]>"
    assert cleaned.reason == "550 <[address]>"  # type: ignore[attr-defined]
    assert cleaned.attempt == 2  # type: ignore[attr-defined]
    text = logging.Formatter().format(cleaned)
    assert "ValueError: refused [address]" in text
    assert "ada@" not in text
    assert original.getMessage() == "Job j1 failed: 550 <ada@example.com>"
    assert original.exc_info is not None


def test_lines_logged_while_a_job_runs_say_which_job() -> None:
    job_fields = JobFields()

    def log(message: str, **extra: object) -> logging.LogRecord:
        logged = record(message, **extra)
        job_fields.filter(logged)
        return logged

    context = job_log_context(job_id="j1", task="mailer.tasks.send_welcome_email", attempt=3)
    inside = context.run(log, "during")
    given = context.run(log, "about another job", job_id="j2")
    outside = log("after")
    assert (inside.job_id, inside.task, inside.attempt) == (  # type: ignore[attr-defined]
        "j1", "mailer.tasks.send_welcome_email", 3,
    )  # fmt: skip
    assert given.job_id == "j2"  # type: ignore[attr-defined]  # Given fields win.
    assert not hasattr(outside, "job_id")


def test_uvicorn_no_access_log_is_kept() -> None:
    access = logging.getLogger("uvicorn.access")
    saved = access.handlers, access.propagate
    try:
        access.handlers, access.propagate = [], False  # What --no-access-log leaves.
        assert not uvicorn_access_log_on()
        access.handlers, access.propagate = [logging.NullHandler()], False  # uvicorn's default.
        assert uvicorn_access_log_on()
    finally:
        access.handlers, access.propagate = saved


# One line from Django's request logger and one from the runner, as the
# settings configure logging in a fresh interpreter.
LOG_TWO_LINES = [
    "-c",
    "import django, logging, os;"
    "os.environ['DJANGO_SETTINGS_MODULE'] = 'asgi_project.settings'; django.setup();"
    "logging.getLogger('django.request').warning('Bad Request: /signup/');"
    "logging.getLogger('background.runner').warning('refused: %s', 'ada@example.com')",
]
SETTINGS = {"SITE_URL": "http://x"}


def test_json_lines_without_debug_hide_addresses(fresh_process: FreshProcess) -> None:
    result = fresh_process(LOG_TWO_LINES, {**SETTINGS, "DEBUG": "0", "LOG_FORMAT": "json"})
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [(line["level"], line["logger"], line["message"]) for line in lines] == [
        ("WARNING", "django.request", "Bad Request: /signup/"),
        ("WARNING", "background.runner", "refused: [address]"),
    ]
    assert all(line["time"].endswith("+00:00") for line in lines)


def test_text_lines_with_debug_show_addresses_once(fresh_process: FreshProcess) -> None:
    # Django's own DEBUG handler printed every django.* line a second time.
    result = fresh_process(LOG_TWO_LINES, {**SETTINGS, "DEBUG": "1"})
    messages = [line.split(" ", 2)[2] for line in result.stderr.splitlines()]
    assert messages == [
        "WARNING django.request: Bad Request: /signup/",
        "WARNING background.runner: refused: ada@example.com",
    ]


def test_an_unknown_log_format_stops_startup(fresh_process: FreshProcess) -> None:
    result = fresh_process(
        ["-c", "import asgi_project.settings"], {**SETTINGS, "LOG_FORMAT": "xml"}
    )
    assert result.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        'LOG_FORMAT must be "text" or "json", not \'xml\'.'
    )
