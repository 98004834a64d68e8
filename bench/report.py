"""Results of a run: results.json (every figure), results.md (tables, goals met or not), plots."""

import json
import os
import platform
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from .goals import evaluate, find_row

PACKAGES = (
    "Django",
    "psycopg",
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


Row = dict[str, Any]
Column = tuple[str, Callable[[Row], Any]]


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _errors(statuses: dict[str, int]) -> str:
    bad = {s: n for s, n in statuses.items() if s not in ("201", "2xx/3xx")}
    return ", ".join(f"{s}: {n}" for s, n in sorted(bad.items())) or "0"


def _table(columns: list[Column], rows: list[Row]) -> str:
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(get(row)) for _, get in columns) + " |")
    return "\n".join(lines)


def _get(*keys: str) -> Callable[[Row], Any]:
    """``row[k1][k2]...``, None where a level is missing."""

    def get(row: Row) -> Any:
        value: Any = row
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return get


def _inbox(key: str) -> Callable[[Row], Any]:
    return _get("mail", "time_to_inbox_ms", key)


WHERE: list[Column] = [("scenario", _get("scenario")), ("shape", _get("shape"))]
USAGE: list[Column] = [
    ("server CPU %", _get("server", "cpu_percent")),
    ("server RSS MB", _get("server", "rss_peak_mb")),
    ("worker CPU %", _get("worker", "cpu_percent")),
    ("machine busy %", _get("machine", "busy_percent")),
    ("steal %", _get("machine", "steal_percent")),
]
STEP: list[Column] = [
    ("achieved", _get("achieved_rate")),
    *[(key, _get("latency_ms", key)) for key in ("p50", "p90", "p99", "p99.9", "max")],
    ("errors", lambda r: _errors(r["statuses"])),
    *[(f"inbox {key}", _inbox(key)) for key in ("p50", "p99", "max")],
    ("not delivered", _get("mail", "undelivered")),
    ("owed at end", _get("mail", "backlog_at_end")),
    ("dup", _get("mail", "duplicates")),
    *USAGE,
    ("client CPU %", _get("client_cpu_percent")),
    ("client send lag max ms", _get("max_send_lag_ms")),
]
SUSTAINED_COLUMNS: list[Column] = [
    *WHERE,
    ("sustained req/s", _get("rate")),
    ("p50 ms", _get("passing", "latency_ms", "p50")),
    ("p99 ms", _get("passing", "latency_ms", "p99")),
    ("inbox p99 ms", _get("passing", "mail", "time_to_inbox_ms", "p99")),
    ("owed at end", _get("passing", "mail", "backlog_at_end")),
    ("server CPU %", _get("passing", "server", "cpu_percent")),
    ("machine busy %", _get("passing", "machine", "busy_percent")),
    ("next step req/s", _get("failed_rate")),
    ("why the next step failed", lambda r: "; ".join(_get("failing", "misses")(r) or []) or None),
]
STEPS_COLUMNS: list[Column] = [
    *WHERE,
    ("rate", _get("target_rate")),
    ("try", _get("try")),
    ("verdict", lambda r: "; ".join(r["misses"]) or "passes"),
    ("stopped early", _get("stopped_early")),
    *STEP,
]
LATENCY_COLUMNS: list[Column] = [
    *WHERE,
    ("SMTP s", _get("smtp_delay")),
    ("fraction", _get("fraction")),
    ("rate", _get("target_rate")),
    *STEP,
]
MAX_COLUMNS: list[Column] = [
    *WHERE,
    ("client", _get("client")),
    ("conns", _get("connections")),
    ("req/s", _get("rate")),
    ("errors", lambda r: _errors(r["statuses"])),
    *USAGE,
    ("client CPU %", _get("client_cpu_percent")),
]
DRAIN_COLUMNS: list[Column] = [
    *WHERE,
    ("sink", _get("sink")),
    ("SMTP s", _get("smtp_delay")),
    ("queued", _get("queued")),
    ("delivered", _get("delivered")),
    ("mails/s first to last", _get("mails_per_s")),
    ("per process", _get("mails_per_s_per_process")),
    ("mails/s from start", _get("mails_per_s_from_start")),
    ("dup", _get("duplicates")),
    *USAGE,
]
RECOVERY_COLUMNS: list[Column] = [
    *WHERE,
    ("queued", _get("queued")),
    ("rate", _get("target_rate")),
    ("p50", _get("latency_ms", "p50")),
    ("p99", _get("latency_ms", "p99")),
    ("max", _get("latency_ms", "max")),
    ("p50, nothing queued", _get("quiet", "latency_ms", "p50")),
    ("p99, nothing queued", _get("quiet", "latency_ms", "p99")),
    ("errors", lambda r: _errors(r["statuses"])),
    ("inbox p50", _inbox("p50")),
    ("inbox p99", _inbox("p99")),
    ("backlog sent during the load", _get("backlog_sent_during_load")),
    ("backlog left at its end", _get("backlog_left_at_load_end")),
    *USAGE,
]
MEMORY_COLUMNS: list[Column] = [
    *WHERE,
    ("queued", _get("queued")),
    ("server RSS MB (peak)", _get("server", "rss_peak_mb")),
    ("server CPU %", _get("server", "cpu_percent")),
    ("mails sent while watched", _get("sent_while_watched")),
    ("enqueue s", _get("enqueue_seconds")),
]
PICKUP_COLUMNS: list[Column] = [
    ("mode", _get("mode")),
    ("shape", _get("shape")),
    ("jobs", _get("jobs")),
    ("pickup p50 ms", _get("pickup_ms", "p50")),
    ("p99 ms", _get("pickup_ms", "p99")),
    ("max ms", _get("pickup_ms", "max")),
    ("p99 from COMMIT sent, ms", _get("pickup_from_commit_sent_ms", "p99")),
    ("inbox p50 ms", _get("inbox_ms", "p50")),
    ("inbox p99 ms", _get("inbox_ms", "p99")),
    ("load average", _get("load_average_1m_after")),
]
GOAL_COLUMNS: list[Column] = [
    ("goal", _get("goal")),
    ("value", _get("value")),
    ("target", _get("target")),
    ("met", lambda r: {True: "met", False: "missed", None: "n/a"}[r["met"]]),
    ("measured as", _get("measured")),
]


