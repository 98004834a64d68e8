"""Results of a run: results.json (every figure), results.md (tables, goal ratios), PNG plots."""

import json
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from operator import itemgetter
from pathlib import Path
from typing import Any

PACKAGES = (
    "Django",
    "uvicorn",
    "aiosmtplib",
    "aiosmtpd",
    "httpx",
    "hdrhistogram",
    "django-tasks-db",
    "django-tasks-celery",
    "celery",
    "django-vtasks",
)


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as meminfo:
        memory_kb = int(meminfo.readline().split()[1])
    versions: dict[str, str | None] = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "packages": versions,
    }


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for row in rows:
        if all(row.get(key) == value for key, value in match.items()):
            return row
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def goals(results: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    """The issue's goals as ratios from this run (None where the run lacks a figure)."""
    runs, maxima, drains = results["open_loop"], results["max_throughput"], results["drain"]

    def p(scenario: str, delay: float, fraction: float, key: str) -> float | None:
        row = _find(runs, scenario=scenario, smtp_delay=delay, fraction=fraction, workers=workers)
        return row["latency_ms"][key] if row else None

    def max_rate(scenario: str) -> float | None:
        # wrk's figure where there is one: it leaves the server more of the CPU.
        for client in ("wrk", "python"):
            row = _find(maxima, scenario=scenario, smtp_delay=0.0, workers=workers, client=client)
            if row:
                return float(row["rate"])
        return None

    def inbox_p99(scenario: str) -> float | None:
        row = _find(runs, scenario=scenario, smtp_delay=0.0, fraction=0.5, workers=workers)
        spread = (row or {}).get("mail", {}).get("time_to_inbox_ms")
        return spread["p99"] if spread else None

    def drain_rate(scenario: str) -> float | None:
        row = _find(drains, scenario=scenario, workers=workers, sink="bench")
        return row["mails_per_s"] if row else None

    def rss_ratio() -> float | None:
        row = _find(results.get("memory", []), workers=workers)
        backlogs = sorted((key for key in row or {} if key.isdigit()), key=int)
        if row is None or len(backlogs) < 2:
            return None
        small, large = (row[key]["server"]["rss_peak_mb"] for key in (backlogs[0], backlogs[-1]))
        return _ratio(large, small)

    peers = ("tasks-db", "celery", "vtasks")
    peer_inbox = [v for v in map(inbox_p99, peers) if v is not None]
    peer_drain = [v for v in map(drain_rate, peers) if v is not None]
    rows: list[dict[str, Any]] = []
    for fraction in sorted({row["fraction"] for row in runs}):
        rows.append(
            {
                "goal": f"project p99 at 2 s SMTP / at 0 s ({int(fraction * 100)} % rate)",
                "value": _ratio(
                    p("project", 2.0, fraction, "p99"), p("project", 0.0, fraction, "p99")
                ),
                "target": "<= 1.1",
                "limit": 1.1,
                "lower_is_better": True,
            }
        )
    rows += [
        {
            "goal": "project max throughput / floor-insert",
            "value": _ratio(max_rate("project"), max_rate("floor-insert")),
            "target": ">= 0.85",
            "limit": 0.85,
            "lower_is_better": False,
        },
        {
            "goal": "project p50 / floor-insert p50 (50 % rate, 0 s SMTP)",
            "value": _ratio(p("project", 0.0, 0.5, "p50"), p("floor-insert", 0.0, 0.5, "p50")),
            "target": "<= 1.2",
            "limit": 1.2,
            "lower_is_better": True,
        },
        {
            "goal": "project time-to-inbox p99, ms (50 % rate, 0 s SMTP)",
            "value": inbox_p99("project"),
            "target": "<= 25 and < every peer",
            "limit": min([25.0, *peer_inbox]),
            "lower_is_better": True,
        },
        {
            "goal": "project server RSS, largest / smallest backlog",
            "value": rss_ratio(),
            "target": "<= 1.1",
            "limit": 1.1,
            "lower_is_better": True,
        },
        {
            "goal": "project drain rate / best peer",
            "value": _ratio(drain_rate("project"), max(peer_drain)) if peer_drain else None,
            "target": ">= 1.5",
            "limit": 1.5,
            "lower_is_better": False,
        },
    ]
    for row in rows:
        value, limit = row["value"], float(row.pop("limit"))
        lower = row.pop("lower_is_better")
        row["met"] = None if value is None else (value <= limit if lower else value >= limit)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _errors(statuses: dict[str, int]) -> str:
    bad = {s: n for s, n in statuses.items() if s not in ("201", "2xx/3xx")}
    return ", ".join(f"{s}: {n}" for s, n in sorted(bad.items())) or "0"


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _table(columns: list[Column], rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(get(row)) for _, get in columns) + " |")
    return "\n".join(lines)


