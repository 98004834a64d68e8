"""The admin's static files, served before Django (asgi_project/static_files.py)."""

from pathlib import Path

import django.contrib.admin
import pytest

from asgi_project.body_limit import Message, Receive, Scope, Send
from asgi_project.static_files import MAX_AGE, with_static_files
from tests.support.asgi_client import ScriptedClient, call

ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"


class Behind:
    """The application behind the static files: records what reaches it, answers 404."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.paths.append(scope["path"])
        start: Message = {"type": "http.response.start", "status": 404, "headers": []}
        await send(start)
        await send({"type": "http.response.body", "body": b""})


async def get(path: str, behind: Behind) -> ScriptedClient:
    return await call(with_static_files(behind), ScriptedClient([b""]), "GET", path, [])


async def test_the_admins_files_are_served_with_their_type_and_an_hour_of_caching() -> None:
    behind = Behind()
    response = await get("/static/admin/css/base.css", behind)
    assert response.status == 200
    assert response.headers[b"content-type"].startswith(b"text/css")
    assert response.headers[b"x-content-type-options"] == b"nosniff"
    assert response.headers[b"cache-control"] == f"max-age={MAX_AGE}, public".encode()
    assert response.content == (ADMIN_STATIC / "admin/css/base.css").read_bytes()
    assert behind.paths == []


@pytest.mark.parametrize(
    "path",
    [
        "/signup/",
        "/static/admin/css/no-such-file.css",
        "/static/admin/../../__init__.py",
        "/static/admin/css/../../../contrib/admin/__init__.py",
        "/static/",
    ],
)
async def test_every_other_path_goes_on_to_django(path: str) -> None:
    behind = Behind()
    response = await get(path, behind)
    assert response.status == 404
    assert behind.paths == [path]
