"""ASGI entry point: Django plus the in-process job runner's lifespan."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_project.settings")

django_application = get_asgi_application()

from background.lifespan import with_job_runner  # noqa: E402 - needs Django set up

application = with_job_runner(django_application)
