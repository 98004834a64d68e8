"""The pacer: jobs yield the event loop to web requests, not to an idle loop or a slow relay."""

import asyncio
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import override_settings
from prometheus_client import REGISTRY

from background import pacing
from background.database import request_threads
from background.pacing import LoopPacer, traffic
from mailer.tasks import send_welcome_email
from signup.models import User
from tests.conftest import mailers_for
from tests.support.jobs import until
from tests.support.smtp_server import SMTPTestServer

LATE = 2 * pacing.LAG_LIMIT
WINDOW_SECONDS = pacing.WINDOW * pacing.TICK


class Jobs:
    """What the pacer reads of a runner, set by each test."""

    def __init__(self, *, working: int = 0, finished_per_window: int = 0) -> None:
        self.working = working
        self.finished_per_window = finished_per_window
        self.finished = 0
        self.saturated = True
        self.raised = 0

    def pacer(self, ceiling: int) -> LoopPacer:
        def finished() -> int:
            return self.finished

        def raised() -> None:
            self.raised += 1

        return LoopPacer(
            ceiling,
            saturated=lambda: self.saturated,
            raised=raised,
            working=lambda: self.working,
            finished=finished,
        )

    def window(self, pacer: LoopPacer, lag: float) -> None:
        self.finished += self.finished_per_window
        pacer.observe(lag)


@pytest.fixture
def a_request_in_flight() -> Iterator[None]:
    traffic.request_started()
    yield
    traffic.request_finished()


# Fast jobs: each spends well under WAITING_JOB in its task.
FAST_JOBS = {"working": 8, "finished_per_window": 80}


def test_a_late_loop_with_requests_halves_the_limit_down_to_the_floor(
    a_request_in_flight: None,
) -> None:
    jobs = Jobs(**FAST_JOBS)
    pacer = jobs.pacer(64)
    limits = []
    for _ in range(6):
        jobs.window(pacer, LATE)
        limits.append(pacer.limit)
    assert limits[:2] == [32, 16]
    assert limits[-1] == pacing.FLOOR == min(limits)


def test_a_late_loop_without_requests_is_the_drain_at_full_speed() -> None:
    jobs = Jobs(**FAST_JOBS)
    pacer = jobs.pacer(64)
    pacer.limit = pacing.FLOOR
    for _ in range(30):
        jobs.window(pacer, LATE)
    assert pacer.limit == 64
    assert jobs.raised > 0


def test_jobs_that_wait_on_a_slow_relay_are_not_held_back(a_request_in_flight: None) -> None:
    # 64 jobs of which ~2 finish per window: each is in its task for seconds,
    # so the lag is the requests' own and fewer jobs would not help them.
    jobs = Jobs(working=64, finished_per_window=2)
    pacer = jobs.pacer(64)
    for _ in range(5):
        jobs.window(pacer, LATE)
    assert pacer.limit == 64


def test_a_loop_that_keeps_up_raises_the_limit_only_while_it_holds_work_back(
    a_request_in_flight: None,
) -> None:
    jobs = Jobs(**FAST_JOBS)
    pacer = jobs.pacer(64)
    pacer.limit = pacing.FLOOR
    jobs.saturated = False  # Nothing waits: a higher limit would change nothing.
    jobs.window(pacer, 0.0)
    assert (pacer.limit, jobs.raised) == (pacing.FLOOR, 0)
    jobs.saturated = True
    jobs.window(pacer, 0.0)
    assert pacer.limit > pacing.FLOOR
    assert jobs.raised == 1


def work_limit() -> float:
    return REGISTRY.get_sample_value("background_jobs_work_limit") or 0.0


