"""How full the runner keeps its slots while a backlog waits in the ledger.

Jobs that wait on a slow SMTP relay must not leave slots idle: the runner
sweeps again once CLAIM_BATCH slots are free, not only when half of them are.
"""

from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from background.runner import CLAIM_BATCH, JobRunner, RunnerConfig
from mailer.tasks import send_welcome_email
from signup.models import User
from tests.conftest import mailers_for
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

SLOTS = 3 * CLAIM_BATCH  # Half of them free would be more than CLAIM_BATCH.
STALLED = SLOTS - CLAIM_BATCH


@pytest.fixture
def relay() -> Iterator[SMTPTestServer]:
    server = SMTPTestServer().start()
    # Stalled sends must outlast the test, not fail and free their slots.
    with override_settings(MAILERS=mailers_for(server.port, timeout=60)):
        yield server
    server.stop()


async def test_a_backlog_is_swept_again_once_a_claim_batch_of_slots_is_free(
    relay: SMTPTestServer,
) -> None:
    addresses = [f"backlog-{i}@example.com" for i in range(2 * SLOTS)]
    for address in addresses:  # No runner yet: the jobs wait in the ledger.
        await sync_to_async(User.objects.create_user)(address)
        await send_welcome_email.aenqueue(address)
    relay.script(*["stall"] * STALLED)  # These hold their slots.

    # No poll during the test: only a sweep for the backlog can start more jobs.
    runner = JobRunner(RunnerConfig(concurrency=SLOTS, poll_interval=600, drain_timeout=0))
    await runner.start()
    try:
        # The first claim's other CLAIM_BATCH jobs free their slots, which
        # must start the next ones, and so on until only the stalled remain.
        arrived = await relay.until(2 * SLOTS - STALLED, timeout=15)
        assert len({mail.recipients[0] for mail in arrived}) == len(arrived)
    finally:
        await runner.stop(drain_timeout=0)  # The stalled never finish.
