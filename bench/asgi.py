"""ASGI application of every scenario: the product's app, or django-vtasks' embedded worker."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from asgi_project.asgi import django_application
from background.lifespan import with_job_runner

if os.environ.get("BENCH_SCENARIO") == "vtasks":
    # django-vtasks' documented embedded mode: its worker runs in the ASGI app.
    from django_vtasks.asgi import get_worker_application

    from .vtasks_shim import install

    install()

    application = get_worker_application(django_application)
else:
    # The product's lifespan; it starts no runner when TASKS is not its backend.
    application = with_job_runner(django_application)
