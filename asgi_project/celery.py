"""The Celery app that runs the jobs with ``TASKS_BACKEND=celery``.

Its worker: ``celery -A asgi_project.celery worker --loglevel INFO`` (README,
"Moving the jobs to Celery or Django Q2"). Every ``CELERY_*`` setting in
``asgi_project/settings.py`` configures it: broker, result backend, queue.
Needs ``requirements-celery.txt``.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_project.settings")

app = Celery("signup")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Importing the INSTALLED_APPS' ``tasks`` modules (mailer.tasks) registers
# their Django tasks with this app, through django-tasks-celery.
app.autodiscover_tasks()
