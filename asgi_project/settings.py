"""Every setting comes from the environment here, and only here.

Defaults are safe for development (SQLite file, local SMTP inbox on port 1025);
production values that have no safe default (SECRET_KEY, SITE_URL) must be given.
"""

import importlib.util
import os
import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
import pythonjsonlogger.core
from django.core.exceptions import ImproperlyConfigured

from asgi_project.logs import uvicorn_access_log_on

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_number(name: str, default: float, *, minimum: float = 0) -> float:
    raw = os.environ.get(name) or str(default)
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}.")
    return value


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    return int(env_number(name, default, minimum=minimum))


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def env_duration(name: str, default: str) -> timedelta | None:
    """``"3d"``, ``"12h"``, ``"90m"``, ``"30s"``; ``"off"`` or ``"0"`` -> None (never)."""
    raw = (os.environ.get(name) or default).strip().lower()
    if raw in {"off", "0"}:
        return None
    match = re.fullmatch(r"(\d+)\s*([smhd])", raw)
    if not match:
        raise ImproperlyConfigured(
            f'{name} must look like "3d", "12h" or "90m", or be "off", not {raw!r}.'
        )
    seconds = int(match[1]) * DURATION_UNITS[match[2]]
    return timedelta(seconds=seconds) if seconds else None


def require_installed(module: str, requirements: str) -> None:
    """Name the requirements file to install when a TASKS_BACKEND's package is missing."""
    if importlib.util.find_spec(module) is None:
        raise ImproperlyConfigured(f"{module} is not installed: pip install -r {requirements}")


def site_url(raw: str) -> str:
    """Check the base of the links in mails: http(s), a host, an optional port and path prefix."""
    parts = urlsplit(raw)
    try:
        port_ok = parts.port != 0
    except ValueError:  # Not a number, or out of range.
        port_ok = False
    if (
        not port_ok
        or parts.scheme not in {"http", "https"}
        or not parts.hostname
        or "@" in parts.netloc  # Credentials in every mailed link.
        or any(char in raw for char in "?#")
        or any(char.isspace() for char in raw)
    ):
        raise ImproperlyConfigured(
            "SITE_URL must be an http(s) URL such as https://example.com or "
            f"https://example.com/prefix, without credentials, query or fragment, not {raw!r}."
        )
    return raw.rstrip("/")


DEBUG = env_bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required unless DEBUG=1.")
    SECRET_KEY = "development-only-key-never-use-in-production"

ALLOWED_HOSTS = [
    host.strip()
    for host in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "").split(
        ","
    )
    if host.strip()
]
CSRF_TRUSTED_ORIGINS = [
    origin.strip()
    for origin in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",")
    if origin.strip()
]

# Base of the links in mails: tasks run outside any request, so they cannot
# build absolute URLs from one. Without DEBUG there is no safe guess: links to
# a development address would reach users, so a missing one stops the server.
SITE_URL = os.environ.get("SITE_URL", "")
if not SITE_URL:
    if not DEBUG:
        raise ImproperlyConfigured("SITE_URL is required unless DEBUG=1.")
    SITE_URL = "http://127.0.0.1:8000"
SITE_URL = site_url(SITE_URL)

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "background",
    "signup",
    "mailer",
    # After signup: the first app's template wins, and the admin has its own
    # registration/password_reset_*.html (the set-password pages' names).
    "django.contrib.admin",
]

# Deliberately one async-native middleware: see asgi_project/middleware.py.
MIDDLEWARE = ["asgi_project.middleware.checks_and_security_headers"]
# What those three middleware would add is covered: the headers by our own
# middleware, CSRF by the views that take form posts (tests check both). The
# admin's session, authentication and messages middleware run on its URLs
# only (asgi_project/urls.py), which the admin's checks cannot see.
SILENCED_SYSTEM_CHECKS = [
    "security.W001",
    "security.W002",
    "security.W003",
    "admin.E408",
    "admin.E409",
    "admin.E410",
]

