"""ASGI, before Django: the admin's CSS, JavaScript and icons, served by ServeStatic.

Django serves no static files without DEBUG, and uvicorn serves none. The
only static files are those the installed apps ship (the admin's, 130 files),
so they are found where the staticfiles finders find them, once at startup:
no ``collectstatic`` step, and the same files in development, tests and
production. Any other path costs one dictionary lookup before Django (0.5 µs
a request, measured; a signup takes ~6 ms), and no middleware.
"""

from wsgiref.headers import Headers

from django.conf import settings
from django.contrib.staticfiles import finders
from servestatic import ServeStaticASGI

from asgi_project.body_limit import ASGIApp

# Seconds browsers may keep a file without asking again. The names carry no
# hash (no manifest storage), so a Django upgrade's new admin files must
# reach browsers within this: an hour.
MAX_AGE = 3600


def _url(storage_prefix: str | None, path: str) -> str:
    parts = [settings.STATIC_URL.strip("/"), (storage_prefix or "").strip("/"), path]
    return "/" + "/".join(part.replace("\\", "/") for part in parts if part)


def _nosniff(headers: Headers, path: str, url: str) -> None:
    headers["X-Content-Type-Options"] = "nosniff"


def with_static_files(app: ASGIApp) -> ASGIApp:
    """Serve the static files at STATIC_URL; pass every other request to ``app``."""
    server = ServeStaticASGI(app, max_age=MAX_AGE, add_headers_function=_nosniff)
    for finder in finders.get_finders():
        for path, storage in finder.list(None):
            url = _url(getattr(storage, "prefix", None), path)
            if url not in server.files:  # The first finder's file wins, as in collectstatic.
                server.add_file_to_dictionary(url, storage.path(path), root=storage.location)
    return server
