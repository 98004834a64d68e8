"""The sustained-rate search, driven by a fake step that passes up to a known capacity."""

import pytest

from bench.search import SearchPlan, search

PLAN = SearchPlan(start=25, factor=1.5, lowest=2, highest=3000, precision=0.1, max_steps=20)


class Capacity:
    """A step that passes at or below ``limit`` req/s; remembers the rates tried."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.tried: list[float] = []

    async def __call__(self, rate: float) -> bool:
        self.tried.append(rate)
        return rate <= self.limit


@pytest.mark.parametrize("limit", [3, 24, 100, 333.3, 2000])
async def test_it_brackets_the_capacity_within_the_precision(limit: float) -> None:
    step = Capacity(limit)
    bracket = await search(PLAN, step)
    assert bracket.passed is not None and bracket.failed is not None
    assert bracket.passed <= limit < bracket.failed
    assert bracket.failed <= bracket.passed * (1 + PLAN.precision)
    assert bracket.steps == len(step.tried)


async def test_it_steps_up_geometrically_from_the_start_then_bisects() -> None:
    step = Capacity(100)
    await search(PLAN, step)
    assert step.tried[:5] == [25, 37.5, 56.2, 84.3, 126.4]  # 126.4 fails
    assert 84.3 < step.tried[5] < 126.4


async def test_a_failing_start_steps_down_until_a_rate_passes() -> None:
    step = Capacity(10)
    bracket = await search(PLAN, step)
    assert step.tried[:4] == [25, 16.7, 11.1, 7.4]
    assert bracket.passed is not None and bracket.passed <= 10


async def test_nothing_passes_down_to_the_lowest_rate() -> None:
    step = Capacity(0)
    bracket = await search(PLAN, step)
    assert bracket.passed is None
    assert min(step.tried) >= PLAN.lowest
    assert bracket.failed == min(step.tried)


async def test_it_stops_at_the_highest_rate_when_everything_passes() -> None:
    step = Capacity(10**9)
    bracket = await search(PLAN, step)
    assert bracket.passed == PLAN.highest
    assert bracket.failed is None
    assert max(step.tried) == PLAN.highest


async def test_it_takes_no_more_than_max_steps() -> None:
    step = Capacity(1000)
    plan = SearchPlan(start=25, factor=1.5, lowest=2, highest=3000, precision=0.01, max_steps=6)
    bracket = await search(plan, step)
    assert len(step.tried) == bracket.steps == 6
