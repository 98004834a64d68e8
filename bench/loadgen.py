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

# Called once per request with (index, status code or error name, wall-clock
# time it was due, wall-clock time its answer arrived).
OnResponse = Callable[[int, str, float, float], None]


@dataclass
class LoadResult:
    target_rate: float
    sent: int = 0
    seconds: float = 0.0  # until the last answer
    send_seconds: float = 0.0  # until the last request was sent
    max_send_lag: float = 0.0  # how late the client sent a request (a saturated client)
    stopped_early: bool = False  # ``stop`` said the outcome was decided before the end
    statuses: Counter[str] = field(default_factory=Counter)
    client_cpu_seconds: float = 0.0
    histogram: HdrHistogram = field(default_factory=lambda: HdrHistogram(1, 120_000_000, 3))

    def summary(self) -> dict[str, Any]:
        ms = {f"p{p}": self.histogram.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
        return {
            "target_rate": self.target_rate,
            "achieved_rate": round(self.sent / self.send_seconds, 1) if self.send_seconds else 0,
            "answered_rate": round(self.sent / self.seconds, 1) if self.seconds else 0,
            "requests": self.sent,
            "seconds": round(self.seconds, 3),
            "stopped_early": self.stopped_early,
            "max_send_lag_ms": round(self.max_send_lag * 1000, 2),
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
    url: str,
    rate: float,
    seconds: float,
    body: Callable[[int], dict[str, Any]],
    *,
    on_response: OnResponse | None = None,
    stop: Callable[[], bool] | None = None,
    timeout: float = 60.0,
) -> LoadResult:
    """Post ``rate`` requests a second for ``seconds``.

    ``stop``, asked before each request, ends the load early when it returns
    True (the answers so far already decide the outcome); the requests in
    flight are still awaited.
    """
    result = LoadResult(target_rate=rate)
    total = max(1, int(rate * seconds))
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        loop = asyncio.get_running_loop()
        cpu_before = _cpu_seconds()
        start = loop.time()
        wall_offset = time.time() - start  # loop time -> wall-clock time

        async def request(i: int, due: float) -> None:
            result.max_send_lag = max(result.max_send_lag, loop.time() - due)
            try:
                # httpx's timeout is per phase (pool, connect, read): bound the whole.
                async with asyncio.timeout(timeout):
                    response = await client.post(url, json=body(i))
                status = str(response.status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            except TimeoutError:
                status = "Timeout"
            done = loop.time()
            result.statuses[status] += 1
            result.histogram.record_value(max(1, int((done - due) * 1_000_000)))
            if on_response is not None:
                on_response(i, status, due + wall_offset, done + wall_offset)

        pending = set()
        for i in range(total):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if stop is not None and stop():
                result.stopped_early = True
                break
            task = asyncio.create_task(request(i, due))
            result.sent += 1
            pending.add(task)
            task.add_done_callback(pending.discard)
        # The last request sent was due at (sent - 1) / rate: count its whole
        # interval (a stopped load is already at the next one's due time).
        result.send_seconds = loop.time() - start + (0 if result.stopped_early else 1 / rate)
        await asyncio.gather(*pending)
        result.seconds = loop.time() - start
        result.client_cpu_seconds = _cpu_seconds() - cpu_before
    return result


@dataclass
class ClosedLoopResult:
    connections: int
    seconds: float
    answered: int
    statuses: Counter[str]
    client_cpu_seconds: float

    @property
    def rate(self) -> float:
        """Successful (< 400) answers per second."""
        ok = sum(n for status, n in self.statuses.items() if status.isdigit() and int(status) < 400)
        return ok / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "seconds": round(self.seconds, 3),
            "requests": self.answered,
            "rate": round(self.rate, 1),
            "statuses": dict(self.statuses),
            "client_cpu_percent": round(100 * self.client_cpu_seconds / self.seconds, 1)
            if self.seconds
            else 0,
        }


async def closed_loop(
    url: str,
    connections: int,
    seconds: float,
    body: Callable[[int], dict[str, Any]],
    *,
    timeout: float = 60.0,
) -> ClosedLoopResult:
    """Maximum throughput: ``connections`` clients each send as fast as answers come."""
    counter = iter(range(10**9))
    statuses: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def worker() -> None:
            while time.monotonic() < deadline:
                try:
                    response = await client.post(url, json=body(next(counter)))
                    statuses[str(response.status_code)] += 1
                except httpx.HTTPError as error:
                    statuses[type(error).__name__] += 1

        cpu_before = _cpu_seconds()
        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.monotonic() - began
    return ClosedLoopResult(
        connections=connections,
        seconds=elapsed,
        answered=sum(statuses.values()),
        statuses=statuses,
        client_cpu_seconds=_cpu_seconds() - cpu_before,
    )
