"""What the signup app deletes at housekeeping time (``background.housekeeping``).

- Accounts never confirmed: the owner never chose a password through the
  mailed link, so the address was never proven, and after
  ``UNCONFIRMED_ACCOUNT_TTL`` the link is long dead. Deleting them also lets the
  address sign up afresh and frees it from someone who typed it by mistake.
- Expired rate-limit windows: a window is useless once its period is over.
"""

import time
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from background.housekeeping import delete_in_batches

from .models import RateWindow, User


def _never_confirmed(joined_before: Any) -> Q:
    # Staff accounts made with ``createsuperuser --noinput`` also start without
    # a password; they are an operator's, not a signup's, so they stay.
    return Q(
        password__startswith=UNUSABLE_PASSWORD_PREFIX,
        last_login__isnull=True,
        is_staff=False,
        is_superuser=False,
        date_joined__lt=joined_before,
    )


def delete_unconfirmed_accounts(joined_before: Any, limit: int) -> int:
    """Delete up to ``limit`` accounts that joined before ``joined_before`` and never confirmed."""
    with transaction.atomic():
        # Locked until the commit (SQLite: the whole database; PostgreSQL: the
        # rows, skipping one being confirmed right now), so an account
        # confirmed meanwhile is not deleted.
        batch = list(
            User.objects.select_for_update(skip_locked=True)
            .filter(_never_confirmed(joined_before))
            .values_list("pk", flat=True)[:limit]
        )
        _, deleted = User.objects.filter(pk__in=batch).delete()
    return deleted.get(User._meta.label, 0)


def delete_expired_rate_windows(expired_before: int, limit: int) -> int:
    """Delete up to ``limit`` rate-limit windows that ended before ``expired_before`` (epoch s)."""
    batch = RateWindow.objects.filter(expires_at__lt=expired_before).values("pk")[:limit]
    deleted, _ = RateWindow.objects.filter(pk__in=batch).delete()
    return deleted


def prune_signup_tables(*, batch_size: int, max_batches: int, **kwargs: Any) -> dict[str, int]:
    """The ``housekeeping`` receiver: counts per kind of row deleted."""
    counts = {"unconfirmed_accounts": 0}
    if settings.UNCONFIRMED_ACCOUNT_TTL is not None:
        joined_before = timezone.now() - settings.UNCONFIRMED_ACCOUNT_TTL
        counts["unconfirmed_accounts"] = delete_in_batches(
            lambda limit: delete_unconfirmed_accounts(joined_before, limit),
            batch_size=batch_size,
            max_batches=max_batches,
        )
    now = int(time.time())
    counts["rate_windows"] = delete_in_batches(
        lambda limit: delete_expired_rate_windows(now, limit),
        batch_size=batch_size,
        max_batches=max_batches,
    )
    return counts
