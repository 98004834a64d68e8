"""The one middleware: refuse what no view should see, add security headers, no thread hop.

Django's built-in middleware classes run their hooks through sync_to_async
under ASGI: two thread hops each, per request. Measured on this service that
was most of a signup's latency, so the project keeps only what it needs:
these checks and headers here, CSRF in the views that post forms, sessions
only on the set-password pages (see urls.py). TLS redirects and HSTS belong
to the proxy. The request body is already bounded (asgi_project/body_limit.py).
"""

import logging
from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.core.exceptions import (
    BadRequest,
    DisallowedHost,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render
from django.utils.decorators import sync_and_async_middleware
from django.utils.log import log_response

from background.database import first_line

HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

FORM_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data"}
# What reading a form can raise on client input: a charset other than UTF-8
# (BadRequest), a broken multipart body, too many fields (SuspiciousOperation).
UNREADABLE_FORM = (BadRequest, SuspiciousOperation, MultiPartParserError)

# What a view raises when the database is not there (refused, dropped, locked):
# the pages that use the ORM directly (set-password, password reset, admin).
# /signup/ answers its own 503 (signup/views.py).
DATABASE_DOWN = (OperationalError, InterfaceError)
# What every page answers while the database is away, /signup/ included. The
# wait is long enough for a dropped connection or a failover, short enough for
# a person to retry.
UNAVAILABLE_DETAIL = "Service unavailable; try again shortly."
UNAVAILABLE_RETRY_AFTER = 5

host_logger = logging.getLogger("django.security.DisallowedHost")
outage_logger = logging.getLogger(__name__)
form_logger = logging.getLogger("django.request")
# A client chooses the Host and the path: a log line quotes at most this much of either.
LOGGED_CHARS = 200


def _shortened(text: str) -> str:
    return text if len(text) <= LOGGED_CHARS else text[:LOGGED_CHARS] + "..."


def _refuse_unknown_host(request: HttpRequest) -> HttpResponse | None:
    """400 for a Host not in ALLOWED_HOSTS, as Django's CommonMiddleware would."""
    try:
        request.get_host()
    except DisallowedHost as error:
        response = JsonResponse({"detail": "Invalid Host header."}, status=400)
        log_response(
            "%s", _shortened(str(error)), response=response, request=request, logger=host_logger
        )
        return response
    return None


def _refuse_unreadable_form(request: HttpRequest) -> HttpResponse | None:
    """A 4xx page for a form post Django cannot parse, before any view or error page tries.

    Django's CSRF check, and its own error pages (through requires_csrf_token),
    read request.POST: an unreadable form made the 400 page fail too, and the
    client got a 500 and the log ~10 KB of traceback.
    """
    if request.method != "POST" or request.content_type not in FORM_TYPES:
        return None
    try:
        # The raw bytes first: a multipart form parsed from the stream would
        # leave request.body unreadable for the views that want it.
        request.body  # noqa: B018
        request.POST  # noqa: B018
    except UNREADABLE_FORM as error:
        status = 413 if isinstance(error, RequestDataTooBig) else 400
        response = render(
            request, "signup/problem.html", {"detail": "Malformed form data."}, status=status
        )
        log_response(
            "Unreadable form (%s): %s",
            type(error).__name__,
            _shortened(request.path),
            response=response,
            request=request,
            logger=form_logger,
        )
        return response
    return None


def _refusal(request: HttpRequest) -> HttpResponse | None:
    refusal = _refuse_unknown_host(request)
    return refusal if refusal is not None else _refuse_unreadable_form(request)


def _database_down(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """503 with Retry-After, not a 500, when a view found no database; None for anything else."""
    if not isinstance(exception, DATABASE_DOWN):
        return None
    outage_logger.warning(
        "%s answered 503: database unavailable (%s)",
        _shortened(request.path),
        first_line(exception),
    )
    response = render(request, "signup/problem.html", {"detail": UNAVAILABLE_DETAIL}, status=503)
    response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    # Said once above, with the reason; Django would add an ERROR without one.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def _add_headers(response: HttpResponseBase) -> HttpResponseBase:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@sync_and_async_middleware
def checks_and_security_headers(
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            refusal = _refusal(request)
            if refusal is not None:
                return _add_headers(refusal)
            return _add_headers(await get_response(request))  # type: ignore[misc]

        # Django calls a middleware's process_exception only when a view raised.
        middleware.process_exception = _database_down  # type: ignore[attr-defined]
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        refusal = _refusal(request)
        if refusal is not None:
            return _add_headers(refusal)
        return _add_headers(get_response(request))  # type: ignore[arg-type]

    sync_middleware.process_exception = _database_down  # type: ignore[attr-defined]
    return sync_middleware
