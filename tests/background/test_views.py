"""``GET /healthz`` and ``GET /metrics``: what the platform, operators and Prometheus are told."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import AsyncClient
from django.utils import timezone

from background.models import Job
from mailer.tasks import send_welcome_email
from tests.support.jobs import until
from tests.support.metrics import Samples, parse, value
from tests.support.smtp_server import SMTPTestServer

pytestmark = pytest.mark.django_db(transaction=True)


async def test_healthz_gives_job_counts_to_the_operator_only(settings: Any) -> None:
    settings.HEALTHZ_TOKEN = "operator-token"
    await send_welcome_email.aenqueue("health@example.com")  # No runner: it stays READY.
    public = await AsyncClient().get("/healthz")
    wrong = await AsyncClient().get("/healthz", headers={"Authorization": "Bearer guess"})
    operator = await AsyncClient().get(
        "/healthz", headers={"Authorization": "Bearer operator-token"}
    )
    assert (public.status_code, wrong.status_code, operator.status_code) == (200, 200, 200)
    assert public.json() == wrong.json() == {"database": "ok"}
    assert operator.json() == {
        "database": "ok",
        "jobs": {"READY": 1, "RUNNING": 0, "FAILED": 0, "SUCCESSFUL": 0},
    }


async def test_healthz_never_gives_counts_without_a_token(settings: Any) -> None:
    settings.HEALTHZ_TOKEN = ""
    response = await AsyncClient().get("/healthz", headers={"Authorization": "Bearer "})
    assert response.json() == {"database": "ok"}


# -- /metrics ------------------------------------------------------------------

WELCOME = "mailer.tasks.send_welcome_email"


async def scrape(token: str = "scraper-token", **headers: str) -> Samples:
    response = await AsyncClient().get(
        "/metrics", headers={"Authorization": f"Bearer {token}", **headers}
    )
    assert response.status_code == 200, response.content
    return parse(response.content.decode())


async def test_metrics_are_not_found_without_a_token_setting(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
        assert (await AsyncClient().get("/metrics", headers=headers)).status_code == 404


async def test_metrics_need_the_token(settings: Any) -> None:
    settings.METRICS_TOKEN = "scraper-token"
    for headers in ({}, {"Authorization": "Bearer guess"}, {"Authorization": "scraper-token"}):
        response = await AsyncClient().get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert response.json() == {"detail": "Bearer token required."}
    allowed = await AsyncClient().get("/metrics", headers={"Authorization": "Bearer scraper-token"})
    assert allowed.status_code == 200
    assert allowed["Content-Type"].startswith("text/plain; version=")
    assert "background_ledger_up 1.0" in allowed.content.decode()


async def test_metrics_speak_openmetrics_when_asked(settings: Any) -> None:
    settings.METRICS_TOKEN = "scraper-token"
    response = await AsyncClient().get(
        "/metrics",
        headers={
            "Authorization": "Bearer scraper-token",
            "Accept": "application/openmetrics-text; version=1.0.0",
        },
    )
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().endswith("# EOF\n")


async def test_metrics_count_a_signup_and_its_delivered_mail(
    settings: Any, smtp_server: SMTPTestServer, start_runner: Any
) -> None:
    settings.METRICS_TOKEN = "scraper-token"
    await start_runner()
    before = await scrape()

    signup = await AsyncClient().post(
        "/signup/", {"email": "counted@example.com"}, content_type="application/json"
    )
    assert signup.status_code == 201
    await smtp_server.until(1)
    after: Samples = {}

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    async def counted() -> bool:
        # The job is counted as succeeded just after the SMTP server's 250;
        # the runner sweeps every 0.05 s.
        nonlocal after
        after = await scrape()
        succeeded = grew("background_jobs_succeeded_total", task=WELCOME)
        return bool(succeeded and grew("background_runner_sweeps_total", outcome="ok"))

    await until(counted, "the job counted as succeeded, and a sweep")

    assert grew("signup_requests_total", status="201") == 1
    assert grew("signup_request_duration_seconds_count") == 1
    assert grew("signup_request_duration_seconds_sum") > 0
    for counter in ("enqueued", "started", "succeeded"):
        assert grew(f"background_jobs_{counter}_total", task=WELCOME) == 1, counter
    for counter in ("retried", "failed"):
        assert grew(f"background_jobs_{counter}_total", task=WELCOME) == 0, counter
    assert grew("mailer_send_duration_seconds_count", outcome="accepted") == 1
    assert grew("mailer_enqueued_to_accepted_seconds_count") == 1
    assert grew("mailer_enqueued_to_accepted_seconds_sum") > 0
    # The runner keeps its SMTP connection open for the next mail.
    assert grew("mailer_smtp_connections_open") == 1
    # Read from the ledger at scrape time: nothing left to do.
    assert value(after, "background_ledger_up") == 1
    for status in ("READY", "RUNNING", "FAILED"):
        assert value(after, "background_ledger_jobs", status=status) == 0
    assert ("background_ledger_jobs", frozenset({("status", "READY")})) in after
    assert value(after, "background_ledger_oldest_ready_job_age_seconds") == 0


async def test_metrics_read_the_ledger_at_scrape_time(settings: Any) -> None:
    settings.METRICS_TOKEN = "scraper-token"
    late = timezone.now() - timedelta(minutes=10)
    await Job.objects.acreate(task_path=WELCOME, backend="default", queue_name="default")
    await Job.objects.acreate(
        task_path=WELCOME, backend="default", queue_name="default", run_after=late
    )
    await Job.objects.acreate(
        task_path=WELCOME, backend="default", queue_name="default",
        run_after=timezone.now() + timedelta(hours=1),  # A retry not due yet: not waiting.
    )  # fmt: skip
    await Job.objects.acreate(
        task_path=WELCOME, backend="default", queue_name="default", status="FAILED"
    )
    samples = await scrape()
    assert value(samples, "background_ledger_jobs", status="READY") == 3
    assert value(samples, "background_ledger_jobs", status="FAILED") == 1
    assert value(samples, "background_ledger_jobs", status="RUNNING") == 0
    assert 600 <= value(samples, "background_ledger_oldest_ready_job_age_seconds") < 660
