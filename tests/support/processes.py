"""A fresh interpreter for what is read once per process: settings, logging, startup checks."""

import os
import subprocess
import sys
from typing import Protocol

from tests.support.service import ROOT


class FreshProcess(Protocol):
    def __call__(
        self, args: list[str], env: dict[str, str], unset: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]: ...


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
