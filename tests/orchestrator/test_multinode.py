"""A real two-node Ray cluster on this machine: a head and a worker as separate processes with
different resources (the worker with one logical GPU), one sweep across both.

Checks: trials land on both nodes and say so in their rows (host, node_id); fractional GPUs
pack as asked (gpu 0.25: four trials on the worker's one GPU at once, seen in Ray's own resource
accounting); every trial has exactly one row; logical GPUs without CUDA run on CPU.
"""

from __future__ import annotations

import threading

import pytest
import ray
from ray.cluster_utils import Cluster

from dlgsweep.cli import main
from orchestrator.sweep import run_sweep
from store.sweep_store import SweepStore

pytestmark = pytest.mark.ray  # every test here starts Ray

# ports inside this suite's ranges (GCS 6400-6449, workers 20000-20999)
HEAD = {"num_cpus": 1, "num_gpus": 1, "gcs_server_port": 6431, "include_dashboard": False,
        "min_worker_port": 20400, "max_worker_port": 20499}  # fmt: skip
WORKER = {"num_cpus": 4, "num_gpus": 1, "min_worker_port": 20500, "max_worker_port": 20599}


@pytest.fixture
def two_nodes():
    ray.shutdown()  # the suite's shared local Ray, if up: this test joins a cluster of its own
    cluster = Cluster(initialize_head=True, head_node_args=HEAD)
    worker = cluster.add_node(**WORKER)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    try:
        yield cluster.address, cluster.head_node.node_id, worker.node_id
    finally:
        ray.shutdown()
        cluster.shutdown()


class ResourceWatch:
    """The least free CPU/GPU Ray reports while the sweep runs (public ray.available_resources)."""

    def __init__(self) -> None:
        self.least = {"CPU": float("inf"), "GPU": float("inf")}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            free = ray.available_resources()
            for name in self.least:
                self.least[name] = min(self.least[name], free.get(name, 0.0))
            self.stop.wait(0.1)


@pytest.mark.ray
@pytest.mark.cluster
def test_sweep_spans_both_nodes_and_packs_fractional_gpus(
    two_nodes, tiny_spec, results, capsys, max_overlap
):
    address, head_id, worker_id = two_nodes
    spec, path = tiny_spec(
        "multi", grid={"seed": list(range(10))}, attack={"iterations": 10},
        resources={"cpu": 1, "gpu": 0.25},
    )  # fmt: skip
    assert main(["plan", str(path), "--address", address]) == 0
    plan = capsys.readouterr().out
    assert "trials: 10" in plan.splitlines() and "2 nodes, 5 CPUs, 2 GPUs" in plan
    assert "fit at once: 5 trials" in plan

    watch = ResourceWatch()
    lines: list[str] = []
    watch.thread.start()
    try:
        outcome = run_sweep(spec, str(results), say=lines.append)
    finally:
        watch.stop.set()
        watch.thread.join()
    assert outcome.exit_code == 0 and outcome.counts == {"ok": 10}
    assert any("5 trials at once" in line for line in lines)  # 1 on the head + 4 on the worker

    rows = SweepStore(str(results / "multi")).read_rows().table.to_pylist()
    assert sorted(r["seed"] for r in rows) == list(range(10))  # every trial, exactly once
    assert {r["node_id"] for r in rows} == {head_id, worker_id}
    assert all(r["host"] and r["device"] == "cpu" for r in rows)  # logical GPU, no CUDA

    # Ray's accounting: 5 trials held 5 x 0.25 GPU at once, and the head (1 CPU) holds one at
    # most, so the worker ran 4 trials on its one GPU
    assert watch.least["GPU"] == pytest.approx(2 - 5 * 0.25)
    assert watch.least["CPU"] == pytest.approx(0.0)
    on_worker = [r for r in rows if r["node_id"] == worker_id]
    assert 1 <= max_overlap(on_worker) <= 4  # never more than the GPU's four quarters
    assert max_overlap([r for r in rows if r["node_id"] == head_id]) == 1
