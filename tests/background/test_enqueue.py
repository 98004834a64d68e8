"""A task queued with the caller's transaction runs only if that transaction commits."""

from typing import Any

import pytest
from django.db import transaction
from django.tasks import task_backends

from background.enqueue import enqueue_with_transaction
from background.models import Job
from mailer.tasks import send_welcome_email

pytestmark = pytest.mark.django_db(transaction=True)

DUMMY = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


class Rollback(Exception):
    pass


def test_the_ledger_writes_the_job_inside_the_transaction() -> None:
    with transaction.atomic():
        enqueue_with_transaction(send_welcome_email, "in@example.com")
        assert Job.objects.filter(args=["in@example.com"]).exists()  # Already there.
    with pytest.raises(Rollback), transaction.atomic():
        enqueue_with_transaction(send_welcome_email, "out@example.com")
        raise Rollback
    assert [job.args for job in Job.objects.all()] == [["in@example.com"]]


def test_another_backend_gets_the_job_only_after_the_commit(settings: Any) -> None:
    settings.TASKS = DUMMY
    backend = task_backends["default"]
    with transaction.atomic():
        enqueue_with_transaction(send_welcome_email, "later@example.com")
        assert backend.results == []  # type: ignore[attr-defined]  # Not before the commit.
    assert [r.args for r in backend.results] == [["later@example.com"]]  # type: ignore[attr-defined]

    with pytest.raises(Rollback), transaction.atomic():
        enqueue_with_transaction(send_welcome_email, "never@example.com")
        raise Rollback
    assert len(backend.results) == 1  # type: ignore[attr-defined]
    assert not Job.objects.exists()
