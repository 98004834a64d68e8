from collections.abc import AsyncIterator

import pytest

from background.runner import JobRunner, RunnerConfig


@pytest.fixture
async def runner() -> AsyncIterator[JobRunner]:
    """A runner on the test's loop that polls and retries in fractions of a second."""
    config = RunnerConfig(
        concurrency=4, poll_interval=0.02, retry_base_delay=0.02, retry_max_delay=0.1
    )
    runner = JobRunner(config)
    await runner.start()
    yield runner
    await runner.stop(drain_timeout=2)
