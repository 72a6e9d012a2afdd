"""Faults: a trial that fails, a worker killed mid-attack, the driver killed mid-sweep + resume,
half-written files. Each ends with every trial exactly once and finished rows untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import RAY_ENV, file_states, kill_session, session_pids, trial_files
from ray import tune

from orchestrator.cli import main
from orchestrator.sink import SweepStore
from orchestrator.sweep import run_sweep


def test_failing_trial_is_retried_then_kept_as_an_error_row(
    local_ray, tiny_spec, results, tmp_path
):
    """A real failure: an image folder that exists (so the spec validates) but holds no images."""
    empty = tmp_path / "no-images"
    empty.mkdir()
    spec, _ = tiny_spec(
        "fails", grid={"dataset": ["cifar10", f"imagefolder:{empty}"]},
        fixed={"model": "mcmahan_cnn"}, retries=1,
    )  # fmt: skip
    lines: list[str] = []
    outcome = run_sweep(spec, str(results), say=lines.append)
    assert outcome.exit_code == 1 and outcome.counts == {"ok": 1, "error": 1}
    rows = {
        r["dataset"]: r for r in SweepStore(str(results / "fails")).read_rows().table.to_pylist()
    }
    assert rows["cifar10"]["status"] == "ok"
    failed = rows[f"imagefolder:{empty}"]
    assert failed["status"] == "error" and "ImageFolder" in failed["error"]
    assert failed["attempt"] == 2  # the first try, then `retries: 1` more
    assert any("1 retried" in line for line in lines)  # the sweep went on and said so
    assert len(trial_files(results / "fails")) == 2


class KillOnStart(tune.Callback):
    """Kill the trial's worker process (SIGKILL, by pid) once it has started its first attempt."""

    def __init__(self) -> None:
        self.killed: list[int] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if result.get("attempt") == 1 and "pid" in result and not self.killed:
            pid = result["pid"]
            self.killed.append(pid)
            threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()  # mid-attack


def test_worker_killed_mid_attack_is_retried_into_one_row(local_ray, tiny_spec, results):
    spec, _ = tiny_spec("killed", grid={"seed": [0]}, attack={"iterations": 150}, retries=2)
    killer = KillOnStart()
    outcome = run_sweep(spec, str(results), callbacks=[killer], say=lambda line: None)
    assert killer.killed, "the trial never reported its start"
    assert outcome.counts == {"ok": 1} and outcome.exit_code == 0
    (row,) = SweepStore(str(results / "killed")).read_rows().table.to_pylist()
    assert row["status"] == "ok" and row["attempt"] == 2
    assert len(trial_files(results / "killed")) == 1


def test_worker_killed_every_time_ends_as_error_row(local_ray, tiny_spec, results):
    """With retries: 0, a dead worker is the trial's end: an error row naming the cause."""
    spec, _ = tiny_spec("dies", grid={"seed": [0]}, attack={"iterations": 150}, retries=0)
    outcome = run_sweep(spec, str(results), callbacks=[KillOnStart()], say=lambda line: None)
    assert outcome.counts == {"error": 1} and outcome.exit_code == 1
    (row,) = SweepStore(str(results / "dies")).read_rows().table.to_pylist()
    assert row["status"] == "error" and "Actor" in row["error"]


@pytest.mark.slow
def test_driver_killed_mid_sweep_then_resume_runs_only_the_rest(tiny_spec, results, capsys):
    spec, path = tiny_spec(
        "crash", grid={"seed": [0, 1, 2, 3, 4, 5, 6, 7]}, attack={"iterations": 30}
    )
    sweep_dir = results / "crash"
    driver = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "run", str(path), "--results", str(results),
         "--num-cpus", "2"],
        env={**os.environ, **RAY_ENV}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while len(trial_files(sweep_dir)) < 2 and driver.poll() is None:
            time.sleep(0.1)
    finally:
        kill_session(driver.pid)  # the driver and the Ray it started, as a crash would
        driver.wait()
    for _ in range(100):  # Ray's processes leave with their driver
        if not session_pids(driver.pid):
            break
        time.sleep(0.1)
    assert not session_pids(driver.pid)

    finished = file_states(sweep_dir)
    keys = [t.trial_key for t in spec.trials()]
    missing = [k for k in keys if f"{k}.parquet" not in finished]
    assert 2 <= len(finished) and missing, "the driver was to be killed mid-sweep"
    # a half-written row of a missing trial (a non-atomic writer dying) is never counted
    real = next(iter(finished.values()))[1]
    (sweep_dir / "trials" / f"{missing[0]}.parquet").write_bytes(real[: len(real) // 3])

    assert main(["status", str(sweep_dir), "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"ok": len(finished), "diverged": 0, "error": 0,
                      "missing": len(missing), "total": 8}  # fmt: skip

    assert main(["resume", str(sweep_dir), "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{len(finished)} already finished" in out and f"{len(missing)} to run" in out
    after = file_states(sweep_dir)
    assert sorted(after) == sorted(f"{k}.parquet" for k in keys)  # every trial exactly once
    assert {name: after[name] for name in finished} == finished  # finished rows untouched
    assert set(SweepStore(str(sweep_dir)).statuses().values()) == {"ok"}
