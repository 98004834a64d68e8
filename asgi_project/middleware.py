"""The one middleware: security headers, without a thread hop.

Django's built-in middleware classes run their hooks through sync_to_async
under ASGI: two thread hops each, per request. Measured on this service that
was most of a signup's latency, so the project keeps only what it needs:
these headers here, CSRF in the views that post forms, sessions only on the
set-password pages (see urls.py). TLS redirects and HSTS belong to the proxy.
"""

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware

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


def _add_headers(response: HttpResponseBase) -> HttpResponseBase:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


@sync_and_async_middleware
def security_headers(
    get_response: Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]],
) -> Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]:
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            return _add_headers(await get_response(request))  # type: ignore[misc]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponseBase:
        return _add_headers(get_response(request))  # type: ignore[arg-type]

    return sync_middleware
