"""The signup transaction (``signup.services.register_address``): all or nothing."""

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction

from background.models import Job
from mailer.tasks import send_welcome_email
from signup.models import User
from signup.services import register_address

pytestmark = pytest.mark.django_db(transaction=True)


async def nothing_written() -> bool:
    return not await User.objects.aexists() and not await Job.objects.aexists()


async def test_rolled_back_signup_queues_nothing() -> None:
    class Abort(Exception):
        pass

    def sign_up_then_fail() -> None:
        with transaction.atomic():
            register_address("rollback@example.com", "127.0.0.1")
            raise Abort

    with pytest.raises(Abort):
        await sync_to_async(sign_up_then_fail)()
    assert await nothing_written()


DUMMY_TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}


async def test_a_backend_outside_the_database_gets_the_job_after_the_commit(settings: Any) -> None:
    # A broker's worker could run the job before the account is visible, or
    # for an account that was rolled back: such backends are handed the job
    # only once the signup has committed.
    settings.TASKS = DUMMY_TASKS
    backend = send_welcome_email.get_backend()
    seen_inside: list[int] = []

    def sign_up(email: str, fail: bool) -> None:
        with transaction.atomic():
            register_address(email, "127.0.0.1")
            seen_inside.append(len(backend.results))
            if fail:
                raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await sync_to_async(sign_up)("rolled-back@example.com", True)
    await sync_to_async(sign_up)("committed@example.com", False)

    assert seen_inside == [0, 0]
    assert [result.args for result in backend.results] == [["committed@example.com"]]
