"""Which scenarios a full run measures on which shape."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.scenarios import SCENARIOS, Shape
from tests.support.workers import require_modules


@pytest.fixture(autouse=True)
def harness() -> None:
    # The run imports the load generator's HdrHistogram.
    require_modules("bench/requirements.txt", "hdrh")


def new_run(argv: list[str]) -> Any:
    from bench.__main__ import config_from, parse
    from bench.run import Run

    return Run(config_from(parse(argv), datetime.now(UTC)))


def names(run: Any, phase: str, shape: str) -> set[str]:
    return {scenario.name for scenario in run.scenarios_for(phase, Shape.parse(shape))}


def test_a_full_run_measures_the_peers_only_on_the_shapes_the_goals_compare(
    tmp_path: Path,
) -> None:
    run = new_run(["run", "--out", str(tmp_path)])
    peers = {name for name, scenario in SCENARIOS.items() if scenario.peer}
    assert peers and peers <= names(run, "sustained", "sqlite-w1")
    assert peers <= names(run, "sustained", "postgres-w2")
    assert names(run, "sustained", "postgres-w1") == {"floor", "project"}
    assert names(run, "recovery", "postgres-w2") == {"project"}


def test_peer_shapes_all_measures_the_peers_on_every_shape(tmp_path: Path) -> None:
    argv = ["run", "--out", str(tmp_path), "--peer-shapes", "all"]
    run = new_run(argv)
    peers = {name for name, scenario in SCENARIOS.items() if scenario.peer}
    assert peers <= names(run, "sustained", "postgres-w1")


def test_a_peer_shape_that_is_not_a_shape_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        new_run(["run", "--out", str(tmp_path), "--peer-shapes", "postgres-2"])
    assert exit.value.code == 2
    assert "'postgres-2': expected <sqlite|postgres>-w<workers>" in capsys.readouterr().err
