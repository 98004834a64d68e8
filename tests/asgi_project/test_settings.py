"""Settings read from the environment: production values without a safe default stop startup."""

import ast
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from asgi_project.settings import env_duration, site_url
from tests.support.processes import FreshProcess
from tests.support.service import ROOT

# Reading the settings is where these errors are raised: a fresh interpreter
# importing the module, rather than `manage.py check` (which also loads every
# app, ~0.9 s a run, and stops at the same error).
READ_SETTINGS = ["-c", "import asgi_project.settings"]


def test_site_url_is_required_without_debug(fresh_process: FreshProcess) -> None:
    check = READ_SETTINGS
    missing = fresh_process(check, {"DEBUG": "0"}, unset=("SITE_URL",))
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: SITE_URL is required unless DEBUG=1."
    )
    given = fresh_process(check, {"DEBUG": "0", "SITE_URL": "https://signup.example.com"})
    assert given.returncode == 0, given.stderr


def test_site_url_has_a_development_default_with_debug(fresh_process: FreshProcess) -> None:
    show = ["-c", "from asgi_project import settings; print(settings.SITE_URL)"]
    result = fresh_process(show, {"DEBUG": "1"}, unset=("SITE_URL",))
    assert result.stdout.strip() == "http://127.0.0.1:8000", result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://signup.example.com", "https://signup.example.com"),
        ("https://signup.example.com/", "https://signup.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://example.com/accounts/", "https://example.com/accounts"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_site_url_accepts_a_base_with_an_optional_prefix(raw: str, expected: str) -> None:
    assert site_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "signup.example.com",  # No scheme.
        "ftp://example.com",
        "https://",
        "https:///prefix",
        "https://user:secret@example.com",
        "https://example.com/?next=x",
        "https://example.com/#top",
        "https://example.com:port",
        "https://example.com:70000",
        " https://example.com",
        "https://exa mple.com",
    ],
)
def test_site_url_refuses_what_would_make_broken_links(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SITE_URL must be an http"):
        site_url(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("3d", timedelta(days=3)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45 S", timedelta(seconds=45)),
        ("", timedelta(days=7)),  # Empty: the default.
        ("off", None),
        ("0", None),
        ("0d", None),
    ],
)
def test_retention_durations(
    raw: str, expected: timedelta | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOME_RETENTION", raw)
    assert env_duration("SOME_RETENTION", "7d") == expected


@pytest.mark.parametrize("raw", ["3", "3w", "-1d", "1.5d", "forever"])
def test_retention_durations_need_a_unit(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_RETENTION", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_RETENTION must look like"):
        env_duration("SOME_RETENTION", "7d")


def test_unconfirmed_accounts_outlive_their_set_password_link(fresh_process: FreshProcess) -> None:
    check = READ_SETTINGS
    short = fresh_process(check, {"DEBUG": "1", "UNCONFIRMED_ACCOUNT_TTL": "1d"})
    assert short.returncode != 0
    assert (
        "UNCONFIRMED_ACCOUNT_TTL must be at least the set-password link's lifetime (3d)"
        in (short.stderr.strip().splitlines()[-1])
    )
    assert fresh_process(check, {"DEBUG": "1", "UNCONFIRMED_ACCOUNT_TTL": "3d"}).returncode == 0


@pytest.mark.parametrize("debug", ["1", "0"])
def test_each_warning_is_logged_once(debug: str, fresh_process: FreshProcess) -> None:
    # Django's default logging gives "django" a console handler of its own
    # under DEBUG: bin/dev printed every django.* warning twice.
    log = [
        "-c",
        "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'asgi_project.settings'; "
        "import django, logging; django.setup(); "
        "logging.getLogger('django.request').warning('a django warning'); "
        "logging.getLogger('background.runner').warning('a service warning')",
    ]
    result = fresh_process(log, {"DEBUG": debug, "SITE_URL": "https://example.com"})
    assert result.returncode == 0, result.stderr
    # Each line after its date and time: "2026-11-26 00:39:47,846 WARNING ...".
    assert [line.split(" ", 2)[2] for line in result.stderr.splitlines()] == [
        "WARNING django.request: a django warning",
        "WARNING background.runner: a service warning",
    ]


# What the service reads from the environment, and what the README's settings
# table documents: the two must agree.
SERVICE_CODE_SKIPS = {"tests", "bench"}  # Their variables are documented where they are run.
ENV_READERS = {"os.environ.get", "os.getenv", "env_bool", "env_number", "env_int", "env_duration"}
# Read by something other than the service's Python code.
READ_ELSEWHERE = {"PORT": "the Procfile, bin/dev", "FORWARDED_ALLOW_IPS": "uvicorn"}


def environment_names(source: str) -> set[str]:
    """The variables a module reads: ``os.environ["X"]``, ``.get("X")``, ``env_int("X")``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ENV_READERS:
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(str(node.slice.value))
    return names


def service_modules() -> list[Path]:
    modules = []
    for entry in ROOT.iterdir():
        if entry.name.startswith(".") or entry.name in SERVICE_CODE_SKIPS:
            continue
        modules += [entry] if entry.suffix == ".py" else sorted(entry.rglob("*.py"))
    return modules


def documented_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Settings (environment variables)", 1)[1].split("\n## ", 1)[0]
    first_cells = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in first_cells for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cell)}


def test_every_variable_read_is_in_the_readme_settings_table() -> None:
    read = {name for path in service_modules() for name in environment_names(path.read_text())}
    assert {"SECRET_KEY", "SECURE_COOKIES", "EMAIL_PORT", "TASKS_LOG_LEVEL"} <= read  # Parsed.
    assert read - documented_settings() == set(), "read but not in README.md's settings table"
    assert documented_settings() - read - set(READ_ELSEWHERE) == set(), "documented, never read"


def test_environment_names_finds_every_way_of_reading() -> None:
    source = (
        "import os\n"
        "a = os.environ.get('A', '')\nb = os.environ['B']\nc = os.getenv('C')\n"
        "d = env_int('D', 1, minimum=0)\ne = env_duration('E', '3d')\n"
        "os.environ['NOT_READ'] = '1'\nos.environ.setdefault('NOT_READ_EITHER', '1')\n"
    )
    assert environment_names(source) == {"A", "B", "C", "D", "E"}


def test_djangos_mail_is_queued_and_the_relay_is_the_smtp_mailer(
    fresh_process: FreshProcess,
) -> None:
    show = [
        "-c",
        "from asgi_project import settings as s; "
        "print(s.MAILERS['default']['BACKEND'], s.MAILERS['smtp']['OPTIONS']['host'], "
        "s.MAILERS['smtp']['OPTIONS']['port'], s.ADMINS, s.SERVER_EMAIL)",
    ]
    env = {
        "DEBUG": "1",
        "EMAIL_HOST": "relay.example.com",
        "EMAIL_PORT": "587",
        "ADMINS": "ops@example.com, oncall@example.com,",
        "DEFAULT_FROM_EMAIL": "Shop <shop@example.com>",
    }
    result = fresh_process(show, env, unset=("SERVER_EMAIL",))
    assert result.stdout.strip() == (
        "mailer.outbox.OutboxBackend relay.example.com 587 "
        "['ops@example.com', 'oncall@example.com'] Shop <shop@example.com>"
    ), result.stderr


def test_tasks_backend_is_one_of_three(fresh_process: FreshProcess) -> None:
    wrong = fresh_process(READ_SETTINGS, {"DEBUG": "1", "TASKS_BACKEND": "rq"})
    assert wrong.returncode != 0
    assert wrong.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        """TASKS_BACKEND must be "ledger", "celery" or "django-q2", not 'rq'."""
    )


def test_celery_keeps_results_in_its_broker_unless_told_otherwise(
    fresh_process: FreshProcess,
) -> None:
    show = [
        "-c",
        "from asgi_project import settings as s; "
        "print(s.TASKS['default']['BACKEND'], s.CELERY_RESULT_BACKEND, s.CELERY_RESULT_EXPIRES)",
    ]
    broker = "redis://queue.internal:6379/3"
    env = {"DEBUG": "1", "TASKS_BACKEND": "celery", "CELERY_BROKER_URL": broker}
    same = fresh_process(show, {**env, "TASKS_RESULT_RETENTION": "2h"})
    assert same.stdout.split() == ["django_tasks_celery.CeleryBackend", broker, "2:00:00"]
    results = "redis://results.internal:6379/4"
    other = fresh_process(show, {**env, "CELERY_RESULT_BACKEND": results})
    assert other.stdout.split()[1] == results, other.stderr


@pytest.mark.parametrize(
    ("backend", "module", "requirements"),
    [
        ("celery", "django_tasks_celery", "requirements-celery.txt"),
        ("django-q2", "django_q", "requirements-django-q2.txt"),
    ],
)
def test_a_backend_without_its_package_names_the_requirements_file(
    backend: str,
    module: str,
    requirements: str,
    fresh_process: FreshProcess,
) -> None:
    # As if the package were not installed.
    hide = ["-c", f"import sys; sys.modules[{module!r}] = None; import asgi_project.settings"]
    missing = fresh_process(hide, {"DEBUG": "1", "TASKS_BACKEND": backend})
    assert missing.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: "
        f"{module} is not installed: pip install -r {requirements}"
    )
