"""The operator's admin in a real browser (headless Chromium), against uvicorn and a real relay.

A relay refuses an address for good (550 at RCPT TO); the operator logs in to
/admin/ with the superuser ``createsuperuser --noinput`` made, finds the
failed mail and its reason, has the relay fixed, runs the job again from the
list, and the mail arrives. The runner polls only every 30 s here, so the
mail arriving sooner proves "Run again now" wakes it.

Screenshots go to the test's temporary directory, or to $ADMIN_SCREENSHOTS:
the README's pictures are made with
``ADMIN_SCREENSHOTS=docs .venv/bin/python -m pytest tests/e2e/test_admin_browser.py``.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select

from tests.support.browser import headless_chromium, wait_until
from tests.support.service import ROOT, ServiceProcess, base_env, migrate, sqlite_database
from tests.support.smtp_server import SMTPTestServer

OPERATOR = "operator@example.com"
PASSWORD = "a-long-operator-passphrase-42"
ADDRESS = "ada@example.com"
REFUSAL = "550 5.1.1 <{address}>: mailbox unavailable"
# Far longer than the test waits for the mail: only a wake-up can deliver it in time.
POLL_INTERVAL = "30"


@pytest.fixture
def service(tmp_path: Path, smtp: SMTPTestServer) -> Iterator[ServiceProcess]:
    with sqlite_database(tmp_path) as database_url:
        env = base_env(database_url, smtp.port, TASKS_POLL_INTERVAL=POLL_INTERVAL)
        migrate(env)
        subprocess.run(
            [sys.executable, "manage.py", "createsuperuser", "--noinput"],
            cwd=ROOT,
            env={**env, "DJANGO_SUPERUSER_EMAIL": OPERATOR, "DJANGO_SUPERUSER_PASSWORD": PASSWORD},
            check=True,
            timeout=120,
        )
        process = ServiceProcess(env, tmp_path / "uvicorn.log").start()
        yield process
        process.stop()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    with headless_chromium() as driver:
        yield driver


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    chosen = os.environ.get("ADMIN_SCREENSHOTS")
    directory = ROOT / chosen if chosen else tmp_path / "screenshots"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def job_row(browser: WebDriver, address: str) -> WebElement | None:
    """The list's one row for ``address``, or None while the list does not show it."""
    try:
        rows = [
            row
            for row in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
            if row.find_element(By.CSS_SELECTOR, ".field-recipient").text == address
        ]
    except StaleElementReferenceException:
        return None  # The search's page replaced the one the rows came from: look again.
    assert len(rows) <= 1, f"{len(rows)} jobs for {address}"
    return rows[0] if rows else None


def column(row: WebElement, name: str) -> str:
    return row.find_element(By.CSS_SELECTOR, f".field-{name}").text


def test_an_operator_finds_a_refused_mail_runs_it_again_and_it_arrives(
    service: ServiceProcess, smtp: SMTPTestServer, browser: WebDriver, screenshots: Path
) -> None:
    smtp.refuse_recipients(REFUSAL)  # The relay refuses the address once, for good (5xx).
    assert service.signup(ADDRESS).status_code == 201
    wait_until(lambda: service.job_counts()["FAILED"] == 1, "the refused mail's job FAILED")

    # Log in: any spelling of the address finds the account.
    browser.get(f"{service.url}/admin/")
    browser.find_element(By.NAME, "username").send_keys(OPERATOR.upper())
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form [type=submit]").click()
    wait_until(lambda: browser.title.startswith("Operations"), "the admin's index")

    # The failed mail: filter by status, search by address.
    browser.find_element(By.LINK_TEXT, "Jobs").click()
    browser.find_element(By.LINK_TEXT, "Failed").click()
    search = browser.find_element(By.ID, "searchbar")
    search.send_keys(ADDRESS)
    search.submit()
    row = wait_until(lambda: job_row(browser, ADDRESS), "the job in the list")
    assert column(row, "status") == "Failed"
    assert column(row, "task") == "send_welcome_email"
    assert column(row, "attempts") == "1"
    reason = column(row, "last_error")
    assert reason.startswith("DeliveryError: recipients refused (550 5.1.1")
    assert column(row, "last_error_at") != "-"
    browser.save_screenshot(str(screenshots / "admin-1-failed-job.png"))

    # Its detail page: the whole error record, and nothing to edit.
    row.find_element(By.CSS_SELECTOR, ".field-short_id a").click()
    history = browser.find_element(By.CSS_SELECTOR, ".field-error_history .readonly").text
    assert "1 of 1" in history
    assert "550 5.1.1 <ada@example.com>: mailbox unavailable" in history
    assert "Traceback (most recent call last)" in history
    assert not browser.find_elements(By.CSS_SELECTOR, "#job_form input[name=status]")
    assert not browser.find_elements(By.NAME, "_save")
    browser.save_screenshot(str(screenshots / "admin-2-error-detail.png"))

    # The relay takes the address now (its one refusal is spent): run the job again,
    # from the list of the address's jobs.
    browser.back()
    status_filter = browser.find_element(By.CSS_SELECTOR, 'details[data-filter-title="status"]')
    status_filter.find_element(By.LINK_TEXT, "All").click()
    row = wait_until(lambda: job_row(browser, ADDRESS), "the address's jobs")
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_visible_text("Run again now")
    browser.find_element(By.CSS_SELECTOR, "#changelist-form button[name=index]").click()
    message = wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".messagelist .success"),
        "the action's message",
    )
    assert message[0].text == "1 job will run now."

    (mail,) = smtp.wait_for(1, timeout=10)
    assert mail.recipients == [ADDRESS]
    browser.save_screenshot(str(screenshots / "admin-3-run-again.png"))

    # The list says so: successful, the earlier error still on record.
    browser.get(f"{service.url}/admin/background/job/")
    row = wait_until(lambda: job_row(browser, ADDRESS), "the whole list")
    assert column(row, "status") == "Successful"
    assert column(row, "last_error") == reason
    browser.save_screenshot(str(screenshots / "admin-4-delivered.png"))

    refused = [
        entry["message"]
        for entry in browser.get_log("browser")  # type: ignore[no-untyped-call]
        if "Content Security Policy" in entry["message"]
    ]
    assert refused == []
