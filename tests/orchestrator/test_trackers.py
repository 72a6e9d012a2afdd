"""`--log`: one sweep sends each trial to an MLflow server on loopback (a real `mlflow server`),
to W&B in offline mode and to TensorBoard event files, through Tune's own logger callbacks.

Checks: the MLflow experiment named after the sweep has one finished run per trial, with the
trial's config as params and its curve (live reports, then the final score) as metrics; W&B
wrote one offline run per trial; TensorBoard one event file per trial. Bad `--log` values are
refused in test_bad_input.py.
"""

from __future__ import annotations

import json
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

    # W&B (offline): each trial a run of the sweep's project, its history the PSNR curve
    offline = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 2
    for run in offline:
        (log,) = run.glob("*.wandb")
        projects, history = _wandb_records(log)
        assert projects == {"tracked"}, projects
        assert _steps_of(history, "psnr") == [4, 8, 12, 16], history[:3]

    # TensorBoard: each trial's event file holds the PSNR curve at the same steps
    events = sorted((results / "tracked" / "tune").rglob("events.out.tfevents.*"))
    assert len({e.parent for e in events}) == 2
    for folder in {e.parent for e in events}:
        scalars = _tensorboard_scalars(sorted(folder.glob("events.out.tfevents.*")))
        psnr = [tag for tag in scalars if tag.endswith("/psnr")]
        assert psnr, sorted(scalars)
        values = scalars[psnr[0]]
        assert len(values) >= 4 and all(v == v and v > 0 for _, v in values), values


def _records(path: Path) -> list[bytes]:
    """The records of a LevelDB-style log (W&B's .wandb file: a 7-byte file header, then
    records, each a 7-byte header (crc, length, type) and its bytes, never crossing a 32 KiB
    block; the blocks count from the start of the file, its header included (a FIRST
    fragment ends at a file offset divisible by 32 KiB). Counted from after the header, a
    block tail of under 7 bytes of padding was read as records, and the rest of the file
    went out of step: a slow run, with more system-metrics records, lost its history)."""
    data = path.read_bytes()
    out, pending, block = [], b"", 32 * 1024
    position = 7
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # the block's tail is padding
            position += left
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST: a whole record
            out.append(pending)
            pending = b""
    return out


def _wandb_records(path: Path) -> tuple[set[str], list[dict[str, object]]]:
    """(the projects of the run records, each history record as key -> value)."""
    from wandb.proto import wandb_internal_pb2 as pb

    projects, history = set(), []
    for raw in _records(path):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            projects.add(record.run.project)
        elif kind == "history":
            history.append(
                {
                    (i.key or "/".join(i.nested_key)): json.loads(i.value_json)
                    for i in record.history.item
                }
            )
    return projects, history


def _steps_of(history: list[dict[str, object]], metric: str) -> list[int]:
    """The attack iterations at which `metric` was logged (each live report carries its
    `attack_iteration`)."""
    return [int(h["attack_iteration"]) for h in history if metric in h and "attack_iteration" in h]


def _tensorboard_scalars(paths: list[Path]) -> dict[str, list[tuple[int, float]]]:
    """tag -> (step, value) of every scalar in TFRecord event files (tensorboardX's protos)."""
    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in paths:
        data, position = path.read_bytes(), 0
        while position + 12 <= len(data):
            length = int.from_bytes(data[position : position + 8], "little")
            event = event_pb2.Event.FromString(data[position + 12 : position + 12 + length])
            position += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars
