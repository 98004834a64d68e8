"""The Django Q2 adapter's reading of Django Q2's results, and its broker check.

In a fresh interpreter with ``TASKS_BACKEND=django-q2``: ``django_q`` must be
in ``INSTALLED_APPS`` before Django starts, and this test run's settings do not
have it. A whole cluster runs in ``tests/e2e/test_other_task_backends.py``.
"""

import json

from tests.support.processes import FreshProcess
from tests.support.workers import require_modules

RESULTS = """
import json
import os

import django

os.environ["DJANGO_SETTINGS_MODULE"] = "asgi_project.settings"

django.setup()
from django.utils import timezone
from django_q.models import Task

from background.django_q2 import _finished_result

now = timezone.now()
traceback = 'Traceback (most recent call last):\\n  ...\\nmailer.transport.DeliveryError: deferred'
args = ("mailer.tasks.send_welcome_email", ["ada@example.com"], {})
jobs = {
    "sent": Task(id="a" * 32, args=args, success=True, result=True, attempt_count=1),
    "to retry": Task(id="b" * 32, args=args, success=False, result="deferred : " + traceback,
                     attempt_count=19),
    "given up": Task(id="c" * 32, args=args, success=False, result="deferred : " + traceback,
                     attempt_count=20),
}
seen = {}
for name, job in jobs.items():
    job.started, job.stopped = now, now
    result = _finished_result(job)
    seen[name] = {
        "status": result.status,
        "args": result.args,
        "finished": result.finished_at is not None,
        "errors": [error.exception_class.__name__ for error in result.errors],
        "value": result.return_value if result.status == "SUCCESSFUL" else None,
    }
print(json.dumps(seen))
"""


def test_results_say_successful_ready_while_django_q2_retries_and_failed_after(
    fresh_process: FreshProcess,
) -> None:
    require_modules("requirements-django-q2.txt", "django_q")
    env = {"TASKS_BACKEND": "django-q2", "TASKS_MAX_ATTEMPTS": "20", "DEBUG": "1"}
    run = fresh_process(["-c", RESULTS], env)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    failed_attempt = {"args": ["ada@example.com"], "errors": ["DeliveryError"], "value": None}
    assert seen == {
        "sent": {
            "status": "SUCCESSFUL", "args": ["ada@example.com"], "finished": True, "errors": [],
            "value": True,
        },
        "to retry": {"status": "READY", "finished": False, **failed_attempt},
        "given up": {"status": "FAILED", "finished": True, **failed_attempt},
    }  # fmt: skip


BROKER_CHECK = """
import os

import asgi_project.settings as settings

os.environ["DJANGO_SETTINGS_MODULE"] = "asgi_project.settings"

settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": None}  # Django Q2's Redis broker, then.
import django

django.setup()
from django.tasks import task_backends

print([message.id for message in task_backends["default"].check()])
"""


def test_another_broker_than_the_orm_is_refused(fresh_process: FreshProcess) -> None:
    require_modules("requirements-django-q2.txt", "django_q")
    run = fresh_process(["-c", BROKER_CHECK], {"TASKS_BACKEND": "django-q2", "DEBUG": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "['background.E001']"
