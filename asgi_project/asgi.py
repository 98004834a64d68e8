"""ASGI entry point: Django behind the body limits, the admin's static files beside it,
plus the in-process job runner's lifespan. Django's requests reuse their sync threads."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

from asgi_project.body_limit import with_body_limit
from asgi_project.request_threads import with_request_threads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_project.settings")

# What the benchmark's scenarios serve too (bench/asgi.py).
django_application = with_request_threads(get_asgi_application())

from asgi_project.static_files import with_static_files  # noqa: E402 - needs Django set up
from background.lifespan import with_job_runner  # noqa: E402 - needs Django set up

application = with_job_runner(
    with_static_files(
        with_body_limit(
            django_application,
            max_bytes=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            timeout=settings.REQUEST_BODY_TIMEOUT,
        )
    )
)