@pytest.mark.django_db(transaction=True)
async def test_the_runner_starts_no_more_jobs_than_the_limit_and_the_rest_once_it_rises(
    start_runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    relay = SMTPTestServer().start()
    monkeypatch.setattr(pacing, "LAG_LIMIT", -1.0)  # Every window counts as late.
    monkeypatch.setattr(pacing, "WAITING_JOB", float("inf"))  # And the jobs as the cause.
    traffic.request_started()
    in_flight = True
    try:
        with override_settings(MAILERS=mailers_for(relay.port, timeout=30)):
            before = work_limit()
            runner = await start_runner(concurrency=2 * pacing.FLOOR + 4, poll_interval=600)
            await until(lambda: runner._pacer.limit == pacing.FLOOR, "the limit at its floor")
            assert work_limit() - before == pacing.FLOOR  # What /metrics shows an operator.
            relay.hold()
            addresses = [f"paced-{i}@example.com" for i in range(2 * pacing.FLOOR)]
            for address in addresses:
                await sync_to_async(User.objects.create_user)(address)
                await send_welcome_email.aenqueue(address)
            await until(lambda: relay.data_commands == pacing.FLOOR, "the floor's mails sent")
            await until(lambda: len(runner._waiting) == pacing.FLOOR, "the rest held")
            assert relay.data_commands == pacing.FLOOR

            traffic.request_finished()  # No request left to protect: the limit rises.
            in_flight = False
            await until(lambda: relay.data_commands == len(addresses), "the rest sent")
            relay.release()
            arrived = await relay.until(len(addresses), timeout=15)
            assert sorted(r for mail in arrived for r in mail.recipients) == sorted(addresses)
    finally:
        if in_flight:
            traffic.request_finished()
        relay.release()
        relay.stop()


@pytest.mark.django_db(transaction=True)
async def test_jobs_handed_over_in_one_loop_turn_do_not_overshoot_the_limit(
    start_runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One transaction queues them all: its commit hands every job over at
    # once, and each must count against the limit before any of them runs.
    relay = SMTPTestServer().start()
    monkeypatch.setattr(pacing, "LAG_LIMIT", -1.0)
    monkeypatch.setattr(pacing, "WAITING_JOB", float("inf"))
    traffic.request_started()
    addresses = [f"batch-{i}@example.com" for i in range(2 * pacing.FLOOR)]

    def queue_all() -> None:
        with transaction.atomic():
            for address in addresses:
                User.objects.create_user(address)
                send_welcome_email.enqueue(address)

    try:
        with override_settings(MAILERS=mailers_for(relay.port, timeout=30)):
            runner = await start_runner(concurrency=len(addresses), poll_interval=600)
            await until(lambda: runner._pacer.limit == pacing.FLOOR, "the limit at its floor")
            relay.hold()
            await request_threads.run(queue_all)
            await until(lambda: len(runner._waiting) == pacing.FLOOR, "the rest held")
            await until(lambda: relay.data_commands == pacing.FLOOR, "the floor's mails sent")
            assert len(runner._running) == pacing.FLOOR
            relay.release()  # The held ones follow as the first ones finish.
            arrived = await relay.until(len(addresses), timeout=15)
            assert sorted(r for mail in arrived for r in mail.recipients) == sorted(addresses)
    finally:
        traffic.request_finished()
        relay.release()
        relay.stop()


# -- jobs start in a lull ---------------------------------------------------


async def turns(n: int = 5) -> None:
    """Let the loop run ``n`` turns (callbacks scheduled with call_soon included)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def test_with_no_request_in_flight_a_job_starts_without_waiting() -> None:
    lull = traffic.lull()
    with pytest.raises(StopIteration):  # Finished at its first step: no suspension.
        lull.send(None)


async def test_a_job_waits_for_the_request_in_flight_to_finish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pacing, "LULL_LONGEST", 30.0)
    traffic.request_started()
    try:
        waiting = asyncio.create_task(traffic.lull())
        await turns()
        assert not waiting.done()
    finally:
        traffic.request_finished()
    async with asyncio.timeout(5):
        await waiting


async def test_steady_requests_delay_a_job_by_lull_longest_at_most(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pacing, "LULL_LONGEST", 0.05)
    traffic.request_started()
    try:
        async with asyncio.timeout(5):
            await traffic.lull()
        assert traffic.in_flight == 1  # It went although the request never finished.
    finally:
        traffic.request_finished()


async def test_waiting_jobs_go_one_per_loop_turn_so_a_new_request_holds_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pacing, "LULL_LONGEST", 30.0)
    traffic.request_started()
    first = asyncio.create_task(traffic.lull())
    await turns()
    second = asyncio.create_task(traffic.lull())
    await turns()
    traffic.request_finished()  # The first goes now ...
    traffic.request_started()  # ... and a request read in the same turn holds the second.
    try:
        await turns()
        assert first.done()
        assert not second.done()
    finally:
        traffic.request_finished()
    async with asyncio.timeout(5):
        await second


@pytest.mark.django_db(transaction=True)
async def test_the_runner_starts_a_job_handed_over_during_a_request_once_it_ends(
    start_runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pacing, "LULL_LONGEST", 30.0)
    relay = SMTPTestServer().start()
    try:
        with override_settings(MAILERS=mailers_for(relay.port, timeout=30)):
            runner = await start_runner(poll_interval=600)
            traffic.request_started()
            try:
                await sync_to_async(User.objects.create_user)("lull@example.com")
                await send_welcome_email.aenqueue("lull@example.com")
                await until(lambda: len(runner._running) == 1, "the job handed over")
                await asyncio.sleep(0.2)  # Time enough to send it, had it started.
                assert relay.data_commands == 0
            finally:
                traffic.request_finished()
            arrived = await relay.until(1, timeout=15)
            assert arrived[0].recipients == ["lull@example.com"]
    finally:
        relay.stop()
