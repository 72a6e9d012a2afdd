"""`--log`: one sweep sends each trial to an MLflow server on loopback (a real `mlflow server`),
to W&B in offline mode and to TensorBoard event files, through Tune's own logger callbacks.

Checks: the MLflow experiment named after the sweep has one finished run per trial, with the
trial's config as params and its curve (live reports, then the final score) as metrics; W&B
wrote one offline run per trial; TensorBoard one event file per trial. Bad `--log` values are
refused in test_bad_input.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dlgsweep.cli import main

pytestmark = pytest.mark.ray  # an MLflow server and real attacks through Ray Tune


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path, kill_session):
    """`mlflow server` on 127.0.0.1 (a free port), SQLite backend; its http URI."""
    started, port = time.monotonic(), _free_port()
    log = open(tmp_path / "mlflow.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--default-artifact-root", str(tmp_path / "artifacts")],
        stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "mlflow.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not answer in 120 s"
            time.sleep(0.5)
        print(f"mlflow server up in {time.monotonic() - started:.1f} s")
        yield uri
    finally:
        kill_session(server.pid)
        server.wait()
        log.close()


def test_log_sends_every_trial_to_mlflow_wandb_and_tensorboard(
    mlflow_server, tiny_spec, results, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("WANDB_MODE", "offline")  # no network: W&B writes its runs to files
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    attack = {"iterations": 20, "curve_points": 10}
    spec, path = tiny_spec("tracked", grid={"seed": [0, 1]}, attack=attack, report_every=4)
    logs = ["--log", f"mlflow={mlflow_server}", "--log", "wandb", "--log", "tensorboard"]
    argv = ["run", str(path), "--results", str(results), "--num-cpus", "2", *logs]
    started = time.monotonic()
    assert main(argv) == 0
    print(f"the sweep took {time.monotonic() - started:.1f} s")

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("tracked")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert {r.data.params["trial/config/seed"] for r in runs} == {"0", "1"}
    for run in runs:
        curve = client.get_metric_history(run.info.run_id, "psnr")
        assert [m.step for m in curve] == [4, 8, 12, 16]  # the live reports, by attack iteration
        assert client.get_metric_history(run.info.run_id, "psnr_mean")[-1].step == 20

    offline = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2 and all(list(run.glob("*.wandb")) for run in offline)

    events = list((results / "tracked" / "tune").rglob("events.out.tfevents.*"))
    assert len({e.parent for e in events}) == 2
    assert os.path.getsize(events[0]) > 0
