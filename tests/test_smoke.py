import pytest
from django.test import AsyncClient

from background.models import Job


@pytest.mark.django_db(transaction=True)
async def test_json_signup_queues_welcome_mail() -> None:
    response = await AsyncClient().post("/signup/", {"email": "A@Example.com"}, content_type="application/json")
    assert response.status_code == 201
    assert response.json() == {"detail": "User registered"}
    job = await Job.objects.aget()
    assert job.task_path == "mailer.tasks.send_welcome_email"
    assert job.args == ["a@example.com"]
