"""Run a sweep: spec -> Ray Tune grid -> one Parquet row per trial. Ray is a thin shell here.

The trainable is a few lines: config in, `run_trial`, write the row, report. Everything else
is Tune's public API: `Tuner` over a `grid_search` param space, `tune.with_resources` for the
per-trial CPU and (fractional) GPU, `TuneConfig(reuse_actors=True)` so one worker process runs
many trials without re-importing torch, `FailureConfig(max_failures=retries)`, and a
`tune.Callback` for the progress line.

The grid searched is the list of *pending* trial configs (trials without a finished row), not
the spec's axes: a rerun or `resume` then runs exactly the trials that are missing or errored,
keyed by our own `trial_key`, and never touches a finished row.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from orchestrator.sink import SweepStore
from orchestrator.spec import SweepSpec
from workloads.errors import UserError

FINISHED = ("ok", "diverged")  # a row with one of these is never rerun
Say = Callable[[str], None]


# ---------------------------------------------------------------------------------------------
# The trainable: runs in a Ray worker process
# ---------------------------------------------------------------------------------------------


def attack_trainable(params: dict[str, Any]) -> None:
    """One Tune trial: the attack, its row written to the sink, a report to Tune."""
    import ray
    from ray import tune

    from orchestrator.schema import make_row
    from workloads.config import TrialConfig
    from workloads.device import limit_gpu_memory
    from workloads.trial import run_trial

    config = TrialConfig.from_dict(params["trial"])
    attempt = _next_attempt()
    device = _device()
    # cap this worker's CUDA allocator at the trial's GPU share (Ray's fractional `gpu`)
    share = ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)
    limit_gpu_memory(device, share)
    result = run_trial(config, device=device)
    if result.status == "error" and attempt <= params["retries"]:
        raise TrialFailed(result.error or "run_trial returned status error")  # Tune retries
    row = make_row(
        config,
        result,
        sweep=params["sweep"],
        host=socket.gethostname(),
        node_id=_node_id(),
        attempt=attempt,
    )
    SweepStore(params["store"]).write_row(row)
    tune.report({"trial_status": result.status, "psnr_mean": result.psnr_mean, "attempt": attempt})


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


class TrialFailed(RuntimeError):
    """run_trial returned status `error`; raised so that Tune's FailureConfig retries it."""


_SAID: set[str] = set()


def _device() -> str:
    """CUDA only when Ray gave this trial a GPU and torch can see one; else CPU, said once."""
    import ray
    import torch

    gpu_ids = ray.get_gpu_ids()
    if gpu_ids and torch.cuda.is_available():
        return "cuda"
    if gpu_ids:
        reason = f"Ray assigned GPU {gpu_ids} but torch sees no CUDA device"
    else:
        reason = "no GPU assigned to this trial"
    if reason not in _SAID:  # once per worker process: workers are reused across trials
        _SAID.add(reason)
        print(f"[dlgsweep] running attacks on CPU: {reason}", flush=True)
    return "cpu"


def _next_attempt() -> int:
    """1 on the first run of a trial, n+1 on its n-th retry (counted in a Tune checkpoint)."""
    from ray import tune

    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no line per checkpoint
    attempt = 1
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            attempt = json.loads((Path(folder) / "attempt.json").read_text())["attempt"] + 1
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "attempt.json").write_text(json.dumps({"attempt": attempt}))
        started = {"attempt": attempt, "pid": os.getpid(), "node_id": _node_id()}
        tune.report(started, checkpoint=tune.Checkpoint.from_directory(folder))
    return attempt


# ---------------------------------------------------------------------------------------------
# Progress: a Tune callback (public API only)
# ---------------------------------------------------------------------------------------------


