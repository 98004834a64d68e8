"""The Celery app of the ``celery`` scenario: Redis broker, no result backend.

Started by the harness as ``celery -A bench.celery_app worker``; Celery's
Django fix-up sets Django up from ``DJANGO_SETTINGS_MODULE``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

app = Celery("bench")
app.conf.broker_url = os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/11")
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False
# Importing the INSTALLED_APPS' ``tasks`` modules (mailer.tasks) registers the
# Django tasks with this app through django-tasks-celery.
app.autodiscover_tasks()
