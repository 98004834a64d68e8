"""A sustained-rate step's verdict, and when its answers end it early."""

from typing import Any

import pytest

from bench.criteria import Criteria, Decided, bad_statuses, slow_allowed

CRITERIA = Criteria(latency_p99_ms=50, inbox_p99_ms=1000, backlog_seconds=1)


def step(**changes: Any) -> dict[str, Any]:
    """A step at 100 req/s that meets every criterion, with ``changes`` applied."""
    mail = {
        "expected": 1000,
        "undelivered": 0,
        "waited_s": 60,
        "duplicates": 0,
        "backlog_at_end": 3,
        "time_to_inbox_ms": {"p99": 20.0},
    }
    record = {"target_rate": 100.0, "statuses": {"201": 1000}, "latency_ms": {"p99": 12.0}}
    record["mail"] = mail | changes.pop("mail", {})
    return record | changes


def test_a_step_that_meets_every_criterion_passes() -> None:
    assert CRITERIA.misses(step()) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"statuses": {"201": 999, "503": 1}}, "errors {'503': 1}"),
        ({"statuses": {"201": 999, "ReadTimeout": 1}}, "errors {'ReadTimeout': 1}"),
        ({"latency_ms": {"p99": 50.1}}, "signup p99 50.1 ms > 50"),
        ({"mail": {"undelivered": 2}}, "2 of 1000 mails not delivered within 60 s"),
        ({"mail": {"duplicates": 1}}, "1 duplicate mails"),
        ({"mail": {"time_to_inbox_ms": {"p99": 1000.5}}}, "time-to-inbox p99 1000.5 ms > 1000"),
        ({"mail": {"backlog_at_end": 100}}, "100 mails owed when the load ended >= 100"),
    ],
)
def test_each_criterion_alone_fails_the_step_and_says_why(
    changes: dict[str, Any], reason: str
) -> None:
    misses = CRITERIA.misses(step(**changes))
    assert len(misses) == 1
    assert misses[0].startswith(reason)


def test_a_scenario_without_mail_is_judged_on_latency_and_errors_only() -> None:
    floor = step()
    del floor["mail"]
    assert CRITERIA.misses(floor) == []
    assert CRITERIA.misses(floor | {"latency_ms": {"p99": 51.0}}) == ["signup p99 51 ms > 50"]


def test_client_errors_are_not_server_errors() -> None:
    assert bad_statuses({"201": 5, "400": 1, "429": 1, "2xx/3xx": 3}) == {}
    assert bad_statuses({"500": 1, "ConnectError": 2}) == {"500": 1, "ConnectError": 2}


@pytest.mark.parametrize(
    ("count", "allowed"), [(1, 0), (20, 0), (50, 0), (51, 1), (80, 1), (1000, 10)]
)
def test_slow_answers_allowed_match_hdrhistograms_p99_rank(count: int, allowed: int) -> None:
    # HdrHistogram: p99 is the value at rank int(0.99 * count + 0.5).
    assert slow_allowed(count) == allowed
    latencies = sorted([10.0] * (count - allowed) + [60.0] * allowed)
    assert latencies[max(1, int(0.99 * count + 0.5)) - 1] == 10.0


def test_the_load_stops_once_the_slow_answers_fail_the_p99_of_all_planned() -> None:
    decided = Decided(planned=1000, criteria=CRITERIA)
    assert not any(decided("201", 0.01) for _ in range(5000))
    assert not any(decided("201", 0.051) for _ in range(10))  # 1 %: p99 may still pass
    assert decided("201", 0.051)


def test_the_load_stops_at_the_first_server_error() -> None:
    assert Decided(planned=1000, criteria=CRITERIA)("502", 0.01)
    assert Decided(planned=1000, criteria=CRITERIA)("ReadTimeout", 30.0)


@pytest.mark.parametrize(
    ("changes", "only_slow"),
    [
        ({}, False),  # It passed.
        ({"latency_ms": {"p99": 80.0}}, True),
        ({"mail": {"time_to_inbox_ms": {"p99": 1500.0}, "backlog_at_end": 100}}, True),
        ({"latency_ms": {"p99": 80.0}, "statuses": {"201": 999, "503": 1}}, False),
        ({"latency_ms": {"p99": 80.0}, "mail": {"undelivered": 1}}, False),
        ({"mail": {"duplicates": 1}}, False),
    ],
)
def test_only_a_step_failed_on_time_alone_is_worth_trying_again(
    changes: dict[str, Any], only_slow: bool
) -> None:
    assert CRITERIA.only_slow(step(**changes)) is only_slow
