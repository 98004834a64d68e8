"""ASGI application of every scenario: the product's app, or django-vtasks' embedded worker."""

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

from asgi_project.asgi import django_application
from background.lifespan import with_job_runner

if os.environ.get("BENCH_SCENARIO") == "vtasks":
    # django-vtasks' documented embedded mode: its worker runs in the ASGI app.
    from django_vtasks.asgi import get_worker_application

    from mailer.transport import keep_connections

    from .vtasks_shim import install

    install()
    vtasks_application = get_worker_application(django_application)

    async def vtasks_with_pooling(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # Its worker sends from uvicorn's loop, which lives as long as the
            # server: let the transport pool there, as on the product's runner.
            await keep_connections()
        await vtasks_application(scope, receive, send)

    application: Any = vtasks_with_pooling
else:
    # The product's lifespan; it starts no runner when TASKS is not its backend.
    application = with_job_runner(django_application)
