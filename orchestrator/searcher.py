"""The defense-frontier search as a Ray Tune `Searcher` (the logic: store.search, store.replay).

Why a Searcher of our own and not OptunaSearch: the question is a threshold per cell (the
weakest strength whose seeds' mean PSNR is below the target), not an optimum, and a point is
only decided once every seed of its cell has run there. Optuna's samplers optimise one
objective over one space; fitting per-cell brackets, seed-complete points and a fixed lattice
(so rows are grid rows) into them would leave Optuna nothing to do. A `Searcher` gets exactly
the hooks needed: `suggest` hands out the seeds of each cell's next point, `None` while a cell
waits for its seeds, `FINISHED` when every cell's bracket is one lattice step; Tune runs them
with the trainable, resources, retries and callbacks of a grid sweep.

Trials whose rows already exist are never suggested: `SearchState` was fed them before the
run, so a resumed search replays its path from the rows and runs only what is missing, and a
second run of a finished search runs nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from ray.tune.search import Searcher

from store.replay import SearchState


class FrontierSearcher(Searcher):
    """Suggests the seeds of each open cell's next lattice point, all cells at once."""

    def __init__(
        self,
        state: SearchState,
        trial: Callable[[str], dict[str, Any]],
        stored: Callable[[str], float | None] | None = None,
    ) -> None:
        """`trial(key)`: the param-space entry of that trial ({"config", "variant"});
        `stored(key)`: its score from the store, for a trial that found its row already
        written (an earlier attempt's) and reported no score."""
        super().__init__()  # no metric: Tune would demand it in every (live) report
        self.state, self.trial, self.stored = state, trial, stored
        self.running: dict[str, str] = {}  # Tune trial id -> trial key
        self.suggested = 0

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        return True  # the space is the search's own lattice; nothing to take from Tune

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        busy = set(self.running.values())
        for key in self.state.wanted():
            if key not in busy:
                self.running[trial_id] = key
                self.suggested += 1
                return {"trial": self.trial(key)}
        if not busy and self.state.done():
            return Searcher.FINISHED
        return None  # the open cells wait for seeds still running

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        key = self.running.pop(trial_id, None)
        if key is None:
            return
        self.state.record(key, self.score(key, result, error))

    def score(self, key: str, result: dict[str, Any] | None, error: bool) -> float | None:
        if error or not result or result.get("trial_status") not in ("ok", "diverged"):
            return None
        value = result.get(self.state.search.score)
        if value is None and result.get("kept") and self.stored is not None:
            return self.stored(key)
        return None if value is None else float(value)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: the rows are the search's state (`resume` replays them)."""

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: see `save`."""
