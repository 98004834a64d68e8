"""Accounts a signup keeps in memory for its welcome mail (mailer/new_accounts.py)."""

from typing import Any

import pytest

from mailer import new_accounts
from signup.models import User


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(new_accounts, "time", clock)
    return clock


def account(email: str) -> Any:
    return User(email=email)


def test_an_account_is_taken_once(clock: Clock) -> None:
    ada = account("ada@example.com")
    new_accounts.remember("ada@example.com", ada)

    assert new_accounts.take("ada@example.com") is ada
    assert new_accounts.take("ada@example.com") is None
    assert new_accounts.take("bob@example.com") is None


def test_an_account_older_than_max_age_is_not_taken(clock: Clock) -> None:
    new_accounts.remember("ada@example.com", account("ada@example.com"))
    new_accounts.remember("bob@example.com", account("bob@example.com"))
    clock.now += new_accounts.MAX_AGE / 2
    assert new_accounts.take("bob@example.com") is not None

    clock.now += new_accounts.MAX_AGE
    assert new_accounts.take("ada@example.com") is None


def test_old_accounts_are_dropped_when_another_is_kept(clock: Clock) -> None:
    new_accounts.remember("old@example.com", account("old@example.com"))
    clock.now += new_accounts.MAX_AGE + 1
    new_accounts.remember("new@example.com", account("new@example.com"))

    assert list(new_accounts._accounts) == ["new@example.com"]


def test_beyond_max_entries_the_oldest_make_room(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(new_accounts, "MAX_ENTRIES", 3)
    for name in "abcde":
        new_accounts.remember(f"{name}@example.com", account(f"{name}@example.com"))

    assert list(new_accounts._accounts) == ["c@example.com", "d@example.com", "e@example.com"]
    assert new_accounts.take("a@example.com") is None