def _memory_rows(results: dict[str, Any]) -> list[Row]:
    return [
        {"scenario": record["scenario"], "shape": record["shape"], "queued": int(count), **figures}
        for record in results["memory"]
        for count, figures in record["backlogs"].items()
    ]


def _recovery_rows(results: dict[str, Any]) -> list[Row]:
    """Each recovery row with the latency phase's row at the same rate, nothing queued."""
    rows = []
    for record in results.get("recovery", []):
        quiet = find_row(
            results["latency"],
            scenario=record["scenario"],
            shape=record["shape"],
            fraction=record["fraction"],
            smtp_delay=0.0,
        )
        rows.append({**record, "quiet": quiet})
    return rows


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    host = meta["machine"]
    config = meta["config"]
    parts = [
        f"# Benchmark {meta['started_at']}{' (smoke)' if meta['smoke'] else ''}",
        f"Machine: {host['cpu']}, {host['cpus']} CPUs, {host['memory_gb']} GB, "
        f"Linux {host['kernel']}, Python {host['python']}; {meta['seconds']:g} s. "
        f"Command: `{meta['command']}`",
    ]
    if results["sustained"]:
        criteria = results["sustained"][0]["criteria"]
        parts += [
            "## Sustained rate",
            f"The highest open-loop rate at which, over {config['step_seconds']:g} s at 0 s "
            f"SMTP, signup p99 <= {criteria['latency_p99_ms']:g} ms, no 5xx, and (scenarios "
            f"that send mail) every mail arrives once, time-to-inbox p99 <= "
            f"{criteria['inbox_p99_ms']:g} ms and fewer mails are owed when the load ends "
            f"than {criteria['backlog_seconds']:g} s of signups. Figures at the passing step; "
            'every step is under "Sustained rate: every step".',
            _table(SUSTAINED_COLUMNS, results["sustained"]),
        ]
    parts += ["## Goals", _table(GOAL_COLUMNS, results["goals"])]
    if results["latency"]:
        parts += [
            "## Latency at fixed rates (ms) and time-to-inbox (ms)",
            "Open loop at fractions of the project's sustained rate on the shape. Latency "
            "runs from the request's due time; time-to-inbox from the client receiving its "
            "201 (after the commit) to the sink's 250, a lower bound of commit-to-250 "
            "(negative when the mail is sent before the answer: `inline`). Not delivered = "
            "201s whose mail had not arrived when the wait ended.",
            _table(LATENCY_COLUMNS, results["latency"]),
        ]
    if results["maximum"]:
        parts += [
            "## Closed-loop maximum (not a sustained rate: its mails are still owed)",
            _table(MAX_COLUMNS, results["maximum"]),
        ]
    if results["drain"]:
        parts += [
            "## Drain: a backlog queued with nothing running, then everything started",
            _table(DRAIN_COLUMNS, results["drain"]),
        ]
    if results.get("recovery"):
        parts += [
            "## Recovery: signups while a backlog drains",
            "The backlog queued with nothing running, then the server started and, once it "
            "answered, signups at half the project's sustained rate (0 s SMTP); beside them, "
            "the latency phase's figures at the same rate with nothing queued (ms).",
            _table(RECOVERY_COLUMNS, _recovery_rows(results)),
        ]
    if results["memory"]:
        parts += [
            "## Memory: the product's server with a small and a large backlog in its ledger",
            f"Each backlog queued with nothing running, then the server (and a 0 s sink) "
            f"ran for {config['memory_watch']:g} s while its RSS was sampled.",
            _table(MEMORY_COLUMNS, _memory_rows(results)),
        ]
    if results["pickup"]:
        parts += [
            "## Pickup from another process (PostgreSQL)",
            "The enqueuer's COMMIT returning -> the job's `started_at` (the runner's claim).",
            _table(PICKUP_COLUMNS, results["pickup"]),
        ]
    steps = [step for record in results["sustained"] for step in record["steps"]]
    if steps:
        parts += ["## Sustained rate: every step", _table(STEPS_COLUMNS, steps)]
    for title, key in (("Failures", "failures"), ("Notes", "notes")):
        if results[key]:
            parts += [f"## {title}", "\n".join(f"- {line}" for line in results[key])]
    return "\n\n".join(parts) + "\n"


