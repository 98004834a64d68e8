"""Settings read from the environment: production values without a safe default stop startup."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from asgi_project.settings import site_url
from tests.service import ROOT


def in_fresh_process(
    args: list[str], env: dict[str, str], unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` with the settings module read afresh from ``env``."""
    full_env = {**os.environ, "SECRET_KEY": "settings-test", **env}
    for name in ("DJANGO_SETTINGS_MODULE", *unset):
        full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )


def test_site_url_is_required_without_debug() -> None:
    check = ["manage.py", "check"]
    missing = in_fresh_process(check, {"DEBUG": "0"}, unset=("SITE_URL",))
    assert missing.returncode != 0
    assert missing.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: SITE_URL is required unless DEBUG=1."
    )
    given = in_fresh_process(check, {"DEBUG": "0", "SITE_URL": "https://signup.example.com"})
    assert given.returncode == 0, given.stderr


def test_site_url_has_a_development_default_with_debug() -> None:
    show = ["-c", "from asgi_project import settings; print(settings.SITE_URL)"]
    result = in_fresh_process(show, {"DEBUG": "1"}, unset=("SITE_URL",))
    assert result.stdout.strip() == "http://127.0.0.1:8000", result.stderr


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://signup.example.com", "https://signup.example.com"),
        ("https://signup.example.com/", "https://signup.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("https://example.com/accounts/", "https://example.com/accounts"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
    ],
)
def test_site_url_accepts_a_base_with_an_optional_prefix(raw: str, expected: str) -> None:
    assert site_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "signup.example.com",  # No scheme.
        "ftp://example.com",
        "https://",
        "https:///prefix",
        "https://user:secret@example.com",
        "https://example.com/?next=x",
        "https://example.com/#top",
        "https://example.com:port",
        "https://example.com:70000",
        " https://example.com",
        "https://exa mple.com",
    ],
)
def test_site_url_refuses_what_would_make_broken_links(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SITE_URL must be an http"):
        site_url(raw)
