"""One sweep opened for reading: its rows read once, its spec.yaml parsed once, and what the
spec expects (its trial keys, a search's replay) derived from those two, never read again.

A reader that shows one sweep several ways (the report: counts, findings, the frontier, the
gallery) takes an `OpenedSweep` instead of a path, so none of its parts re-reads the rows or
re-parses the spec: a 10^5-row sweep on an object store is read once per report.

    >>> sweep = open_sweep("results/noise-frontier-cpu")
    >>> sweep.frame.height, sweep.spec.name, len(sweep.expected or {})
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from functools import cached_property

import polars as pl

from dlgsweep.errors import UserError
from store.load import Trials, load
from store.replay import SearchState
from store.spec import SweepSpec
from store.sweep_store import SweepStore, expected_keys


@dataclass
class OpenedSweep:
    """A sweep folder, read: `trials` (every readable row, image bytes aside, and the files
    skipped) and `spec` (None without a spec.yaml this version can read)."""

    name: str  # the folder's name, or the one the caller made unique among several sweeps
    path: str  # as the caller gave it: where images are read from
    store: SweepStore
    trials: Trials
    spec: SweepSpec | None

    @property
    def frame(self) -> pl.DataFrame:
        return self.trials.frame

    @property
    def variants(self) -> list[str]:
        """The spec's variant names in its order ([] without variants or without a spec)."""
        return list(self.spec.variants) if self.spec is not None else []

    @cached_property
    def search(self) -> SearchState | None:
        """The spec's search replayed from the rows read (None without `search:`): the one
        replay the counts and the frontier share."""
        if self.spec is None or self.spec.search is None:
            return None
        columns = ["trial_key", "status", self.spec.search.score]
        if self.frame.is_empty() or not set(columns) <= set(self.frame.columns):
            return SearchState.of(self.spec, {})
        return self.store.search_state(self.spec, self.frame.select(columns).to_arrow())

    @cached_property
    def expected(self) -> dict[str, str] | None:
        """trial_key -> variant of every trial the spec asks for (`SweepStore.trial_keys`, from
        what is open); None without a readable spec."""
        return None if self.spec is None else expected_keys(self.spec, self.search)


def open_sweep(path: str, name: str | None = None) -> OpenedSweep:
    """Read the sweep folder at `path` (UserError when it holds no sweep, or several)."""
    trials = load(path)
    if not trials.files:
        raise UserError(
            f"{path} holds no sweep (no trials/ folder in it or in a folder below it); "
            "give sweep folders, <results>/<sweep>, as `dlgsweep run` writes them"
        )
    if len(trials.files) > 1:
        raise UserError(
            f"{path} holds {len(trials.files)} sweeps ({', '.join(trials.files)}); "
            "give sweep folders, <results>/<sweep>"
        )
    name = name or next(iter(trials.files), posixpath.basename(str(path).rstrip("/")))
    store = SweepStore(str(path))
    return OpenedSweep(name, str(path), store, trials, _spec(store))


def _spec(store: SweepStore) -> SweepSpec | None:
    """The sweep's saved spec, or None: a reader goes on without one (no expected trials, no
    frontier, the rows' own order of variants)."""
    try:
        return store.saved_spec()
    except Exception:  # no spec.yaml, or one this version cannot read
        return None
