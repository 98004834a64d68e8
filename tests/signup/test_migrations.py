"""Existing accounts move to their canonical mailbox without breaking the unique constraint."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.hashers import make_password
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("signup", "0001_initial")]
AFTER = [("signup", "0002_canonical_emails")]


@pytest.fixture
def old_user_model() -> Iterator[Any]:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    yield executor.loader.project_state(BEFORE).apps.get_model("signup", "User")
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_rows_take_their_canonical_spelling_once_per_mailbox(old_user_model: Any) -> None:
    password = make_password("chosen-by-the-owner")
    rows = {
        "owner@bücher.example": make_password(None),  # Alone: moves.
        '"ada"@o\ufb03ce.example': make_password(None),  # Oldest of three, no password.
        "ada@\uff4fffice.example": password,  # Chose a password: takes the mailbox.
        "ada@office.example.": make_password(None),
        '"bob"@example.com': make_password(None),  # Canonical row exists: stays.
        "bob@example.com": make_password(None),
        "user@[127.0.0.1]": make_password(None),  # Refused now: left for its mail to fail.
        "josé@bücher.example": make_password(None),  # Non-ASCII local part: kept.
    }
    for email, hashed in rows.items():
        old_user_model.objects.create(email=email, password=hashed)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    User = executor.loader.project_state(AFTER).apps.get_model("signup", "User")

    emails = {user.email: user.password for user in User.objects.all()}
    assert set(emails) == {
        "owner@xn--bcher-kva.example",
        '"ada"@o\ufb03ce.example',
        "ada@office.example",
        "ada@office.example.",
        '"bob"@example.com',
        "bob@example.com",
        "user@[127.0.0.1]",
        "josé@xn--bcher-kva.example",
    }
    assert emails["ada@office.example"] == password
