"""``GET /healthz``: what the platform and the operator are told."""

from typing import Any

import pytest
from django.test import AsyncClient

from mailer.tasks import send_welcome_email

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
        "task_backend": "LedgerBackend",
        "jobs": {"READY": 1, "RUNNING": 0, "FAILED": 0, "SUCCESSFUL": 0},
    }


async def test_healthz_gives_no_ledger_counts_when_another_backend_runs_the_jobs(
    settings: Any,
) -> None:
    settings.HEALTHZ_TOKEN = "operator-token"
    settings.TASKS = {"default": {"BACKEND": "django.tasks.backends.dummy.DummyBackend"}}
    await send_welcome_email.aenqueue("elsewhere@example.com")  # Not in the ledger.
    operator = await AsyncClient().get(
        "/healthz", headers={"Authorization": "Bearer operator-token"}
    )
    public = await AsyncClient().get("/healthz")
    assert operator.json() == {"database": "ok", "task_backend": "DummyBackend"}
    assert public.json() == {"database": "ok"}


async def test_healthz_never_gives_counts_without_a_token(settings: Any) -> None:
    settings.HEALTHZ_TOKEN = ""
    response = await AsyncClient().get("/healthz", headers={"Authorization": "Bearer "})
    assert response.json() == {"database": "ok"}