ROOT_URLCONF = "asgi_project.urls"
ASGI_APPLICATION = "asgi_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# SQLite by default. WAL lets readers run beside the single writer, IMMEDIATE
# transactions take the write lock at BEGIN (so two workers never deadlock
# upgrading a read lock), and the timeout makes writers queue instead of
# failing with "database is locked".
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}"),
        conn_max_age=env_int("CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
# The longest any database call of the service may take (background/database.py):
# a request waiting longer answers 503, and SQLite's lock wait and
# PostgreSQL's connect are bounded by it too, so an outage never hangs a request.
DATABASE_TIMEOUT = env_number("DATABASE_TIMEOUT", 5, minimum=1)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "connect_timeout": max(2, int(DATABASE_TIMEOUT)),
            # A server that vanished without closing the connection (network
            # cut, host gone) fails the connection after this many ms instead
            # of leaving a thread waiting on TCP's ~15-minute retransmissions.
            "tcp_user_timeout": int(DATABASE_TIMEOUT * 1000),
        }
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": DATABASE_TIMEOUT,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too: an in-memory database shared between threads
    # fails lock waits at once instead of queueing like the real one.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test-db.sqlite3")}

# Threads (each with its own database connection) for the signup view's writes.
SIGNUP_DB_THREADS = env_int("SIGNUP_DB_THREADS", 4, minimum=1)

AUTH_USER_MODEL = "signup.User"
PASSWORD_RESET_TIMEOUT = 3 * 24 * 3600
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"django.contrib.auth.password_validation.{name}"}
    for name in (
        "UserAttributeSimilarityValidator",
        "MinimumLengthValidator",
        "CommonPasswordValidator",
        "NumericPasswordValidator",
    )
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The signup form and JSON bodies are tiny; anything larger is refused (413),
# by asgi_project/body_limit.py while the body is read, on every path.
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
# Seconds a client has to send its whole body (408 after): 64 KiB at 64 kbit/s.
REQUEST_BODY_TIMEOUT = env_number("REQUEST_BODY_TIMEOUT", 10, minimum=0.1)

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)

# Mail. Two mailers (Django 6.1's MAILERS):
# - "default", what all of Django's mail uses (send_mail, EmailMessage.send,
#   mail_admins, the password-reset view): mailer/outbox.py queues each
#   message as a job, with the caller's transaction, and returns at once.
# - "smtp", the relay. The runner's pooled transport (mailer/transport.py)
#   connects with its OPTIONS, never through django.core.mail, so a queued
#   message cannot loop back into the queue. send_mail(..., using="smtp")
#   still sends inline through Django's SMTP backend, for the rare caller
#   that must know the relay took it.
# The environment keeps Django's classic EMAIL_* names. EMAIL_USE_TLS is
# STARTTLS, EMAIL_USE_SSL implicit TLS.
if env_bool("EMAIL_USE_TLS", False) and env_bool("EMAIL_USE_SSL", False):
    raise ImproperlyConfigured("Set at most one of EMAIL_USE_TLS and EMAIL_USE_SSL.")
MAILERS = {
    "default": {"BACKEND": "mailer.outbox.OutboxBackend"},
    "smtp": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "127.0.0.1"),
            "port": env_int("EMAIL_PORT", 1025, minimum=1),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            "use_ssl": env_bool("EMAIL_USE_SSL", False),
            "timeout": env_number("EMAIL_TIMEOUT", 10, minimum=0.1),
        },
    },
}
# The async transport's SMTP connections per process (mailer/transport.py).
# Kept open once opened, however idle: enough for the mail of a steady trickle
# of signups without a connection set-up each (the pool's minimum).
EMAIL_POOL_SIZE = env_int("EMAIL_POOL_SIZE", 8, minimum=1)
# Open at most while mails wait for a connection. A relay that takes 2 s per
# mail needs 50 in flight for 25 mails/s; 64 leaves headroom. Lower it to the
# relay's limit on connections per client where it has one (a connection it
# refuses is a transient failure, retried later).
EMAIL_POOL_MAX = env_int("EMAIL_POOL_MAX", max(64, EMAIL_POOL_SIZE), minimum=1)
if EMAIL_POOL_MAX < EMAIL_POOL_SIZE:
    raise ImproperlyConfigured(
        f"EMAIL_POOL_MAX ({EMAIL_POOL_MAX}) must be at least EMAIL_POOL_SIZE ({EMAIL_POOL_SIZE})."
    )
