"""Every test here starts uvicorn (or manage.py) processes: all carry the ``e2e`` marker."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.smtp_server import SMTPTestServer

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def smtp() -> Iterator[SMTPTestServer]:
    """A real SMTP server (aiosmtpd, in a thread) for the service under test."""
    server = SMTPTestServer().start()
    yield server
    server.stop()
