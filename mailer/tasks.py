# Background tasks keep the web app fast by running slow jobs separately.
"""The mails the service sends, as Django tasks.

The two account mails are rendered when they are sent, and take the job's
context so the message's Message-ID comes from the job id: a retry of the
same job sends the same message. Every other mail Django sends was rendered
when it was queued (mailer/outbox.py) and is sent as stored.
"""

import logging
from base64 import b64decode

from django.tasks import TaskContext, task

from asgi_project import metrics
from background.database import task_threads

from . import new_accounts
from .addresses import UndeliverableAddress
from .messages import account_mail, delivery_mailbox, envelope_sender, render_account_mail
from .transport import get_transport

logger = logging.getLogger(__name__)


async def _send_account_mail(
    context: TaskContext, template: str, subject: str, email: str, *, new: bool = False
) -> bool:
    recipient = delivery_mailbox(email)  # An undeliverable address fails the job at once.
    job_id = context.task_result.id
    # The signup of a new account usually leaves it in memory: the mail is
    # then rendered on the loop, with no database thread and no query.
    account = new_accounts.take(email) if new else None
    message: bytes | None
    if account is not None:
        message = render_account_mail(account, template, subject, email, job_id, mailbox=recipient)
    else:
        message = await task_threads.run(
            account_mail, template, subject, email, job_id, mailbox=recipient
        )
    if message is None:
        return False
    with metrics.timed_send(enqueued_at=context.task_result.enqueued_at):
        await get_transport().send(message, sender=envelope_sender(), recipients=[recipient])
    return True


@task(takes_context=True)
async def send_welcome_email(context: TaskContext, user_email: str) -> bool:
    """Welcome a new account and give it the link to choose a password."""
    return await _send_account_mail(
        context, "welcome", "Welcome! Choose your password", user_email, new=True
    )


@task(takes_context=True)
async def send_existing_account_email(context: TaskContext, user_email: str) -> bool:
    """Someone signed up with an address that already has an account: tell its owner."""
    return await _send_account_mail(
        context, "existing_account", "You already have an account", user_email
    )


@task
async def send_stored_message(sender: str, recipients: list[str], message: str) -> int:
    """Send a message queued through Django's mail API (mailer/outbox.py), byte for byte.

    ``message`` is its RFC 5322 bytes in base64. Each recipient goes to its
    canonical mailbox; one the rules refuse is left out (counted in the log,
    never named), and if that leaves none the job fails at once. Returns how
    many mailboxes the message was sent to.
    """
    mailboxes: list[str] = []
    refused: list[UndeliverableAddress] = []
    for address in recipients:
        try:
            mailbox = delivery_mailbox(address)
        except UndeliverableAddress as error:
            refused.append(error)
            continue
        if mailbox not in mailboxes:  # To and Cc may name one mailbox twice.
            mailboxes.append(mailbox)
    if not mailboxes:
        raise refused[0] if refused else UndeliverableAddress("No recipients.")
    if refused:
        logger.warning(
            "Stored message: %d of %d recipients left out (%s)",
            len(refused),
            len(recipients),
            "; ".join(sorted({error.reason for error in refused})),
        )
    await get_transport().send(b64decode(message), sender=sender, recipients=mailboxes)
    return len(mailboxes)
