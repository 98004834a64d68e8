"""Goals evaluated against a run's results: values, thresholds, and figures a run lacks."""

from typing import Any

from bench.goals import Best, Goal, Ratio, Sustained, evaluate


def sustained(scenario: str, shape: str, rate: float | None) -> dict[str, Any]:
    return {"scenario": scenario, "shape": shape, "rate": rate}


RESULTS = {
    "sustained": [
        sustained("project", "sqlite-w1", 120.0),
        sustained("floor", "sqlite-w1", 200.0),
        sustained("tasks-db", "sqlite-w1", None),  # no rate passed
        sustained("vtasks", "sqlite-w1", 90.0),
    ]
}


def test_a_ratio_goal_reports_its_value_threshold_and_verdict() -> None:
    goal = Goal(
        "project >= 0.6 x floor",
        Ratio(Sustained("project", "sqlite-w1"), Sustained("floor", "sqlite-w1")),
        ">=",
        0.6,
    )
    assert goal.evaluate(RESULTS) == {
        "goal": "project >= 0.6 x floor",
        "measured": "sustained(project, sqlite-w1) / sustained(floor, sqlite-w1)",
        "value": 0.6,
        "target": ">= 0.6",
        "met": True,
    }
    assert Goal("stricter", goal.figure, ">=", 0.61).evaluate(RESULTS)["met"] is False
    assert Goal("upper bound", goal.figure, "<=", 0.5).evaluate(RESULTS)["met"] is False


def test_the_best_peer_is_the_highest_figure_measured() -> None:
    peers = Best(tuple(Sustained(p, "sqlite-w1") for p in ("tasks-db", "celery", "vtasks")), "")
    assert peers(RESULTS) == 90.0


def test_the_recovery_goal_reads_the_projects_p99_while_the_backlog_drained() -> None:
    def recovery(p99: float) -> dict[str, Any]:
        row = {"scenario": "project", "shape": "sqlite-w1", "latency_ms": {"p99": p99}}
        return {"recovery": [row]}

    name = "while a queued backlog drains: signup p99 <= 50 ms (sqlite-w1)"
    met = {row["goal"]: row["met"] for row in evaluate(recovery(49.0))}
    missed = {row["goal"]: row["met"] for row in evaluate(recovery(258.3))}
    assert (met[name], missed[name]) == (True, False)


def test_a_figure_the_run_did_not_measure_leaves_its_goal_undecided() -> None:
    rows = {row["goal"]: row for row in evaluate(RESULTS)}
    postgres = rows["project sustained rate >= 0.6 x the floor's (postgres-w2)"]
    assert postgres["value"] is None and postgres["met"] is None
    assert rows["project sustained rate >= 0.6 x the floor's (sqlite-w1)"]["met"] is True
    assert rows["project sustained rate >= 1.5 x the best peer's (sqlite-w1)"]["value"] == 1.333
