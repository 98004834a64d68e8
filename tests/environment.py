"""Test-run environment: a plugin (-p), so it runs before pytest-django imports the settings."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_COOKIES", "0")
os.environ.setdefault("SITE_URL", "http://127.0.0.1:8000")