# Connections beyond EMAIL_POOL_SIZE are closed (QUIT) after this many seconds
# unused. Relays drop idle sessions after 60-300 s (RFC 5321 asks for at least
# 5 minutes; many hosted relays cut sooner): closing first, politely, keeps a
# send from meeting a dropped one, and 30 s still carries a burst's connections
# over short pauses.
EMAIL_POOL_IDLE_TIMEOUT = env_number("EMAIL_POOL_IDLE_TIMEOUT", 30, minimum=0)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Signup <noreply@example.com>")
# Who gets the reports of unhandled errors (mail_admins); empty: nobody. The
# reports come from SERVER_EMAIL: Django's default, root@localhost, is an
# address many relays refuse to send from.
ADMINS = [address.strip() for address in os.environ.get("ADMINS", "").split(",") if address.strip()]
SERVER_EMAIL = os.environ.get("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
# Accept addresses with non-ASCII characters before the @ (RFC 6531). Only if
# the SMTP server offers SMTPUTF8: a mail it cannot take fails at once.
EMAIL_SMTPUTF8 = env_bool("EMAIL_SMTPUTF8", False)

# Retention, applied by the runner in small batches (background/housekeeping.py):
# finished jobs (SUCCESSFUL or FAILED) are deleted this long after they finished.
TASKS_RESULT_RETENTION = env_duration("TASKS_RESULT_RETENTION", "3d")

# Which system runs the jobs. "ledger": the ledger backend keeps every job in
# the database and the in-process runner sends them from the ASGI server's
# event loop. "celery" and "django-q2" hand them to that system's workers
# (optional requirements files; README, "Moving the jobs to Celery or Django Q2").
TASKS_BACKEND = os.environ.get("TASKS_BACKEND", "ledger")
if TASKS_BACKEND == "ledger":
    TASKS = {
        "default": {
            "BACKEND": "background.backend.LedgerBackend",
            "OPTIONS": {
                # Jobs in flight per process. A mail job mostly waits on SMTP and
                # holds one pooled connection, so with a slow relay this sets the
                # mail rate: at 2 s per mail, 16 jobs sent 7.6 mails/s and 64 sent
                # 32.4. With ~0.45 ms less CPU per mail, 64 no longer costs the
                # signups: p99 at 55 req/s with that relay was 1.07 x the p99 with
                # an instant one (README, "Deploying").
                "CONCURRENCY": env_int("TASKS_CONCURRENCY", EMAIL_POOL_MAX, minimum=1),
                "MAX_ATTEMPTS": env_int("TASKS_MAX_ATTEMPTS", 20, minimum=1),
                "RETRY_BASE_DELAY": env_number("TASKS_RETRY_BASE_DELAY", 2, minimum=0),
                "RETRY_MAX_DELAY": env_number("TASKS_RETRY_MAX_DELAY", 3600, minimum=0),
                "LEASE_SECONDS": env_number("TASKS_LEASE_SECONDS", 60, minimum=1),
                "POLL_INTERVAL": env_number("TASKS_POLL_INTERVAL", 2, minimum=0.05),
                "DRAIN_TIMEOUT": env_number("TASKS_DRAIN_TIMEOUT", 20, minimum=0),
                "HOUSEKEEPING_INTERVAL": env_number("TASKS_HOUSEKEEPING_INTERVAL", 300, minimum=1),
                "WAKEUP": env_bool("TASKS_WAKEUP", True),
            },
        }
    }
elif TASKS_BACKEND == "celery":
    require_installed("django_tasks_celery", "requirements-celery.txt")
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_celery.CeleryBackend",
            "OPTIONS": {"CELERY_APP": "asgi_project.celery.app"},
        }
    }
    # Read by the Celery app (asgi_project/celery.py), Celery's CELERY_ namespace.
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    # get_result() reads the results here. Extended results carry the task's
    # name, which it needs to find the task; kept as long as the ledger's.
    CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or CELERY_BROKER_URL
    CELERY_RESULT_EXTENDED = True
    CELERY_RESULT_EXPIRES = TASKS_RESULT_RETENTION
    # Deployments (or test runs) sharing one broker each need their own queue.
    CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
    # A job is acknowledged once it ran, so one whose worker process died is
    # run again instead of lost.
    CELERY_TASK_ACKS_LATE = True
    CELERY_TASK_REJECT_ON_WORKER_LOST = True
