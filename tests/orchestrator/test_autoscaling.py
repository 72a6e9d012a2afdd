"""Autoscaling as cluster.yaml describes it: a 0-CPU head, GPU workers from `min_workers: 0`.

A local autoscaling cluster (Ray's fake multi-node provider: every "node" a raylet of its own
on this machine, GPUs logical) built from cluster.yaml's own `available_node_types`. Then
`dlgsweep run ... --require-gpu` with trials of {cpu: 1, gpu: 0.25}, as a subprocess:

- the cluster starts with no GPU node, and the trials' GPU request makes the autoscaler start
  `gpu` workers (time to the first running trial is printed);
- trials pack as asked: several at once on one GPU node (rows' node_id + started/finished),
  never more than its four quarters;
- one autoscaled node is lost mid-sweep, a spot reclaim: every process of it SIGKILLed by pid
  while a trial is mid-attack there; no row is lost or doubled (pyarrow on the folder itself);
- after the idle timeout the workers are released: back to the head alone.

What differs from cluster.yaml, and why: `max_workers` capped at 2 per type and overall (a 2-core
machine); the idle timeout 0.1 min instead of 10; each node's object store 200 MB (Ray would
take 30% of this machine's memory per fake node); the node resources themselves ({CPU: 4,
GPU: 1} per `gpu` worker, {CPU: 0} on the head) are cluster.yaml's, logical CPUs included.

`ray.cluster_utils.AutoscalingCluster` is the documented way to build such a cluster, but it
cannot be used here as shipped: its config template (fake_multi_node/example.yaml) is missing
from Ray 2.60.0's wheel (FileNotFoundError), and its start()/shutdown() run `ray stop --force`,
which ends every Ray process of this user on the machine, on Ray's default ports. `_Cluster`
below does what AutoscalingCluster does (the same config shape, `ray start --head
--autoscaling-config` with RAY_FAKE_CLUSTER=1 and AUTOSCALER_UPDATE_INTERVAL_S=1) on this suite's
ports, with a tag in every process's environment, and ends exactly those processes by pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from dlgsweep.errors import UserError
from orchestrator.cluster import ClusterView, fit_resources

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TAG = "DLGSWEEP_TEST_TAG"
# ports inside this suite's ranges (GCS 6400-6449, workers 20000-20999), none of Ray's defaults;
# the fake worker nodes take free ports of their own
GCS = 6421
PORTS = [
    f"--port={GCS}", "--node-manager-port=6422", "--object-manager-port=6423",
    "--ray-client-server-port=6424", "--dashboard-agent-listen-port=6425",
    "--dashboard-agent-grpc-port=6426", "--runtime-env-agent-port=6427",
    "--metrics-export-port=6428", "--min-worker-port=20700", "--max-worker-port=20799",
]  # fmt: skip
MAX_WORKERS = 2  # per worker type and overall: a 2-core machine
IDLE_TIMEOUT_MINUTES = 0.1
OBJECT_STORE_BYTES = 200 * 2**20
FAKE_HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head's type


def autoscaling_config(cluster_yaml: Path, gcs_address: str) -> dict:
    """cluster.yaml's node types and scaling settings on Ray's fake multi-node provider."""
    raw = yaml.safe_load(cluster_yaml.read_text())
    types = raw["available_node_types"]
    workers = {
        name: {
            "resources": {**kind["resources"], "object_store_memory": OBJECT_STORE_BYTES},
            "node_config": {},
            "min_workers": kind.get("min_workers", 0),
            "max_workers": min(kind.get("max_workers", 0), MAX_WORKERS),
        }
        for name, kind in types.items()
        if name != raw["head_node_type"]
    }
    head = types[raw["head_node_type"]]["resources"]
    return {
        "cluster_name": f"{raw['cluster_name']}-autoscaling-test",
        "max_workers": min(raw["max_workers"], MAX_WORKERS),
        "upscaling_speed": raw["upscaling_speed"],
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            **workers,
            FAKE_HEAD_TYPE: {"resources": dict(head), "node_config": {}, "max_workers": 0},
        },
        "head_node_type": FAKE_HEAD_TYPE,
        # what the fake provider does not run (it starts raylets, nothing over SSH)
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }  # fmt: skip


class _Cluster:
    """A head with the fake-provider autoscaler; every process it and its nodes start is tagged."""

    def __init__(self, temp_dir: Path, ray_env: dict[str, str], procs) -> None:  # noqa: ANN001
        import ray

        self.tag = uuid.uuid4().hex
        self.ip = ray.util.get_node_ip_address()
        self.address = f"{self.ip}:{GCS}"
        self.temp_dir = temp_dir
        self.procs = procs
        self.config = autoscaling_config(REPO / "cluster.yaml", self.address)
        self.env = {**os.environ, **ray_env, TAG: self.tag, "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)

    def start(self) -> None:
        config_file = self.temp_dir / "autoscaling.json"
        config_file.write_text(json.dumps(self.config))
        head = self.config["available_node_types"][FAKE_HEAD_TYPE]["resources"]
        env = {
            **self.env,
            "RAY_FAKE_CLUSTER": "1",  # the fake multi-node provider (as AutoscalingCluster sets)
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_enable_autoscaler_v2": "0",  # cluster.yaml's nodes run Ray's default, v1
        }
        # a lost node is declared dead after 5 missed health checks of 1 s (Ray: 3 s each)
        health = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}
        subprocess.run(
            [str(BIN / "ray"), "start", "--head", f"--autoscaling-config={config_file}",
             f"--system-config={json.dumps(health, separators=(',', ':'))}",
             f"--num-cpus={head.get('CPU', 0)}", f"--num-gpus={head.get('GPU', 0)}",
             f"--object-store-memory={OBJECT_STORE_BYTES}", "--include-dashboard=false",
             f"--temp-dir={self.temp_dir}", "--disable-usage-stats", *PORTS],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def node_pids(self, node_id: str) -> list[int]:
        """The processes of one autoscaled node: the fake provider starts each node's raylet
        with RAY_OVERRIDE_NODE_ID_FOR_TESTING=<its node id>, and the raylet starts the node's
        agents and workers (their descendants). The provider also starts a log monitor per node,
        outside that tree and indistinguishable from the others; it holds no work (it tails the
        session's log files) and is ended with the node by the provider or by `end`."""
        roots = self.procs.pids_with(
            f"{TAG}={self.tag}", f"RAY_OVERRIDE_NODE_ID_FOR_TESTING={node_id}"
        )
        return sorted(self.procs.with_descendants(set(roots)))

    def end(self) -> list[int]:
        """SIGTERM the tagged processes, SIGKILL what is left; the pids still alive after."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            for pid in self.procs.pids_with(f"{TAG}={self.tag}"):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while self.procs.pids_with(f"{TAG}={self.tag}") and time.monotonic() < deadline:
                time.sleep(0.2)
        return self.procs.pids_with(f"{TAG}={self.tag}")


def _alive_nodes() -> list[dict]:
    import ray

    return [n for n in ray.nodes() if n["Alive"]]


def _busy_trainables(procs, pids: list[int], tick: float) -> list[int]:  # noqa: ANN001
    """The node's Tune trainable processes that burnt CPU in the last half second (an attack)."""
    trainables = [p for p in pids if "ImplicitFunc" in procs.cmdline(p)]
    before = {p: procs.cpu_ticks(p) for p in trainables}
    time.sleep(0.5)
    return [p for p in trainables if procs.cpu_ticks(p) - before[p] >= 0.05 * tick]


def _row_nodes(sweep_dir: Path) -> list[str]:
    trials = sweep_dir / "trials"
    if not any(trials.glob("*.parquet")):
        return []
    return pq.read_table(trials, columns=["node_id"]).column("node_id").to_pylist()


def test_require_gpu_keeps_the_gpu_request_on_a_cluster_with_no_gpu_yet():
    """cluster.yaml at launch: the 0-CPU head alone. The request must reach Ray unchanged (it is
    what the autoscaler scales on); without --require-gpu it is dropped, or refused."""
    head_only = ClusterView([{"CPU": 0.0, "GPU": 0.0}], "cluster at auto")
    said: list[str] = []
    assert fit_resources(1, 0.25, head_only, True, said.append) == {"cpu": 1, "gpu": 0.25}
    assert said == [] and head_only.slots(1, 0.25) == 0
    with pytest.raises(UserError, match="fits on no node"):
        fit_resources(1, 0.25, head_only, False, said.append)  # GPU dropped; still no CPU
    assert "dropping the request of 0.25 GPU" in said[0]


@pytest.mark.ray
@pytest.mark.cluster  # an autoscaling Ray cluster, real attacks
def test_autoscaler_starts_gpu_workers_from_zero_packs_survives_a_lost_node_and_scales_down(
    tiny_spec, results, ray_env, procs, max_overlap
):
    import ray

    spec, path = tiny_spec(
        "autoscaled", grid={"seed": list(range(12))}, attack={"iterations": 60},
        resources={"cpu": 1, "gpu": 0.25}, retries=2,
    )  # fmt: skip
    temp_dir = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / f"as-{uuid.uuid4().hex[:6]}"
    temp_dir.mkdir(parents=True)
    cluster = _Cluster(temp_dir, ray_env, procs)
    gpu_type = cluster.config["available_node_types"]["gpu"]["resources"]
    assert gpu_type["GPU"] == 1 and gpu_type["CPU"] == 4  # cluster.yaml's g5.xlarge worker
    driver = None
    try:
        cluster.start()
        ray.shutdown()  # the suite's shared local Ray, if up: this test joins its own cluster
        ray.init(address=cluster.address, logging_level="WARNING")
        start_nodes = _alive_nodes()
        head_id = start_nodes[0]["NodeID"]
        assert len(start_nodes) == 1 and ray.cluster_resources().get("GPU", 0) == 0
        assert ray.cluster_resources().get("CPU", 0) == 0  # the head offers no CPU to trials

        log = temp_dir / "run.log"
        launched = time.time()
        with open(log, "w") as sink:
            driver = subprocess.Popen(
                [str(BIN / "dlgsweep"), "run", str(path), "--results", str(results),
                 "--address", cluster.address, "--require-gpu"],
                env=cluster.env, stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        gpu_nodes: dict[str, float] = {}  # node id -> when it was first seen alive
        lost, tick = None, os.sysconf("SC_CLK_TCK")
        while driver.poll() is None:
            for node in _alive_nodes():
                if node["Resources"].get("GPU", 0) > 0:
                    gpu_nodes.setdefault(node["NodeID"], time.time() - launched)
            if lost is None:  # a spot reclaim of a GPU node with an attack mid-run on it
                finished_on = set(_row_nodes(results / "autoscaled"))
                for node_id in [n for n in gpu_nodes if n in finished_on]:
                    pids = cluster.node_pids(node_id)
                    if _busy_trainables(procs, pids, tick):
                        for pid in cluster.node_pids(node_id):
                            os.kill(pid, signal.SIGKILL)
                        lost, lost_at = node_id, time.time() - launched
                        print(f"\nlost node ..{node_id[-5:]} at {lost_at:.1f} s: SIGKILLed {pids}")
                        break
            time.sleep(0.5)
        out = log.read_text()
        finished = time.time()
        assert driver.returncode == 0, out[-4000:]
        assert "no node fits a trial yet (1 CPU + 0.25 GPU)" in out  # no GPU node at the start
        assert lost is not None, "no GPU node ever had a trial mid-attack to lose"
        assert not cluster.node_pids(lost)

        # every trial exactly one finished row, read as the folder lies (no dedupe)
        table = pq.read_table(results / "autoscaled" / "trials")
        rows = table.to_pylist()
        assert sorted(r["trial_key"] for r in rows) == sorted(t.trial_key for t in spec.trials())
        assert {r["status"] for r in rows} == {"ok"}
        assert all(r["device"] == "cpu" for r in rows)  # logical GPUs, no CUDA

        # the autoscaler started GPU workers from zero; every trial ran on one of them
        assert gpu_nodes and head_id not in gpu_nodes
        assert {r["node_id"] for r in rows} <= set(gpu_nodes)
        rerun = [r for r in rows if r["attempt"] >= 2]
        assert rerun, "the lost node's trials never ran again"
        assert all(r["node_id"] != lost for r in rerun)

        # packing exactly as the spec asks: gpu 0.25 on a node of GPU 1 and CPU 4 runs four at
        # once (12 trials wait when the first GPU node joins), never more; a 0.5 request
        # would run two (checked: with the spec's gpu at 0.5 this fails)
        by_node = {n: [r for r in rows if r["node_id"] == n] for n in {r["node_id"] for r in rows}}
        packing = {f"..{n[-5:]}": max_overlap(node_rows) for n, node_rows in by_node.items()}
        assert max(packing.values()) == 4, packing
        first_trial = min(r["started_at"] for r in rows).timestamp() - launched

        # released after the idle timeout: the head alone again, the workers' processes gone
        # (the autoscaler terminated them; the lost one too, once it missed its heartbeats)
        deadline = time.monotonic() + 180
        while len(_alive_nodes()) > 1 or any(cluster.node_pids(n) for n in gpu_nodes):
            assert time.monotonic() < deadline, f"workers kept: {_alive_nodes()}"
            time.sleep(1)
        released = time.time() - finished
        assert [n["NodeID"] for n in _alive_nodes()] == [head_id]

        seen = ", ".join(f"..{n[-5:]} at {at:.1f} s" for n, at in gpu_nodes.items())
        print(
            f"autoscaling: GPU nodes seen alive {seen}; first trial running "
            f"{first_trial:.1f} s after `dlgsweep run`; trials at once per node {packing}; "
            f"node ..{lost[-5:]} lost at {lost_at:.1f} s, {len(rerun)} trial(s) rerun (attempts "
            f"{sorted(r['attempt'] for r in rerun)}); sweep {finished - launched:.1f} s; "
            f"workers released {released:.1f} s after it ended (idle timeout "
            f"{IDLE_TIMEOUT_MINUTES * 60:.0f} s)"
        )
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
            driver.wait()
        ray.shutdown()
        left = cluster.end()
        assert not left, f"processes of the test cluster left: {left}"
