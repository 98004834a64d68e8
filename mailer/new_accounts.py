"""Accounts this process has just created, so their welcome mail need not read them back.

A signup creates the account and queues its welcome mail in one transaction,
and the job is usually handed to this process's runner in memory moments
after the commit. The mail's first step used to be a SELECT of the row that
request had just written: a hop to a database thread and a query, per mail.
The signup leaves the committed account here instead, and the mail takes it,
once. Any mail that finds nothing reads the account from the database as
before: one run by another process, a retry, one after a restart, one that
came later than MAX_AGE.

Within MAX_AGE of its creation nothing this service does changes an account:
its password is set through the link in this very mail, and retention only
deletes accounts days old. An administrator who deletes one in those seconds
gets a welcome mail sent anyway, with a link that no longer works.
"""

import threading
import time
from collections import OrderedDict

from django.contrib.auth.base_user import AbstractBaseUser

# Seconds an account is kept for its mail: a mail handed over in memory
# starts within milliseconds, or waits behind a backlog and reads the row.
MAX_AGE = 10.0
# Bounds the memory whatever happens to the mails (a signup whose job went to
# another process leaves its account here until it ages out or is pushed out).
MAX_ENTRIES = 1024

_lock = threading.Lock()  # Written by request threads, read on the event loop.
_accounts: OrderedDict[str, tuple[float, AbstractBaseUser]] = OrderedDict()


def remember(email: str, account: AbstractBaseUser) -> None:
    """Keep ``account``, as committed, for the mail to ``email`` (call it after the commit)."""
    now = time.monotonic()
    with _lock:
        _accounts[email] = (now, account)
        _accounts.move_to_end(email)
        while _accounts and (
            len(_accounts) > MAX_ENTRIES or next(iter(_accounts.values()))[0] < now - MAX_AGE
        ):
            _accounts.popitem(last=False)


def take(email: str) -> AbstractBaseUser | None:
    """The account created for ``email`` less than MAX_AGE ago, once; else None."""
    with _lock:
        entry = _accounts.pop(email, None)
    if entry is None or entry[0] < time.monotonic() - MAX_AGE:
        return None
    return entry[1]


def forget_all() -> None:
    """Drop every account kept (tests)."""
    with _lock:
        _accounts.clear()
