"""The admin's URLs, each view behind the middleware that only the admin needs.

The service runs one middleware for every request (asgi_project/middleware.py)
so signups stay fast. The admin needs sessions, a logged-in user and
messages: their middleware is applied here to each of the admin's views, as
the set-password pages get their session (urls.py), and to nothing else.
Every admin view also checks CSRF itself (``AdminSite.admin_view`` and the
login view are ``csrf_protect``-ed).
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import admin
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpRequest, HttpResponseBadRequest, HttpResponseBase
from django.urls import URLPattern, URLResolver
from django.utils.decorators import decorator_from_middleware

View = Callable[..., HttpResponseBase]

with_session = decorator_from_middleware(SessionMiddleware)
with_user = decorator_from_middleware(AuthenticationMiddleware)
with_messages = decorator_from_middleware(MessageMiddleware)

# The service's pages allow no stylesheet or script files; the admin's are
# its own (asgi_project/static_files.py), and its templates set a few inline
# style attributes (e.g. the hidden action counter).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; script-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def _has_nul(request: HttpRequest) -> bool:
    texts = [request.path]
    for data in (request.GET, request.POST):
        for name, values in data.lists():
            texts += [name, *values]
    return any("\x00" in text for text in texts)


def _with_admin_policy(view: View) -> View:
    @wraps(view)
    def admin_view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # PostgreSQL refuses NUL in text, and the admin puts ids from the path
        # and the form into queries as they come: a 500 otherwise.
        if _has_nul(request):
            response: HttpResponseBase = HttpResponseBadRequest(
                "Null characters are not allowed.", content_type="text/plain"
            )
        else:
            response = view(request, *args, **kwargs)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        return response

    return admin_view


def _with_admin_middleware(view: View) -> View:
    # The order of settings.MIDDLEWARE in a default project: the session
    # first, the user from it, then messages (stored in the session too).
    return with_session(with_user(with_messages(_with_admin_policy(view))))  # type: ignore[no-any-return]


def _wrapped(
    patterns: list[URLPattern | URLResolver],
) -> list[URLPattern | URLResolver]:
    wrapped: list[URLPattern | URLResolver] = []
    for entry in patterns:
        if isinstance(entry, URLResolver):
            wrapped.append(
                URLResolver(
                    entry.pattern,
                    _wrapped(entry.url_patterns),
                    entry.default_kwargs,
                    entry.app_name,
                    entry.namespace,
                )
            )
        else:
            wrapped.append(
                URLPattern(
                    entry.pattern,
                    _with_admin_middleware(entry.callback),
                    entry.default_args,
                    entry.name,
                )
            )
    return wrapped


admin.site.site_header = admin.site.site_title = "Signup service"
admin.site.index_title = "Operations"
# The job list is wide (eight columns and the filters): no sidebar beside it.
admin.site.enable_nav_sidebar = False


def admin_urls() -> tuple[list[URLPattern | URLResolver], str, str]:
    """``admin.site.urls`` with the admin's middleware on every view: ``path("admin/", ...)``."""
    patterns, app_name, namespace = admin.site.urls
    return _wrapped(patterns), app_name, namespace
