"""Fixed-window rate limits counted in the database, so every worker shares them.

Expired windows are deleted by housekeeping (``signup.retention``), in
batches, outside the signup's transaction.
"""

import hashlib
import ipaddress
import math
import re
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from .models import RateWindow

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
RATE_FORMAT = re.compile(r"^\s*(\d+)\s*/\s*([smhd])\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    period: int  # Seconds.

    @classmethod
    def parse(cls, text: str, setting: str) -> "Rate | None":
        """``"20/m"`` -> Rate(20, 60); ``"off"`` or empty -> None (no limit)."""
        if text.strip().lower() in {"", "off", "none"}:
            return None
        match = RATE_FORMAT.match(text)
        if not match:
            raise ImproperlyConfigured(
                f'{setting} must look like "20/m" or be "off", not {text!r}.'
            )
        return cls(int(match[1]), PERIODS[match[2]])


def signup_rate() -> Rate | None:
    return Rate.parse(settings.SIGNUP_RATE_PER_IP, "SIGNUP_RATE_PER_IP")


def mail_rate() -> Rate | None:
    return Rate.parse(settings.MAIL_RATE_PER_ADDRESS, "MAIL_RATE_PER_ADDRESS")


def client_key(ip: str) -> str:
    """IPv4 clients are limited per address, IPv6 clients per /64 (one subscriber's block).

    A dual-stack listener sees IPv4 peers as ``::ffff:a.b.c.d``: those count
    as their IPv4 address, or every IPv4 client would share the bucket ``::/64``.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return "ip:unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"ip:{address.ipv4_mapped}"
        return f"ip:{ipaddress.ip_network((address, 64), strict=False)}"
    return f"ip:{address}"


def address_key(email: str) -> str:
    return "mail:" + hashlib.sha256(email.encode()).hexdigest()[:40]


def hit(key: str, rate: Rate | None) -> float | None:
    """Count one hit on ``key``. Return seconds until it may hit again if over the limit.

    One INSERT ... ON CONFLICT ... RETURNING, atomic on SQLite and PostgreSQL.
    """
    if rate is None:
        return None
    now = time.time()
    window_start = int(now // rate.period) * rate.period
    expires_at = window_start + rate.period
    quote = connection.ops.quote_name
    table = quote(RateWindow._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({quote('key')}, {quote('window_start')}, {quote('hits')}, "
        f"{quote('expires_at')}) VALUES (%s, %s, 1, %s) "
        f"ON CONFLICT ({quote('key')}, {quote('window_start')}) "
        f"DO UPDATE SET {quote('hits')} = {table}.{quote('hits')} + 1 "
        f"RETURNING {quote('hits')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, window_start, expires_at])
        (hits,) = cursor.fetchone()
    if hits > rate.limit:
        return max(1, math.ceil(expires_at - now))
    return None
