"""Run a sweep: spec -> Ray Tune grid -> one Parquet row per trial. Ray is a thin shell here.

The parts, each in its own module: the trainable that runs in a worker (orchestrator.trainable),
the progress line (orchestrator.progress), compaction while trials finish
(orchestrator.compaction) and the cluster connection (orchestrator.cluster). This module plans
the run and hands Tune a handful of objects: `Tuner` over a `grid_search` param space,
`tune.with_resources` for the per-trial CPU and (fractional) GPU, `TuneConfig(reuse_actors=True)`
so one worker process runs many trials without re-importing torch, and
`FailureConfig(max_failures=retries)`. How a run behaves is one `SweepOptions`.

The grid searched is the list of *pending* trial configs (trials without a finished row), not
the spec's axes: a rerun or `resume` then runs exactly the trials that are missing or errored,
keyed by our own `trial_key`, and never touches a finished row. Planning compares the spec's
trial keys (`SweepSpec.trial_keys`, no config built) with the store's statuses and builds a
`TrialConfig` only for the trials to run.

Safety under concurrency (orchestrator.lease): a run holds the sweep's lease from planning to
its summary, so a second `run`/`resume` of the same sweep is refused (exit 2, naming the live
run). While trials finish, the driver merges their row files into part files
(`SweepStore.compact`), never those of trials Tune may retry.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from orchestrator import Say, trackers
from orchestrator.cluster import check_reachable, connect, fit_resources, ray_cluster_view
from orchestrator.compaction import Compactor
from orchestrator.lease import SweepLease
from orchestrator.progress import SweepProgress, tune_callback
from orchestrator.signals import arm, sigterm_interrupts, terminated
from orchestrator.trainable import attack_trainable, error_text, trial_name
from store.replay import SearchState
from store.rows import FINISHED
from store.spec import SweepSpec
from store.sweep_store import COMPACT_MIN_ROWS, SweepStore
from store.uri import writable_folder
from workloads.config import TrialConfig

_USER_TUNE_LOGGERS = os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS")


@dataclass(frozen=True)
class SweepOptions:
    """How one run goes: which cluster, how many trials at once, where lines go.

    `address`: a running cluster ('auto', HOST:PORT; default $RAY_ADDRESS), else a local Ray
    with `num_cpus`/`num_gpus`; an already connected Ray (`ray.init` by the caller) is used as
    is. `callbacks`: extra `ray.tune.Callback`s. `flag`: how errors name the results path.
    `compact_min_rows`: finished rows per compaction (default sink.COMPACT_MIN_ROWS, or
    $DLGSWEEP_COMPACT_MIN_ROWS). `save_spec`: write spec.yaml (`resume` runs the saved one).
    `tune_storage`: where Ray Tune keeps its experiment state, a folder or URI (default: on the
    driver's disk, see `tune_storage`). `report_every`: live reports every N attack iterations
    (default: the spec's `report_every`, else about REPORTS_PER_TRIAL a trial). `log`:
    trackers as checked by `trackers.check` (`--log`), one run per trial.
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    max_concurrent: int | None = None
    require_gpu: bool = False
    save_spec: bool = True
    callbacks: tuple = ()
    say: Say = print
    flag: str = "--results"
    compact_min_rows: int | None = None
    tune_storage: str | None = None
    report_every: int | None = None
    log: tuple[tuple[str, str | None], ...] = ()

    def min_rows(self) -> int:
        if self.compact_min_rows is not None:
            return self.compact_min_rows
        return int(os.environ.get("DLGSWEEP_COMPACT_MIN_ROWS") or COMPACT_MIN_ROWS)


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


@dataclass
class Plan:
    """What a run will do: every trial's key, and the configs of those without a finished row.

    A search (`search`, the spec's `search:` section replayed from the rows) knows only the
    trials asked for so far: `keys` are those, `pending` is empty, and its Tune searcher
    hands out the rest while the sweep runs (orchestrator.searcher)."""

    keys: list[str]  # every trial of the spec, in its order
    pending: list[tuple[str, TrialConfig]]  # (variant, config) to run
    search: SearchState | None = None

    @property
    def skipped(self) -> int:
        """Trials whose rows were there before the run."""
        if self.search is not None:
            return len(self.search.visited()) - len(self.search.ran)
        return len(self.keys) - len(self.pending)

    @property
    def ran(self) -> int:
        """Trials this run hands Tune (a search's: those recorded so far)."""
        return len(self.search.ran) if self.search is not None else len(self.pending)

    @property
    def to_run(self) -> bool:
        return bool(self.pending) or (self.search is not None and not self.search.done())

    def final_keys(self) -> list[str]:
        """The trials the run was about, once it is over (a search's grew as it ran)."""
        return self.search.planned() if self.search is not None else self.keys


def plan_run(spec: SweepSpec, store: SweepStore) -> Plan:
    """The spec's trials against the store's rows: configs are built for pending trials only,
    so planning a resume of a finished 10^5-trial sweep builds none (bench/bench_store.py).
    A search spec is replayed from its rows' scores (`frontier.SearchState`)."""
    if spec.search is not None:
        state = store.search_state(spec)
        return Plan(state.planned(), [], state)
    labelled = spec.trial_keys()
    statuses = store.statuses()
    todo = {key for _, key in labelled if statuses.get(key) not in FINISHED}
    return Plan([key for _, key in labelled], spec.labelled_trials(only=todo) if todo else [])


def run_sweep(
    spec: SweepSpec, results: str, options: SweepOptions | None = None, **changes: Any
) -> SweepOutcome:
    """Run every trial of `spec` that has no finished row under `<results>/<spec.name>`.

    `options` (or its fields as keywords: `run_sweep(spec, results, num_cpus=2)`) say how.
    Holds the sweep's lease throughout (SweepBusy, exit 2, if another run holds it). Returns
    the counts after the run.
    """
    options = replace(options or SweepOptions(), **changes)
    say = options.say
    address = options.address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)  # before anything is written
    if options.tune_storage:  # Tune writes there from inside Ray: a bad path fails now instead
        writable_folder(options.tune_storage, "--tune-storage")
    store = SweepStore.of(results, spec.name, flag=options.flag)
    store.check_writable()
    command = " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]) or "run_sweep"
    try:
        with sigterm_interrupts(), SweepLease(store, command, warn=say) as lease:
            store.clear_staging()  # files of writers that died; no writer lives but ours
            store.clear_attempts(keep=lease.run)
            plan = plan_run(spec, store)
            if options.save_spec:
                store.save_spec(spec.to_yaml())
            say(_plan_line(spec, store, plan))
            live = {config.trial_key for _, config in plan.pending}
            if plan.search is not None:  # any trial of the space the search may still run
                live = {key for _, key in spec.trial_keys()} - set(plan.search.visited())
            compactor = Compactor(store, live, say, options.min_rows())
            compactor.run(frozenset(live))  # earlier runs' rows, if enough
            if plan.to_run:
                _tune(spec, store, plan, lease.run, compactor, options)
                compactor.finish()
                compactor.run()
                store.clear_attempts()
            after = store.statuses()
    except KeyboardInterrupt as stop:
        why = "stopped (SIGTERM)" if terminated(stop) else "interrupted"
        say(
            f"[dlgsweep] {why}: finished rows are kept, no half-written row counts; "
            f"finish the sweep with: dlgsweep resume {shlex.quote(store.uri)}"
        )
        raise
    keys = plan.final_keys()
    counts = Counter(after[k] for k in keys if k in after)
    outcome = SweepOutcome(
        total=len(keys),
        skipped=plan.skipped,
        ran=plan.ran,
        counts=dict(counts),
        missing=sum(1 for k in keys if k not in after),
    )
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "diverged", "error"))
    say(f"[dlgsweep] sweep {spec.name}: {summary}, {outcome.missing} missing -> {store.uri}")
    if plan.search is not None:
        found = Counter(f["outcome"] for f in plan.search.frontiers())
        say(f"[dlgsweep] search: {len(plan.search.cells)} cells: "
            + ", ".join(f"{n} {what}" for what, n in found.items()))  # fmt: skip
    if outcome.exit_code:
        say(
            "[dlgsweep] rerun the failed and missing trials with: "
            f"dlgsweep resume {shlex.quote(store.uri)}"
        )
    return outcome


