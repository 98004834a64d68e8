"""Open-loop load: request i is due at t0 + i/rate and timed from that moment.

A server that stalls cannot slow the generator down and hide its stall (no
coordinated omission): requests keep coming due, and each one's latency
includes the time it waited for its turn.
"""

import asyncio
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from hdrh.histogram import HdrHistogram

PERCENTILES = (50, 90, 99, 99.9)


@dataclass
class LoadResult:
    target_rate: float
    sent: int = 0
    seconds: float = 0.0
    statuses: Counter[str] = field(default_factory=Counter)
    client_cpu_seconds: float = 0.0
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))

    def summary(self) -> dict[str, Any]:
        ms = {f"p{p}": self.histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
        return {
            "target_rate": self.target_rate,
            "achieved_rate": round(self.sent / self.seconds, 1) if self.seconds else 0,
            "requests": self.sent,
            "statuses": dict(self.statuses),
            "latency_ms": ms | {"max": self.histogram.get_max_value() / 1000},
            "client_cpu_percent": round(100 * self.client_cpu_seconds / self.seconds, 1)
            if self.seconds
            else 0,
        }


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def open_loop(
    url: str, rate: float, seconds: float, body: Callable[[int], dict[str, Any]]
) -> LoadResult:
    result = LoadResult(target_rate=rate)
    total = int(rate * seconds)
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        loop = asyncio.get_running_loop()
        cpu_before = _cpu_seconds()
        start = loop.time()

        async def request(i: int, due: float) -> None:
            try:
                response = await client.post(url, json=body(i))
                result.statuses[str(response.status_code)] += 1
            except httpx.HTTPError as error:
                result.statuses[type(error).__name__] += 1
            result.histogram.record_value(max(1, int((loop.time() - due) * 1_000_000)))

        pending = set()
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(request(i, due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        result.seconds = loop.time() - start
        result.sent = total
        result.client_cpu_seconds = _cpu_seconds() - cpu_before
    return result


async def closed_loop(
    url: str, connections: int, seconds: float, body: Callable[[int], dict[str, Any]]
) -> float:
    """Maximum throughput: ``connections`` clients each send as fast as answers come."""
    counter = iter(range(10**9))
    done = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=60) as client:

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                response = await client.post(url, json=body(next(counter)))
                if response.status_code < 400:
                    done += 1

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return done / (time.monotonic() - began)
