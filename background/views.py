"""``/healthz``: whether this process can take signups and deliver their mail."""

import hmac

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from . import ledger
from .database import DatabaseUnavailable, request_threads
from .runner import active_runner

# A runner that has not reached the ledger for this many poll intervals (or
# twice DATABASE_TIMEOUT, if longer) is stalled: a sweep is due every
# interval, and a few may fail in a row while a dropped connection is replaced.
STALLED_AFTER_POLLS = 5


def _is_operator(request: HttpRequest) -> bool:
    """Whether the request carries ``HEALTHZ_TOKEN`` as a bearer token."""
    token = settings.HEALTHZ_TOKEN
    given = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


@require_safe  # GET and HEAD
async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the runner sweeps; 503 otherwise.

    Job counts by status only for an operator (``HEALTHZ_TOKEN``): they tell
    the public how busy the service is.
    """
    body: dict[str, object] = {}
    operator = _is_operator(request)
    try:
        # Counting every job is for operators; the public gets a one-row read.
        if operator:
            body["jobs"] = await request_threads.run(ledger.count_jobs_by_status)
        else:
            await request_threads.run(ledger.check_ledger)
        body["database"] = "ok"
    except DatabaseUnavailable:
        body["database"] = "unavailable"
    runner = active_runner()
    if runner is not None:
        poll = runner.config.poll_interval
        limit = max(STALLED_AFTER_POLLS * poll, 2 * settings.DATABASE_TIMEOUT)
        body["runner"] = "stalled" if runner.seconds_since_sweep() > limit else "ok"
    healthy = body["database"] == "ok" and body.get("runner", "ok") == "ok"
    return JsonResponse(body, status=200 if healthy else 503)
