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
from ray import tune

from dlgsweep.cli import main
from orchestrator.sweep import run_sweep
from store.sweep_store import SweepStore

pytestmark = pytest.mark.ray  # every test here starts Ray


def test_failing_trial_is_retried_then_kept_as_an_error_row(
    local_ray, tiny_spec, results, tmp_path, trial_files
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


def test_worker_killed_mid_attack_is_retried_into_one_row(
    local_ray, tiny_spec, results, trial_files
):
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


@pytest.mark.ray
def test_driver_killed_mid_sweep_then_resume_runs_only_the_rest(
    tiny_spec, results, capsys, file_states, kill_session, ray_env, session_pids, trial_files
):
    spec, path = tiny_spec(
        "crash", grid={"seed": [0, 1, 2, 3, 4, 5, 6, 7]}, attack={"iterations": 30}
    )
    sweep_dir = results / "crash"
    driver = subprocess.Popen(
        [sys.executable, "-m", "dlgsweep.cli", "run", str(path), "--results", str(results),
         "--num-cpus", "2"],
        env={**os.environ, **ray_env}, start_new_session=True,
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


class WriteOkThenKill(tune.Callback):
    """A worker whose first attempt wrote its `ok` row and died before reporting: the row is
    put in place exactly as that attempt would have written it, then the worker is killed."""

    def __init__(self, store: SweepStore, row: dict) -> None:
        self.store, self.row = store, row
        self.killed: list[int] = []
        self.results: list[dict] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.results.append(dict(result))
        if result.get("attempt") == 1 and "pid" in result and not self.killed:
            self.store.write_row(self.row)
            self.killed.append(result["pid"])
            os.kill(result["pid"], signal.SIGKILL)


def test_a_row_written_before_the_worker_died_is_kept_by_its_retry(
    local_ray, tiny_spec, results, trial_files
):
    from store.schema import make_row
    from workloads.result import TrialResult

    spec, _ = tiny_spec("wrote", grid={"seed": [0]}, attack={"iterations": 150}, retries=2)
    (config,) = spec.trials()
    store = SweepStore.of(str(results), "wrote")
    planted = make_row(
        config, TrialResult(status="ok", psnr_mean=99.0, started_at=1.0, finished_at=2.0),
        sweep="wrote", attempt=1,
    )  # fmt: skip
    killer = WriteOkThenKill(store, planted)
    outcome = run_sweep(spec, str(results), callbacks=[killer], say=lambda line: None)
    assert killer.killed, "the trial never reported its start"
    path = store.trial_path(config.trial_key)
    assert outcome.counts == {"ok": 1}
    (row,) = SweepStore(str(results / "wrote")).read_rows().table.to_pylist()
    assert row["psnr_mean"] == 99.0 and row["attempt"] == 1  # attempt 1's row, not replaced
    assert os.path.getsize(path) > 0 and len(trial_files(results / "wrote")) == 1
    kept = [r for r in killer.results if r.get("kept")]
    assert kept and kept[0]["attempt"] == 2  # the retry ran, looked, and left it


def test_rows_compact_into_parts_during_the_run_and_no_checkpoints(local_ray, tiny_spec, results):
    """Attempts are counted without Tune checkpoints; finished rows end up in part files."""
    import pyarrow.parquet as pq

    spec, _ = tiny_spec("packed", grid={"seed": [0, 1, 2, 3]}, retries=1)
    lines: list[str] = []
    outcome = run_sweep(spec, str(results), compact_min_rows=2, say=lines.append)
    assert outcome.counts == {"ok": 4} and outcome.exit_code == 0
    sweep_dir = results / "packed"
    store = SweepStore(str(sweep_dir))
    listing = store.listing()
    assert listing.rows == [] and listing.parts, "every finished row is in a part"
    assert any("compacted" in line for line in lines)
    table = pq.read_table(sweep_dir / "trials")  # pyarrow, on its own: the folder is the table
    keys = sorted(table.column("trial_key").to_pylist())
    assert keys == sorted(t.trial_key for t in spec.trials())
    assert set(table.column("attempt").to_pylist()) == {1}
    assert not list((sweep_dir / "tune").rglob("checkpoint_*"))  # no Tune checkpoints
    assert not (sweep_dir / ".attempts").exists() or not list((sweep_dir / ".attempts").iterdir())
    assert not (sweep_dir / ".lock").exists()
    parts = {p: p.read_bytes() for p in (sweep_dir / "trials").iterdir()}
    lines.clear()
    again = run_sweep(spec, str(results), compact_min_rows=2, say=lines.append)
    assert again.ran == 0 and any("4 already finished" in line for line in lines)
    assert {p: p.read_bytes() for p in (sweep_dir / "trials").iterdir()} == parts


@pytest.mark.ray
def test_ctrl_c_prints_the_resume_hint_exits_130_and_loses_nothing(
    tiny_spec, results, tmp_path, file_states, kill_session, ray_env, trial_files
):
    spec, path = tiny_spec("intr", grid={"seed": [0, 1, 2, 3]}, attack={"iterations": 25})
    sweep_dir = results / "intr"
    log = tmp_path / "driver.log"
    dlgsweep = os.path.join(os.path.dirname(sys.executable), "dlgsweep")
    with open(log, "w") as out:
        driver = subprocess.Popen(
            [dlgsweep, "run", str(path), "--results", str(results), "--num-cpus", "2"],
            env={**os.environ, **ray_env}, start_new_session=True, stdout=out, stderr=out,
        )  # fmt: skip
    try:
        while not trial_files(sweep_dir) and driver.poll() is None:
            time.sleep(0.1)
        assert driver.poll() is None, "the sweep ended before it could be interrupted"
        driver.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        driver.wait(timeout=120)
    finally:
        kill_session(driver.pid)  # only if something was left behind
        driver.wait()
    text = log.read_text()
    assert driver.returncode == 130, text[-2000:]
    assert f"dlgsweep resume {sweep_dir}" in text and "Tuner.restore" not in text
    assert not (sweep_dir / ".lock").exists()  # the lease went with the run

    finished = file_states(sweep_dir)
    assert finished and len(finished) < 4
    for name in finished:  # every row that counts is whole: read on its own by pyarrow
        import pyarrow.parquet as pq

        row = pq.read_table(sweep_dir / "trials" / name)
        assert row.num_rows == 1 and row.column("status")[0].as_py() == "ok"
    assert main(["resume", str(sweep_dir), "--num-cpus", "2"]) == 0
    after = file_states(sweep_dir)
    assert len(after) == 4 and {name: after[name] for name in finished} == finished
    assert set(SweepStore(str(sweep_dir)).statuses().values()) == {"ok"}