elif TASKS_BACKEND == "django-q2":
    require_installed("django_q", "requirements-django-q2.txt")
    INSTALLED_APPS.append("django_q")
    TASKS = {"default": {"BACKEND": "background.django_q2.DjangoQ2Backend"}}
    # A mail job's send takes at most 3x EMAIL_TIMEOUT (read as for MAILERS,
    # mailer/transport.py); the rest is a database read or two.
    job_timeout = int(3 * env_number("EMAIL_TIMEOUT", 10, minimum=0.1)) + 10
    Q_CLUSTER = {
        "name": "signup",
        # The broker is a table in the service's own database: no other
        # service, and a job queued in the signup's transaction commits or
        # rolls back with it, as in the ledger.
        "orm": "default",
        "timeout": job_timeout,
        # Seconds after which a job that failed, or whose worker died, runs
        # again; longer than a job may take, or it would run twice at once.
        "retry": job_timeout + 30,
        "max_attempts": env_int("TASKS_MAX_ATTEMPTS", 20, minimum=1),
    }
else:
    raise ImproperlyConfigured(
        f'TASKS_BACKEND must be "ledger", "celery" or "django-q2", not {TASKS_BACKEND!r}.'
    )

# Bearer token that makes /healthz include job counts by status; empty: never.
HEALTHZ_TOKEN = os.environ.get("HEALTHZ_TOKEN", "")
# Bearer token a Prometheus scraper sends for /metrics; empty: /metrics is not found.
# (prometheus_client reads PROMETHEUS_MULTIPROC_DIR itself: asgi_project/metrics.py.)
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# Accounts whose owner never chose a password are deleted this long after
# signing up. Not shorter than the set-password link's lifetime, or a link
# could outlive its account.
UNCONFIRMED_ACCOUNT_TTL = env_duration("UNCONFIRMED_ACCOUNT_TTL", "7d")
if (
    UNCONFIRMED_ACCOUNT_TTL is not None
    and UNCONFIRMED_ACCOUNT_TTL.total_seconds() < PASSWORD_RESET_TIMEOUT
):
    raise ImproperlyConfigured(
        f"UNCONFIRMED_ACCOUNT_TTL must be at least the set-password link's lifetime "
        f'({PASSWORD_RESET_TIMEOUT // 86400}d), or "off".'
    )

# Abuse limits, as "<count>/<s|m|h|d>"; "off" disables one.
SIGNUP_RATE_PER_IP = os.environ.get("SIGNUP_RATE_PER_IP", "20/m")
MAIL_RATE_PER_ADDRESS = os.environ.get("MAIL_RATE_PER_ADDRESS", "3/h")

# How log lines are written: "text" (readable, the default) or "json" (one
# object per line, for a log shipper). Outside DEBUG, mail addresses and
# set-password tokens are replaced in every line (asgi_project/logs.py).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text").lower()
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f'LOG_FORMAT must be "text" or "json", not {LOG_FORMAT!r}.')

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "job": {"()": "asgi_project.logs.JobFields"},
        "private": {"()": "asgi_project.logs.RedactPrivateData"},
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
    },
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            "timestamp": "time",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "reserved_attrs": ["color_message", "request", *pythonjsonlogger.core.RESERVED_ATTRS],
        },
    },
    # One handler, at the root, so every line (Django's, uvicorn's, ours) goes
    # through the same filters and format.
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["job"] if DEBUG else ["job", "private"],
        },
        # Django's error reports to ADMINS (500s), queued through the outbox;
        # one that cannot be queued is logged instead of failing the request.
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false"],
            "class": "mailer.error_reports.ErrorReportHandler",
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # In place of Django's defaults for it (the same level, the same
        # reports): Django's own console handler printed every django.* line
        # a second time with DEBUG; its lines reach the one handler at the root.
        "django": {"handlers": ["mail_admins"], "level": "INFO", "propagate": True},
        # uvicorn has configured its loggers before it imports this app: send
        # them to the one handler, and keep the access log off if
        # --no-access-log turned it off.
        "uvicorn": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": uvicorn_access_log_on()},
        # Django logs every task start and finish at INFO; one line per mail
        # is noise at the rates this service runs. Not passed on to the
        # "django" logger, whose mail_admins handler would queue a mail about
        # each failed job, and a report that failed would queue the next one.
        "django.tasks": {
            "level": os.environ.get("TASKS_LOG_LEVEL", "WARNING"),
            "handlers": ["console"],
            "propagate": False,
        },
        # aiosmtpd (the development inbox and the tests' SMTP servers) logs
        # every SMTP command at INFO: noise in bin/dev, and half the quick
        # tests' time spent capturing it.
        "mail.log": {"level": "WARNING"},
    },
}
