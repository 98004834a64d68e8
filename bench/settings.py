"""The product's settings, plus what one benchmark scenario changes.

``BENCH_SCENARIO`` picks the row of ``bench.scenarios.SCENARIOS``. Every
scenario serves the product's own URLs (``/signup/`` is the product's view)
and the harness's extra views; the floor and the peers change ``TASKS``, so
the same view and task go to another backend.
"""

import os

from asgi_project.settings import *  # noqa: F403
from asgi_project.settings import INSTALLED_APPS
from bench.scenarios import SCENARIOS

SCENARIO = SCENARIOS[os.environ.get("BENCH_SCENARIO", "project")]

ROOT_URLCONF = "bench.urls"

INSTALLED_APPS = [*INSTALLED_APPS, *SCENARIO.apps]
if SCENARIO.tasks is not None:
    TASKS = {"default": dict(SCENARIO.tasks)}
globals().update(SCENARIO.settings)
