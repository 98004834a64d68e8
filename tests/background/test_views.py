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
        "jobs": {"READY": 1, "RUNNING": 0, "FAILED": 0, "SUCCESSFUL": 0},
    }


async def test_healthz_never_gives_counts_without_a_token(settings: Any) -> None:
    settings.HEALTHZ_TOKEN = ""
    response = await AsyncClient().get("/healthz", headers={"Authorization": "Bearer "})
    assert response.json() == {"database": "ok"}
