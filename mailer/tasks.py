# Background tasks keep the web app fast by running slow jobs separately.
"""The mails a signup triggers, as Django tasks.

Each task takes the job's context so the message's Message-ID comes from the
job id: a retry of the same job sends the same message.
"""

from django.tasks import TaskContext, task

from asgi_project import metrics
from background.database import task_threads

from .messages import account_mail, delivery_mailbox, envelope_sender
from .transport import get_transport


async def _send_account_mail(context: TaskContext, template: str, subject: str, email: str) -> bool:
    recipient = delivery_mailbox(email)  # An undeliverable address fails the job at once.
    message = await task_threads.run(account_mail, template, subject, email, context.task_result.id)
    if message is None:
        return False
    with metrics.timed_send(enqueued_at=context.task_result.enqueued_at):
        await get_transport().send(message, sender=envelope_sender(), recipients=[recipient])
    return True


@task(takes_context=True)
async def send_welcome_email(context: TaskContext, user_email: str) -> bool:
    """Welcome a new account and give it the link to choose a password."""
    return await _send_account_mail(context, "welcome", "Welcome! Choose your password", user_email)


@task(takes_context=True)
async def send_existing_account_email(context: TaskContext, user_email: str) -> bool:
    """Someone signed up with an address that already has an account: tell its owner."""
    return await _send_account_mail(
        context, "existing_account", "You already have an account", user_email
    )
