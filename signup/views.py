"""HTTP side of signing up: parse and validate the request, answer without waiting for mail.

The transaction the answer depends on is ``signup.services.register_address``.
"""

import json
import logging
import time
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_http_methods

from asgi_project import metrics
from asgi_project.middleware import FORM_TYPES, UNAVAILABLE_DETAIL, UNAVAILABLE_RETRY_AFTER
from background.database import DatabaseUnavailable, request_threads

from .services import register_address
from .validation import normalise_email

logger = logging.getLogger(__name__)

JSON_TYPE = "application/json"
REGISTERED = "User registered"


class _OutageLog:
    """One warning per interval while signups fail for want of a database, not one per request."""

    interval = 10.0

    def __init__(self) -> None:
        self._logged_at = -self.interval
        self._unlogged = 0

    def note(self, error: DatabaseUnavailable) -> None:
        now = time.monotonic()
        if now - self._logged_at < self.interval:
            self._unlogged += 1
            return
        logger.warning(
            "Signups answer 503: database unavailable (%s); %d more since the last warning",
            error,
            self._unlogged,
        )
        self._logged_at, self._unlogged = now, 0


_outage_log = _OutageLog()


class BadRequest(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _check_csrf(request: HttpRequest) -> HttpResponse | None:
    # Only browsers post forms, so only forms need CSRF protection; a
    # cross-site page cannot send application/json without a CORS preflight.
    # It reads the form, which the middleware has already parsed (or refused).
    return CsrfViewMiddleware(lambda request: HttpResponse()).process_view(request, None, (), {})


def _read_body(request: HttpRequest) -> bytes:
    # Read first: the CSRF check and form parsing then work from these bytes.
    try:
        body = request.body
    except RequestDataTooBig:
        raise BadRequest(413, "Request body too large.") from None
    if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:  # Chunked bodies carry no length.
        raise BadRequest(413, "Request body too large.")
    return body


def _read_email(request: HttpRequest, body: bytes, is_form: bool) -> object:
    if is_form:
        return request.POST.get("email")  # Parsed by the middleware, which refuses bad forms.
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(400, "Malformed JSON.") from None
    if not isinstance(data, dict):
        raise BadRequest(400, "Expected a JSON object.")
    return data.get("email")


def _answer(
    request: HttpRequest, is_form: bool, status: int, detail: str, **extra: Any
) -> HttpResponse:
    if not is_form:
        return JsonResponse({"detail": detail, **extra}, status=status)
    if status == 201:
        return render(request, "signup/registered.html", status=status)
    if status == 400 and "errors" in extra:
        return render(
            request,
            "signup/form.html",
            {"errors": extra["errors"], "email": request.POST.get("email", "")},
            status=status,
        )
    return render(request, "signup/problem.html", {"detail": detail}, status=status)


@ensure_csrf_cookie
async def signup_form(request: HttpRequest) -> HttpResponse:
    return render(request, "signup/form.html", {"errors": {}, "email": ""})


@csrf_exempt  # Checked by _check_csrf for form posts only.
@require_http_methods(["GET", "HEAD", "POST"])
async def register_user(request: HttpRequest) -> HttpResponse:
    if request.method in ("GET", "HEAD"):  # The server sends no body for HEAD.
        return await signup_form(request)
    # Counted for /metrics: 6-10 µs a signup, measured (README, "Metrics").
    started = time.perf_counter()
    response = await _register(request)
    metrics.SIGNUP_SECONDS.observe(time.perf_counter() - started)
    metrics.SIGNUPS.labels(response.status_code).inc()
    return response


async def _register(request: HttpRequest) -> HttpResponse:
    is_form = request.content_type in FORM_TYPES
    if not is_form and request.content_type != JSON_TYPE:
        return _answer(request, False, 415, "Send application/json or a form.")
    try:
        body = _read_body(request)
        if is_form and (rejection := _check_csrf(request)) is not None:
            return rejection
        raw_email = _read_email(request, body, is_form)
    except BadRequest as problem:
        return _answer(request, is_form, problem.status, problem.detail)

    email, problems = normalise_email(raw_email)
    if problems:
        return _answer(request, is_form, 400, "Invalid input.", errors={"email": problems})

    try:
        retry_after = await request_threads.run(
            register_address, email, request.META.get("REMOTE_ADDR", "")
        )
    except DatabaseUnavailable as error:
        _outage_log.note(error)
        response = _answer(request, is_form, 503, UNAVAILABLE_DETAIL)
        response["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        # Django would log every 503 as an ERROR with no reason; _outage_log
        # has said why, once per interval.
        response._has_been_logged = True  # type: ignore[attr-defined]
        return response
    if retry_after is not None:
        response = _answer(request, is_form, 429, "Too many signups; try again later.")
        response["Retry-After"] = str(int(retry_after))
        return response
    return _answer(request, is_form, 201, REGISTERED)
