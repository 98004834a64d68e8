"""How full the runner keeps its slots while a backlog waits in the ledger.

Jobs that wait on a slow SMTP relay must not leave slots idle: the runner
sweeps again once CLAIM_BATCH slots are free, not only when half of them are.
"""

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from background import ledger
from background.runner import CLAIM_BATCH, JobRunner, RunnerConfig
from mailer.tasks import send_welcome_email
from signup.models import User
from tests.conftest import mailers_for
from tests.support.jobs import until
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)

SLOTS = 3 * CLAIM_BATCH  # Half of them free would be more than CLAIM_BATCH.
STALLED = SLOTS - CLAIM_BATCH


@pytest.fixture
def relay(settings: Any) -> Iterator[SMTPTestServer]:
    server = SMTPTestServer().start()
    # Stalled sends must outlast the test, not fail and free their slots.
    settings.MAILERS = mailers_for(server.port, timeout=60)  # See tests/conftest.py.
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


async def test_jobs_handed_over_during_a_claim_leave_the_claimed_ones_waiting_for_a_slot(
    relay: SMTPTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = 2
    queued = [f"queued-{i}@example.com" for i in range(slots)]
    handed = [f"handed-{i}@example.com" for i in range(slots)]
    for address in [*queued, *handed]:
        await sync_to_async(User.objects.create_user)(address)
    for address in queued:  # No runner yet: they wait in the ledger.
        await send_welcome_email.aenqueue(address)

    # The runner's first claim counts its free slots, then waits here until
    # the hand-overs have taken them.
    claiming, claim_may_go = threading.Event(), threading.Event()
    claim = ledger.claim_ready_jobs

    def gated_claim(*args: Any) -> Any:
        claiming.set()
        claim_may_go.wait(timeout=10)
        return claim(*args)

    monkeypatch.setattr(ledger, "claim_ready_jobs", gated_claim)
    relay.hold()
    runner = JobRunner(RunnerConfig(concurrency=slots, poll_interval=600, drain_timeout=0))
    await runner.start()
    try:
        await until(claiming.is_set, "the runner's first claim")
        for address in handed:
            await send_welcome_email.aenqueue(address)
        await until(lambda: relay.data_commands == slots, "the handed-over mails at the server")

        claim_may_go.set()
        await until(lambda: len(runner._waiting) + relay.data_commands > slots, "the claim")
        assert len(runner._running) == relay.data_commands == slots
        relay.release()
        arrived = await relay.until(2 * slots, timeout=10)
        assert sorted(r for mail in arrived for r in mail.recipients) == sorted([*queued, *handed])
    finally:
        claim_may_go.set()
        relay.release()
        await runner.stop(drain_timeout=0)
