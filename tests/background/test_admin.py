"""The ledger's admin (background/admin.py): the list, search, the read-only page, the actions."""

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.tasks import TaskResultStatus
from django.test import Client
from django.utils import timezone

from background.admin import error_reason
from background.models import Job
from signup.models import User
from tests.support.jobs import new_accounts, reaches, until
from tests.support.smtp_server import SMTPTestServer

READY, RUNNING = TaskResultStatus.READY, TaskResultStatus.RUNNING
SUCCESSFUL, FAILED = TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED
JOBS = "/admin/background/job/"
WELCOME = "mailer.tasks.send_welcome_email"
EXISTING = "mailer.tasks.send_existing_account_email"

REFUSED = {
    "exception_class_path": "mailer.transport.DeliveryError",
    "traceback": (
        "Traceback (most recent call last):\n"
        '  File "mailer/transport.py", line 97, in send\n'
        "aiosmtplib.errors.SMTPRecipientsRefused: [...]\n\n"
        "The above exception was the direct cause of the following exception:\n\n"
        "Traceback (most recent call last):\n"
        '  File "background/runner.py", line 365, in _run\n'
        "mailer.transport.DeliveryError: recipients refused"
        " (550 5.1.1 <ada@example.com>: mailbox unavailable)\n"
    ),
    "failed_at": "2026-11-25T10:00:00+00:00",
}


def ledger_job(job_id: str, address: str, **fields: Any) -> Job:
    fields.setdefault("task_path", WELCOME)
    return Job.objects.create(
        id=job_id, args=[address], backend="default", queue_name="default", **fields
    )


@pytest.fixture
def content_types() -> Iterator[None]:
    """The admin logs changes against a content type: never one cached by another test,
    whose rows are gone."""
    ContentType.objects.clear_cache()
    yield
    ContentType.objects.clear_cache()


@pytest.fixture
def operator(db: None, content_types: None) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("operator@example.com", "pass-phrase-1"))
    return client


def rows(page: bytes) -> list[str]:
    """The job list's rows, as text without tags."""
    html = page.decode()
    return [
        " ".join(re.sub(r"<[^>]+>", " ", row).split())
        for row in re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>", 1)[-1], re.S)
    ]


def test_the_list_shows_status_task_recipient_attempts_next_run_and_last_error(
    operator: Client,
) -> None:
    ledger_job("failed-job-1", "ada@example.com", status=FAILED, attempts=1, errors=[REFUSED])
    later = timezone.now() + timedelta(hours=1)
    ledger_job("waiting-job-1", "bob@example.com", run_after=later, attempts=3)

    page = operator.get(JOBS)
    assert page.status_code == 200
    failed, waiting = sorted(rows(page.content))
    assert failed == (
        "failed-j… Failed send_welcome_email ada@example.com 1 -"
        " DeliveryError: recipients refused (550 5.1.1 &lt;ada@example.com&gt;:"
        " mailbox unavailable) Nov. 25, 2026, 10 a.m."
    )
    assert waiting.startswith("waiting-… Ready send_welcome_email bob@example.com 3 ")
    assert waiting.endswith(" - -")  # A date for the next run; no error.
    assert "- -" not in waiting.removesuffix(" - -")


@pytest.mark.parametrize(
    ("query", "found"),
    [
        pytest.param("ada@example.com", {"ada-1", "ada-2"}, id="address"),
        pytest.param("ADA@example", {"ada-1", "ada-2"}, id="part-of-an-address"),
        pytest.param("bob-1", {"bob-1"}, id="whole-id"),
        pytest.param("bob-", set(), id="part-of-an-id-only"),
    ],
)
def test_search_finds_a_whole_job_id_or_an_address(
    operator: Client, query: str, found: set[str]
) -> None:
    ledger_job("ada-1", "ada@example.com")
    ledger_job("ada-2", "ada@example.com", task_path=EXISTING)
    ledger_job("bob-1", "bob@example.com")
    page = operator.get(JOBS, {"q": query})
    assert {row.split("…")[0] for row in rows(page.content)} == {i[:8] for i in found}


def test_filters_by_status_and_task(operator: Client) -> None:
    ledger_job("welcome-failed", "a@example.com", status=FAILED)
    ledger_job("welcome-ready", "b@example.com")
    ledger_job("existing-failed", "c@example.com", status=FAILED, task_path=EXISTING)

    by_status = operator.get(JOBS, {"status__exact": FAILED})
    assert sorted(row.split()[0] for row in rows(by_status.content)) == ["existing…", "welcome-…"]
    both = operator.get(JOBS, {"status__exact": FAILED, "task": EXISTING})
    assert [row.split()[0] for row in rows(both.content)] == ["existing…"]
    assert b">send_existing_account_email</a>" in both.content  # The filter's short name.


def test_the_job_page_is_read_only_and_shows_every_error_in_full(operator: Client) -> None:
    older = {**REFUSED, "traceback": "Traceback ...\nTimeoutError\n", "failed_at": ""}
    ledger_job("failed-twice", "ada@example.com", status=FAILED, errors=[older, REFUSED])
    url = f"{JOBS}failed-twice/change/"

    page = operator.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    newest, oldest = html.index("2 of 2"), html.index("1 of 2")
    assert newest < oldest
    assert "The above exception was the direct cause" in html
    assert "1 of 2</strong>: DeliveryError" in html  # No time recorded for that one.
    assert "at 2026-11-25 10:00:00 UTC: DeliveryError: recipients refused" in html
    assert 'name="status"' not in html
    assert 'name="_save"' not in html

    # A save is refused: it would write every column over a runner's claim.
    tampered = operator.post(url, {"status": SUCCESSFUL, "attempts": "0"})
    assert tampered.status_code == 403
    assert Job.objects.get(id="failed-twice").status == FAILED
    assert operator.get(f"{JOBS}add/").status_code == 403


