"""The search replayed: every cell's search as a deterministic function of a sweep's rows.

`SearchState.of(spec, scores)` rebuilds each cell's `CellSearch` (store.search has the rules:
the lattice, the ends first, then bisection of the bracket read on the antitonic fit of the
points' seed means) from the scores known so far; `run`, `resume`, `status`, `plan`, the Ray
Tune searcher and the report's counts all read a search through it.

Pure Python and numpy (no torch, no Ray): `status`, `report` and the reader's install use it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from store.search import (
    DEFEATED_AT_WEAKEST,
    FAILED,
    FOUND,
    NOT_DEFEATED,
    SEARCHING,
    Search,
    search_space,
)
from store.spec import SweepSpec


def antitonic(means: list[float], weights: list[float]) -> np.ndarray:
    """The non-increasing least-squares fit of `means` (in strength order), weighted."""
    from scipy.optimize import isotonic_regression

    fit = isotonic_regression(np.asarray(means, float), weights=np.asarray(weights, float),
                              increasing=False)  # fmt: skip
    return np.asarray(fit.x)


def bracket(
    values: list[float], weights: list[float], target: float
) -> tuple[np.ndarray, int | None, int | None]:
    """The antitonic fit of `values` (in strength order) and, as positions in that list, the
    last whose fit is at or above `target` and the first below it (None where there is none):
    neighbours, as the fit does not increase. A cell's bracket and a seed's crossing."""
    fit = antitonic(values, weights)
    holding = [k for k, f in enumerate(fit) if f >= target]
    defeated = [k for k, f in enumerate(fit) if f < target]
    return fit, (max(holding) if holding else None), (min(defeated) if defeated else None)


@dataclass
class CellSearch:
    """One cell's search over lattice indices 0..n-1: which points to evaluate, and the
    outcome once the bracket is one step wide (or the range does not hold the frontier)."""

    n: int
    target: float
    seeds: tuple[int, ...]
    scores: dict[int, dict[int, float | None]] = field(default_factory=dict)  # idx -> seed ->

    def record(self, index: int, seed: int, score: float | None) -> None:
        self.scores.setdefault(index, {})[seed] = score

    def complete(self, index: int) -> bool:
        return len(self.scores.get(index, {})) == len(self.seeds)

    def means(self) -> tuple[list[int], list[float], list[int]]:
        """(indices, seed mean, seeds scored) of the complete points, weakest first."""
        out: tuple[list[int], list[float], list[int]] = ([], [], [])
        for index in sorted(self.scores):
            if not self.complete(index):
                continue
            values = [v for v in self.scores[index].values() if v is not None]
            if values:
                out[0].append(index)
                out[1].append(float(np.mean(values)))
                out[2].append(len(values))
        return out

    def state(self) -> tuple[str, int | None, int | None, list[int]]:
        """(outcome, lo, hi, indices to evaluate now): lo is the strongest evaluated index
        that does not defeat the attack, hi the weakest that does (None when there is none)."""
        if any(
            self.complete(i) and all(v is None for v in self.scores[i].values())
            for i in self.scores
        ):
            return FAILED, None, None, []
        ends = [i for i in (0, self.n - 1) if not self.complete(i)]
        if ends:
            return SEARCHING, None, None, ends
        indices, means, weights = self.means()
        _, last, first = bracket(means, weights, self.target)
        if first is None:
            return NOT_DEFEATED, indices[last], None, []
        if last is None:
            return DEFEATED_AT_WEAKEST, None, indices[first], []
        lo, hi = indices[last], indices[first]
        if hi - lo <= 1:
            return FOUND, lo, hi, []
        return SEARCHING, lo, hi, [(lo + hi) // 2]


@dataclass(frozen=True)
class Cell:
    """A configuration cell: one variant x grid point without the seed."""

    variant: str
    point: tuple[tuple[str, Any], ...]  # (axis, value) of the grid's non-seed axes
    dataset: str

    def label(self) -> str:
        parts = [f"{a}={v}" for a, v in self.point]
        return ", ".join(([f"variant={self.variant}"] if self.variant else []) + parts) or "all"


@dataclass
class SearchState:
    """Every cell's search, replayed from the scores known so far.

    `keys[cell][seed][index]` is the trial key of a lattice point; `record(key, score)` feeds
    a result (None: the trial failed); `wanted()` lists the keys to evaluate now."""

    spec: SweepSpec
    search: Search
    strengths: list[float]
    cells: list[Cell]
    keys: dict[Cell, dict[int, list[str]]]
    searches: dict[Cell, CellSearch]
    where: dict[str, tuple[Cell, int, int]]  # trial key -> (cell, seed, index)
    ran: list[str] = field(default_factory=list)  # keys recorded after the replay (this run)

    @classmethod
    def of(cls, spec: SweepSpec, scores: dict[str, float | None] | None = None) -> SearchState:
        search = spec.search
        assert search is not None
        strengths = search.lattice()
        space = search_space(spec)
        grid = dict(space.grid)
        axes = list(grid)
        keys: dict[Cell, dict[int, list[str]]] = {}
        where: dict[str, tuple[Cell, int, int]] = {}
        labelled = iter(space.trial_keys())
        for variant, base in space._bases():
            for point in itertools.product(*grid.values()):
                values = dict(zip(axes, point))
                _, key = next(labelled)
                cell = Cell(
                    variant,
                    tuple((a, v) for a, v in values.items() if a not in ("seed", search.axis)),
                    str(values.get("dataset", base.get("dataset", "cifar10"))),
                )
                seed = int(values.get("seed", base.get("seed", 0)))
                index = strengths.index(values[search.axis])
                keys.setdefault(cell, {}).setdefault(seed, [""] * len(strengths))[index] = key
                where[key] = (cell, seed, index)
        cells = list(keys)
        searches = {
            cell: CellSearch(len(strengths), search.target_for(cell.dataset), tuple(keys[cell]))
            for cell in cells
        }
        state = cls(spec, search, strengths, cells, keys, searches, where)
        for key, score in (scores or {}).items():
            state.record(key, score, replayed=True)
        return state

    def record(self, key: str, score: float | None, replayed: bool = False) -> bool:
        """Feed one trial's score (`replayed`: from a row written before this run); False
        when the key is not a trial of this search."""
        if key not in self.where:
            return False
        cell, seed, index = self.where[key]
        self.searches[cell].record(index, seed, score)
        if not replayed:
            self.ran.append(key)
        return True

    def known(self, key: str) -> bool:
        cell, seed, index = self.where[key]
        return seed in self.searches[cell].scores.get(index, {})

    def wanted(self) -> list[str]:
        """The keys to evaluate now: every seed of every point an open cell asks for."""
        out = []
        for cell in self.cells:
            _, _, _, indices = self.searches[cell].state()
            for index in indices:
                for seed, row in self.keys[cell].items():
                    if not self.known(row[index]):
                        out.append(row[index])
        return out

    def done(self) -> bool:
        return all(self.searches[c].state()[0] != SEARCHING for c in self.cells)

    def visited(self) -> list[str]:
        """Keys with a known result, in cell order."""
        return [
            self.keys[cell][seed][index]
            for cell in self.cells
            for index in sorted(self.searches[cell].scores)
            for seed in self.searches[cell].scores[index]
        ]

    def planned(self) -> list[str]:
        """The trials the search has asked for so far: known ones and those wanted now."""
        return list(dict.fromkeys(self.visited() + self.wanted()))

    def expected(self) -> int:
        """Trials a search takes without pooled points: every cell's two ends, then a bisection
        to one step, on every seed (a cell that stops at an end takes fewer)."""
        per_cell = 2 + math.ceil(math.log2(max(1, len(self.strengths) - 1)))
        return sum(per_cell * len(self.keys[c]) for c in self.cells)

    def frontiers(self) -> list[dict[str, Any]]:
        """One record per cell: outcome, the strength found and its bracket, trials used."""
        out = []
        for cell in self.cells:
            search = self.searches[cell]
            outcome, lo, hi, _ = search.state()
            indices, means, _ = search.means()
            mean_at = dict(zip(indices, means))
            out.append({
                "variant": cell.variant or None,
                **dict(cell.point),
                "outcome": outcome,
                "strength": None if hi is None else self.strengths[hi],
                "bracket_low": None if lo is None else self.strengths[lo],
                "bracket_high": None if hi is None else self.strengths[hi],
                "score_at_strength": mean_at.get(hi) if hi is not None else None,
                "target": search.target,
                "trials": sum(len(s) for s in search.scores.values()),
                "points": len(search.scores),
            })  # fmt: skip
        return out


def scores_of(rows: Any, score: str) -> dict[str, float | None]:
    """trial_key -> score of the finished (ok/diverged) rows of a pyarrow table holding
    trial_key, status and the score: what a search replays from."""
    keys = rows.column("trial_key").to_pylist()
    statuses = rows.column("status").to_pylist()
    values = rows.column(score).to_pylist()
    return {
        k: (None if v is None or not math.isfinite(v) else float(v))
        for k, s, v in zip(keys, statuses, values)
        if s in ("ok", "diverged")
    }
