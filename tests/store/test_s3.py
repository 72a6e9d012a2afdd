"""Results on an S3-compatible server (moto's, on loopback): a real sweep written there through
Ray, read back by `status`, `resume`, `query` and `report`, the endpoint in the URI's query
string (as for MinIO or R2); the sweep lease through S3's conditional PUT (If-None-Match)."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest
from moto.server import ThreadedMotoServer

from dlgsweep.cli import main
from orchestrator import lease as lease_module
from orchestrator.lease import SweepBusy, SweepLease, read_holder
from orchestrator.sweep import run_sweep
from store.sweep_store import SweepStore

pytestmark = [pytest.mark.ray, pytest.mark.s3]  # a loopback S3 server, attacks via Ray Tune

BUCKET = "dlg-results"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (a free port), one bucket; the results root URI."""
    saved = {name: os.environ.get(name) for name in CREDENTIALS}
    os.environ.update(CREDENTIALS)  # Ray workers started after this inherit them
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket=BUCKET)
    options = f"endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    yield {"root": f"s3://{BUCKET}/results?{options}", "client": client, "options": options}
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def s3_ray(s3):
    """A local Ray started after the credentials are in the environment (2 CPUs): its workers
    must see them, so the suite's shared Ray (if up) is shut down first."""
    import ray

    ray.shutdown()
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def _keys(client, prefix: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_a_sweep_on_s3_is_written_and_read_back(s3, s3_ray, tiny_spec, tmp_path, capsys):
    from analysis.report import build_report

    spec, _ = tiny_spec("ons3", grid={"seed": [0, 1]}, attack={"iterations": 3})
    outcome = run_sweep(spec, s3["root"], compact_min_rows=1, say=lambda line: None)
    assert outcome.counts == {"ok": 2} and outcome.exit_code == 0
    objects = _keys(s3["client"], "results/ons3/")
    assert "results/ons3/spec.yaml" in objects
    parts = [k for k in objects if k.startswith("results/ons3/trials/part-")]
    assert parts and not [k for k in objects if k.startswith("results/ons3/.lock")]
    assert not any("tune" in k for k in _keys(s3["client"], ""))  # Tune's state stays local
    sweep_uri = f"s3://{BUCKET}/results/ons3?{s3['options']}"

    # a second sweep through the CLI, rows left as row files (below the compaction threshold),
    # Tune's experiment state asked for on S3
    other, other_path = tiny_spec("loose", grid={"seed": [0]}, attack={"iterations": 3})
    tune_uri = f"s3://{BUCKET}/tune-state?{s3['options']}"
    assert main(["run", str(other_path), "--results", s3["root"], "--tune-storage", tune_uri]) == 0
    asked = _keys(s3["client"], "tune-state/")
    assert any("/experiment_state" in k for k in asked) and any("result.json" in k for k in asked)
    assert any(k.endswith(".parquet") and "/part-" not in k
               for k in _keys(s3["client"], "results/loose/trials/"))  # fmt: skip
    capsys.readouterr()

    assert main(["status", sweep_uri, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status == {"ok": 2, "diverged": 0, "error": 0, "missing": 0, "total": 2}

    assert main(["resume", sweep_uri]) == 0  # the query string survives <results>/<sweep>
    assert "2 already finished" in capsys.readouterr().out

    sql = "SELECT sweep, count(*) AS n, min(psnr_mean) > 0 AS scored FROM trials GROUP BY sweep"
    assert main(["query", s3["root"], sql, "--format", "json"]) == 0
    counted = {r["sweep"]: r for r in json.loads(capsys.readouterr().out)}
    assert {k: v["n"] for k, v in counted.items()} == {"ons3": 2, "loose": 1}

    report = build_report(sweep_uri, tmp_path / "report")
    assert report.counts["rows"] == 2 and report.counts["by_status"]["ok"] == 2
    assert report.counts.get("missing") == 0
    assert (tmp_path / "report" / "index.html").is_file() and report.gallery_rows >= 1


def test_the_lease_on_s3_is_a_conditional_put(s3, monkeypatch):
    store = SweepStore(f"s3://{BUCKET}/results/leased?{s3['options']}")
    first = SweepLease(store, "dlgsweep run leased")
    assert first._backend() == "s3"
    with first:
        assert "results/leased/.lock" in _keys(s3["client"], "results/leased/")
        with pytest.raises(SweepBusy, match="dlgsweep run leased"):
            SweepLease(store, "dlgsweep resume").acquire()
    assert read_holder(store) is None
    # a lease from another host that stopped beating: taken over once it is stale
    stale = {"run": "gone", "host": "gpu-head-7", "pid": 1, "command": "dlgsweep run",
             "started_at": "2026-01-01T00:00:00+00:00", "heartbeat": time.time() - 600}  # fmt: skip
    s3["client"].put_object(Bucket=BUCKET, Key="results/leased/.lock", Body=json.dumps(stale))
    monkeypatch.setattr(lease_module, "STALE_S", 120.0)
    with SweepLease(store, "dlgsweep resume", warn=lambda _: None) as taken:
        assert read_holder(store).run == taken.run
