"""The search for the highest rate that passes: geometric steps, then bisection.

Kept apart from the load it drives (``attempt`` is any coroutine that says
whether a rate passed), so the steps it takes can be checked without a server.
"""

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class SearchPlan:
    start: float  # first rate tried, req/s
    factor: float  # step up (or, while the start fails, down) by this factor
    lowest: float  # give up below this rate
    highest: float  # never try above it
    precision: float  # refine until the first failing rate is within (1 + precision) x the pass
    max_steps: int


@dataclass(frozen=True)
class Bracket:
    passed: float | None  # highest rate that passed; None: none did
    failed: float | None  # lowest rate above it that failed; None: none did (highest passed)
    steps: int


async def search(plan: SearchPlan, attempt: Callable[[float], Awaitable[bool]]) -> Bracket:
    """Step ``plan.factor`` up from ``plan.start`` until a rate fails (down while the
    start fails), then bisect (geometrically) between the last pass and the first fail."""
    passed: float | None = None
    failed: float | None = None
    rate = plan.start
    steps = 0
    while steps < plan.max_steps:
        steps += 1
        if await attempt(rate):
            passed = rate
            if failed is not None or rate >= plan.highest:
                break
            rate = min(round(rate * plan.factor, 1), plan.highest)
        else:
            failed = rate
            if passed is not None or rate / plan.factor < plan.lowest:
                break
            rate = round(rate / plan.factor, 1)
    while (
        passed is not None
        and failed is not None
        and failed > passed * (1 + plan.precision)
        and steps < plan.max_steps
    ):
        steps += 1
        middle = round(math.sqrt(passed * failed), 1)
        if await attempt(middle):
            passed = middle
        else:
            failed = middle
    return Bracket(passed, failed, steps)