def act(client: Client, action: str, *job_ids: str, **extra: str) -> Any:
    data = {"action": action, "_selected_action": list(job_ids), **extra}
    return client.post(JOBS, data, follow=True)


def test_run_again_now_makes_failed_and_waiting_jobs_due_and_leaves_the_rest(
    operator: Client,
) -> None:
    now = timezone.now()
    lease = now + timedelta(minutes=1)
    ledger_job(
        "failed", "a@example.com", status=FAILED, attempts=20, finished_at=now, errors=[REFUSED]
    )
    ledger_job("waiting", "b@example.com", attempts=3, run_after=now + timedelta(hours=1))
    ledger_job("running", "c@example.com", status=RUNNING, lease_owner="w", lease_expires_at=lease)
    ledger_job("delivered", "d@example.com", status=SUCCESSFUL, attempts=1, finished_at=now)

    page = act(operator, "run_again_now", "failed", "waiting", "running", "delivered")
    messages = [str(message) for message in page.context["messages"]]
    assert messages == [
        "2 jobs will run now.",
        "2 jobs left as they were: running, or delivered already.",
    ]
    after = timezone.now()
    jobs = {job.id: job for job in Job.objects.all()}
    failed, waiting = jobs["failed"], jobs["waiting"]
    assert (failed.status, failed.attempts, failed.finished_at) == (READY, 0, None)
    assert failed.errors == [REFUSED]  # The history stays.
    assert (waiting.status, waiting.attempts) == (READY, 3)
    assert now <= failed.run_after <= after and now <= waiting.run_after <= after
    assert (jobs["running"].status, jobs["running"].lease_owner) == (RUNNING, "w")
    assert (jobs["delivered"].status, jobs["delivered"].attempts) == (SUCCESSFUL, 1)


def test_delete_removes_the_chosen_jobs_after_confirmation(operator: Client) -> None:
    ledger_job("doomed", "a@example.com", status=FAILED)
    ledger_job("kept", "b@example.com", status=FAILED)
    confirmation = act(operator, "delete_selected", "doomed")
    assert b"Are you sure you want to delete the selected job?" in confirmation.content
    assert Job.objects.count() == 2
    act(operator, "delete_selected", "doomed", post="yes")
    assert list(Job.objects.values_list("id", flat=True)) == ["kept"]


@pytest.mark.django_db
@pytest.mark.usefixtures("content_types")
def test_staff_who_may_only_view_jobs_cannot_run_them_again() -> None:
    create_permissions(apps.get_app_config("background"), verbosity=0)
    viewer = User.objects.create_user("viewer@example.com", "pass-phrase-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(viewer)
    ledger_job("failed", "a@example.com", status=FAILED)

    page = client.get(JOBS)
    assert page.status_code == 200
    assert b'value="run_again_now"' not in page.content
    act(client, "run_again_now", "failed")
    assert Job.objects.get(id="failed").status == FAILED


@pytest.mark.django_db(transaction=True)
async def test_run_again_now_wakes_this_process_runner_before_its_next_poll(
    smtp_server: SMTPTestServer, start_runner: Callable[..., Any]
) -> None:
    await new_accounts("again@example.com")
    job = await sync_to_async(ledger_job)(
        "refused-once", "again@example.com", status=FAILED, errors=[REFUSED]
    )
    client = await sync_to_async(Client)()
    operator = await sync_to_async(User.objects.create_superuser)("op@example.com", "p-1")
    await sync_to_async(client.force_login)(operator)
    runner = await start_runner(poll_interval=60)
    started = runner.last_sweep_at
    # Its first sweep, at start, is over: the next is a minute away.
    await until(lambda: runner.last_sweep_at > started, "the runner's first sweep")

    await sync_to_async(act)(client, "run_again_now", job.id)
    await reaches(job.id, SUCCESSFUL, timeout=5)
    (mail,) = await smtp_server.until(1)
    assert mail.recipients == ["again@example.com"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(REFUSED, "DeliveryError: recipients refused (550 5.1.1", id="chained"),
        pytest.param(
            {"exception_class_path": "builtins.TimeoutError", "traceback": "T...\nTimeoutError\n"},
            "TimeoutError",
            id="builtin-without-message",
        ),
        pytest.param(
            {
                "exception_class_path": "builtins.ValueError",
                "traceback": "T...\nValueError: first line\nsecond line\n",
            },
            "ValueError: first line",
            id="message-of-two-lines",
        ),
        pytest.param(
            {"exception_class_path": "tests.Gone", "traceback": ""}, "Gone", id="no-traceback"
        ),
    ],
)
def test_an_errors_reason_is_its_exception_and_first_line(
    error: dict[str, str], reason: str
) -> None:
    assert error_reason(error).startswith(reason)
    assert "\n" not in error_reason(error)


def test_a_message_django_queued_is_listed_and_found_by_its_recipients(operator: Client) -> None:
    stored = {"sender": "noreply@example.com", "recipients": ["ops@example.com", "b@example.com"]}
    Job.objects.create(
        id="stored-1",
        task_path="mailer.tasks.send_stored_message",
        kwargs=stored | {"message": "U3ViamVjdDogaGkKCmhp"},  # Base64, never shown in the list.
        backend="default",
        queue_name="default",
    )
    ledger_job("welcome-1", "ada@example.com")

    (row,) = rows(operator.get(JOBS, {"q": "ops@example"}).content)
    assert "send_stored_message ops@example.com, b@example.com 0" in row
    assert "U3Vi" not in row
    assert rows(operator.get(JOBS, {"q": "U3ViamVj"}).content) == []
