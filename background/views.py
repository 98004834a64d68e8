"""The operator's endpoints: ``/healthz`` (can this process take signups and deliver
their mail?) and ``/metrics`` (Prometheus)."""

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe

from asgi_project import metrics as service_metrics

from . import ledger
from .database import DatabaseUnavailable, request_threads
from .runner import active_runner

# A runner that has not reached the ledger for this many poll intervals (or
# twice DATABASE_TIMEOUT, if longer) is stalled: a sweep is due every
# interval, and a few may fail in a row while a dropped connection is replaced.
STALLED_AFTER_POLLS = 5


def _carries_token(request: HttpRequest, token: str) -> bool:
    """Whether the request carries ``token`` (non-empty) as ``Authorization: Bearer <token>``."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.encode(), token.encode())
    )


@require_safe  # GET and HEAD
async def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the runner sweeps; 503 otherwise.

    Job counts by status only for an operator (``HEALTHZ_TOKEN``): they tell
    the public how busy the service is.
    """
    body: dict[str, object] = {}
    operator = _carries_token(request, settings.HEALTHZ_TOKEN)
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


@require_safe
async def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus metrics for a scraper holding ``METRICS_TOKEN``.

    Not found without the setting: nothing is exposed unless an operator
    chose a token. 401 for a missing or wrong token, so a misconfigured
    scraper says why. While the database is unavailable the scrape still
    answers, with ``background_ledger_up 0`` and no ledger figures.
    """
    if not settings.METRICS_TOKEN:
        raise Http404
    if not _carries_token(request, settings.METRICS_TOKEN):
        response = JsonResponse({"detail": "Bearer token required."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        backlog = await request_threads.run(ledger.backlog)
    except DatabaseUnavailable:
        backlog = None
    body, content_type = service_metrics.exposition(backlog, request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)