def _draw_sustained(ax: Any, records: list[Row]) -> None:
    shapes = list(dict.fromkeys(r["shape"] for r in records))
    scenarios = list(dict.fromkeys(r["scenario"] for r in records))
    width = 0.8 / len(shapes)
    for offset, shape in enumerate(shapes):
        rates = [
            next((r["rate"] or 0 for r in records if r["shape"] == shape and r["scenario"] == s), 0)
            for s in scenarios
        ]
        positions = [i + (offset - (len(shapes) - 1) / 2) * width for i in range(len(scenarios))]
        ax.bar(positions, rates, width=width, label=shape)
    ax.set_xticks(range(len(scenarios)), scenarios)
    ax.set_ylabel("sustained signups/s")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def _draw_latency(ax: Any, rows: list[Row]) -> None:
    keys = ["p50", "p90", "p99", "p99.9", "max"]
    for r in rows:
        values = [max(r["latency_ms"][k], 0.001) for k in keys]
        ax.plot(keys, values, marker="o", label=r["scenario"])
    ax.set_yscale("log")
    ax.set_ylabel("latency from due time, ms")
    ax.grid(True, which="both", alpha=0.3)


def _draw_inbox(ax: Any, rows: list[Row]) -> None:
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
    """The sustained rates; per shape, latency percentiles and time-to-inbox at half rate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if results["sustained"]:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        _draw_sustained(ax, results["sustained"])
        ax.set_title("Sustained rate (p99 <= 50 ms; every mail, time-to-inbox p99 <= 1 s)")
        fig.tight_layout()
        fig.savefig(out / "sustained.png", dpi=110)
        plt.close(fig)
        written.append("sustained.png")
    half = [r for r in results["latency"] if r["fraction"] == 0.5]
    delays = sorted({r["smtp_delay"] for r in half})
    figures = [
        ("latency", "Signup latency percentiles", _draw_latency),
        ("time-to-inbox", "Time-to-inbox", _draw_inbox),
    ]
    for shape in dict.fromkeys(r["shape"] for r in half):
        for name, title, draw in figures:
            fig, axes = plt.subplots(1, len(delays), figsize=(6 * len(delays), 4.5), squeeze=False)
            for ax, delay in zip(axes[0], delays, strict=True):
                draw(ax, [r for r in half if r["shape"] == shape and r["smtp_delay"] == delay])
                ax.set_title(f"SMTP delay {delay:g} s, half the project's sustained rate")
                ax.legend(fontsize=8)
            fig.suptitle(f"{title} ({shape})")
            fig.tight_layout()
            fig.savefig(out / f"{name}-{shape}.png", dpi=110)
            plt.close(fig)
            written.append(f"{name}-{shape}.png")
    return written


def write(results: dict[str, Any], out: Path) -> None:
    results["goals"] = evaluate(results)
    results["plots"] = plots(results, out)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
