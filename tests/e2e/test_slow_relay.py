"""A slow relay through uvicorn with the default settings: mails wait on SMTP together.

With 8 connections and 16 jobs a process sent 4 mails/s to a relay taking
2 s per mail. Here the process must have more sessions open at once than
that old limit of 16 jobs, no more than the pool's maximum, and send each
mail once. How many
mails per second that makes is measured by ``bench/slow_relay.py``, not here.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.service import ServiceProcess, base_env, migrate
from tests.support.smtp_sessions import SessionCountingServer

pytestmark = pytest.mark.e2e

RELAY_SECONDS = 2.0
SIGNUPS = 40
# The defaults (asgi_project/settings.py): the pool keeps 8 and grows while
# mails wait, up to 64, as many as the jobs that send at once.
EMAIL_POOL_MAX = 64
OLD_CONCURRENCY = 16


@pytest.fixture
def slow_relay() -> Iterator[SessionCountingServer]:
    server = SessionCountingServer(delay=RELAY_SECONDS).start()
    yield server
    server.stop()


def test_a_slow_relay_gets_many_sessions_at_once_and_each_mail_once(
    slow_relay: SessionCountingServer, tmp_path: Path
) -> None:
    env = base_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", slow_relay.port)
    assert not {"EMAIL_POOL_SIZE", "EMAIL_POOL_MAX", "TASKS_CONCURRENCY"} & env.keys()
    migrate(env)
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        addresses = [f"slow-{i}@example.com" for i in range(SIGNUPS)]
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda a: service.signup(a).status_code, addresses))
        assert statuses == [201] * SIGNUPS

        slow_relay.wait_for(SIGNUPS, timeout=60)
        assert sorted(slow_relay.recipients()) == sorted(addresses)
        assert OLD_CONCURRENCY < slow_relay.most_open <= EMAIL_POOL_MAX
    finally:
        service.stop()
