"""Queue a backlog of welcome mails with no worker running (for the drain rate).

Run inside the scenario's settings, e.g.
``manage.py shell -c "from bench.backlog import queue; queue('drain', 10000)"``:
the users are created and ``send_welcome_email`` is enqueued through whatever
``TASKS`` backend the scenario configures, the way sync code would. (The harness
imports ``address`` without Django set up, hence the imports inside ``queue``.)
"""

BATCH = 1000


def address(prefix: str, i: int) -> str:
    return f"{prefix}-{i}@example.com"


def queue(prefix: str, count: int) -> None:
    from django.contrib.auth.hashers import make_password
    from django.db import transaction

    from mailer.tasks import send_welcome_email
    from signup.models import User

    unusable = make_password(None)
    for start in range(0, count, BATCH):
        numbers = range(start, min(count, start + BATCH))
        with transaction.atomic():
            User.objects.bulk_create(
                [User(email=address(prefix, i), password=unusable) for i in numbers]
            )
            # No worker runs yet, so none can look for a user before the commit.
            for i in numbers:
                send_welcome_email.enqueue(address(prefix, i))
