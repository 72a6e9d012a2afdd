"""The Tune trainable: one trial in a Ray worker process, a few lines around `run_trial`.

Config in, `run_trial`, the row written to the sweep's store, a report to Tune. A worker looks
before it runs and before it writes: a trial whose row file is already finished (an earlier
attempt wrote it, then died before its report) is not run again and its row is never replaced.
Attempts are counted in a few bytes per trial in the store (`SweepStore.next_attempt`), not in a
Tune checkpoint. torch and Ray are imported here only inside the functions (the `sweep` extra).

While the attack runs, the trial reports its progress every `report_every` iterations
(`LiveReporter`): `attack_iteration`, `iterations`, `grad_loss`, `psnr`. They are points of
the row's convergence curve, passed on as they are computed: nothing extra is scored.
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import Any, Callable

from store.sweep_store import SweepStore


def attack_trainable(params: dict[str, Any]) -> None:
    """One Tune trial: the attack, its row written to the sink, a report to Tune."""
    import ray
    from ray import tune

    from store.schema import make_row
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
    live = LiveReporter(config.iterations, params.get("report_every"), attempt, tune.report)
    result = run_trial(config, device=device, live=live)
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
    tune.report(
        {"trial_status": status, "psnr_mean": result.psnr_mean,
         "psnr_raw_mean": result.psnr_raw_mean, "attempt": attempt,
         "live_report_seconds": live.seconds, "timesteps_total": result.iterations_run}
    )  # fmt: skip


REPORTS_PER_TRIAL = 20  # live reports of a trial when the spec sets no report_every


class LiveReporter:
    """run_trial's `live` hook: reports the curve point at or after each multiple of `every`.

    The attack scores its iterate only at the curve's points (every ceil(iterations /
    curve_points) iterations), so reports come at the first such point past each multiple; the
    last point is left to the final report, which carries the row's own numbers. `seconds`:
    the time spent reporting (bench/bench_live_reports.py)."""

    def __init__(
        self, iterations: int, every: int | None, attempt: int, report: Callable[[dict], None]
    ) -> None:
        self.iterations, self.attempt, self.report = iterations, attempt, report
        self.every = every or max(1, math.ceil(iterations / REPORTS_PER_TRIAL))
        self.due = self.every
        self.seconds = 0.0

    def __call__(self, iteration: int, grad_loss: float, psnr: float) -> None:
        # `iteration` steps made the scored iterate; the last point goes with the final report
        if iteration < self.due or iteration >= self.iterations - 1:
            return
        self.due = (iteration // self.every + 1) * self.every
        started = time.perf_counter()
        self.report(
            {"attack_iteration": iteration, "iterations": self.iterations,
             "grad_loss": grad_loss, "psnr": psnr, "attempt": self.attempt,
             "timesteps_total": iteration}  # trackers' step (MLflow, W&B, TensorBoard)
        )  # fmt: skip
        self.seconds += time.perf_counter() - started


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


def trial_name(trial: Any) -> str:
    """A Tune trial's name and folder: our trial_key (one name across runs and retries)."""
    from workloads.config import TrialConfig

    return TrialConfig.from_dict(trial.config["trial"]["config"]).trial_key


def error_text(error: BaseException) -> str:
    """The root cause's type and first line, as one groupable message."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")
    return text[:500]
