"""The GPU path in one call: attack speed on CUDA and the paper grid packed 1-8 trials per GPU.

One command, sized to finish in under 8 minutes on one H100 or H200, gives every number:

1. attack speed, per model (mcmahan_cnn, resnet18, lenet_zhu) and batch (1, 4, 16): iterations
   per second of our attack (`workloads.attack.reconstruct`) against the plain DLG loop, side
   by side, at fp32 and TF32, and ours with `deterministic: true` (what determinism costs);
   where one iteration's time goes (forward, create_graph backward, distance, double backward);
2. packing: a slice of the `paper` preset (seed 0; every model x batch size, the other axes
   thinned to fit the time budget; fewer iterations; both stated in the output) through a real
   local Ray Tune sweep (`orchestrator.sweep.run_sweep`, rows in a temp folder) on the one GPU at
   1, 2, 4 and 8 trials per GPU (`resources.gpu` 1, 0.5, 0.25, 0.125): trials per minute, GPU
   utilisation and memory (nvidia-smi / NVML sampled in a background thread, the trials' peak
   CUDA allocation when the rows carry it), where the sweep's time goes, and the projected wall
   time of all 960 `paper` trials at 500 iterations;
3. the tables printed and written to `--out` as `gpu.json` and `gpu.md`, the device named.

Each phase has a time budget (printed with what it used); iterations and the slice shrink to
fit it. `--smoke` runs the same code paths tiny on CPU (CUDA absent: the sweep schedules on one
logical GPU, so 1/2/4 trials per GPU still pack) in about a minute; CI runs it.

    python bench/bench_gpu.py --out bench-results/gpu          # a GPU machine, < 8 min
    python bench/bench_gpu.py --smoke --out /tmp/gpu-smoke      # CPU, ~1 min
    python bench/bench_gpu.py --runner processes ...            # packing without Ray

Where Ray is not installed (a bare GPU image), the packing phase runs the same trials on k plain
worker processes per GPU instead (`--runner processes`; each process capped at its share of
the GPU's memory, taking the next trial from a queue), and the output names the runner.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_attack, a sibling script
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages

PAPER_TRIALS, PAPER_ITERATIONS = 960, 500
# The slice keeps seed 0 and every (model, batch size) of `paper` (10 pairs, equal weight as in
# the full grid) and thins the other axes; key = trials per (model, batch) pair.
THINNING = {
    16: {},
    8: {"prune": ["none"]},
    4: {"prune": ["none"], "init_method": ["xavier_normal", "kaiming_normal"]},
    2: {"prune": ["none"], "init_method": ["xavier_normal"]},
    1: {"prune": ["none"], "init_method": ["xavier_normal"], "activation": ["relu"]},
}


@dataclass(frozen=True)
class Plan:
    """The sizes of one run: full on a GPU, tiny for `--smoke`."""

    budget_s: float
    models: tuple[str, ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    repeats: int
    run_seconds: float  # target length of one timed attack run (shrinks to fit the budget)
    min_iterations: int
    packings: tuple[int, ...]
    slice_batches: tuple[int, ...] | None  # None: paper's batch sizes
    per_pair_choices: tuple[int, ...]  # THINNING keys tried, largest first
    slice_iterations: tuple[int, int, int]  # (floor, preferred, cap)
    trial_overhead_s: float  # per-trial time outside the iterations, for sizing the slice
    worker_start_s: float  # a sweep's start: Tune, workers importing torch, CUDA context
    warmup: int  # iterations of each loop before a cell is timed
    grace_s: float  # a packing level expected to overrun the budget by more is skipped


FULL = Plan(
    budget_s=450.0,
    models=("mcmahan_cnn", "resnet18", "lenet_zhu"),
    batches=(1, 4, 16),
    precisions=("fp32", "tf32"),
    repeats=2,
    run_seconds=0.5,
    min_iterations=5,
    packings=(1, 2, 4, 8),
    slice_batches=None,
    per_pair_choices=(16, 8, 4, 2),
    slice_iterations=(20, 100, 300),
    trial_overhead_s=0.4,
    worker_start_s=15.0,
    warmup=3,
    grace_s=20.0,
)
SMOKE = Plan(
    budget_s=90.0,
    models=("mcmahan_cnn", "lenet_zhu"),  # resnet18 runs in the packing slice
    batches=(1,),
    precisions=("fp32", "tf32"),
    repeats=1,
    run_seconds=0.1,
    min_iterations=2,
    packings=(1, 2, 4),
    slice_batches=(1,),
    per_pair_choices=(1,),
    slice_iterations=(2, 2, 2),
    trial_overhead_s=1.0,
    worker_start_s=10.0,
    warmup=1,
    grace_s=math.inf,  # the smoke run is there to cover every code path: never skip
)


# ---------------------------------------------------------------------------------------------
# Budget: each phase gets seconds, and the output says what it used
# ---------------------------------------------------------------------------------------------


class Budget:
    def __init__(self, total: float) -> None:
        self.total, self.started = total, time.monotonic()
        self.phases: list[dict[str, Any]] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.total - self.elapsed()

    def phase(self, name: str, allowed: float) -> _Phase:
        return _Phase(self, name, allowed)


class _Phase:
    def __init__(self, budget: Budget, name: str, allowed: float) -> None:
        self.budget, self.name, self.allowed = budget, name, allowed

    def __enter__(self) -> _Phase:
        self.started = time.monotonic()
        print(f"\n== {self.name}: budget {self.allowed:.0f} s ==", flush=True)
        return self

    def left(self) -> float:
        return self.allowed - (time.monotonic() - self.started)

    def __exit__(self, *exc: object) -> None:
        used = time.monotonic() - self.started
        self.budget.phases.append({"phase": self.name, "budget_s": self.allowed, "used_s": used})
        print(f"== {self.name}: used {used:.0f} s of {self.allowed:.0f} s ==", flush=True)


# ---------------------------------------------------------------------------------------------
# GPU utilisation and memory, sampled in a background thread (NVML, else nvidia-smi, else none)
# ---------------------------------------------------------------------------------------------


class GpuSampler:
    """Samples GPU 0 every `interval` s: utilisation %, memory used, memory per process (MiB).

    Utilisation is NVML's: the share of the sample period in which any kernel ran; it says the
    GPU was busy, not how many of its SMs were. Absent-safe: `source` is None without a GPU.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float, float, dict[int, float]]] = []
        self.source = self._open()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _open(self) -> str | None:
        try:
            import pynvml  # nvidia-ml-py, optional

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return "nvml"
        except Exception:  # not installed, no driver, no GPU: try the CLI
            pass
        if shutil.which("nvidia-smi") and self._smi() is not None:
            return "nvidia-smi"
        return None

    def _smi(self) -> tuple[float, float, dict[int, float]] | None:
        query = ["nvidia-smi", "-i", "0", "--format=csv,noheader,nounits"]
        try:
            gpu = subprocess.run(
                [*query, "--query-gpu=utilization.gpu,memory.used"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip().splitlines()[0]  # fmt: skip
            apps = subprocess.run(
                [*query, "--query-compute-apps=pid,used_memory"],
                capture_output=True, text=True, timeout=5, check=False,
            ).stdout  # fmt: skip
            util, used = (float(v) for v in gpu.split(","))
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None
        per_process = {}
        for line in apps.strip().splitlines():
            try:
                pid, memory = line.split(",")
                per_process[int(pid)] = float(memory)
            except ValueError:
                continue
        return util, used, per_process

    def _read(self) -> tuple[float, float, dict[int, float]] | None:
        if self.source == "nvml":
            nvml = self._nvml
            util = nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu
            used = nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
            apps = nvml.nvmlDeviceGetComputeRunningProcesses(self._handle)
            per = {p.pid: (p.usedGpuMemory or 0) / 2**20 for p in apps}
            return float(util), float(used), per
        return self._smi()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sample = self._read()
            except Exception:  # a failed read loses one sample, never the bench
                sample = None
            if sample is not None:
                self.samples.append((time.time(), *sample))

    def __enter__(self) -> GpuSampler:
        if self.source:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def window(self, start: float, end: float) -> dict[str, float | None]:
        """Utilisation mean/max, memory used max, biggest single process, between two times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if not inside:
            return {"util_mean": None, "util_max": None, "mem_max_mib": None, "proc_max_mib": None}
        return {
            "util_mean": sum(s[1] for s in inside) / len(inside),
            "util_max": max(s[1] for s in inside),
            "mem_max_mib": max(s[2] for s in inside),
            "proc_max_mib": max((max(s[3].values(), default=0.0) for s in inside), default=None),
        }


# ---------------------------------------------------------------------------------------------
# The device
# ---------------------------------------------------------------------------------------------


def describe_device(device: str) -> dict[str, Any]:
    import torch

    ray = _import_ray()
    info: dict[str, Any] = {
        "device": device,
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "ray": ray.__version__ if ray else None,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info["name"] = torch.cuda.get_device_name(0)
        info["memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cudnn"] = torch.backends.cudnn.version()
        info["driver"] = _driver_version()
    else:
        info["name"] = f"CPU ({platform.processor() or platform.machine()}), no CUDA"
    return info


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        return out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def _import_ray():
    try:
        import ray

        return ray
    except ImportError:
        return None


# ---------------------------------------------------------------------------------------------
# Phase 1: attack speed, ours vs the plain DLG loop, fp32 / TF32 / deterministic
# ---------------------------------------------------------------------------------------------


def attack_phase(plan: Plan, device: str, phase: _Phase) -> tuple[list[dict], list[dict]]:
    from bench_attack import ours, plain_loop, profile, setup, timed

    from workloads.device import trial_runtime

    cells = [(m, b, p) for m in plan.models for b in plan.batches for p in plan.precisions]
    rows = []
    print(
        f"{'model':<12} {'batch':>5} {'prec':>5} {'iters':>5} {'plain it/s':>10} "
        f"{'ours it/s':>10} {'ratio':>6} {'det it/s':>9} {'det/ours':>8}"
    )
    for index, (model_name, batch, precision) in enumerate(cells):
        # each remaining cell gets an equal part of what is left (about 5 timed runs per cell)
        run_s = min(plan.run_seconds, max(0.02, phase.left() / (len(cells) - index) / 6))
        state = setup(model_name, batch, device)
        with trial_runtime(device, precision, False):
            plain_loop(*state, plan.warmup, device)  # warm-up: allocator, cuDNN, kernels
            if plan.warmup > 1:
                ours(*state, plan.warmup, device)
            per_iteration = timed(ours, *state, 2, device) / 2
            iterations = max(plan.min_iterations, round(run_s / per_iteration))
            plain_best = ours_best = math.inf
            for _ in range(plan.repeats):
                plain_best = min(plain_best, timed(plain_loop, *state, iterations, device))
                ours_best = min(ours_best, timed(ours, *state, iterations, device))
        row = {
            "model": model_name, "batch": batch, "precision": precision,
            "iterations": iterations, "plain_its": iterations / plain_best,
            "ours_its": iterations / ours_best, "det_its": None, "det_error": None,
        }  # fmt: skip
        if precision == "fp32":  # deterministic: measured once, at fp32
            row.update(_deterministic(state, iterations, plan.repeats, device))
        rows.append(row)
        print(_attack_line(row), flush=True)
    breakdown = []
    for model_name in plan.models:  # where one iteration's time goes, smallest and largest batch
        for batch in sorted({min(plan.batches), max(plan.batches)}):
            state = setup(model_name, batch, device)
            with trial_runtime(device, "fp32", False):
                iterations = next(
                    r["iterations"] for r in rows if (r["model"], r["batch"]) == (model_name, batch)
                )
                shares = profile(*state, max(plan.min_iterations, iterations // 2), device)
            breakdown.append({"model": model_name, "batch": batch, **shares})
    return rows, breakdown


def _deterministic(state: tuple, iterations: int, repeats: int, device: str) -> dict:
    from bench_attack import ours, timed

    from workloads.device import trial_runtime

    try:
        with trial_runtime(device, "fp32", True):
            ours(*state, 2, device)
            best = min(timed(ours, *state, iterations, device) for _ in range(repeats))
        return {"det_its": iterations / best}
    except RuntimeError as exc:  # an op without a deterministic implementation on this device
        return {"det_error": str(exc).splitlines()[0][:200]}


def _attack_line(row: dict) -> str:
    det = (
        f"{row['det_its']:>9.2f} {row['det_its'] / row['ours_its']:>8.2f}"
        if row["det_its"]
        else f"{'error' if row['det_error'] else '-':>9} {'-':>8}"
    )
    return (
        f"{row['model']:<12} {row['batch']:>5} {row['precision']:>5} {row['iterations']:>5} "
        f"{row['plain_its']:>10.2f} {row['ours_its']:>10.2f} "
        f"{row['ours_its'] / row['plain_its']:>6.2f} {det}"
    )


# ---------------------------------------------------------------------------------------------
# Phase 2: a slice of `paper` through a real local sweep, 1, 2, 4, 8 trials per GPU
# ---------------------------------------------------------------------------------------------


def slice_spec(plan: Plan, per_pair: int, iterations: int, packing: int, cpus: int):
    """The `paper` preset cut to seed 0, `per_pair` trials per (model, batch), k per GPU."""
    from store.spec import load_spec, parse_spec

    raw = load_spec("paper").to_dict()
    raw["name"] = f"paper-slice-{packing}per-gpu"
    raw["grid"]["seed"] = [0]
    if plan.slice_batches:
        raw["grid"]["batch_size"] = list(plan.slice_batches)
    raw["grid"].update(THINNING[per_pair])
    raw["attack"]["iterations"] = iterations
    # every trial one CPU where the machine has them (16 cores: 8 trials x 1), else a share
    raw["resources"] = {"cpu": min(1.0, cpus / packing), "gpu": 1.0 / packing}
    raw["retries"] = 0
    return parse_spec(raw, source=f"paper slice ({per_pair} per model x batch)")


def iteration_seconds(attack_rows: list[dict], model: str, batch: int) -> float:
    """Our fp32 seconds per iteration at `batch`, interpolated in log space between batches."""
    points = sorted(
        (r["batch"], 1.0 / r["ours_its"])
        for r in attack_rows
        if r["model"] == model and r["precision"] == "fp32"
    )
    if not points:
        return 0.05  # no attack phase (--skip-attack): a guess, only for sizing the slice
    if batch <= points[0][0]:
        return points[0][1]
    for (b0, s0), (b1, s1) in zip(points, points[1:]):
        if batch <= b1:
            w = math.log(batch / b0) / math.log(b1 / b0)
            return math.exp((1 - w) * math.log(s0) + w * math.log(s1))
    return points[-1][1] * batch / points[-1][0]  # beyond the largest measured batch: linear


def size_slice(plan: Plan, attack_rows: list[dict], per_sweep_s: float, cpus: int) -> dict:
    """The largest slice whose one-at-a-time sweep fits `per_sweep_s` at the preferred
    iterations; else the smallest slice with as many iterations as fit (at least the floor)."""
    floor, preferred, cap = plan.slice_iterations
    usable = 0.8 * per_sweep_s - plan.worker_start_s
    choice = None
    for per_pair in plan.per_pair_choices:
        trials = slice_spec(plan, per_pair, floor, 1, cpus).trials()
        per_iteration = sum(iteration_seconds(attack_rows, t.model, t.batch_size) for t in trials)
        fits = (usable - len(trials) * plan.trial_overhead_s) / per_iteration
        iterations = max(floor, min(cap, int(fits)))
        if iterations >= 20:
            iterations -= iterations % 10
        choice = {
            "per_pair": per_pair,
            "trials": len(trials),
            "iterations": iterations,
            "predicted_s": plan.worker_start_s
            + len(trials) * plan.trial_overhead_s
            + iterations * per_iteration,
        }
        if fits >= preferred:
            break
    assert choice is not None
    return choice


ROW_COLUMNS = [
    "trial_key", "status", "error", "model", "batch_size", "iterations_run",
    "seconds_per_iteration", "wall_seconds", "started_at", "finished_at", "device",
]  # fmt: skip
PEAK_COLUMN = "gpu_memory_peak_bytes"  # the trial's peak CUDA allocation (run_trial records it)


def run_ray_sweep(spec, results: str) -> list[dict]:
    from orchestrator.sweep import run_sweep
    from store.schema import SCHEMA
    from store.sweep_store import SweepStore

    run_sweep(spec, results, say=lambda line: None)
    columns = ROW_COLUMNS + ([PEAK_COLUMN] if PEAK_COLUMN in SCHEMA.names else [])
    rows = SweepStore.of(results, spec.name).read_rows(columns=columns).table.to_pylist()
    return [_seconds(row) for row in rows]


def _seconds(row: dict) -> dict:
    """A row with its timestamps as unix seconds (what the summaries subtract)."""
    for key in ("started_at", "finished_at"):
        row[key] = row[key].timestamp() if row[key] is not None else None
    return row


def run_process_pool(spec, device: str, packing: int, cpus: int) -> list[dict]:
    """The same trials on k plain worker processes (no Ray): each takes the next trial."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    tasks, done = context.Queue(), context.Queue()
    trials = spec.trials()
    for trial in trials:
        tasks.put(trial.to_dict())
    for _ in range(packing):
        tasks.put(None)
    threads = max(1, cpus // packing)
    workers = [
        context.Process(target=_pool_worker, args=(tasks, done, device, 1.0 / packing, threads))
        for _ in range(packing)
    ]
    for worker in workers:
        worker.start()
    rows = []
    try:
        for _ in trials:  # run_trial never raises; a worker that dies outright ends the wait
            rows.append(done.get(timeout=600))
    except queue.Empty:
        print(f"{packing} per GPU: a worker stopped answering; {len(rows)} trials recorded")
    for worker in workers:
        worker.join(timeout=30)
        if worker.is_alive():
            worker.terminate()
    return rows


def _pool_worker(tasks, done, device: str, share: float, threads: int) -> None:  # noqa: ANN001
    import torch

    from store.schema import make_row
    from workloads.config import TrialConfig
    from workloads.device import limit_gpu_memory, resolve_device
    from workloads.trial import run_trial

    torch.set_num_threads(threads)
    device = resolve_device(device)
    limit_gpu_memory(device, share)
    while (raw := tasks.get()) is not None:
        config = TrialConfig.from_dict(raw)
        result = run_trial(config, device=device)
        # the row the sink would write (store.schema), the columns the Ray runner reads
        row = make_row(config, result, with_images=False)
        done.put(_seconds({name: row.get(name) for name in [*ROW_COLUMNS, PEAK_COLUMN]}))


def packing_summary(rows: list[dict], packing: int, wall: float, gpu: dict) -> dict:
    """Throughput, where the sweep's time went, and the projection to all of `paper`."""
    ran = [r for r in rows if r["status"] in ("ok", "diverged") and r["seconds_per_iteration"]]
    summary: dict[str, Any] = {
        "trials_per_gpu": packing,
        "gpu_share": 1.0 / packing,
        "trials": len(rows),
        "errors": sum(r["status"] == "error" for r in rows),
        "wall_s": wall,
        **gpu,
    }
    first_error = next((r["error"] for r in rows if r["status"] == "error"), None)
    summary["first_error"] = (first_error or "")[:300] or None
    if not ran:
        return summary
    first = min(r["started_at"] for r in ran)
    span = max(r["finished_at"] for r in ran) - first
    busy = sum(r["wall_seconds"] for r in ran)
    in_iterations = sum(r["iterations_run"] * r["seconds_per_iteration"] for r in ran)
    occupancy = _occupancy(ran, packing, first)
    # one trial of `paper`: the median time a slice trial spent outside its iterations (the
    # median leaves out each fresh worker's one-time start: CUDA context, lazy imports) plus
    # 500 iterations at the rate this trial measured while sharing the GPU with k-1 others;
    # summed, scaled to 960 trials, spread over k slots as busy as they were in the slice
    overhead = statistics.median(
        r["wall_seconds"] - r["iterations_run"] * r["seconds_per_iteration"] for r in ran
    )
    projected_trials = sum(overhead + PAPER_ITERATIONS * r["seconds_per_iteration"] for r in ran)
    projected = projected_trials * (PAPER_TRIALS / len(ran)) / (packing * occupancy)
    peaks = [r.get(PEAK_COLUMN) for r in ran if r.get(PEAK_COLUMN)]
    summary.update(
        {
            "steady_s": span,
            "trials_per_min": 60 * len(ran) / span if span > 0 else None,
            "trials_per_min_total": 60 * len(ran) / wall,
            "iterations_share": in_iterations / busy,  # of the trials' own time
            "occupancy": occupancy,  # how busy the k slots were while trials were queued
            "trial_overhead_s": overhead,  # median, per trial, outside the iterations
            "seconds_per_iteration_mean": sum(r["seconds_per_iteration"] for r in ran) / len(ran),
            "peak_alloc_mib_max": max(peaks) / 2**20 if peaks else None,
            "projected_paper_s": projected,
        }
    )
    return summary


def _occupancy(ran: list[dict], packing: int, first: float) -> float:
    """Share of the k slots running a trial while trials were still queued (first start to
    last start): the gaps between trials (Tune's bookkeeping, the row write). The tail, when
    the slice ran out of trials, is left out: the full grid has a tail 24-96 times shorter."""
    last_start = max(r["started_at"] for r in ran)
    window = last_start - first
    if len(ran) <= packing or window <= 0:
        return 1.0  # every trial started at once: no gap to measure
    busy = sum(
        max(0.0, min(r["finished_at"], last_start) - max(r["started_at"], first)) for r in ran
    )
    return min(1.0, busy / (packing * window))


def packing_phase(
    plan: Plan, device: str, attack_rows: list[dict], phase: _Phase, sampler: GpuSampler,
    runner: str, cpus: int, override: dict,
) -> tuple[dict, list[dict]]:  # fmt: skip
    ray = _import_ray() if runner == "ray" else None
    started = time.monotonic()
    if ray is not None:
        # one GPU: the real one, or on CPU a logical one (the trials then attack on CPU)
        ray.init(num_cpus=cpus, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    ray_start = time.monotonic() - started
    try:
        per_sweep = (phase.left() - 5) / len(plan.packings)
        choice = size_slice(plan, attack_rows, per_sweep, cpus)
        choice.update({k: v for k, v in override.items() if v})
        choice["trials"] = len(slice_spec(plan, choice["per_pair"], 1, 1, cpus).trials())
        slice_note = (
            f"slice: {choice['trials']} trials of `paper` (seed 0, every model x batch size, "
            f"{choice['per_pair']} per pair: {_thinning_words(choice['per_pair'])}), "
            f"{choice['iterations']} iterations each (paper: 500); predicted one-at-a-time "
            f"sweep ~{choice.get('predicted_s', 0):.0f} s of {per_sweep:.0f} s per sweep; "
            f"runner: {'Ray Tune (run_sweep)' if ray else 'plain processes'}"
        )
        print(slice_note + (f"; Ray started in {ray_start:.1f} s" if ray else ""), flush=True)
        summaries = []
        with tempfile.TemporaryDirectory(prefix="bench-gpu-") as results:
            for packing in plan.packings:
                # packing more never made a sweep slower than the fastest so far by much:
                # skip a level that would overrun the budget by more than the grace
                expected = min((s["wall_s"] for s in summaries if "wall_s" in s), default=0.0)
                if expected > phase.left() + plan.grace_s:
                    print(
                        f"{packing} per GPU: skipped, ~{expected:.0f} s > {phase.left():.0f} s left"
                    )
                    summaries.append({"trials_per_gpu": packing, "gpu_share": 1.0 / packing,
                                      "skipped": "time budget"})  # fmt: skip
                    continue
                spec = slice_spec(plan, choice["per_pair"], choice["iterations"], packing, cpus)
                began = time.time()
                if ray is not None:
                    rows = run_ray_sweep(spec, results)
                else:
                    rows = run_process_pool(spec, device, packing, cpus)
                ended = time.time()
                summary = packing_summary(
                    rows, packing, ended - began, sampler.window(began, ended)
                )
                summaries.append(summary)
                print(_packing_line(summary), flush=True)
    finally:
        if ray is not None:
            ray.shutdown()
    return {"note": slice_note, **choice}, summaries


def _thinning_words(per_pair: int) -> str:
    cut = THINNING[per_pair]
    if not cut:
        return "every init x activation x prune"
    return ", ".join(f"{axis} {'/'.join(values)}" for axis, values in cut.items())


def _packing_line(s: dict) -> str:
    if s.get("skipped"):
        return f"{s['trials_per_gpu']} per GPU: skipped ({s['skipped']})"
    if "trials_per_min" not in s:
        return f"{s['trials_per_gpu']} per GPU: no trial finished ({s['first_error']})"
    util = "n/a" if s["util_mean"] is None else f"{s['util_mean']:.0f}%/{s['util_max']:.0f}%"
    return (
        f"{s['trials_per_gpu']} per GPU: {s['trials']} trials, {s['errors']} errors, wall "
        f"{s['wall_s']:.1f} s, steady {s['steady_s']:.1f} s, {s['trials_per_min']:.1f} trials/min, "
        f"GPU util {util}, occupancy {s['occupancy']:.2f}, in iterations "
        f"{100 * s['iterations_share']:.0f}%, projected paper "
        f"{_duration(s['projected_paper_s'])}"
    )


def recommend(summaries: list[dict]) -> dict | None:
    """The fewest trials per GPU within 5% of the best projected paper time."""
    done = [s for s in summaries if s.get("projected_paper_s") and not s.get("errors")]
    if not done:
        return None
    best = min(s["projected_paper_s"] for s in done)
    pick = min(
        (s for s in done if s["projected_paper_s"] <= 1.05 * best),
        key=lambda s: s["trials_per_gpu"],
    )
    return {"trials_per_gpu": pick["trials_per_gpu"], "gpu": pick["gpu_share"],
            "projected_paper_s": pick["projected_paper_s"]}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Output: the tables, printed and written as JSON and Markdown
# ---------------------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    info = report["device"]
    lines = [
        f"# bench_gpu: {info['name']}" + (" (smoke run)" if report["smoke"] else ""),
        "",
        f"device `{info['device']}`, {info['name']}"
        + (f", {info['memory_gib']} GiB, driver {info['driver']}" if "driver" in info else "")
        + f"; torch {info['torch']}, CUDA {info['cuda']}, Ray {info['ray']}, "
        f"{info['cpus']} CPUs, host {info['host']}; {report['date']}",
        "",
        "## Attack speed: ours vs the plain DLG loop (cosine, Adam, CIFAR-10, best of "
        f"{report['repeats']})",
        "",
        "| model | batch | precision | iterations | plain it/s | ours it/s | ours / plain "
        "| ours deterministic it/s | deterministic / ours |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in report["attack"]:
        det = (
            (_num(r["det_its"], 2), _num(r["det_its"] / r["ours_its"], 2))
            if r["det_its"]
            else (f"error: {r['det_error']}" if r["det_error"] else "-", "-")
        )
        lines.append(
            f"| {r['model']} | {r['batch']} | {r['precision']} | {r['iterations']} | "
            f"{r['plain_its']:.2f} | {r['ours_its']:.2f} | {r['ours_its'] / r['plain_its']:.2f} "
            f"| {det[0]} | {det[1]} |"
        )
    lines += [
        "",
        "Where one iteration's time goes (fp32, ours' phases, synchronised between phases):",
        "",
        "| model | batch | forward | backward (create_graph) | distance | double backward |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for b in report["breakdown"]:
        shares = [b[k] for k in ("forward", "backward (create_graph)", "distance",
                                 "double backward")]  # fmt: skip
        lines.append(
            f"| {b['model']} | {b['batch']} | "
            + " | ".join(f"{100 * s:.0f}%" for s in shares)
            + " |"
        )
    packing = report["packing"]
    lines += [
        "",
        "## Packing: a slice of `paper` through a local sweep, k trials per GPU",
        "",
        packing["note"] + ".",
        "",
        "| trials per GPU | gpu per trial | trials | errors | wall s | steady s | trials/min "
        "| GPU util mean / max | GPU memory max MiB | largest process MiB | peak alloc MiB "
        "| slots busy | in iterations | projected paper (960 x 500 it) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in report["packing_rows"]:
        if s.get("skipped"):
            lines.append(f"| {s['trials_per_gpu']} | {s['gpu_share']:g} | skipped: "
                         f"{s['skipped']} |" + " |" * 11)  # fmt: skip
            continue
        util = "n/a" if s["util_mean"] is None else f"{s['util_mean']:.0f}% / {s['util_max']:.0f}%"
        lines.append(
            f"| {s['trials_per_gpu']} | {s['gpu_share']:g} | {s['trials']} | {s['errors']} | "
            f"{s['wall_s']:.1f} | {_num(s.get('steady_s'))} | {_num(s.get('trials_per_min'))} | "
            f"{util} | {_num(s['mem_max_mib'], 0)} | {_num(s['proc_max_mib'], 0)} | "
            f"{_num(s.get('peak_alloc_mib_max'), 0)} | "
            f"{_num(s.get('occupancy'), 2)} | "
            f"{_num(100 * s['iterations_share'] if 'iterations_share' in s else None, 0)}% | "
            f"{_duration(s.get('projected_paper_s'))} |"
        )
    rec = report["recommendation"]
    lines += [
        "",
        (
            f"Packing factor: {rec['trials_per_gpu']} trials per GPU (`resources.gpu: "
            f"{rec['gpu']:g}`), projected paper wall time {_duration(rec['projected_paper_s'])}."
            if rec
            else "Packing factor: none measured (no packing level finished without errors)."
        ),
        "",
        "Projection: per slice trial, the median time a trial spent outside its iterations "
        "plus 500 iterations at the seconds per iteration it measured while sharing the GPU; "
        "summed, scaled to 960 trials, divided by k and by how busy the k slots were while "
        "trials were queued ('slots busy').",
        "",
        "Budget: "
        + ", ".join(
            f"{p['phase']} {p['used_s']:.0f}/{p['budget_s']:.0f} s" for p in report["budget"]
        )
        + f"; total {report['total_s']:.0f} s.",
    ]
    if report["smoke"]:
        lines += ["", "Smoke run on CPU: these numbers say the code paths work, not GPU speed."]
    return "\n".join(lines) + "\n"


def self_check() -> None:
    """The projection's arithmetic on rows of known timing (tests/orchestrator/test_gpu_path.py
    runs `bench_gpu.py --self-check`): AssertionError when a figure is off."""
    import math

    def near(a: float, b: float) -> bool:
        return math.isclose(a, b, rel_tol=1e-6)

    # two trials of 10 iterations at 0.1 s/it plus 1 s outside the iterations, side by side on
    # 2 slots for 2 s: the slots were full; at 500 iterations each is 51 s
    rows = [
        {"status": "ok", "seconds_per_iteration": 0.1, "iterations_run": 10, "wall_seconds": 2.0,
         "started_at": 100.0, "finished_at": 102.0, "error": None},
    ] * 2  # fmt: skip
    summary = packing_summary(rows, 2, 5.0, {"util_mean": None})
    assert summary["occupancy"] == 1.0 and summary["steady_s"] == 2.0, summary
    assert near(summary["projected_paper_s"], 2 * 51.0 * 960 / 2 / 2), summary
    assert near(summary["iterations_share"], 0.5), summary
    assert near(summary["trials_per_min"], 60.0), summary
    # one slot, three 2 s trials started 3 s apart: 1 s of every 3 went between trials
    queued = [{**rows[0], "started_at": t, "finished_at": t + 2.0} for t in (0.0, 3.0, 6.0)]
    assert near(packing_summary(queued, 1, 9.0, {})["occupancy"], 4 / 6)
    rec = recommend([summary, {**summary, "trials_per_gpu": 4, "gpu_share": 0.25}])
    assert rec is not None and rec["trials_per_gpu"] == 2, rec  # equal: fewer trials per GPU


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench-results/gpu", help="folder for gpu.json, gpu.md")
    parser.add_argument("--smoke", action="store_true", help="tiny, on CPU (CI)")
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 450)")
    parser.add_argument("--runner", choices=("ray", "processes"), default="ray",
                        help="packing through a Ray Tune sweep (default; falls back to "
                        "processes when Ray is not installed) or k plain processes")  # fmt: skip
    parser.add_argument("--packings", type=int, nargs="+", help="trials per GPU (1 2 4 8)")
    parser.add_argument(
        "--slice-per-pair",
        type=int,
        choices=sorted(THINNING),
        help="trials per (model, batch) in the slice (16 = all of seed 0)",
    )
    parser.add_argument("--slice-iterations", type=int, help="iterations per slice trial")
    parser.add_argument("--skip-attack", action="store_true", help="packing only")
    parser.add_argument(
        "--self-check", action="store_true", help="check the projection's arithmetic, then exit"
    )
    args = parser.parse_args(argv)
    if args.self_check:
        self_check()
        print("self-check ok")
        return 0

    import torch

    import workloads.device  # noqa: F401  (sets CUBLAS_WORKSPACE_CONFIG before any cuBLAS use)

    plan = SMOKE if args.smoke else FULL
    if args.budget:
        plan = _replace(plan, budget_s=args.budget)
    if args.packings:
        plan = _replace(plan, packings=tuple(args.packings))
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        print("no CUDA device here: run with --smoke for the CPU version", file=sys.stderr)
        return 2
    device = "cuda" if cuda and not args.smoke else "cpu"
    runner = args.runner if _import_ray() is not None else "processes"
    budget = Budget(plan.budget_s)
    info = describe_device(device)
    cpus = os.cpu_count() or 1
    print(
        f"device: {info['name']} ({device}); torch {info['torch']}, CUDA {info['cuda']}, "
        f"Ray {info['ray']}, {cpus} CPUs; budget {plan.budget_s:.0f} s"
    )
    with GpuSampler() as sampler:
        print(f"GPU sampling: {sampler.source or 'none (no GPU tools here)'}")
        attack_rows, breakdown = [], []
        if not args.skip_attack:
            with budget.phase("attack speed", 0.25 * plan.budget_s) as phase:
                attack_rows, breakdown = attack_phase(plan, device, phase)
        with budget.phase("packing", budget.left() - 10) as phase:
            override = {"per_pair": args.slice_per_pair, "iterations": args.slice_iterations}
            packing, packing_rows = packing_phase(
                plan, device, attack_rows, phase, sampler, runner, cpus, override
            )
    report = {
        "smoke": args.smoke,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "device": info,
        "repeats": plan.repeats,
        "gpu_sampling": sampler.source,
        "attack": attack_rows,
        "breakdown": breakdown,
        "packing": packing,
        "packing_rows": packing_rows,
        "recommendation": recommend(packing_rows),
        "budget": budget.phases,
        "total_s": budget.elapsed(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(report, indent=2, default=str))
    text = markdown(report)
    (out / "gpu.md").write_text(text)
    print("\n" + text)
    print(f"written: {out / 'gpu.json'}, {out / 'gpu.md'}")
    return 0


def _replace(plan: Plan, **changes: Any) -> Plan:
    from dataclasses import replace

    return replace(plan, **changes)


if __name__ == "__main__":
    sys.exit(main())
