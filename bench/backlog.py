"""Mail queued from outside the web server, run inside a scenario's settings:
``manage.py shell -c "from bench.backlog import queue; queue('drain', 10000)"``.

``queue``: a backlog with no worker running (the drain and memory phases):
the users are created and ``send_welcome_email`` is enqueued through whatever
``TASKS`` backend the scenario configures, the way sync code would. ``paced``:
signups one transaction at a time (the pickup phase). The harness imports
``address`` without Django set up, hence the imports inside the functions.
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


def paced(prefix: str, count: int, gap: float, out: str) -> None:
    """Sign up ``count`` addresses one transaction each, ``gap`` s apart, as sync code,
    a cron job or another host would; write when each COMMIT was sent and returned.

    ``out`` gets ``{address: [unix time sent, unix time returned]}`` as JSON.
    """
    import json
    import time
    from pathlib import Path

    from django.db import transaction

    from signup.services import register_address

    commits: dict[str, tuple[float, float]] = {}
    for i in range(count):
        email = address(prefix, i)
        with transaction.atomic():
            register_address(email, "192.0.2.1")
            sent = time.time()
        # The job is visible somewhere between the two: from the first the
        # figure includes the COMMIT's round trip (and fsync), from the second
        # it may miss a moment this process was not scheduled.
        commits[email] = (sent, time.time())
        time.sleep(gap)
    Path(out).write_text(json.dumps(commits))
