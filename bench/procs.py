"""The processes a scenario runs (SMTP sink, uvicorn, peer worker) and their /proc figures."""

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Child:
    """A subprocess in its own process group, logging to a file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                break
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name} not ready ({text!r} not logged); log:\n{self.log()[-3000:]}"
        )

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL to its own process group if it lingers."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # Leftover children of ours.
        self.process.wait(timeout=10)


class Sink(Child):
    """``bench.sink`` in its own process; arrivals are read back from its log file."""

    def __init__(self, directory: Path, delay: float, failure_rate: float = 0.0) -> None:
        self.port = free_port()
        self.arrivals_path = directory / f"arrivals-{self.port}.log"
        self.arrivals_path.touch()
        command = [PYTHON, "-m", "bench.sink", "--port", str(self.port)]
        command += ["--delay", str(delay), "--failure-rate", str(failure_rate)]
        command += ["--log", str(self.arrivals_path)]
        super().__init__("sink", command, dict(os.environ), directory / f"sink-{self.port}.log")
        self.wait_for_log("ready", timeout=20)
        self._offset = 0
        self.first: dict[str, float] = {}  # recipient -> first arrival (unix time)
        self.received: Counter[str] = Counter()

    def poll(self) -> int:
        """Read new arrivals; returns the number of distinct recipients so far."""
        with self.arrivals_path.open() as log:
            log.seek(self._offset)
            chunk = log.read()
        complete, _, _ = chunk.rpartition("\n")
        if complete:
            self._offset += len(complete) + 1
            for line in complete.split("\n"):
                stamp, _, recipient = line.partition(" ")
                self.received[recipient] += 1
                self.first.setdefault(recipient, float(stamp))
        return len(self.first)

    async def _wait_until(self, arrived: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if arrived():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)

    async def wait_for_count(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` distinct recipients arrived; False on timeout."""
        return await self._wait_until(lambda: len(self.first) >= count, timeout)

    async def wait_for(self, recipients: set[str], timeout: float) -> bool:
        """Wait until every one of ``recipients`` arrived; False on timeout."""
        return await self._wait_until(lambda: recipients.issubset(self.first), timeout)


class PostfixSink(Child):
    """Postfix's ``smtp-sink`` (C, no delay): raw delivery speed; it only counts mails."""

    COUNTER = re.compile(rb"mesg=(\d+)")

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        command = ["smtp-sink", "-c", "-u", "nobody", f"127.0.0.1:{self.port}", "1024"]
        super().__init__(
            "smtp-sink", command, dict(os.environ), directory / f"smtp-sink-{self.port}.log"
        )
        deadline = time.monotonic() + 20
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                break
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"smtp-sink did not start; log:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def count(self) -> int:
        """Mails accepted so far (its running counter, the last one it printed)."""
        counters = self.COUNTER.findall(self.log_path.read_bytes()[-200:])
        return int(counters[-1]) if counters else 0


class Server(Child):
    def __init__(self, env: dict[str, str], log: Path, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [PYTHON, "-m", "uvicorn", "bench.asgi:application", "--host", "127.0.0.1"]
        command += ["--port", str(self.port), "--workers", str(workers), "--lifespan", "on"]
        command += ["--no-access-log", "--log-level", "warning"]
        super().__init__("uvicorn", command, env, log)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"uvicorn did not start; log:\n{self.log()[-3000:]}")


# -- CPU and memory from /proc ---------------------------------------------


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
    return parents


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    parents = _parents()
    tree, frontier = [root], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        tree += children
        frontier = children
    return tree


def cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def machine_ticks() -> list[int]:
    """The first line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    with open("/proc/stat") as stat:
        return [int(x) for x in stat.readline().split()[1:]]


@dataclass
class Usage:
    """CPU and RSS of some process trees, sampled while a phase runs."""

    roots: dict[str, int]  # role ("server", "worker") -> root pid
    interval: float = 0.25
    _cpu: dict[str, dict[int, float]] = field(default_factory=dict)
    _peak: dict[str, float] = field(default_factory=dict)
    _last: dict[str, float] = field(default_factory=dict)
    _start_cpu: dict[str, dict[int, float]] = field(default_factory=dict)
    _start_ticks: list[int] = field(default_factory=list)
    _began: float = 0.0
    _task: asyncio.Task[None] | None = None

    def _sample(self) -> None:
        for role, root in self.roots.items():
            tree = process_tree(root)
            seen = self._cpu.setdefault(role, {})
            for pid in tree:
                seen[pid] = cpu_seconds(pid) or seen.get(pid, 0.0)
            rss = sum(rss_mb(pid) for pid in tree)
            self._last[role] = rss
            self._peak[role] = max(self._peak.get(role, 0.0), rss)

    def start(self) -> "Usage":
        self._began = time.monotonic()
        self._sample()
        self._start_cpu = {role: dict(pids) for role, pids in self._cpu.items()}
        self._start_ticks = machine_ticks()

        async def sampler() -> None:
            while True:
                await asyncio.sleep(self.interval)
                self._sample()

        self._task = asyncio.create_task(sampler())
        return self

    async def stop(self) -> dict[str, dict[str, float]]:
        """Per role: CPU % of one core, peak and last RSS; and the machine's busy and steal %."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._sample()
        elapsed = time.monotonic() - self._began
        report = {}
        for role, pids in self._cpu.items():
            start = self._start_cpu.get(role, {})
            used = sum(now - start.get(pid, 0.0) for pid, now in pids.items())
            report[role] = {
                "cpu_percent": round(100 * used / elapsed, 1) if elapsed else 0.0,
                "rss_peak_mb": round(self._peak.get(role, 0.0), 1),
                "rss_end_mb": round(self._last.get(role, 0.0), 1),
            }
        # The whole machine (all CPUs): what else ran, and what the hypervisor took.
        ticks = [b - a for a, b in zip(self._start_ticks, machine_ticks(), strict=False)]
        total = sum(ticks[:8]) or 1
        report["machine"] = {
            "busy_percent": round(100 * (total - ticks[3] - ticks[4]) / total, 1),
            "steal_percent": round(100 * ticks[7] / total, 1),
        }
        return report
