"""`dlgsweep plan --results DIR`: the ETA from a previous sweep's measured speed.

The rows are real Parquet rows written by the sink (`make_row` + `SweepStore.write_row`) from
real `TrialResult`s whose speed we choose, so the expected ETA can be computed exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dlgsweep.cli import main
from orchestrator.plan import human_hours, trial_seconds
from store.schema import make_row
from store.spec import load_spec
from store.sweep_store import SweepStore
from workloads.config import TrialConfig
from workloads.result import TrialResult

PLAN_SPEC = {
    "grid": {"seed": [0, 1, 2, 3], "batch_size": [1, 2]},
    "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn"},
    "attack": {"iterations": 100},
    "resources": {"cpu": 1, "gpu": 0},  # a plan of one CPU per trial, on a 1-CPU machine
}


def write_rows(
    results: Path,
    sweep: str,
    rows: list[tuple[dict, dict]],
    gpu: float = 0.0,
) -> None:
    """A measured sweep: its spec.yaml (for the GPU share) and one row per (config, result)."""
    store = SweepStore.of(str(results), sweep)
    store.save_spec(f"name: {sweep}\ngrid: {{seed: [0]}}\nresources: {{cpu: 1, gpu: {gpu}}}\n")
    for index, (config, outcome) in enumerate(rows):
        trial = TrialConfig(**{"seed": index, "iterations": 10, **config})
        defaults = {"status": "ok", "iterations_run": 10, "started_at": 0.0, "finished_at": 1.0}
        result = TrialResult(**{**defaults, **outcome})
        store.write_row(make_row(trial, result, sweep=sweep, with_images=False))


def plan_output(capsys, spec_path: Path, *args: str) -> list[str]:
    assert main(["plan", str(spec_path), *args]) == 0
    return capsys.readouterr().out.splitlines()


def test_measured_speed_replaces_the_flop_model_for_that_model_batch_and_device(
    tiny_spec, results, capsys
):
    # batch 1 measured on CPU: 0.5 s per iteration, 2 s per trial outside the iterations
    # (medians: the third row's 9 s/it is an outlier); an error row and a GPU row are ignored
    measured = {"seconds_per_iteration": 0.5, "wall_seconds": 2 + 10 * 0.5, "device": "cpu"}
    write_rows(
        results,
        "earlier",
        [
            ({"batch_size": 1}, measured),
            ({"batch_size": 1}, measured),
            ({"batch_size": 1}, {**measured, "seconds_per_iteration": 9.0, "wall_seconds": 92}),
            ({"batch_size": 1}, {"status": "error", "seconds_per_iteration": 100.0}),
            ({"batch_size": 2}, {**measured, "device": "cuda:0"}),
        ],
    )
    spec, path = tiny_spec("plan", **PLAN_SPEC)
    lines = plan_output(
        capsys, path, "--num-cpus", "1", "--num-gpus", "0", "--results", str(results)
    )

    assert "trials: 8" in lines
    flop_b2 = 4 * trial_seconds(spec.trials()[1], 1.0, 0.0)  # batch 2: the FLOP model, 1 core
    expected = 4 * (2 + 100 * 0.5) + flop_b2
    eta = next(line for line in lines if line.startswith("ETA:"))
    assert eta.startswith(f"ETA: ~{human_hours(expected)} with 1 at once")
    assert "measured speed for 4 trials" in eta
    assert f"throughput: measured for 4 of 8 trials ({results})" in lines
    assert "  measured: mcmahan_cnn on cpu: B=1 500 ms/it (3 rows)" in lines
    assert any(line.startswith("  FLOP model: mcmahan_cnn B=2 on cpu") for line in lines)


def test_without_results_the_eta_is_the_flop_model(tiny_spec, capsys):
    spec, path = tiny_spec("plan", **PLAN_SPEC)
    lines = plan_output(capsys, path, "--num-cpus", "1", "--num-gpus", "0")
    expected = sum(trial_seconds(t, 1.0, 0.0) for t in spec.trials())
    assert f"ETA: ~{human_hours(expected)} with 1 at once (assuming 10 GFLOP/s" in "\n".join(lines)
    assert not any(line.startswith("throughput:") for line in lines)


def test_gpu_rows_say_their_share_and_serve_a_gpu_plan(tiny_spec, results, capsys):
    fast = {"seconds_per_iteration": 0.004, "wall_seconds": 1.0 + 10 * 0.004, "device": "cuda:0"}
    rows = [({"batch_size": b}, fast) for b in (1, 2)]
    write_rows(results, "on-gpu", rows, gpu=0.5)
    spec, path = tiny_spec("plan", **{**PLAN_SPEC, "resources": {"cpu": 1, "gpu": 0.25}})
    lines = plan_output(
        capsys, path, "--num-cpus", "8", "--num-gpus", "1", "--results", str(results / "on-gpu")
    )
    # every trial measured: 1 s + 100 x 4 ms each, 8 trials, 4 at once (0.25 GPU per trial)
    assert f"ETA: ~{human_hours(8 * (1.0 + 100 * 0.004) / 4)} with 4 at once" in "\n".join(lines)
    assert (
        "  measured: mcmahan_cnn on cuda: B=1 4 ms/it, B=2 4 ms/it (2 rows, at gpu 0.5 per trial)"
        in lines
    )
    assert any("measured at gpu 0.5 per trial, this spec asks 0.25" in line for line in lines)
    assert not any("FLOP model:" in line for line in lines)


def test_results_that_do_not_exist_are_a_one_line_error(tmp_path, capsys):
    assert main(["plan", "demo", "--results", str(tmp_path / "nothing")]) == 2
    assert "--results" in capsys.readouterr().err


def test_plan_keeps_the_trial_count_line(results, capsys):
    row = {"seconds_per_iteration": 0.1, "wall_seconds": 1.0, "device": "cpu"}
    write_rows(results, "some", [({"batch_size": 1}, row)])
    args = ["--num-cpus", "2", "--num-gpus", "0", "--results", str(results)]
    lines = plan_output(capsys, Path("paper"), *args)
    assert f"trials: {len(load_spec('paper').trials())}" in lines
    assert "throughput: measured for 96 of 960 trials" in "\n".join(lines)


def test_a_fedavg_trial_costs_its_unrolled_steps():
    """The attacker unrolls K client steps of B images per iteration: K times the work of a
    FedSGD iteration on one batch, and K times the per-iteration floor."""
    from orchestrator.plan import trial_gflop, trial_seconds
    from workloads.config import TrialConfig

    fedsgd = TrialConfig(batch_size=2, iterations=10)
    fedavg = fedsgd.replace(local_steps=5, local_images=4)
    assert trial_gflop(fedavg) == pytest.approx(5 * trial_gflop(fedsgd))
    assert trial_seconds(fedavg, 1, 0) == pytest.approx(5 * trial_seconds(fedsgd, 1, 0))
    assert trial_gflop(fedsgd.replace(local_steps=1, local_images=2)) == trial_gflop(fedsgd)