class SweepProgress:
    """done / running / failed / left and an ETA, as one line, at most every `interval` s."""

    def __init__(self, total: int, already: int, say: Say, interval: float = 2.0) -> None:
        self.total, self.already, self.say, self.interval = total, already, say, interval
        self.running: set[str] = set()
        self.outcomes: Counter[str] = Counter()  # this run's finished trials by row status
        self.last_status: dict[str, str] = {}
        self.retries = 0
        self.started = time.monotonic()
        self.last_line = 0.0
        self.last_state: tuple = ()
        self.heartbeat = 30.0

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into tuner.pkl; the output function stays behind
        return {**self.__dict__, "say": None}

    @property
    def done(self) -> int:
        return self.already + self.outcomes["ok"] + self.outcomes["diverged"]

    @property
    def failed(self) -> int:
        return self.outcomes["error"]

    def line(self) -> str:
        finished_now = sum(self.outcomes.values())
        left = self.total - self.done - self.failed - len(self.running)
        elapsed = time.monotonic() - self.started
        remaining = self.total - self.done - self.failed
        if finished_now and remaining:
            eta = "ETA " + _duration(elapsed / finished_now * remaining)
        elif not remaining:
            eta = "finished in " + _duration(elapsed)
        else:
            eta = "ETA --"
        retries = f" | {self.retries} retried" if self.retries else ""
        return (
            f"[dlgsweep] {self.done}/{self.total} done | {len(self.running)} running | "
            f"{self.failed} failed | {max(left, 0)} left{retries} | {eta}"
        )

    def show(self, force: bool = False) -> None:
        """Print when the counts changed (at most every `interval` s) or every `heartbeat` s."""
        now = time.monotonic()
        state = (self.done, self.failed, len(self.running), self.retries)
        changed = state != self.last_state and now - self.last_line >= self.interval
        if force or changed or now - self.last_line >= self.heartbeat:
            self.last_line, self.last_state = now, state
            (self.say or print)(self.line())

    # Tune hooks (called by _TuneProgress)
    def started_trial(self, trial_id: str) -> None:
        self.running.add(trial_id)

    def result(self, trial_id: str, status: str | None) -> None:
        if status:
            self.last_status[trial_id] = status

    def finished_trial(self, trial_id: str, errored: bool) -> None:
        self.running.discard(trial_id)
        status = "error" if errored else self.last_status.get(trial_id, "ok")
        self.outcomes[status] += 1
        self.show()

    def retried(self, trial_id: str) -> None:
        self.running.discard(trial_id)
        self.retries += 1


def _tune_callback(progress: SweepProgress) -> Any:
    from ray import tune

    class _TuneProgress(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.started_trial(trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            progress.result(trial.trial_id, result.get("trial_status"))

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.finished_trial(trial.trial_id, errored=False)

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.finished_trial(trial.trial_id, errored=True)

        def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.retried(trial.trial_id)

        def on_step_end(self, iteration, trials, **info):  # noqa: ANN001
            progress.show()

    return _TuneProgress()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---------------------------------------------------------------------------------------------
# The cluster: connect or start, and what it offers
# ---------------------------------------------------------------------------------------------


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
        ray.init(address=address, **common)
        return True, f"Ray cluster at {address}"
    cpus = num_cpus if num_cpus is not None else (os.cpu_count() or 1)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private cluster of this process
    ray.init(num_cpus=cpus, num_gpus=num_gpus, include_dashboard=False, **common)
    return True, "local Ray"


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------


@dataclass
class SweepOutcome:
    total: int
    skipped: int  # finished rows found before the run
    ran: int
    counts: dict[str, int] = field(default_factory=dict)  # rows by status after the run
    missing: int = 0

    @property
    def exit_code(self) -> int:
        return 0 if self.counts.get("error", 0) == 0 and self.missing == 0 else 1


def run_sweep(
    spec: SweepSpec,
    results: str,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    max_concurrent: int | None = None,
    require_gpu: bool = False,
    save_spec: bool = True,
    callbacks: list | None = None,
    say: Say = print,
) -> SweepOutcome:
    """Run every trial of `spec` that has no finished row under `<results>/<spec.name>`.

    `address`: a running cluster ('auto', HOST:PORT; default $RAY_ADDRESS), else a local Ray
    with `num_cpus`/`num_gpus`; an already connected Ray (`ray.init` by the caller) is used as
    is. `callbacks`: extra `ray.tune.Callback`s. Returns the counts after the run.
    """
    store = SweepStore.of(results, spec.name)
    trials = spec.trials()
    statuses = store.statuses()
    pending = [t for t in trials if statuses.get(t.trial_key) not in FINISHED]
    skipped = len(trials) - len(pending)
    if save_spec:
        store.save_spec(spec.to_yaml())
    say(
        f"[dlgsweep] sweep {spec.name}: {len(trials)} trials, {skipped} already finished in "
        f"{store.uri}, {len(pending)} to run"
    )
    if pending:
        _run_pending(
            spec, store, pending, len(trials), skipped,
            address=address, num_cpus=num_cpus, num_gpus=num_gpus,
            max_concurrent=max_concurrent, require_gpu=require_gpu, callbacks=callbacks, say=say,
        )  # fmt: skip
    after = store.statuses()
    keys = [t.trial_key for t in trials]
    counts = Counter(after[k] for k in keys if k in after)
    outcome = SweepOutcome(
        total=len(trials),
        skipped=skipped,
        ran=len(pending),
        counts=dict(counts),
        missing=sum(1 for k in keys if k not in after),
    )
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "error"))
    say(f"[dlgsweep] sweep {spec.name}: {summary}, {outcome.missing} missing -> {store.uri}")
    if outcome.exit_code:
        say(f"[dlgsweep] rerun the failed and missing trials with: dlgsweep resume {store.uri}")
    return outcome


