"""Two `dlgsweep run` of one sweep started at the same moment: one runs it, the other is refused
(exit 2, naming the live run); an independent reader (pyarrow, file by file) then finds one row
per trial, each written once, and no row that ever appeared was replaced."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.ray  # a real Ray Tune sweep in a subprocess


def test_two_runs_at_once_one_runs_the_other_is_refused(
    tiny_spec, results, tmp_path, kill_session, ray_env
):
    spec, path = tiny_spec("twice", grid={"seed": [0, 1, 2, 3]}, attack={"iterations": 20})
    trials_dir = results / "twice" / "trials"
    dlgsweep = os.path.join(os.path.dirname(sys.executable), "dlgsweep")
    argv = [dlgsweep, "run", str(path), "--results", str(results), "--num-cpus", "2"]
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    handles = [open(log, "w") for log in logs]
    runs = [
        subprocess.Popen(argv, env={**os.environ, **ray_env}, start_new_session=True,
                         stdout=handle, stderr=handle)
        for handle in handles
    ]  # fmt: skip
    first_seen: dict[str, tuple[int, bytes]] = {}  # every row file as it first appeared
    try:
        deadline = time.monotonic() + 600
        while any(r.poll() is None for r in runs) and time.monotonic() < deadline:
            for file in trials_dir.glob("*.parquet") if trials_dir.exists() else []:
                if file.name not in first_seen:
                    first_seen[file.name] = (file.stat().st_mtime_ns, file.read_bytes())
            time.sleep(0.05)
    finally:
        for run in runs:
            kill_session(run.pid)
            run.wait()
        for handle in handles:
            handle.close()
    codes = [run.returncode for run in runs]
    assert sorted(codes) == [0, 2], [log.read_text()[-1500:] for log in logs]
    winner = runs[codes.index(0)]
    refused = logs[codes.index(2)].read_text()
    assert "is being run by" in refused and f"pid {winner.pid}" in refused
    assert "started 20" in refused and "host" in refused  # start time (ISO) and host named

    # the independent reader: pyarrow, each file on its own
    rows = [pq.read_table(file).to_pylist() for file in sorted(trials_dir.glob("*.parquet"))]
    assert all(len(r) == 1 for r in rows)
    keys = sorted(r[0]["trial_key"] for r in rows)
    assert keys == sorted(t.trial_key for t in spec.trials())  # one row per trial
    assert {r[0]["status"] for r in rows} == {"ok"} and {r[0]["attempt"] for r in rows} == {1}
    assert sorted(first_seen) == sorted(f"{k}.parquet" for k in keys)
    for name, (mtime, data) in first_seen.items():  # never replaced after it first appeared
        file = trials_dir / name
        assert (file.stat().st_mtime_ns, file.read_bytes()) == (mtime, data)
