from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from background.runner import JobRunner, RunnerConfig

# A runner that polls, retries and drains in fractions of a second.
FAST = RunnerConfig(
    concurrency=4,
    poll_interval=0.02,
    retry_base_delay=0.02,
    retry_max_delay=0.1,
    lease_seconds=30,
    drain_timeout=5,
)


@pytest.fixture
async def start_runner() -> AsyncIterator[Callable[..., Any]]:
    """Start a runner (``FAST`` with the given changes); stopped after the test."""
    started: list[JobRunner] = []

    async def start(**changes: Any) -> JobRunner:
        runner = JobRunner(RunnerConfig(**{**FAST.__dict__, **changes}))
        await runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        if runner._accepting:
            await runner.stop(drain_timeout=1)
