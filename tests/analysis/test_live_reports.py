"""Live trials: each trial reports its progress to Tune while the attack runs, every
`report_every` iterations, and the progress line shows how far the running trials are."""

from __future__ import annotations

import pytest
from ray import tune

from orchestrator.sweep import run_sweep
from store.sweep_store import SweepStore

pytestmark = pytest.mark.ray  # real attacks through Ray Tune


class Recorder(tune.Callback):
    """Every result and completion, in the order the driver saw them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict]] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        self.events.append(("result", trial.trial_id, {**result, "seen_as": trial.status}))

    def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
        self.events.append(("complete", trial.trial_id, {}))


def test_live_reports_reach_a_tune_callback_while_the_trial_runs(local_ray, tiny_spec, results):
    spec, _ = tiny_spec(
        "live", grid={"seed": [0, 1]}, attack={"iterations": 40, "curve_points": 20},
        report_every=8,
    )  # fmt: skip
    recorder = Recorder()
    lines: list[str] = []
    outcome = run_sweep(spec, str(results), callbacks=[recorder], say=lines.append)
    assert outcome.counts == {"ok": 2}
    rows = {r["seed"]: r for r in SweepStore(str(results / "live")).read_rows().table.to_pylist()}

    for trial_id in {t for _, t, _ in recorder.events}:
        mine = [(kind, result) for kind, t, result in recorder.events if t == trial_id]
        live = [r for kind, r in mine if kind == "result" and "attack_iteration" in r]
        final = [i for i, (kind, r) in enumerate(mine) if "trial_status" in r]
        # every 8 iterations, at the curve's points (every 2): 8, 16, 24, 32 (38: the row's)
        assert [r["attack_iteration"] for r in live] == [8, 16, 24, 32]
        assert final and mine[-1][0] == "complete"
        assert all(mine.index(("result", r)) < final[0] for r in live)  # before the trial ended
        assert {r["seen_as"] for r in live} == {"RUNNING"}
        row = rows[live[0]["config"]["trial"]["config"]["seed"]]
        curve = dict(zip(row["curve_iteration"], zip(row["curve_grad_loss"], row["curve_psnr"])))
        for report in live:  # the row's own curve points, as the final score measures PSNR
            assert (report["grad_loss"], report["psnr"]) == curve[report["attack_iteration"]]
