"""Which scenarios a full run measures on which shape."""

from datetime import UTC, datetime
from pathlib import Path

from bench.__main__ import config_from, parse
from bench.run import Run
from bench.scenarios import SCENARIOS, Shape


def names(run: Run, phase: str, shape: str) -> set[str]:
    return {scenario.name for scenario in run.scenarios_for(phase, Shape.parse(shape))}


def test_a_full_run_measures_the_peers_only_on_the_shapes_the_goals_compare(
    tmp_path: Path,
) -> None:
    run = Run(config_from(parse(["run", "--out", str(tmp_path)]), datetime.now(UTC)))
    peers = {name for name, scenario in SCENARIOS.items() if scenario.peer}
    assert peers and peers <= names(run, "sustained", "sqlite-w1")
    assert peers <= names(run, "sustained", "postgres-w2")
    assert names(run, "sustained", "postgres-w1") == {"floor", "project"}


def test_peer_shapes_all_measures_the_peers_on_every_shape(tmp_path: Path) -> None:
    argv = ["run", "--out", str(tmp_path), "--peer-shapes", "all"]
    run = Run(config_from(parse(argv), datetime.now(UTC)))
    peers = {name for name, scenario in SCENARIOS.items() if scenario.peer}
    assert peers <= names(run, "sustained", "postgres-w1")
