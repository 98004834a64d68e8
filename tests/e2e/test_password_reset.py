"""Django's own password-reset flow under uvicorn, with a relay that hangs and comes back.

Its mail goes through Django's mail API, so through the outbox: the answer does
not wait for SMTP, and the mail is sent, once, when the relay answers again.
"""

import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.service import (
    ServiceProcess,
    base_env,
    migrate,
    postgres_database,
    sqlite_database,
)
from tests.support.smtp_server import Received, SMTPTestServer
from tests.support.waiting import wait_until

PASSWORD = "a-Long-unusual-passphrase-42"
# Seconds per SMTP operation: what a reset sending its mail inline would wait
# at least for a relay that accepts the connection and never answers.
EMAIL_TIMEOUT = 5.0
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
DATABASES: dict[str, Callable[[Path], AbstractContextManager[str]]] = {
    "sqlite": sqlite_database,
    "postgres": lambda _: postgres_database(),
}


@pytest.fixture
def relay(smtp: SMTPTestServer) -> Iterator[FaultProxy]:
    """The service's way to the SMTP server, which the test can make hang."""
    proxy = FaultProxy("127.0.0.1", smtp.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def service(
    request: pytest.FixtureRequest, relay: FaultProxy, tmp_path: Path
) -> Iterator[ServiceProcess]:
    with DATABASES[request.param](tmp_path) as url:
        env = base_env(url, relay.port, EMAIL_TIMEOUT=str(EMAIL_TIMEOUT), TASKS_RETRY_MAX_DELAY="1")
        migrate(env)
        service = ServiceProcess(env, tmp_path / "uvicorn.log")
        yield service.start()
        service.stop()


def link_in(mail: Received) -> str:
    """The path of the set-password link in a mail's text part."""
    text = mail.message.get_body(("plain",))
    assert text is not None
    (link,) = [word for word in text.get_content().split() if "/account/set-password/" in word]
    return urlsplit(link).path


def submit(browser: httpx.Client, path: str, **fields: str) -> httpx.Response:
    """GET the form at ``path`` (following redirects), then POST it with its CSRF token."""
    page = browser.get(path, follow_redirects=True)
    token = CSRF_INPUT.search(page.text)
    assert token is not None, page.text
    return browser.post(page.url.path, data={"csrfmiddlewaretoken": token[1], **fields})


def test_a_password_reset_answers_at_once_and_is_mailed_once_the_relay_is_back(
    service: ServiceProcess, relay: FaultProxy, smtp: SMTPTestServer
) -> None:
    browser = httpx.Client(base_url=service.url, timeout=30)
    # An account with a password, made the way users make one.
    assert service.signup("ada@example.com").status_code == 201
    (welcome,) = smtp.wait_for(1)
    chosen = submit(browser, link_in(welcome), new_password1=PASSWORD, new_password2=PASSWORD)
    assert chosen.headers["location"] == "/account/set-password/done/"

    relay.stall()  # Connections are accepted, nothing comes back.
    began = time.monotonic()
    reset = submit(browser, "/password-reset/", email="ADA@example.com")
    answered_in = time.monotonic() - began
    assert (reset.status_code, reset.headers["location"]) == (302, "/password-reset/done/")
    assert answered_in < EMAIL_TIMEOUT, f"the answer took {answered_in:.1f} s"
    wait_until(
        lambda: "attempt 1 failed: DeliveryError: timed out" in service.log(), "a timed-out try"
    )
    assert len(smtp.received) == 1

    relay.restore()
    wait_until(
        lambda: service.job_counts() == {"READY": 0, "RUNNING": 0, "FAILED": 0, "SUCCESSFUL": 2},
        "both mails sent",
    )
    assert [mail.recipients for mail in smtp.received] == [["ada@example.com"]] * 2  # Once.
    reset_mail = smtp.received[1]
    assert reset_mail.message["Subject"] == "Choose a new password"
    page = browser.get(link_in(reset_mail), follow_redirects=True)
    assert "<h1>Choose your password</h1>" in page.text
