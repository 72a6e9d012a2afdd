"""What a sweep will cost before anything starts: the cost model behind `dlgsweep plan SPEC`.

Prints the trial count (`trials: N` on its own line), each axis, the resources per trial, what
the cluster offers and how many trials fit at once, the work in FLOPs and an ETA, with a warning
when the ETA is long, so nobody starts a 120-hour CPU run by accident.

The FLOP model: one attack iteration costs about 9 forward passes (forward and backward of the
dummy's gradient, then the backward through that gradient); per 32x32 image that is 0.30 GFLOP
for the McMahan CNN and 10.1 GFLOP for the CIFAR ResNet-18, scaled by batch size and by pixel
count for other image sizes. The `paper` grid comes to about 15.5 PFLOP. A FedAvg attack unrolls
`local_steps` client steps per iteration, each about a FedSGD iteration on one mini-batch: its
iteration costs `local_steps` times one of `batch_size` images.

`--results DIR` replaces the FLOP model with measurements where a previous sweep has them: the
rows under DIR (finished trials of the same model, batch size, optimizer, dataset and image
size, on the same device kind: cuda or cpu) give the median seconds per iteration and the median
time a trial spends outside its iterations; the plan says for which (model, batch, device) it
used measurements, at which GPU share they were taken, and where it fell back to the model.
"""

from __future__ import annotations

import glob
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass

from dlgsweep.extras import require_sweep
from orchestrator.cluster import ClusterView, connect, ray_cluster_view
from store.rows import FINISHED
from store.spec import SweepSpec, load_spec
from store.sweep_store import SweepStore, find_sweeps
from workloads.config import TrialConfig

# GFLOP per attack iteration per 32x32 image (about 9 forward passes)
GFLOP_PER_ITERATION = {
    "mcmahan_cnn": 0.30,
    "mcmahan_cnn_seed": 0.26,  # padding 1: 30x30 and 14x14 conv outputs instead of 32, 16
    "resnet18": 10.1,
    "lenet_zhu": 0.0126,
}
NATIVE_PIXELS = {"cifar10": 32 * 32, "mnist": 28 * 28}
LBFGS_EVALUATIONS = 20  # torch's LBFGS runs up to max_iter=20 evaluations per step
# Throughput assumptions (effective, for these small-batch attacks; not peak numbers)
CPU_GFLOPS_PER_CORE = 10.0  # measured here: 4 (batch 1) to 12 (batch 4) GFLOP/s on one core
CPU_SECONDS_PER_ITERATION_FLOOR = 0.05  # per-iteration overhead on CPU (measured ~0.07 s here)
GPU_TFLOPS = 30.0  # a datacenter GPU's dense FP32 rate, before efficiency
GPU_EFFICIENCY = 0.3  # small convolutions at batch 1-16 leave most of a GPU idle
GPU_SECONDS_PER_ITERATION_FLOOR = 0.003  # kernel launches of ~9 passes bound small models
WARN_HOURS = 24.0


def trial_gflop(config: TrialConfig) -> float:
    """Work of one trial in GFLOP, by the model above (imagefolder assumed 32x32 if native)."""
    pixels = config.image_size**2 if config.image_size else NATIVE_PIXELS.get(config.dataset, 1024)
    images = config.batch_size * config.local_steps  # FedAvg: K unrolled steps of B images
    per_iteration = GFLOP_PER_ITERATION[config.model] * images * pixels / 1024
    if config.optimizer == "lbfgs":
        per_iteration *= LBFGS_EVALUATIONS
    return per_iteration * config.iterations * config.restarts


def trial_seconds(config: TrialConfig, cpu: float, gpu: float) -> float:
    """Estimated wall time of one trial holding `cpu` cores or a `gpu` share."""
    work = trial_gflop(config)
    if gpu:
        compute = work / (GPU_TFLOPS * 1e3 * GPU_EFFICIENCY * min(gpu, 1.0))
        floor = config.iterations * config.local_steps * GPU_SECONDS_PER_ITERATION_FLOOR
        # restarts run batched
        return max(compute, floor)
    compute = work / (CPU_GFLOPS_PER_CORE * cpu)
    floor = config.iterations * config.restarts * config.local_steps
    return max(compute, floor * CPU_SECONDS_PER_ITERATION_FLOOR)


def local_gpus() -> int:
    """NVIDIA GPUs visible here, without importing torch (plan stays instant)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    return len(glob.glob("/dev/nvidia[0-9]*"))


def human_flop(gflop: float) -> str:
    for unit, scale in (("PFLOP", 1e6), ("TFLOP", 1e3), ("GFLOP", 1.0)):
        if gflop >= scale:
            return f"{gflop / scale:.3g} {unit}"
    return f"{gflop * 1e3:.3g} MFLOP"


def human_hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------------------------------------
# Measured throughput: a previous sweep's rows
# ---------------------------------------------------------------------------------------------

# what must match for a row's speed to stand for a trial's: model, batch size, device kind
# (cuda | cpu), optimizer, dataset, image size
MeasureKey = tuple[str, int, str, str, str, int]
MEASURE_COLUMNS = [
    "sweep", "status", "model", "batch_size", "device", "optimizer", "dataset", "image_size",
    "seconds_per_iteration", "iterations_run", "wall_seconds",
]  # fmt: skip


@dataclass(frozen=True)
class Measured:
    """Median speed of the finished rows of one MeasureKey."""

    seconds_per_iteration: float
    overhead_seconds: float  # per trial, outside the iterations (data, model, scoring, row)
    rows: int
    gpu_shares: tuple[float, ...]  # the GPU share per trial of the sweeps measured (cuda)

    def trial_seconds(self, iterations: int) -> float:
        return self.overhead_seconds + iterations * self.seconds_per_iteration


def device_kind(device: str | None) -> str:
    return "cuda" if str(device or "").startswith("cuda") else "cpu"


def measure_key(config: TrialConfig, device: str) -> MeasureKey:
    return (config.model, config.batch_size, device_kind(device), config.optimizer,
            config.dataset, config.image_size)  # fmt: skip


def measured_throughput(results: str) -> dict[MeasureKey, Measured]:
    """Median seconds per iteration (and per-trial overhead) of every finished row under
    `results` (a results folder or one sweep's folder), by MeasureKey; read through the store
    (store.sweep_store), one sweep at a time, only the columns this needs."""
    grouped: dict[MeasureKey, list[dict]] = defaultdict(list)
    shares: dict[str, float | None] = {}
    for store in find_sweeps(results, flag="--results"):
        shares[store.name] = _gpu_share(store)
        rows = store.read_rows(columns=MEASURE_COLUMNS).table.to_pylist()
        grouped_rows = [{**row, "sweep": store.name} for row in rows]
        _group(grouped_rows, grouped)
    return {key: _measured(rows, shares, key) for key, rows in grouped.items()}


def _group(rows: list[dict], grouped: dict[MeasureKey, list[dict]]) -> None:
    for row in rows:
        spi, run = row["seconds_per_iteration"], row["iterations_run"]
        if row["status"] not in FINISHED or not spi or spi <= 0 or not run:
            continue
        key = (row["model"], row["batch_size"], device_kind(row["device"]), row["optimizer"],
               row["dataset"], row["image_size"] or 0)  # fmt: skip
        grouped[key].append(row)


def _measured(rows: list[dict], shares: dict[str, float | None], key: MeasureKey) -> Measured:
    found = {shares.get(r["sweep"]) for r in rows} if key[2] == "cuda" else set()
    return Measured(
        seconds_per_iteration=statistics.median(r["seconds_per_iteration"] for r in rows),
        overhead_seconds=statistics.median(
            max(0.0, (r["wall_seconds"] or 0.0) - r["iterations_run"] * r["seconds_per_iteration"])
            for r in rows
        ),
        rows=len(rows),
        gpu_shares=tuple(sorted(s for s in found if s is not None)),
    )


def _gpu_share(store: SweepStore) -> float | None:
    """resources.gpu of the sweep's saved spec (None: no spec, or one this version can't read)."""
    try:
        return store.saved_spec().resources.gpu
    except Exception:  # noqa: BLE001 - an unreadable or older spec: the share is just unknown
        return None


def _throughput_lines(
    used: dict[tuple[str, str], dict[int, Measured]],
    fallback: dict[tuple[str, str], set[int]],
    source: str,
    gpu: float,
) -> list[str]:
    lines = []
    for (model, device), by_batch in sorted(used.items()):
        speeds = ", ".join(
            f"B={b} {m.seconds_per_iteration * 1e3:.3g} ms/it" for b, m in sorted(by_batch.items())
        )
        rows = sum(m.rows for m in by_batch.values())
        shares = sorted({s for m in by_batch.values() for s in m.gpu_shares})
        at = f", at gpu {'/'.join(f'{s:g}' for s in shares)} per trial" if shares else ""
        lines.append(f"  measured: {model} on {device}: {speeds} ({rows} rows{at})")
        if device == "cuda" and shares and shares != [gpu]:
            lines.append(
                f"    note: measured at gpu {'/'.join(f'{s:g}' for s in shares)} per trial, this "
                f"spec asks {gpu:g}: the rate per trial changes with the trials sharing a GPU"
            )
    for (model, device), batches in sorted(fallback.items()):
        listed = ", ".join(str(b) for b in sorted(batches))
        lines.append(
            f"  FLOP model: {model} B={listed} on {device} (no finished rows of that model, "
            f"batch and device in {source})"
        )
    return lines


def _search_trials(spec: SweepSpec, space: list[TrialConfig]) -> tuple[list[TrialConfig], str]:
    """The trials a search is expected to run (every cell's seeds at its two ends and a
    bisection to one step; the strength costs no compute), and the line that counts them."""
    from store.replay import SearchState

    state = SearchState.of(spec)
    by_key = {config.trial_key: config for config in space}
    points = state.expected() // max(1, sum(len(seeds) for seeds in state.keys.values()))
    one_point = [by_key[row[0]] for cell in state.cells for row in state.keys[cell].values()]
    line = (
        f"trials: about {state.expected()} (a search: {len(state.cells)} cells x their seeds x "
        f"about {points} of {len(state.strengths)} strengths; at most {len(space)})"
    )
    return one_point * points, line


def plan_lines(
    spec: SweepSpec,
    cluster: ClusterView,
    measured: dict[MeasureKey, Measured] | None = None,
    source: str = "",
) -> list[str]:
    trials = spec.trials()
    count = f"trials: {len(trials)}"
    if spec.search is not None:
        trials, count = _search_trials(spec, trials)
    lines = [f"sweep: {spec.name} ({spec.source})", count, "axes:"]
    for axis, values in spec.grid.items():
        lines.append(f"  {axis} ({len(values)}): {', '.join(str(v) for v in values)}")
    if spec.search is not None:
        search = spec.search
        target = "auto (floor + 2 dB)" if search.target is None else f"{search.target:g} dB"
        lines.append(
            f"  searched: {search.axis} in [{search.low:g}, {search.high:g}], {search.scale}, "
            f"{len(search.lattice())} strengths; defeated when the seeds' mean {search.score} "
            f"< {target}"
        )
    for name, overrides in spec.variants.items():  # each crossed with the whole grid
        changes = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "as fixed/attack say"
        lines.append(f"  variant {name}: {changes}")
    if spec.fixed:
        lines.append("fixed: " + ", ".join(f"{k}={v}" for k, v in spec.fixed.items()))
    if spec.attack:
        lines.append("attack: " + ", ".join(f"{k}={v}" for k, v in spec.attack.items()))
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
    lines.append(f"resources per trial: cpu {cpu:g}, gpu {gpu:g}; retries {spec.retries}")
    lines.append(f"cluster: {cluster.describe()}")
    if gpu and cluster.gpus == 0:
        lines.append("  no GPU here: `run` would drop the GPU request and attack on CPU")
        gpu = 0.0
    slots = cluster.slots(cpu, gpu)
    lines.append(f"fit at once: {slots} trials")

    by_model: dict[str, float] = defaultdict(float)
    for config in trials:
        by_model[config.model] += trial_gflop(config)
    total = sum(by_model.values())
    split = ", ".join(f"{m} {human_flop(g)}" for m, g in sorted(by_model.items()))
    lines.append(f"work: {human_flop(total)} ({split}); an attack iteration ~ 9 forward passes")
    if gpu:
        assumption = (
            f"{GPU_TFLOPS:g} TFLOP/s per GPU x {GPU_EFFICIENCY:g} efficiency, shared by the "
            f"trials on it, at least {GPU_SECONDS_PER_ITERATION_FLOOR * 1e3:g} ms per iteration"
        )
    else:
        assumption = (
            f"{CPU_GFLOPS_PER_CORE:g} GFLOP/s per CPU core, {cpu:g} core(s) per trial, at least "
            f"{CPU_SECONDS_PER_ITERATION_FLOOR * 1e3:g} ms per iteration"
        )
    if slots == 0:
        lines.append("ETA: never: no node can hold one trial's resources")
        return lines
    device = "cuda" if gpu else "cpu"
    used: dict[tuple[str, str], dict[int, Measured]] = defaultdict(dict)
    fallback: dict[tuple[str, str], set[int]] = defaultdict(set)
    work_seconds, from_rows = 0.0, 0
    for config in trials:
        found = (measured or {}).get(measure_key(config, device))
        if found is not None:
            # rows measure seconds per iteration of one restart
            work_seconds += found.trial_seconds(config.iterations * config.restarts)
            used[(config.model, device)][config.batch_size] = found
            from_rows += 1
        else:
            work_seconds += trial_seconds(config, cpu, gpu)
            fallback[(config.model, device)].add(config.batch_size)
    seconds = work_seconds / slots
    if measured is not None:
        lines.append(f"throughput: measured for {from_rows} of {len(trials)} trials ({source})")
        lines.extend(_throughput_lines(used, fallback, source, gpu))
    if from_rows == len(trials):
        basis = f"seconds per iteration and per trial measured in {source}"
    elif from_rows:
        basis = f"measured speed for {from_rows} trials; the others {assumption}"
    else:
        basis = assumption
    lines.append(f"ETA: ~{human_hours(seconds)} with {slots} at once (assuming {basis})")
    if seconds > WARN_HOURS * 3600:
        lines.append(
            f"warning: ETA ~{human_hours(seconds)} (> {WARN_HOURS:g} h) on this cluster; use a GPU "
            "cluster (`ray up cluster.yaml`, then --address), fewer trials or fewer iterations"
        )
    return lines


def plan(
    spec_name: str,
    *,
    results: str | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    max_concurrent: int | None = None,
) -> list[str]:
    """The plan of a preset or spec file: on the cluster at `address` (or $RAY_ADDRESS), else
    this machine (`num_cpus`/`num_gpus` override what it has); `results`: measured speeds."""
    spec = load_spec(spec_name)
    if address or os.environ.get("RAY_ADDRESS"):
        require_sweep("plan --address", ("ray",))  # asking a cluster takes Ray
        import ray

        we_started, where = connect(address, None, None)
        try:
            cluster = ray_cluster_view(where)
        finally:
            if we_started:
                ray.shutdown()
    else:
        cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
        gpus = num_gpus if num_gpus is not None else local_gpus()
        cluster = ClusterView([{"CPU": float(cpus), "GPU": float(gpus)}], "this machine")
    if max_concurrent:
        cluster = _capped(cluster, max_concurrent, spec)
    measured = measured_throughput(results) if results else None
    return plan_lines(spec, cluster, measured, source=results or "")


def _capped(cluster: ClusterView, limit: int, spec: SweepSpec) -> ClusterView:
    """--max-concurrent N: describe the cluster as if it held only N trial slots."""
    cpu = spec.resources.cpu
    if cluster.slots(cpu, 0) <= limit:
        return cluster
    where = cluster.where + f" (capped at {limit} trials)"
    return ClusterView([{"CPU": cpu * limit, "GPU": cluster.gpus}], where)
