from asgiref.sync import sync_to_async
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from . import ledger


@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """Database reachability and job counts by status; 503 if the database is down."""
    try:
        jobs = await sync_to_async(ledger.count_jobs_by_status)()
    except DatabaseError:
        return JsonResponse({"database": "unreachable"}, status=503)
    return JsonResponse({"database": "ok", "jobs": jobs})
