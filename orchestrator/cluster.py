"""The Ray cluster a sweep runs on: connect (or start a local one), and what it offers.

`connect` joins a running cluster (`--address`, $RAY_ADDRESS) after checking something listens
there, or starts a private local Ray; `ClusterView` holds the alive nodes' CPUs and GPUs, enough
to say how many trials fit at once (`plan` builds one without Ray); `fit_resources` checks a
trial's request against the nodes so a sweep can never wait forever. Ray is imported inside the
functions that need it.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

from dlgsweep.errors import UserError
from orchestrator import Say


@dataclass
class ClusterView:
    """Alive nodes' CPU/GPU totals, enough to say how many trials fit at once."""

    nodes: list[dict[str, float]]  # [{"CPU": n, "GPU": n}, ...]
    where: str  # "local Ray (2 CPUs)" / "cluster at auto"

    @property
    def cpus(self) -> float:
        return sum(n.get("CPU", 0.0) for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.get("GPU", 0.0) for n in self.nodes)

    def slots(self, cpu: float, gpu: float) -> int:
        """Trials of (cpu, gpu) each that fit at once, node by node."""
        total = 0
        for node in self.nodes:
            fits = int(node.get("CPU", 0.0) // cpu + 1e-9) if cpu else 10**9
            if gpu:
                fits = min(fits, int(node.get("GPU", 0.0) / gpu + 1e-9))
            total += fits
        return total

    def describe(self) -> str:
        parts = [f"{len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}"]
        parts.append(f"{self.cpus:g} CPUs, {self.gpus:g} GPUs")
        per = ", ".join(f"[{n.get('CPU', 0):g} CPU, {n.get('GPU', 0):g} GPU]" for n in self.nodes)
        return f"{self.where}: {', '.join(parts)} ({per})"


def ray_cluster_view(where: str) -> ClusterView:
    import ray

    nodes = [
        {"CPU": float(n["Resources"].get("CPU", 0)), "GPU": float(n["Resources"].get("GPU", 0))}
        for n in ray.nodes()
        if n.get("Alive")
    ]
    return ClusterView(nodes, where)


def connect(address: str | None, num_cpus: int | None, num_gpus: int | None) -> tuple[bool, str]:
    """Connect to a cluster (address / RAY_ADDRESS) or start a local one; (we_started, where)."""
    import ray

    if ray.is_initialized():
        return False, "the connected Ray cluster"
    address = address or os.environ.get("RAY_ADDRESS")
    common = {"logging_level": "WARNING", "log_to_driver": True}
    if address:
        if num_cpus is not None or num_gpus is not None:
            raise UserError(
                "--num-cpus/--num-gpus: for a local cluster only; drop them with --address"
            )
        check_reachable(address)
        try:
            ray.init(address=address, **common)
        except ConnectionError as exc:
            raise UserError(f"--address {address}: {str(exc).splitlines()[0]}") from None
        return True, f"Ray cluster at {address}"
    cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private cluster of this process
    ray.init(num_cpus=cpus, num_gpus=num_gpus, include_dashboard=False, **common)
    return True, "local Ray"


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast (UserError naming --address) when nothing listens where `address` points;
    `ray.init` would wait minutes. 'auto' means $RAY_ADDRESS, else the address Ray's
    `ray start` left in <RAY_TMPDIR or /tmp>/ray/ray_current_cluster (none: Ray says so)."""
    target = os.environ.get("RAY_ADDRESS") or address
    if target == "auto":
        temp = os.environ.get("RAY_TMPDIR") or (
            os.environ.get("TMPDIR") if sys.platform.startswith("linux") else None
        )
        current = os.path.join(temp or "/tmp", "ray", "ray_current_cluster")
        try:
            with open(current) as handle:
                target = handle.read().strip()
        except OSError:
            return  # no cluster file: ray.init('auto') fails at once with its own words
    hostport = target.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # not HOST:PORT: Ray judges it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"--address {address}: nothing answers at {host}:{port} ({reason}); expected "
            "'auto' (the Ray started with `ray start` on this machine), HOST:PORT of a running "
            "cluster's head (`ray start --head` prints it), or no --address for a local Ray"
        ) from None


def fit_resources(
    cpu: float, gpu: float, cluster: ClusterView, require_gpu: bool, say: Say
) -> dict[str, float]:
    """The per-trial request, checked against the nodes so a sweep can never wait forever."""
    if gpu and cluster.gpus == 0 and not require_gpu:
        say(
            f"[dlgsweep] the cluster has no GPU: dropping the request of {gpu:g} GPU per trial "
            "and running every attack on CPU (--require-gpu waits for GPU nodes instead)"
        )
        gpu = 0.0
    if not require_gpu and cluster.slots(cpu, gpu) == 0:
        biggest = max(cluster.nodes, key=lambda n: (n.get("GPU", 0), n.get("CPU", 0)))
        raise UserError(
            f"resources: {cpu:g} CPU + {gpu:g} GPU per trial fits on no node "
            f"(largest: {biggest.get('CPU', 0):g} CPU, {biggest.get('GPU', 0):g} GPU); "
            "lower resources.cpu/gpu or add nodes"
        )
    return {"cpu": cpu, "gpu": gpu}
