"""`dlgsweep run` on a real local Ray: rows, skip finished, rerun errored/missing, progress."""

from __future__ import annotations

import json

import pytest

from dlgsweep.cli import main
from orchestrator.progress import SweepProgress
from orchestrator.trainable import LiveReporter, error_text
from store.schema import make_row
from store.spec import parse_yaml
from store.sweep_store import SweepStore
from workloads.result import TrialResult


@pytest.mark.ray
def test_run_skips_finished_and_reruns_errored_and_missing(
    tiny_spec, results, capsys, monkeypatch, file_states, trial_files, local_ray
):
    spec, path = tiny_spec(
        "cli", grid={"seed": [0, 1], "activation": ["relu", "sigmoid"]},
        resources={"cpu": 2, "gpu": 0.5},
    )  # fmt: skip
    # a relative --results, as the docs type it: Tune runs trials in dirs of their own
    monkeypatch.chdir(results.parent)
    argv = ["run", str(path), "--results", results.name, "--num-cpus", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no GPU: dropping the request of 0.5 GPU" in out  # CPU fallback, announced
    assert "4 to run" in out and "4/4 done" in out and "0 failed" in out

    sweep_dir = results / "cli"
    store = SweepStore(str(sweep_dir))
    rows = store.read_rows().table.to_pylist()
    assert sorted(r["trial_key"] for r in rows) == sorted(t.trial_key for t in spec.trials())
    for row in rows:
        assert row["status"] == "ok" and row["sweep"] == "cli" and row["device"] == "cpu"
        assert row["host"] and row["node_id"] and row["attempt"] == 1
        assert row["iterations"] == 5 and row["psnr_mean"] is not None
        assert row["started_at"] <= row["finished_at"]
    saved = parse_yaml((sweep_dir / "spec.yaml").read_text())
    assert [t.trial_key for t in saved.trials()] == [t.trial_key for t in spec.trials()]

    assert main(["status", str(sweep_dir), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"ok": 4, "diverged": 0, "error": 0, "missing": 0, "total": 4}

    # nothing left to do: no Ray started, not one file touched
    before = file_states(sweep_dir)
    assert main(argv) == 0
    assert "0 to run" in capsys.readouterr().out
    assert file_states(sweep_dir) == before

    # one trial errored, one never finished: exactly those two rerun
    trials = spec.trials()
    failed = make_row(trials[0], TrialResult(status="error", error="boom"), sweep="cli")
    store.write_row(failed, guard=False)  # as if it had failed: finished rows are guarded
    (sweep_dir / "trials" / f"{trials[1].trial_key}.parquet").unlink()
    untouched = {k: v for k, v in file_states(sweep_dir).items() if k.startswith(
        (trials[2].trial_key, trials[3].trial_key))}  # fmt: skip
    assert main(["status", str(sweep_dir)]) == 0
    status = capsys.readouterr().out
    assert "1 x  boom" in status and "missing" in status

    assert main(argv) == 0
    assert "2 to run" in capsys.readouterr().out
    after = file_states(sweep_dir)
    assert {k: after[k] for k in untouched} == untouched
    assert len(trial_files(sweep_dir)) == 4
    assert set(store.statuses().values()) == {"ok"}


def test_progress_line_counts_and_eta():
    lines: list[str] = []
    progress = SweepProgress(total=10, already=2, say=lines.append, interval=0)
    assert "2/10 done | 0 running | 0 failed | 8 left | ETA --" in progress.line()
    for trial in "abc":
        progress.started_trial(trial)
    progress.result("b", {"attack_iteration": 50, "iterations": 100, "psnr": 12.0})
    progress.result("c", {"attack_iteration": 10, "iterations": 100, "psnr": 9.0})
    assert "3 running (20% through) |" in progress.line()  # (50 + 10 + 0) / 3
    progress.result("a", {"trial_status": "ok"})
    progress.finished_trial("a", errored=False)
    progress.finished_trial("b", errored=True)
    progress.retried("c")
    line = progress.line()
    assert "3/10 done | 0 running | 1 failed | 6 left | 1 retried | ETA " in line
    assert "ETA --" not in line
    assert lines  # shown on change


def test_live_reports_come_at_curve_points_past_each_multiple():
    reports: list[dict] = []
    live = LiveReporter(100, 25, attempt=1, report=reports.append)
    for iteration in [*range(0, 100, 10), 99]:  # the curve's points: every 10, and the last
        live(iteration, 0.5, 20.0)
    assert [r["attack_iteration"] for r in reports] == [30, 50, 80]  # 99: the final report's
    assert reports[0] == {"attack_iteration": 30, "iterations": 100, "grad_loss": 0.5,
                          "psnr": 20.0, "attempt": 1, "timesteps_total": 30}  # fmt: skip
    reports.clear()
    default = LiveReporter(500, None, attempt=2, report=reports.append)
    for iteration in [*range(0, 500, 10), 499]:
        default(iteration, 0.5, 20.0)
    assert len(reports) == 19  # about REPORTS_PER_TRIAL (20), the last one left to the row


def test_error_text_is_one_groupable_line():
    class Wrapped(Exception):
        cause = ValueError("dataset: bad\nTraceback ...")

    assert error_text(Wrapped("ray noise")) == "ValueError: dataset: bad"
    assert error_text(RuntimeError("x" * 900)).startswith("RuntimeError: xxx")
    assert len(error_text(RuntimeError("x" * 900))) == 500


def test_planning_builds_configs_only_for_the_trials_to_run(tmp_path, monkeypatch):
    """resume at 10^5 trials: keys from the spec, statuses from the store, and a TrialConfig
    only for each trial without a finished row (bench_store.py times it end to end)."""
    from orchestrator.sweep import plan_run
    from workloads.config import TrialConfig

    spec = parse_yaml("name: p\ngrid: {seed: [0, 1, 2, 3]}\nattack: {iterations: 5}\n")
    trials = spec.trials()
    store = SweepStore.of(str(tmp_path), "p")
    for config, status in zip(trials, ("ok", "diverged", "error")):
        store.write_row(make_row(config, TrialResult(status=status), sweep="p"))
    built: list[str] = []
    original = TrialConfig.from_dict
    monkeypatch.setattr(
        TrialConfig, "from_dict", classmethod(lambda cls, raw: built.append("") or original(raw))
    )
    plan = plan_run(spec, store)
    assert plan.keys == [t.trial_key for t in trials] and plan.skipped == 2
    assert [c.trial_key for _, c in plan.pending] == [trials[2].trial_key, trials[3].trial_key]
    assert len(built) == 2  # the two to run (the keys were computed when the spec was read)
