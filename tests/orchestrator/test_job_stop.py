"""`ray job stop` mid-sweep, the way a Ray user stops a run: a local Ray cluster with its job
server (`ray start --head`, dashboard on), `dlgsweep run` submitted with `ray job submit`, stopped
with `ray job stop` (SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S), then `resume`
submitted as a job too.

Checks: the lease is free as soon as `ray job stop` returns; the job's log holds the resume hint
and the driver's exit code 143; `resume` finishes the sweep; every trial has exactly one
finished row, read by pyarrow on its own; no `.attempts/`/`.staging/` leftovers after `resume`.

The cluster's processes carry a tag in their environment (Ray daemonises, so the process tree
alone does not find them); the test ends exactly those, one pid at a time (never `ray stop`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.cluster]  # `ray start` + dashboard, real attacks

# ports inside this suite's ranges (GCS 6400-6449, workers 20000-20999), none of Ray's defaults
GCS, DASHBOARD = 6441, 8441
PORTS = [
    f"--port={GCS}", f"--dashboard-port={DASHBOARD}", "--node-manager-port=6442",
    "--object-manager-port=6443", "--ray-client-server-port=6444",
    "--dashboard-agent-listen-port=6445", "--dashboard-agent-grpc-port=6446",
    "--runtime-env-agent-port=6447", "--metrics-export-port=6448",
    "--min-worker-port=20600", "--max-worker-port=20699",
]  # fmt: skip
BIN = Path(sys.executable).parent
TAG = "DLGSWEEP_TEST_TAG"


def _tagged(tag: str) -> list[int]:
    """Our processes whose environment carries the tag (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{TAG}={tag}".encode() in environ:
            found.append(int(entry.name))
    return found


def _end(tag: str) -> None:
    """SIGTERM the tagged processes, SIGKILL what is left after a few seconds."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
        for pid in _tagged(tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while _tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.2)


@pytest.fixture
def job_cluster(tmp_path_factory, ray_env):
    """A one-node Ray cluster with the job server; (dashboard URL, env for the `ray` CLI)."""
    tag = uuid.uuid4().hex
    temp_dir = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / f"job-{tag[:6]}"  # short: sockets
    env = {**os.environ, **ray_env, TAG: tag, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    url = f"http://127.0.0.1:{DASHBOARD}"
    try:
        subprocess.run(
            [str(BIN / "ray"), "start", "--head", "--num-cpus=2", "--num-gpus=0",
             "--node-ip-address=127.0.0.1", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--temp-dir={temp_dir}", *PORTS],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:  # the job server answers once the dashboard is up
            listed = subprocess.run(
                [str(BIN / "ray"), "job", "list", "--address", url],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if listed.returncode == 0:
                break
            assert time.monotonic() < deadline, listed.stderr[-2000:]
            time.sleep(1)
        yield url, env
    finally:
        _end(tag)
        left = _tagged(tag)
        assert not left, f"processes of the test cluster left: {left}"


def _job(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), "job", *args], env=env, capture_output=True, text=True, check=check,
        timeout=600,
    )  # fmt: skip


def _status(url: str, job: str) -> str:
    """The job's status from the job server's REST API (cheaper than a `ray job status`)."""
    with urllib.request.urlopen(f"{url}/api/jobs/{job}", timeout=10) as answer:
        return json.load(answer)["status"]


def test_ray_job_stop_releases_the_lease_and_resume_finishes(
    job_cluster, tiny_spec, results, trial_files
):
    import pyarrow.parquet as pq

    url, env = job_cluster
    # long enough that the stop lands mid-sweep on an idle machine too (4 trials of 30
    # iterations could all finish in the seconds `ray job stop` takes to deliver SIGTERM)
    spec, path = tiny_spec("stopped", grid={"seed": list(range(8))}, attack={"iterations": 60})
    sweep_dir = results / "stopped"
    run = f"{BIN / 'dlgsweep'} run {path} --results {results}"
    # the shell reports the driver's exit code in the job's log (`trap :` defers SIGTERM to
    # after the driver exits; the driver itself gets SIGTERM from `ray job stop` directly)
    entrypoint = f"trap : TERM; {run}; echo dlgsweep exited $?"
    _job(env, "submit", "--address", url, "--submission-id", "sweep-1", "--no-wait",
         "--", "sh", "-c", entrypoint)  # fmt: skip

    deadline = time.monotonic() + 300
    while not trial_files(sweep_dir):  # a finished row: stop the run mid-sweep
        status = _status(url, "sweep-1")
        assert status in ("PENDING", "RUNNING"), status
        assert time.monotonic() < deadline, "no row within 300 s"
        time.sleep(0.5)
    assert (sweep_dir / ".lock").exists()
    asked = time.monotonic()
    _job(env, "stop", "--address", url, "sweep-1")  # returns once the job has stopped
    assert not (sweep_dir / ".lock").exists(), "the lease outlived `ray job stop`"
    print(f"`ray job stop` returned after {time.monotonic() - asked:.1f} s")
    assert _status(url, "sweep-1") == "STOPPED"

    log = _job(env, "logs", "--address", url, "sweep-1").stdout
    assert f"dlgsweep resume {sweep_dir}" in log, log[-3000:]
    assert "dlgsweep exited 143" in log, log[-3000:]  # not SIGKILLed: it finished in time
    assert "stopped (SIGTERM)" in log and "Traceback" not in log, log[-3000:]
    stopped_with = len(trial_files(sweep_dir))
    assert stopped_with < len(spec.trials()), "the sweep ended before it was stopped"

    resumed = _job(env, "submit", "--address", url, "--submission-id", "sweep-2",
                   "--", str(BIN / "dlgsweep"), "resume", str(sweep_dir), check=False)  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert f"{stopped_with} already finished" in resumed.stdout

    table = pq.read_table(sweep_dir / "trials")  # the folder is the table, pyarrow on its own
    keys = table.column("trial_key").to_pylist()
    assert sorted(keys) == sorted(t.trial_key for t in spec.trials())  # each exactly once
    assert set(table.column("status").to_pylist()) == {"ok"}
    for leftover in (".attempts", ".staging", ".lock"):
        where = sweep_dir / leftover
        assert not where.exists() or not any(where.iterdir()), leftover
