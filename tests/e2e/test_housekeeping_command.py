"""``manage.py housekeeping`` as cron runs it: its own processes against PostgreSQL."""

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support.service import ROOT, base_env, migrate, postgres_database

SEED_POSTGRES = """
from datetime import timedelta
from django.contrib.auth.models import Group
from django.utils import timezone
from background.models import Job
from signup.models import RateWindow, User

now = timezone.now()
def job(name, status, days_ago):
    finished = None if days_ago is None else now - timedelta(days=days_ago)
    Job.objects.create(id=name, task_path="t", backend="default", queue_name="default",
                       status=status, finished_at=finished)
for n in range(7):
    job(f"old-{n}", "SUCCESSFUL" if n % 2 else "FAILED", 4)
job("recent", "SUCCESSFUL", 1)
job("waiting", "READY", None)
group = Group.objects.create(name="members")
for n in range(3):
    old = User.objects.create_user(f"old-{n}@example.com", date_joined=now - timedelta(days=8))
    old.groups.add(group)
User.objects.create_user("recent@example.com", date_joined=now - timedelta(days=6))
User.objects.create_user("chose@example.com", "a password", date_joined=now - timedelta(days=8))
User.objects.create_user("staff@example.com", is_staff=True, date_joined=now - timedelta(days=8))
RateWindow.objects.create(key="gone", window_start=0, hits=1, expires_at=60)
RateWindow.objects.create(key="live", window_start=0, hits=1, expires_at=2**40)
"""


@pytest.mark.postgres
def test_housekeeping_command_on_postgresql(tmp_path: Path) -> None:
    with postgres_database() as url:
        env = base_env(url, smtp_port=1)
        migrate(env)
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED_POSTGRES],
            cwd=ROOT, env=env, check=True, timeout=60,
        )  # fmt: skip
        done = subprocess.run(
            [sys.executable, "manage.py", "housekeeping"],
            cwd=ROOT, env=env, check=True, timeout=60, capture_output=True, text=True,
        )  # fmt: skip
        assert "7 finished_jobs" in done.stdout
        assert "3 unconfirmed_accounts" in done.stdout
        assert "1 rate_windows" in done.stdout
        with psycopg.connect(url) as db:
            job_ids = {row[0] for row in db.execute("SELECT id FROM background_job")}
            emails = {row[0] for row in db.execute("SELECT email FROM signup_user")}
            windows = {row[0] for row in db.execute("SELECT key FROM signup_ratewindow")}
            memberships = db.execute("SELECT count(*) FROM signup_user_groups").fetchone()
        assert job_ids == {"recent", "waiting"}
        assert emails == {"recent@example.com", "chose@example.com", "staff@example.com"}
        assert windows == {"live"}
        assert memberships == (0,)
