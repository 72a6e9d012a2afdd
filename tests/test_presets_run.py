"""The beyond-the-seed presets plan, and a reduced version of each runs on CPU through Ray."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from orchestrator.cli import main
from orchestrator.spec import SweepSpec, load_spec
from orchestrator.sweep import run_sweep


@pytest.mark.parametrize("name,trials", [("init-scale", 360), ("pruning-aware", 84)])
def test_presets_plan(name, trials, capsys):
    assert main(["plan", name, "--num-cpus", "2", "--num-gpus", "0"]) == 0
    assert f"trials: {trials}" in capsys.readouterr().out.splitlines()


def reduced(name: str, keep: dict[str, list]) -> SweepSpec:
    """The preset with each axis cut to `keep` (or its first value) and 3 iterations."""
    spec = load_spec(name)
    grid = {axis: keep.get(axis, values[:1]) for axis, values in spec.grid.items()}
    attack = {**spec.attack, "iterations": 3, "curve_points": 2}
    return dataclasses.replace(spec, grid=grid, attack=attack)


def rows(results, spec: SweepSpec) -> list[dict]:
    """Every row of the sweep, read with pyarrow directly (whatever files the sink wrote)."""
    import pyarrow.dataset as ds

    folder = results / spec.name / "trials"
    table = ds.dataset(str(folder), format="parquet").to_table(
        columns=[
            "trial_key",
            "status",
            "init_method",
            "init_scale",
            "init_weight_std",
            "prune_ratio",
            "mask_pruned",
            "grad_zero_fraction",
        ]  # fmt: skip
    )
    assert pq is not None
    return table.to_pylist()


def test_reduced_presets_run_on_cpu(local_ray, results):
    init_scale = reduced(
        "init-scale",
        {"init_method": ["xavier_normal", "kaiming_normal"], "init_scale": [0.25, 4.0]},
    )
    pruning = reduced(
        "pruning-aware",
        {"activation": ["sigmoid"], "prune_ratio": [0.0, 0.5], "mask_pruned": [False, True]},
    )  # sigmoid: no exact zeros of its own, so the zero share is the pruned share
    for spec in (init_scale, pruning):
        outcome = run_sweep(spec, str(results), say=lambda *_: None)
        assert outcome.exit_code == 0 and outcome.counts == {"ok": 4}

    by_method: dict[str, dict[float, float]] = {}
    for row in rows(results, init_scale):
        by_method.setdefault(row["init_method"], {})[row["init_scale"]] = row["init_weight_std"]
    for stds in by_method.values():  # the scale multiplies the first layer's weights
        assert stds[4.0] / stds[0.25] == pytest.approx(16.0, rel=1e-5)

    pruned = rows(results, pruning)
    assert {(r["prune_ratio"], r["mask_pruned"]) for r in pruned} == {
        (0.0, False), (0.0, True), (0.5, False), (0.5, True),
    }  # fmt: skip
    for row in pruned:
        assert row["grad_zero_fraction"] == pytest.approx(row["prune_ratio"], abs=0.01)
