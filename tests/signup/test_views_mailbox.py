"""One mailbox, however a client writes it, is one account and one per-address mail limit."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.tasks import TaskResultStatus
from django.test import AsyncClient

from background.models import Job
from background.runner import JobRunner, RunnerConfig
from signup.models import User
from tests.signup.test_validation import EQUIVALENT_SPELLINGS
from tests.support.jobs import all_finished
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

MAILBOX = "ada@office.example"
SPELLINGS = EQUIVALENT_SPELLINGS[MAILBOX]


@pytest.fixture
async def runner(smtp_server: SMTPTestServer) -> AsyncIterator[JobRunner]:
    runner = JobRunner(RunnerConfig(concurrency=4, poll_interval=0.02, drain_timeout=5))
    await runner.start()
    yield runner
    await runner.stop(drain_timeout=2)


@pytest.mark.usefixtures("fresh_rate_window")
async def test_spellings_of_one_mailbox_make_one_account_and_share_its_mail_limit(
    settings: Any, smtp_server: SMTPTestServer, runner: JobRunner
) -> None:
    settings.MAIL_RATE_PER_ADDRESS = "3/h"
    client = AsyncClient()
    for spelling in SPELLINGS:
        response = await client.post(
            "/signup/", {"email": spelling}, content_type="application/json"
        )
        assert response.status_code == 201, spelling

    assert [user.email async for user in User.objects.all()] == [MAILBOX]
    assert await Job.objects.acount() == 3
    jobs = await all_finished(3)
    assert {job.status for job in jobs} == {TaskResultStatus.SUCCESSFUL}
    assert {tuple(job.args) for job in jobs} == {(MAILBOX,)}
    mails = await smtp_server.until(3)
    assert len(mails) == 3
    assert [mail.recipients for mail in mails] == [[MAILBOX]] * 3
    assert {str(mail.message["To"]) for mail in mails} == {MAILBOX}
