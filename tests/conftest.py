import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.management import create_permissions
from django.contrib.contenttypes.management import create_contenttypes
from django.db import connection
from django.db.models.signals import post_migrate
from django.test import override_settings

from mailer import new_accounts
from tests.support.processes import FreshProcess, in_fresh_process
from tests.support.smtp_server import SMTPTestServer
from tests.support.waiting import clear_of_a_rate_window_edge

PERMISSIONS_UID = "django.contrib.auth.management.create_permissions"
E2E = Path(__file__).parent / "e2e"
QUICK_LOOP = "not e2e"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """For the quick loop, leave tests/e2e/ unimported rather than deselect all of it.

    Every test there is e2e (its conftest marks them); importing them (selenium,
    the process helpers, rewriting their asserts) cost ~0.5 s of a quick run.
    Any other -m expression collects the directory as usual.
    """
    if collection_path == E2E and config.option.markexpr.strip() == QUICK_LOOP:
        return True
    return None


def mailers_for(port: int, timeout: float = 2.0) -> dict[str, Any]:
    """MAILERS as settings.py has them, with the relay at ``port``.

    Django's test set-up replaces every mailer with its in-memory one; a test
    that asks for a real SMTP server gets the real pair back.
    """
    options = {"host": "127.0.0.1", "port": port, "timeout": timeout}
    return {
        "default": {"BACKEND": "mailer.outbox.OutboxBackend"},
        "smtp": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": options},
    }


@pytest.fixture
def fresh_process() -> FreshProcess:
    """A new interpreter that reads the settings afresh from the given environment.

    ~0.25 s each (Python and Django start): a test that asks for one is an e2e
    test, outside the quick ``-m "not e2e"`` loop.
    """
    return in_fresh_process


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "fresh_process" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SMTPTestServer]:
    server = SMTPTestServer().start()
    # Through pytest-django's ``settings``, like a test's own changes, so all
    # are undone in reverse order. An override_settings here, undone before a
    # change the test made with ``settings``, came back with that undo and
    # sent a later test's mail to this closed server.
    settings.MAILERS = mailers_for(server.port)
    yield server
    server.stop()


@pytest.fixture
def fresh_rate_window() -> None:
    """For a test that counts hits against a limit: start clear of a window's edge."""
    clear_of_a_rate_window_edge()


@pytest.fixture(autouse=True)
def _no_accounts_kept_from_another_test() -> Iterator[None]:
    # A test's database is new, its account ids too: an account a signup in
    # an earlier test kept for its mail (mailer/new_accounts.py) would be stale.
    yield
    new_accounts.forget_all()


@pytest.fixture(autouse=True, scope="session")
def _no_rate_limits_unless_asked() -> Iterator[None]:
    # Tests sign up many addresses from one client; the rate-limit tests set
    # their own limits (the ``settings`` fixture puts these back after each).
    # Once for the session: per test it cost two setting changes and undos.
    with override_settings(SIGNUP_RATE_PER_IP="off", MAIL_RATE_PER_ADDRESS="off"):
        yield


@pytest.fixture(autouse=True, scope="session")
def _quick_database_tests() -> Iterator[None]:
    """Two costs no test here needs, ~40 % of the unit tests' time between them.

    The flush after each ``transaction=True`` test re-creates content types and
    permissions through ``post_migrate`` (~21 ms a test; nothing here uses
    them); and the production password hasher takes ~0.8 s per password set
    or checked. The e2e tests' processes keep both.
    """
    post_migrate.disconnect(create_contenttypes)
    post_migrate.disconnect(create_permissions, dispatch_uid=PERMISSIONS_UID)
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield
    post_migrate.connect(create_contenttypes)
    post_migrate.connect(create_permissions, dispatch_uid=PERMISSIONS_UID)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test database, with one idle connection kept open on it.

    Django closes its connections after each ``transaction=True`` test; when
    the last connection to a WAL-mode SQLite file closes, SQLite checkpoints
    the log and deletes it, and the next connection creates it again: ~1.6 ms
    per such test, most of their flush. This connection never holds a
    transaction or a lock; it only keeps the log in place.
    """
    if connection.vendor != "sqlite":
        yield
        return
    keeper = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
    keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
    yield
    keeper.close()
