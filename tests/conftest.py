from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings

from tests.support.smtp_server import SMTPTestServer


def mailers_for(port: int, timeout: float = 2.0) -> dict[str, Any]:
    options = {"host": "127.0.0.1", "port": port, "timeout": timeout}
    return {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options}
    }


@pytest.fixture
def smtp_server() -> Iterator[SMTPTestServer]:
    server = SMTPTestServer().start()
    with override_settings(MAILERS=mailers_for(server.port)):
        yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_rate_limits_unless_asked(settings: Any) -> None:
    # Tests sign up many addresses from one client; the rate-limit tests set
    # their own limits.
    settings.SIGNUP_RATE_PER_IP = "off"
    settings.MAIL_RATE_PER_ADDRESS = "off"
