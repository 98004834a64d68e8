"""The product's settings, plus what one benchmark scenario changes.

``BENCH_SCENARIO`` picks the scenario. Every scenario serves the product's
own URLs (``/signup/`` is the product's view) and the harness's floor views;
only the peers change ``TASKS``, so the same view and task go to another
backend.
"""

import os

from asgi_project.settings import *  # noqa: F403
from asgi_project.settings import INSTALLED_APPS

SCENARIO = os.environ.get("BENCH_SCENARIO", "project")

ROOT_URLCONF = "bench.urls"

# The harness runs several peers' apps against one database template each;
# which apps are installed depends on the scenario.
PEER_APPS = {
    "tasks-db": ["django_tasks_db"],
    "vtasks": ["django_vtasks", "django_vtasks.db"],
}
INSTALLED_APPS = [*INSTALLED_APPS, *PEER_APPS.get(SCENARIO, [])]

if SCENARIO == "tasks-db":
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
elif SCENARIO == "celery":
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_celery.CeleryBackend",
            "OPTIONS": {"CELERY_APP": "bench.celery_app.app"},
        }
    }
elif SCENARIO == "vtasks":
    TASKS = {"default": {"BACKEND": "django_vtasks.backends.db.DatabaseTaskBackend"}}
    VTASKS_RUN_SCHEDULER = False
