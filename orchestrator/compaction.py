"""Compaction while a sweep runs: finished row files merged into part files by the driver.

`SweepStore.compact` does the merge (store.sweep_store); this decides when: in a driver thread,
every `min_rows` finished trials, never taking the rows of trials Tune may still retry (`live`),
never two at once. A compaction that fails is skipped with a line, never fatal.
"""

from __future__ import annotations

import threading
from typing import Any

from orchestrator import Say
from store.sweep_store import SweepStore


class Compactor:
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
