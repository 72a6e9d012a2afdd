"""Run a sweep: spec -> Ray Tune grid -> one Parquet row per trial. Ray is a thin shell here.

The trainable is a few lines: config in, `run_trial`, write the row, report. Everything else
is Tune's public API: `Tuner` over a `grid_search` param space, `tune.with_resources` for the
per-trial CPU and (fractional) GPU, `TuneConfig(reuse_actors=True)` so one worker process runs
many trials without re-importing torch, `FailureConfig(max_failures=retries)`, and a
`tune.Callback` for the progress line.

The grid searched is the list of *pending* trial configs (trials without a finished row), not
the spec's axes: a rerun or `resume` then runs exactly the trials that are missing or errored,
keyed by our own `trial_key`, and never touches a finished row.

Safety under concurrency (orchestrator.lease): a run holds the sweep's lease from planning to
its summary, so a second `run`/`resume` of the same sweep is refused (exit 2, naming the live
run). Below that, a worker looks before it runs and before it writes: a trial whose row file is
already finished (an earlier attempt wrote it, then died before its report) is not run again and
its row is never replaced. Attempts are counted in a few bytes per trial in the store
(`SweepStore.next_attempt`), not in a Tune checkpoint. While trials finish, the driver merges
their row files into part files (`SweepStore.compact`), never those of trials Tune may retry.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from orchestrator.lease import SweepLease
from orchestrator.sink import FINISHED, SweepStore
from orchestrator.spec import SweepSpec
from workloads.errors import UserError

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

    config = TrialConfig.from_dict(params["trial"]["config"])
    store = SweepStore(params["store"])
    attempt = store.next_attempt(params["run"], config.trial_key)
    tune.report({"attempt": attempt, "pid": os.getpid(), "node_id": _node_id()})  # started
    kept = store.finished_status(config.trial_key)
    if kept is not None:  # an earlier attempt wrote its row, then died before its report
        tune.report({"trial_status": kept, "attempt": attempt, "kept": True})
        return
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
        variant=params["trial"]["variant"],
        host=socket.gethostname(),
        node_id=_node_id(),
        attempt=attempt,
    )
    status = result.status
    if store.write_row(row) is None:  # a finished row appeared meanwhile: it stays
        status = store.finished_status(config.trial_key) or status
    tune.report({"trial_status": status, "psnr_mean": result.psnr_mean, "attempt": attempt})


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


class _Compactor:
    """Merges finished row files into parts while the sweep runs, in a driver thread, every
    `min_rows` finished trials; never the rows of trials Tune may still retry (`live`)."""

    def __init__(self, store: SweepStore, live: set[str], say: Say, min_rows: int) -> None:
        self.store, self.live, self.say, self.min_rows = store, set(live), say, min_rows
        self.since = 0
        self.thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into its experiment state, again and again: keep that
        # small (no 10^5 live keys, no thread); the copy is never used to run anything
        return {**self.__dict__, "live": set(), "thread": None, "say": None}

    def trial_done(self, trial_key: str) -> None:
        self.live.discard(trial_key)
        self.since += 1

    def maybe(self) -> None:
        if self.since < self.min_rows or (self.thread is not None and self.thread.is_alive()):
            return
        self.since = 0
        protect = frozenset(self.live)
        self.thread = threading.Thread(target=self.run, args=(protect,), daemon=True)
        self.thread.start()

    def run(self, protect: frozenset[str] = frozenset()) -> None:
        try:
            done = self.store.compact(protect, min_rows=self.min_rows)
        except Exception as exc:  # noqa: BLE001 - compaction is an optimisation, never fatal
            (self.say or print)(f"[dlgsweep] compaction skipped: {type(exc).__name__}: {exc}")
            return
        if done.parts_written:
            (self.say or print)(
                f"[dlgsweep] compacted {done.merged_rows} rows into "
                f"{len(done.parts_written)} part file(s)"
            )

    def finish(self) -> None:
        if self.thread is not None:
            self.thread.join()


def _tune_callback(progress: SweepProgress, compactor: _Compactor | None = None) -> Any:
    from ray import tune

    def done(trial: Any) -> None:
        if compactor is not None:
            compactor.trial_done(_trial_name(trial))

    class _TuneProgress(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.started_trial(trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            progress.result(trial.trial_id, result.get("trial_status"))

        def on_trial_complete(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.finished_trial(trial.trial_id, errored=False)
            done(trial)

        def on_trial_error(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.finished_trial(trial.trial_id, errored=True)
            done(trial)

        def on_trial_recover(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.retried(trial.trial_id)

        def on_step_end(self, iteration, trials, **info):  # noqa: ANN001
            progress.show()
            if compactor is not None:
                compactor.maybe()

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
    flag: str = "--results",
    compact_min_rows: int | None = None,
) -> SweepOutcome:
    """Run every trial of `spec` that has no finished row under `<results>/<spec.name>`.

    `address`: a running cluster ('auto', HOST:PORT; default $RAY_ADDRESS), else a local Ray
    with `num_cpus`/`num_gpus`; an already connected Ray (`ray.init` by the caller) is used as
    is. `callbacks`: extra `ray.tune.Callback`s. `flag`: how errors name `results`.
    `compact_min_rows`: finished rows per compaction (default sink.COMPACT_MIN_ROWS, or
    $DLGSWEEP_COMPACT_MIN_ROWS). Holds the sweep's lease throughout (SweepBusy, exit 2, if
    another run holds it). Returns the counts after the run.
    """
    if address or os.environ.get("RAY_ADDRESS"):
        check_reachable(address or os.environ["RAY_ADDRESS"])  # before anything is written
    store = SweepStore.of(results, spec.name, flag=flag)
    store.check_writable()
    if compact_min_rows is None and os.environ.get("DLGSWEEP_COMPACT_MIN_ROWS"):
        compact_min_rows = int(os.environ["DLGSWEEP_COMPACT_MIN_ROWS"])
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) or "run_sweep"
    labelled = spec.labelled_trials()
    trials = [config for _, config in labelled]
    variants = {config.trial_key: name for name, config in labelled if name}
    try:
        with SweepLease(store, command, warn=say) as lease:
            store.clear_staging()  # files of writers that died; no writer lives but ours
            store.clear_attempts(keep=lease.run)
            statuses = store.statuses()
            pending = [t for t in trials if statuses.get(t.trial_key) not in FINISHED]
            skipped = len(trials) - len(pending)
            if save_spec:
                store.save_spec(spec.to_yaml())
            say(
                f"[dlgsweep] sweep {spec.name}: {len(trials)} trials, {skipped} already "
                f"finished in {store.uri}, {len(pending)} to run"
            )
            compactor = _Compactor(
                store, {t.trial_key for t in pending}, say, compact_min_rows or _min_rows()
            )
            compactor.run(frozenset(compactor.live))  # earlier runs' rows, if enough
            if pending:
                _run_pending(
                    spec, store, pending, variants, len(trials), skipped, lease.run, compactor,
                    address=address, num_cpus=num_cpus, num_gpus=num_gpus,
                    max_concurrent=max_concurrent, require_gpu=require_gpu,
                    callbacks=callbacks, say=say,
                )  # fmt: skip
                compactor.finish()
                compactor.run()
                store.clear_attempts()
            after = store.statuses()
    except KeyboardInterrupt:
        say(
            "[dlgsweep] interrupted: finished rows are kept, no half-written row counts; "
            f"finish the sweep with: dlgsweep resume {shlex.quote(store.uri)}"
        )
        raise
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
        say(
            "[dlgsweep] rerun the failed and missing trials with: "
            f"dlgsweep resume {shlex.quote(store.uri)}"
        )
    return outcome


def _min_rows() -> int:
    from orchestrator import sink

    return sink.COMPACT_MIN_ROWS


def _run_pending(
    spec: SweepSpec,
    store: SweepStore,
    pending: list,
    variants: dict[str, str],
    total: int,
    skipped: int,
    run: str,
    compactor: _Compactor,
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
    # Ctrl-C raises KeyboardInterrupt here (Tune's own handler would print its Tuner.restore
    # advice); run_sweep answers with `dlgsweep resume`, the CLI exits 130
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
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
            # each trial with the variant it belongs to (null without variants: a row column)
            "trial": tune.grid_search(
                [{"config": t.to_dict(), "variant": variants.get(t.trial_key)} for t in pending]
            ),
            "sweep": spec.name,
            "store": store.uri,
            "run": run,
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
                name=f"run-{run}",
                storage_path=store.tune_path,
                storage_filesystem=store.tune_filesystem,
                failure_config=tune.FailureConfig(max_failures=spec.retries),
                callbacks=[_tune_callback(progress, compactor), *(callbacks or [])],
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

    return TrialConfig.from_dict(trial.config["trial"]["config"]).trial_key


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

    failed_results = [result for result in grid if result.error is not None]
    # rows in parts too: a trial whose ok row was written (then compacted) before its worker
    # died on every retry keeps that row
    statuses = store.statuses() if failed_results else {}
    for result in failed_results:
        config = TrialConfig.from_dict(result.config["trial"]["config"])
        if statuses.get(config.trial_key) in FINISHED:
            continue
        message = error_text(result.error)
        now = time.time()
        failed = TrialResult(status="error", error=message, started_at=now, finished_at=now)
        row = make_row(
            config,
            failed,
            sweep=spec.name,
            variant=result.config["trial"]["variant"],
            attempt=spec.retries + 1,
        )
        if store.write_row(row) is None:
            continue  # the row made it before the failure: kept (write_row looks first)
        say(f"[dlgsweep] trial {config.trial_key} failed after {spec.retries} retries: {message}")


def error_text(error: BaseException) -> str:
    """The root cause's type and first line, as one groupable message."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")
    return text[:500]
