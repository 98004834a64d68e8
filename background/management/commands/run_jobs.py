import asyncio
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from background.lifespan import runner_for_backend


class Command(BaseCommand):
    help = (
        "Run queued jobs without the web server (WSGI deployments, dedicated workers). "
        "Stops on SIGTERM or SIGINT, draining like the ASGI lifespan does."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--backend", default="default", help="TASKS alias to serve.")

    def handle(self, *args: Any, backend: str, **options: Any) -> None:
        runner = runner_for_backend(backend)
        if runner is None:
            raise CommandError(f"TASKS[{backend!r}] is not a background.backend.LedgerBackend.")
        asyncio.run(self._serve(runner))

    async def _serve(self, runner: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await runner.start()
        self.stdout.write(f"Running jobs as {runner.worker_id}; stop with Ctrl-C or SIGTERM.")
        await stop.wait()
        finished, left = await runner.stop()
        self.stdout.write(f"Stopped: {finished} finished while draining, {left} left.")