def _run_pending(
    spec: SweepSpec,
    store: SweepStore,
    pending: list,
    total: int,
    skipped: int,
    *,
    address: str | None,
    num_cpus: int | None,
    num_gpus: int | None,
    max_concurrent: int | None,
    require_gpu: bool,
    callbacks: list | None,
    say: Say,
) -> None:
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables, ours only
    we_started, where = connect(address, num_cpus, num_gpus)
    try:
        cluster = ray_cluster_view(where)
        resources = _fit_resources(spec, cluster, require_gpu, say)
        slots = cluster.slots(resources["cpu"], resources["gpu"])
        if max_concurrent:
            slots = min(slots, max_concurrent)
        say(f"[dlgsweep] {cluster.describe()}; {slots} trials at once")
        progress = SweepProgress(total, skipped, say)
        params = {
            "trial": tune.grid_search([t.to_dict() for t in pending]),
            "sweep": spec.name,
            "store": store.uri,
            "retries": spec.retries,
        }
        tuner = tune.Tuner(
            tune.with_resources(attack_trainable, resources),
            param_space=params,
            tune_config=tune.TuneConfig(
                reuse_actors=True,
                max_concurrent_trials=max_concurrent,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=time.strftime("run-%Y%m%d-%H%M%S-") + str(os.getpid()),
                storage_path=store.tune_uri,
                failure_config=tune.FailureConfig(max_failures=spec.retries),
                callbacks=[_tune_callback(progress), *(callbacks or [])],
                verbose=0,
            ),
        )
        grid = tuner.fit()
        _record_failures(grid, spec, store, say)
        progress.show(force=True)
    finally:
        if we_started:
            ray.shutdown()


def _trial_name(trial: Any) -> str:
    from workloads.config import TrialConfig

    return TrialConfig.from_dict(trial.config["trial"]).trial_key


def _fit_resources(spec: SweepSpec, cluster: ClusterView, require_gpu: bool, say: Say) -> dict:
    """The per-trial request, checked against the nodes so a sweep can never wait forever."""
    cpu, gpu = spec.resources.cpu, spec.resources.gpu
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


def _record_failures(grid: Any, spec: SweepSpec, store: SweepStore, say: Say) -> None:
    """A trial that kept failing after its retries (raised, or its worker died): an error row."""
    from orchestrator.schema import make_row
    from workloads.config import TrialConfig
    from workloads.result import TrialResult

    statuses = store.statuses()
    for result in grid:
        if result.error is None:
            continue
        config = TrialConfig.from_dict(result.config["trial"])
        if statuses.get(config.trial_key) in FINISHED:
            continue  # the row made it before the failure: keep it
        message = error_text(result.error)
        say(f"[dlgsweep] trial {config.trial_key} failed after {spec.retries} retries: {message}")
        now = time.time()
        failed = TrialResult(status="error", error=message, started_at=now, finished_at=now)
        store.write_row(make_row(config, failed, sweep=spec.name, attempt=spec.retries + 1))


def error_text(error: BaseException) -> str:
    """The root cause's type and first line, as one groupable message."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")
    return text[:500]
