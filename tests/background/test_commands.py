"""The management commands: ``requeue_failed_jobs`` and ``run_jobs``."""

from io import StringIO
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.management import CommandError, call_command
from django.tasks import TaskResultStatus

from background.models import Job
from mailer.tasks import send_existing_account_email, send_welcome_email
from tests.support.jobs import finished, new_accounts, reaches
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_failed_jobs_can_be_queued_again_after_an_outage(
    smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    smtp_server.script("550")
    await new_accounts("again@example.com")
    await start_runner()
    result = await send_welcome_email.aenqueue("again@example.com")
    await finished(result)
    assert result.status == TaskResultStatus.FAILED

    output = StringIO()
    await sync_to_async(call_command)("requeue_failed_jobs", stdout=output)
    assert output.getvalue().strip() == "Queued 1 failed job(s) again."
    again = await reaches(result.id, TaskResultStatus.SUCCESSFUL)
    mail = (await smtp_server.until(1))[0]
    assert mail.message["Message-ID"] == f"<{result.id}@example.com>"
    assert len(again.errors) == 1  # The history of the failed attempt is kept.
    assert again.attempts == 1  # A fresh set of attempts.


def test_requeue_can_be_limited_to_one_task() -> None:
    task = {"backend": "default", "queue_name": "default", "status": TaskResultStatus.FAILED}
    Job.objects.create(id="welcome", task_path=send_welcome_email.module_path, **task)
    Job.objects.create(id="existing", task_path=send_existing_account_email.module_path, **task)
    output = StringIO()
    call_command("requeue_failed_jobs", task=send_welcome_email.module_path, stdout=output)
    assert output.getvalue().strip() == "Queued 1 failed job(s) again."
    statuses = dict(Job.objects.values_list("id", "status"))
    assert statuses == {"welcome": TaskResultStatus.READY, "existing": TaskResultStatus.FAILED}


def test_run_jobs_refuses_a_backend_that_is_not_the_ledger(settings: Any) -> None:
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    with pytest.raises(CommandError, match=r"is not a background\.backend\.LedgerBackend"):
        call_command("run_jobs")
