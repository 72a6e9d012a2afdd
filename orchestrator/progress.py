"""The progress line of a running sweep, fed by a Tune callback (public API only).

`SweepProgress` counts done / running / failed / left and prints one line with an ETA, and
how far the running trials are (their live reports: attack iterations run of all);
`tune_callback` turns Tune's hooks into those counts and, every step, gives the compactor
(orchestrator.compaction) its chance to merge finished rows.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from orchestrator import Say
from orchestrator.compaction import Compactor
from orchestrator.trainable import trial_name


class SweepProgress:
    """done / running / failed / left and an ETA, as one line, at most every `interval` s."""

    def __init__(self, total: int, already: int, say: Say, interval: float = 2.0) -> None:
        self.total, self.already, self.say, self.interval = total, already, say, interval
        self.running: set[str] = set()
        self.outcomes: Counter[str] = Counter()  # this run's finished trials by row status
        self.last_status: dict[str, str] = {}
        self.through: dict[str, float] = {}  # running trial -> fraction of its iterations run
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
        through = ""
        if self.running and self.through:
            through = f" ({self.percent_through()}% through)"
        return (
            f"[dlgsweep] {self.done}/{self.total} done | {len(self.running)} running{through} | "
            f"{self.failed} failed | {max(left, 0)} left{retries} | {eta}"
        )

    def percent_through(self) -> int:
        """Mean share of their attack iterations the running trials have run (0 before any)."""
        if not self.running:
            return 0
        return round(100 * sum(self.through.get(t, 0.0) for t in self.running) / len(self.running))

    def show(self, force: bool = False) -> None:
        """Print when the counts changed (at most every `interval` s) or every `heartbeat` s."""
        now = time.monotonic()
        state = (self.done, self.failed, len(self.running), self.retries,
                 self.percent_through() // 10)  # fmt: skip
        changed = state != self.last_state and now - self.last_line >= self.interval
        if force or changed or now - self.last_line >= self.heartbeat:
            self.last_line, self.last_state = now, state
            (self.say or print)(self.line())

    # Tune hooks (called by _TuneProgress)
    def started_trial(self, trial_id: str) -> None:
        self.running.add(trial_id)

    def result(self, trial_id: str, result: dict[str, Any]) -> None:
        if result.get("trial_status"):
            self.last_status[trial_id] = result["trial_status"]
        if result.get("iterations"):  # a live report
            self.through[trial_id] = result["attack_iteration"] / result["iterations"]

    def finished_trial(self, trial_id: str, errored: bool) -> None:
        self.running.discard(trial_id)
        self.through.pop(trial_id, None)
        status = "error" if errored else self.last_status.get(trial_id, "ok")
        self.outcomes[status] += 1
        self.show()

    def retried(self, trial_id: str) -> None:
        self.running.discard(trial_id)
        self.through.pop(trial_id, None)
        self.retries += 1


def tune_callback(progress: SweepProgress, compactor: Compactor | None = None) -> Any:
    from ray import tune

    def done(trial: Any) -> None:
        if compactor is not None:
            compactor.trial_done(trial_name(trial))

    class _TuneProgress(tune.Callback):
        def on_trial_start(self, iteration, trials, trial, **info):  # noqa: ANN001
            progress.started_trial(trial.trial_id)

        def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
            progress.result(trial.trial_id, result)

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