def _mail(row: dict[str, Any], key: str) -> Any:
    return (row.get("mail") or {}).get(key)


def _inbox(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: (_mail(r, "time_to_inbox_ms") or {}).get(key)


def _latency(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r["latency_ms"][key]


def _usage(role: str, key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r.get(role, {}).get(key)


WHERE: list[Column] = [
    ("scenario", lambda r: r["scenario"]),
    ("workers", lambda r: r["workers"]),
]
USAGE: list[Column] = [
    ("server CPU %", _usage("server", "cpu_percent")),
    ("server RSS MB", _usage("server", "rss_peak_mb")),
    ("worker CPU %", _usage("worker", "cpu_percent")),
    ("worker RSS MB", _usage("worker", "rss_peak_mb")),
    ("machine busy %", _usage("machine", "busy_percent")),
    ("steal %", _usage("machine", "steal_percent")),
]
MAX_COLUMNS: list[Column] = [
    *WHERE,
    ("client", lambda r: r["client"]),
    ("SMTP s", lambda r: r["smtp_delay"]),
    ("conns", lambda r: r["connections"]),
    ("req/s", lambda r: r["rate"]),
    ("errors", lambda r: _errors(r["statuses"])),
    *USAGE,
    ("client CPU %", lambda r: r["client_cpu_percent"]),
]
OPEN_COLUMNS: list[Column] = [
    *WHERE,
    ("SMTP s", lambda r: r["smtp_delay"]),
    ("rate", lambda r: r["target_rate"]),
    ("achieved", lambda r: r["achieved_rate"]),
    *[(key, _latency(key)) for key in ("p50", "p90", "p99", "p99.9", "max")],
    ("errors", lambda r: _errors(r["statuses"])),
    *[(f"inbox {key}", _inbox(key)) for key in ("p50", "p99", "max")],
    ("not delivered", lambda r: _mail(r, "undelivered")),
    ("dup", lambda r: _mail(r, "duplicates")),
    *USAGE,
    ("client CPU %", lambda r: r["client_cpu_percent"]),
    ("client send lag max ms", lambda r: r["max_send_lag_ms"]),
]
DRAIN_COLUMNS: list[Column] = [
    *WHERE,
    ("sink", lambda r: r["sink"]),
    ("queued", lambda r: r["queued"]),
    ("delivered", lambda r: r["delivered"]),
    ("mails/s first to last", lambda r: r["mails_per_s"]),
    ("mails/s from start", lambda r: r["mails_per_s_from_start"]),
    ("dup", lambda r: r.get("duplicates")),
    *USAGE,
]


def _memory_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for record in results.get("memory", []):
        for key, figures in record.items():
            if key.isdigit():
                rows.append({"workers": record["workers"], "queued": int(key), **figures})
    return rows


MEMORY_COLUMNS: list[Column] = [
    ("workers", lambda r: r["workers"]),
    ("queued", lambda r: r["queued"]),
    ("server RSS MB (peak)", _usage("server", "rss_peak_mb")),
    ("server CPU %", _usage("server", "cpu_percent")),
    ("mails sent while watched", lambda r: r["sent_while_watched"]),
    ("enqueue s", lambda r: r["enqueue_seconds"]),
]
GOAL_COLUMNS: list[Column] = [(key, itemgetter(key)) for key in ("goal", "value", "target", "met")]


def summary(results: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    """One row per scenario: the figures the README quotes."""
    runs, maxima, drains = results["open_loop"], results["max_throughput"], results["drain"]
    rows = []
    for name in dict.fromkeys(r["scenario"] for r in runs if r["workers"] == workers):
        half = {
            delay: _find(runs, scenario=name, workers=workers, smtp_delay=delay, fraction=0.5)
            for delay in (0.0, 2.0)
        }
        fastest = _find(maxima, scenario=name, workers=workers, smtp_delay=0.0, client="wrk")
        fastest = fastest or _find(maxima, scenario=name, workers=workers, smtp_delay=0.0)
        drained = {
            sink: _find(drains, scenario=name, workers=workers, sink=sink)
            for sink in ("bench", "smtp-sink")
        }
        zero, two = half[0.0], half[2.0]
        rows.append(
            {
                "scenario": name,
                "max_rate": fastest["rate"] if fastest else None,
                "p50": zero["latency_ms"]["p50"] if zero else None,
                "p99": zero["latency_ms"]["p99"] if zero else None,
                "p99_2s": two["latency_ms"]["p99"] if two else None,
                "inbox_p50": (_inbox("p50")(zero) if zero else None),
                "inbox_p99": (_inbox("p99")(zero) if zero else None),
                "drain": {k: (v or {}).get("mails_per_s") for k, v in drained.items()},
                "server_cpu": zero["server"]["cpu_percent"] if zero else None,
            }
        )
    return rows


SUMMARY_COLUMNS: list[Column] = [
    ("scenario", itemgetter("scenario")),
    ("max req/s", itemgetter("max_rate")),
    ("p50 ms", itemgetter("p50")),
    ("p99 ms", itemgetter("p99")),
    ("p99 ms, 2 s SMTP", itemgetter("p99_2s")),
    ("inbox p50 ms", itemgetter("inbox_p50")),
    ("inbox p99 ms", itemgetter("inbox_p99")),
    ("server CPU %", itemgetter("server_cpu")),
    ("drain mails/s", lambda r: r["drain"]["bench"]),
    ("drain mails/s, smtp-sink", lambda r: r["drain"]["smtp-sink"]),
]


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    host = meta["machine"]
    parts = [
        f"# Benchmark {meta['started_at']}{' (smoke)' if meta['smoke'] else ''}",
        f"Machine: {host['cpu']}, {host['cpus']} CPUs, {host['memory_gb']} GB, "
        f"Linux {host['kernel']}, Python {host['python']}. Command: `{meta['command']}`",
    ]
    for workers in results["goals"]:
        parts += [
            f"## Summary (uvicorn --workers {workers})",
            "Maximum: closed loop (wrk where it ran). Latency and time-to-inbox: open loop at "
            "50 % of floor-insert's maximum, SMTP sink at 0 s unless marked. Drain: "
            f"{meta['config']['drain_count']:,} queued mails.",
            _table(SUMMARY_COLUMNS, summary(results, int(workers))),
        ]
    parts += [
        "## Maximum throughput (closed loop)",
        _table(MAX_COLUMNS, results["max_throughput"]),
        "## Open loop: latency from the due time (ms) and time-to-inbox (ms)",
        "Time-to-inbox runs from the client receiving its 201 (after the commit) to the "
        "sink's 250, so it is a lower bound of commit-to-250; negative when the mail is sent "
        "before the answer (`inline`). Not delivered = 201s whose mail had not arrived when "
        "the wait ended.",
        _table(OPEN_COLUMNS, results["open_loop"]),
    ]
    if results["drain"]:
        parts += [
            "## Drain: a backlog queued with nothing running, then everything started",
            _table(DRAIN_COLUMNS, results["drain"]),
        ]
    if results.get("memory"):
        parts += [
            "## Memory: the product's server with a small and a large backlog in its ledger",
            f"Each backlog queued with nothing running, then the server (and a 0 s sink) "
            f"ran for {results['memory'][0]['watch_s']} s while its RSS was sampled.",
            _table(MEMORY_COLUMNS, _memory_rows(results)),
        ]
    for workers, rows in results["goals"].items():
        parts += [f"## Goals (uvicorn --workers {workers})", _table(GOAL_COLUMNS, rows)]
    if results["failures"]:
        parts += ["## Failures", "\n".join(f"- {f}" for f in results["failures"])]
    return "\n\n".join(parts) + "\n"


def _at_half_rate(runs: list[dict[str, Any]], workers: int, delay: float) -> list[dict[str, Any]]:
    return [
        r
        for r in runs
        if r["workers"] == workers and r["smtp_delay"] == delay and r["fraction"] == 0.5
    ]


def _draw_latency(ax: Any, rows: list[dict[str, Any]]) -> None:
    keys = ["p50", "p90", "p99", "p99.9", "max"]
    for r in rows:
        ax.plot(
            keys, [max(r["latency_ms"][k], 0.001) for k in keys], marker="o", label=r["scenario"]
        )
    ax.set_yscale("log")
    ax.set_ylabel("latency from due time, ms")
    ax.grid(True, which="both", alpha=0.3)


def _draw_inbox(ax: Any, rows: list[dict[str, Any]]) -> None:
    rows = [r for r in rows if (r.get("mail") or {}).get("time_to_inbox_ms")]
    for offset, key in enumerate(("p50", "p90", "p99")):
        values = [r["mail"]["time_to_inbox_ms"][key] for r in rows]
        positions = [i + (offset - 1) * 0.27 for i in range(len(rows))]
        ax.bar(positions, values, width=0.27, label=key)
    for i, r in enumerate(rows):
        if r["mail"]["undelivered"]:
            note = f"{r['mail']['undelivered']} of {r['mail']['expected']}\nnot delivered"
            ax.annotate(note, (i, 1), ha="center", fontsize=7, color="red")
    ax.set_xticks(range(len(rows)), [r["scenario"] for r in rows])
    ax.set_yscale("symlog", linthresh=1)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.set_ylabel("201 answer to SMTP 250, ms (symlog)")


def plots(results: dict[str, Any], out: Path) -> list[str]:
    """Per uvicorn worker count: latency percentiles and time-to-inbox, one panel per delay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["open_loop"]
    delays = sorted({r["smtp_delay"] for r in runs})
    figures = [
        ("latency", "Signup latency percentiles", _draw_latency),
        ("time-to-inbox", "Time-to-inbox", _draw_inbox),
    ]
    written = []
    for w in sorted({r["workers"] for r in runs}):
        for name, title, draw in figures:
            fig, axes = plt.subplots(1, len(delays), figsize=(6 * len(delays), 4.5), squeeze=False)
            for ax, delay in zip(axes[0], delays, strict=True):
                draw(ax, _at_half_rate(runs, w, delay))
                ax.set_title(f"SMTP delay {delay:g} s, 50 % of floor-insert max")
                ax.legend(fontsize=8)
            fig.suptitle(f"{title} (uvicorn --workers {w})")
            fig.tight_layout()
            fig.savefig(out / f"{name}-w{w}.png", dpi=110)
            plt.close(fig)
            written.append(f"{name}-w{w}.png")
    return written


def write(results: dict[str, Any], out: Path) -> None:
    workers = sorted({r["workers"] for r in results["open_loop"] + results["max_throughput"]})
    results["goals"] = {str(w): goals(results, w) for w in workers}
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
