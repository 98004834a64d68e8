"""Accounts never confirmed and expired rate-limit windows are deleted by housekeeping."""

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from background.housekeeping import run_housekeeping
from signup import ratelimit
from signup.models import RateWindow, User

pytestmark = pytest.mark.django_db(transaction=True)


def account(email: str, *, days_ago: float, **fields: Any) -> User:
    return User.objects.create_user(
        email, date_joined=timezone.now() - timedelta(days=days_ago), **fields
    )


def emails() -> set[str]:
    return set(User.objects.values_list("email", flat=True))


def test_accounts_never_confirmed_are_deleted_after_the_ttl(settings: Any) -> None:
    settings.UNCONFIRMED_ACCOUNT_TTL = timedelta(days=7)
    old = account("old@example.com", days_ago=8)
    old.groups.add(Group.objects.create(name="members"))
    account("recent@example.com", days_ago=6.9)
    account("chose-a-password@example.com", days_ago=30, password="a long passphrase")
    logged_in = account("logged-in@example.com", days_ago=30)
    User.objects.filter(pk=logged_in.pk).update(last_login=timezone.now())
    account("operator@example.com", days_ago=30, is_staff=True)
    account("admin@example.com", days_ago=30, is_superuser=True)

    counts = run_housekeeping()

    assert counts["unconfirmed_accounts"] == 1
    assert emails() == {
        "recent@example.com",
        "chose-a-password@example.com",
        "logged-in@example.com",
        "operator@example.com",
        "admin@example.com",
    }


def test_ttl_off_keeps_every_account(settings: Any) -> None:
    settings.UNCONFIRMED_ACCOUNT_TTL = None
    account("ancient@example.com", days_ago=900)

    assert run_housekeeping()["unconfirmed_accounts"] == 0
    assert emails() == {"ancient@example.com"}


def test_accounts_are_deleted_in_bounded_batches(settings: Any) -> None:
    settings.UNCONFIRMED_ACCOUNT_TTL = timedelta(days=7)
    for n in range(5):
        account(f"old-{n}@example.com", days_ago=10)

    assert run_housekeeping(batch_size=2, max_batches=2)["unconfirmed_accounts"] == 4
    assert len(emails()) == 1
    assert run_housekeeping(batch_size=2, max_batches=2)["unconfirmed_accounts"] == 1
    assert emails() == set()


def test_an_address_whose_account_expired_can_sign_up_again(settings: Any) -> None:
    settings.UNCONFIRMED_ACCOUNT_TTL = timedelta(days=7)
    account("again@example.com", days_ago=8)

    run_housekeeping()
    User.objects.create_user("again@example.com")

    assert emails() == {"again@example.com"}


@pytest.mark.usefixtures("fresh_rate_window")
def test_expired_rate_windows_are_deleted_and_live_ones_kept() -> None:
    rate = ratelimit.Rate(limit=5, period=60)
    ratelimit.hit("ip:192.0.2.1", rate)
    now = int(time.time())
    RateWindow.objects.bulk_create(
        RateWindow(key=f"ip:198.51.100.{n}", window_start=0, hits=1, expires_at=now - 1)
        for n in range(3)
    )

    counts = run_housekeeping(batch_size=2, max_batches=1)

    assert counts["rate_windows"] == 2
    assert run_housekeeping()["rate_windows"] == 1
    assert list(RateWindow.objects.values_list("key", flat=True)) == ["ip:192.0.2.1"]
