"""Django's reports of unhandled errors: queued, sent once the relay is back, never raising."""

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.tasks import TaskResultStatus
from django.test import AsyncClient, override_settings
from django.urls import path

from background.models import Job
from background.runner import JobRunner
from tests.conftest import mailers_for
from tests.support.jobs import reaches, until
from tests.support.log_records import log_records
from tests.support.ports import free_port
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the disk said no")


# The error these tests provoke: a view that raises, served by Django's handler.
urlpatterns = [path("boom/", boom)]


@pytest.mark.urls(__name__)
async def test_the_report_of_an_error_survives_an_smtp_outage(
    settings: Any, runner: JobRunner
) -> None:
    settings.ADMINS = ["ops@example.com"]
    settings.SERVER_EMAIL = "errors@example.com"
    relay = SMTPTestServer()  # Not started yet: the relay is down.
    with override_settings(MAILERS=mailers_for(relay.port)):
        response = await AsyncClient(raise_request_exception=False).get("/boom/")
        assert response.status_code == 500
        job = await Job.objects.aget(task_path="mailer.tasks.send_stored_message")
        await until(
            lambda: Job.objects.filter(id=job.id, attempts__gte=2).aexists(), "two failed attempts"
        )
        relay.start()
        try:
            (received,) = await relay.until(1)
            await reaches(job.id, TaskResultStatus.SUCCESSFUL)
        finally:
            relay.stop()
    assert received.recipients == ["ops@example.com"]
    assert received.message["From"] == "errors@example.com"
    assert "Internal Server Error: /boom/" in received.message["Subject"]
    text = received.message.get_body(("plain",))
    assert text is not None and "the disk said no" in text.get_content()


@pytest.mark.urls(__name__)
async def test_a_report_that_cannot_be_queued_is_logged_and_the_500_still_answered(
    settings: Any,
) -> None:
    settings.ADMINS = ["ops@example.com\nBcc: everyone@example.com"]  # A broken setting.
    with (
        override_settings(MAILERS=mailers_for(free_port())),
        log_records("mailer.error_reports") as records,
    ):
        response = await AsyncClient(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    assert [record.getMessage() for record in records] == [
        "Error report to ADMINS not queued: ValueError"
    ]
    assert not await Job.objects.aexists()