def _tune(
    spec: SweepSpec,
    store: SweepStore,
    plan: Plan,
    run: str,
    compactor: Compactor,
    options: SweepOptions,
) -> None:
    """The pending trials as one Tune grid on the cluster; error rows for those that died."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables, ours only
    # Tune's per-trial result.json/progress.csv/events files: only where asked for (or where
    # the user's own environment says so)
    loggers_off = "0" if options.tune_storage else "1"
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = _USER_TUNE_LOGGERS or loggers_off
    # Ctrl-C raises KeyboardInterrupt here (Tune's own handler would print its Tuner.restore
    # advice); run_sweep answers with `dlgsweep resume`, the CLI exits 130
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
    # with Tune's per-trial files off, the ResultGrid warns once per trial that it found none:
    # a line per trial for files no command reads (rows are the results)
    if not options.tune_storage:
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    say = options.say
    we_started, where = connect(options.address, options.num_cpus, options.num_gpus)
    arm()  # ray.init put its own SIGTERM handler (sys.exit) in place of ours
    try:
        cluster = ray_cluster_view(where)
        resources = fit_resources(
            spec.resources.cpu, spec.resources.gpu, cluster, options.require_gpu, say
        )
        slots = cluster.slots(resources["cpu"], resources["gpu"])
        if options.max_concurrent:
            slots = min(slots, options.max_concurrent)
        if slots:
            say(f"[dlgsweep] {cluster.describe()}; {slots} trials at once")
        else:  # --require-gpu on a cluster without a node that fits: the autoscaler's turn
            say(
                f"[dlgsweep] {cluster.describe()}; no node fits a trial yet ({resources['cpu']:g} "
                f"CPU + {resources['gpu']:g} GPU): waiting for the autoscaler to add one"
            )
        params: dict[str, Any] = {
            "sweep": spec.name,
            "store": store.uri,
            "run": run,
            "retries": spec.retries,
            "report_every": options.report_every or spec.report_every,
        }
        if plan.search is None:
            progress = SweepProgress(len(plan.keys), plan.skipped, say)
            # each trial with the variant it belongs to (null without variants: a row column)
            params["trial"] = tune.grid_search(
                [{"config": c.to_dict(), "variant": v or None} for v, c in plan.pending]
            )
            search: dict[str, Any] = {}
        else:
            total = max(plan.search.expected(), len(plan.keys))
            progress = SweepProgress(total, plan.skipped, say)
            search = _searcher(spec, store, plan.search)
        tuner = tune.Tuner(
            tune.with_resources(attack_trainable, resources),
            param_space=params,
            tune_config=tune.TuneConfig(
                **search,
                reuse_actors=True,
                max_concurrent_trials=options.max_concurrent,
                trial_name_creator=trial_name,
                trial_dirname_creator=trial_name,
            ),
            run_config=tune.RunConfig(
                **tune_storage(store, run, options.tune_storage),
                failure_config=tune.FailureConfig(max_failures=spec.retries),
                callbacks=[
                    tune_callback(progress, compactor),
                    *trackers.callbacks(list(options.log), spec.name),
                    *options.callbacks,
                ],
                verbose=0,
            ),
        )
        grid = tuner.fit()
        _record_failures(grid, spec, store, say)
        progress.show(force=True)
    except KeyboardInterrupt:
        if terminated():
            # SIGKILL follows within seconds (`ray job stop`): the lease is released first,
            # and Ray's own atexit hook disconnects this process as it exits
            we_started = False
        raise
    finally:
        if we_started:
            ray.shutdown()


def _plan_line(spec: SweepSpec, store: SweepStore, plan: Plan) -> str:
    if plan.search is None:
        return (
            f"[dlgsweep] sweep {spec.name}: {len(plan.keys)} trials, {plan.skipped} already "
            f"finished in {store.uri}, {len(plan.pending)} to run"
        )
    state, search = plan.search, plan.search.search
    seeds = {len(seeds) for seeds in state.keys.values()}
    target = "auto (floor + 2 dB)" if search.target is None else f"{search.target:g} dB"
    return (
        f"[dlgsweep] sweep {spec.name}: search of {search.axis} in [{search.low:g}, "
        f"{search.high:g}] ({search.scale}, {len(state.strengths)} strengths), "
        f"{len(state.cells)} cells x {max(seeds)} seeds, defeated below {target}: "
        f"{plan.skipped} trials already finished in {store.uri}, "
        + ("nothing to run" if state.done() else
           f"about {max(len(state.wanted()), state.expected() - plan.skipped)} to run")
    )  # fmt: skip


def _searcher(spec: SweepSpec, store: SweepStore, state: SearchState) -> dict[str, Any]:
    """TuneConfig's search_alg and num_samples for a search (orchestrator.searcher)."""
    from orchestrator.searcher import FrontierSearcher

    configs = {c.trial_key: (v, c) for v, c in spec.labelled_trials()}  # the search's space

    def trial(key: str) -> dict[str, Any]:
        variant, config = configs[key]
        return {"config": config.to_dict(), "variant": variant or None}

    def stored(key: str) -> float | None:
        return store.scores(state.search.score).get(key)

    return {"search_alg": FrontierSearcher(state, trial, stored), "num_samples": len(configs)}


def tune_storage(store: SweepStore, run: str, asked: str | None) -> dict[str, Any]:
    """RunConfig's name and storage for Tune's experiment state and per-trial files.

    No command reads them (rows are keyed by trial_key, `resume` plans from the rows), so they
    stay on the driver's disk: `<results>/<sweep>/tune/` for a local results folder, Tune's own
    default (~/ray_results) for a remote one, where every file would be requests for nothing.
    `asked` (`--tune-storage`): a folder or URI (query options as for --results) that gets
    them, with Tune's default loggers (result.json, progress.csv, TensorBoard events).
    """
    if asked:
        where = SweepStore(asked, flag="--tune-storage")
        return {
            "name": f"{store.name}-run-{run}",
            "storage_path": where.path,
            "storage_filesystem": None if where.local else where.fs,
        }
    if store.local:
        return {"name": f"run-{run}", "storage_path": store.tune_path}
    return {"name": f"{store.name}-run-{run}", "storage_path": None}


def _record_failures(grid: Any, spec: SweepSpec, store: SweepStore, say: Say) -> None:
    """A trial that kept failing after its retries (raised, or its worker died): an error row."""
    from store.schema import make_row
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
