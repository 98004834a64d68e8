"""The phases of a run, in the order they run on each shape.

Each module has ``applies(scenario, shape)`` (which scenarios it measures)
and ``run(run, shape, scenarios)``, and records its rows under its name in
the results. Latency comes after sustained: its rates are fractions of the
project's sustained rate.
"""

from typing import TYPE_CHECKING, Protocol

from . import drain, latency, maximum, memory, pickup, recovery, sustained

if TYPE_CHECKING:
    from ..run import Run
    from ..scenarios import Scenario, Shape


class Phase(Protocol):
    def applies(self, scenario: "Scenario", shape: "Shape") -> bool: ...

    async def run(self, run: "Run", shape: "Shape", scenarios: list["Scenario"]) -> None: ...


PHASES: dict[str, Phase] = {
    "sustained": sustained,
    "latency": latency,
    "maximum": maximum,
    "drain": drain,
    "recovery": recovery,
    "memory": memory,
    "pickup": pickup,
}
