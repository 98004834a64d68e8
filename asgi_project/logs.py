"""What a log line carries: the job it is about, and no private data outside DEBUG.

Filters for the one log handler (``LOGGING`` in settings.py), text or JSON:

- ``JobFields`` adds ``job_id``, ``task`` and ``attempt`` to every line logged
  while a job runs (the runner's, Django's task lines, the task's own), so a
  JSON line can be searched by job without parsing its message.
- ``RedactPrivateData`` (not with DEBUG) replaces mail addresses and
  set-password tokens in the message, its exception and its extra fields. An
  address reaches a line in ways no log call controls, such as an SMTP
  server's refusal quoting the recipient (``550 5.1.1 <ada@example.com>:
  user unknown``) or a traceback; so every line is cleaned where it is
  written, not each call.
"""

import logging
import re
from contextvars import Context, ContextVar, copy_context

_job_fields: ContextVar[dict[str, object] | None] = ContextVar("job_fields", default=None)


def job_log_context(**fields: object) -> Context:
    """A copy of the current context in which every line logged carries ``fields``.

    For ``asyncio.create_task(..., context=...)``: the job's task, and tasks
    it creates, log with them. A task that outlives the job and serves others
    must be created with a context of its own.
    """
    context = copy_context()
    context.run(_job_fields.set, fields)
    return context


class JobFields(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_job_fields.get() or {}).items():
            record.__dict__.setdefault(name, value)
        return True


# An address as a line may quote it: in a server's reply, an exception, a
# URL. Whitespace, brackets, quotes and the separators around it end it.
ADDRESS = re.compile(r'[^\s<>()\[\]{}",;:\\@]+@[^\s<>()\[\]{}"\',;:\\@]+')
# The token in a set-password link (Django's "<timestamp>-<hmac>"), as an
# access log or a 4xx warning quotes the path: it sets the account's password.
SET_PASSWORD_TOKEN = re.compile(r"(/set-password/[^/\s]+/)[0-9a-z]+-[0-9a-f]+")
# The attributes every LogRecord has; anything else came with ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_exceptions = logging.Formatter()


def redact(text: str) -> str:
    return SET_PASSWORD_TOKEN.sub(r"\1[token]", ADDRESS.sub("[address]", text))


class RedactPrivateData(logging.Filter):
    """Gives the handler a copy without addresses or tokens; other handlers get the original."""

    def filter(self, record: logging.LogRecord) -> logging.LogRecord:
        cleaned = logging.makeLogRecord(vars(record))
        cleaned.msg, cleaned.args = redact(record.getMessage()), None
        if record.exc_info:
            cleaned.exc_text = _exceptions.formatException(record.exc_info)
            cleaned.exc_info = None  # Formatters then print exc_text, cleaned below.
        for name in ("exc_text", "stack_info"):
            if text := getattr(cleaned, name):
                setattr(cleaned, name, redact(text))
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and isinstance(value, str):
                setattr(cleaned, name, redact(value))
        return cleaned


def uvicorn_access_log_on() -> bool:
    """False if uvicorn runs with ``--no-access-log``, which it applies before importing the app.

    That leaves ``uvicorn.access`` with no handler that does not propagate;
    outside uvicorn the logger is untouched and this is True (it logs nothing).
    """
    access = logging.getLogger("uvicorn.access")
    return access.propagate or bool(access.handlers)
