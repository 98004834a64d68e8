"""The signup transaction: rate limits, the account and its mail, all or nothing.

Plain sync ORM code (Django has no async transactions): the view runs
``register_address`` on a database thread (``background.database``).
"""

from functools import partial

from django.db import IntegrityError, transaction

from background.database import raise_if_abandoned
from background.enqueue import enqueue_with_transaction
from mailer import new_accounts
from mailer.tasks import send_existing_account_email, send_welcome_email

from . import ratelimit
from .models import User


def _create_account(email: str) -> User | None:
    """Create the account if the address has none; the account if it was created."""
    if User.objects.filter(email=email).exists():
        return None
    try:
        # A savepoint: losing a race must not spoil the outer transaction.
        with transaction.atomic():
            return User.objects.create_user(email)
    except IntegrityError:
        return None  # Another request created it a moment ago.


def register_address(email: str, client_ip: str) -> float | None:
    """Create the account for canonical ``email`` and queue its mail in one transaction.

    Returns the seconds to wait if the client is over its signup rate, else None.
    """
    with transaction.atomic():
        retry_after = ratelimit.hit(ratelimit.client_key(client_ip), ratelimit.signup_rate())
        if retry_after is not None:
            return retry_after
        account = _create_account(email)
        # Over the per-address limit the mail is dropped, but the answer is
        # the same: it must not tell whether the address has an account.
        if ratelimit.hit(ratelimit.address_key(email), ratelimit.mail_rate()) is None:
            if account is not None:
                # Registered before the job's own hand-over, so the account
                # is there by the time the runner starts its mail; robust, so
                # that nothing here can fail the committed signup.
                remember = partial(new_accounts.remember, email, account)
                transaction.on_commit(remember, robust=True)
            mail = send_welcome_email if account is not None else send_existing_account_email
            enqueue_with_transaction(mail, email)
        # A client answered 503 must not get an account and a mail anyway.
        raise_if_abandoned()
    return None
