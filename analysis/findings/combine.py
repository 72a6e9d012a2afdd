"""From units to a verdict: balanced by construction, decided per stratum, combined once.

Every part of a claim (a comparison, a slope, a spread) yields units: one effect per matched
pair or group, with its seed and the cell it measures (the claim's strata and the axes it
averages over). From them:

- Balance. A seed enters an estimate only if it has every cell the estimate averages over, so
  a seed missing a stratum (its pruned-Sigmoid trials errored, say) never turns the estimate
  into another one (ReLU only). Left-out seeds are counted in the evidence.
- Estimates. Per stratum: per complete seed, the mean over the stratum's cells; the 95% t
  interval over seeds. Headline: per seed complete in every cell, the equal-weight mean over
  strata (each stratum the mean of its cells), so it means the same whatever is missing.
  Per level of each averaged-over axis: the same, within that level.
- Verdicts (the two ways of combining, by kind of claim):
  * equivalence and margin claims ("no big variation", "low effect", "big effect",
    "defends") hold only where they hold everywhere: in every cell, that is every stratum at
    every level (and combination of levels) of the axes it averages over, so that opposite
    effects cancelling over an averaged axis never read as "no variation": intersection-union,
    each cell at the full 5% level (Berger 1982: no adjustment needed). A stratum, level or
    cell that decisively contradicts (Bonferroni over all of them) decides "contradicted"
    (unless another supports: "mixed"), even where a cell has too few seeds: a settled
    refutation is kept. Effects that cancel within every level (an interaction) show only in
    the cells.
  * directional claims (ReLU < Sigmoid, each step of the order, the slopes, the spread) are
    about the average effect: the equal-weight main effect decides, at 5%, and a heterogeneity
    check guards it: a stratum (or a level of an averaged-over axis) decisively on the other
    side makes the verdict "mixed", never supported or contradicted.
  "Decisively" for the guard means at 5% Bonferroni-adjusted over the strata and levels
  checked, so that noise across many strata does not manufacture a "mixed". A repeated
  measures ANOVA over seeds (statsmodels AnovaRM) tests whether the strata (and each averaged
  axis) differ at all and names the axis the effect depends on.
- Censored units (a frontier threshold beyond the searched range) carry bounds
  (`effect_low`, `effect_high`) instead of a value: every estimate they enter is censored
  (`Estimate.bounded`: sign tests on what the bounds prove), never imputed, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from analysis.findings.rows import SOURCES, levels_text
from analysis.stats import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_ENOUGH,
    SUPPORTED,
    Estimate,
    Rule,
)

MIXED = "mixed"
INTERSECTION_UNION = ("exceeds", "equivalent")  # hold only where they hold in every stratum


@dataclass(frozen=True)
class Stratum:
    label: str  # "network=mcmahan, batch_size=1" or, for an averaged axis, "activation=relu"
    estimate: Estimate
    verdict: str  # at the full level (descriptive)
    p: float = math.nan  # of that verdict
    axis: str = ""  # set for the levels of an averaged-over axis


@dataclass(frozen=True)
class Assessment:
    """One part of a claim, measured and decided."""

    rule: Rule
    headline: Estimate
    strata: tuple[Stratum, ...] = ()
    levels: tuple[Stratum, ...] = ()  # per level of each averaged-over axis
    pooled: tuple[str, ...] = ()  # "batch_size (1, 2)"
    cells: tuple[Stratum, ...] = ()  # margin/equivalence claims: every stratum x level cell
    units: int = 0
    what: str = "matched pairs"
    n_cells: int = 0
    left_out: tuple[str, ...] = ()
    heterogeneity: tuple[str, ...] = ()  # "strata differ: F(3, 9) = 14.2, p = 0.001"
    verdict: str = NOT_ENOUGH
    p: float = math.nan
    holds: tuple[str, ...] = ()  # strata / levels decisively supporting
    against: tuple[str, ...] = ()  # ... and contradicting
    decided_by: str = ""  # what decides the verdict, when not the headline
    deciding: Estimate | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def overall(self) -> Estimate:
        return self.headline

    @property
    def checks(self) -> tuple[Stratum, ...]:
        """What the guard weighs: the strata, the levels of each averaged-over axis, the cells."""
        return (*self.strata, *self.levels, *self.cells)

    @property
    def level(self) -> float:
        """The level each check is decided at: 5% over the number of checks (Bonferroni)."""
        return ALPHA / max(1, len(self.checks))


def _matrix(
    cells: pl.DataFrame, cell_cols: list[str], column: str = "effect"
) -> tuple[np.ndarray, list, list[tuple]]:
    """(M[seed, cell] of `column` with NaN where missing, seeds, cell tuples)."""
    seeds = sorted(cells["seed"].unique().to_list(), key=lambda s: (s is None, s))
    ids = (
        sorted(set(cells.select(cell_cols).iter_rows()), key=lambda t: tuple(map(str, t)))
        if cell_cols
        else [()]
    )
    index = {c: j for j, c in enumerate(ids)}
    row = {s: i for i, s in enumerate(seeds)}
    matrix = np.full((len(seeds), len(ids)), np.nan)
    for record in cells.iter_rows(named=True):
        cell = tuple(record[c] for c in cell_cols)
        value = record[column]
        matrix[row[record["seed"]], index[cell]] = np.nan if value is None else value
    return matrix, seeds, ids


Bounds = tuple[np.ndarray, np.ndarray]  # (low, high) per seed and cell; equal where exact


def _balanced(data: Bounds, groups: list[list[int]]) -> tuple[Estimate, np.ndarray]:
    """Per seed complete in every column of every group: the equal-weight mean over groups of
    the mean over each group's columns (of the lower and of the upper bounds: a censored cell
    makes the seed's value an interval). (estimate, mask of the complete seeds)."""
    low, high = data
    columns = sorted({j for g in groups for j in g})
    complete = (
        ~(np.isnan(low[:, columns]) | np.isnan(high[:, columns])).any(axis=1)
        if columns
        else np.zeros(0, bool)
    )
    if not complete.any():
        return Estimate.of([]), complete

    def mean(m: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.stack([m[complete][:, g].mean(axis=1) for g in groups], axis=1).mean(axis=1)

    return Estimate.bounded(mean(low), mean(high)), complete


def _label(names: Sequence[str], values: Sequence) -> str:
    return ", ".join(f"{n}={v}" for n, v in zip(names, values))


def assess(
    units: pl.DataFrame,
    strata: Sequence[str],
    rule: Rule,
    what: str = "matched pairs",
    notes: Sequence[str] = (),
) -> Assessment:
    """Balance, estimate and decide one part of a claim from its units (seed, effect, keys;
    censored units: `effect_low`, `effect_high` bounds and a null effect)."""
    if units.is_empty() or "seed" not in units.columns:
        return Assessment(rule, Estimate.of([]), what=what, notes=tuple(notes))
    bounded = {"effect_low", "effect_high"} <= set(units.columns)
    finite = pl.col("effect").is_not_null() & pl.col("effect").is_finite()
    if bounded:
        known = pl.col("effect_low").is_not_null() & pl.col("effect_high").is_not_null()
        units = units.filter(finite.fill_null(False) | known.fill_null(False))
        units = units.with_columns(
            pl.when(finite).then(pl.col("effect")).otherwise(pl.col(c)).alias(c)
            for c in ("effect_low", "effect_high")
        )
    else:
        units = units.filter(finite).with_columns(
            pl.col("effect").alias("effect_low"), pl.col("effect").alias("effect_high")
        )
    extra = ("seed", "effect", "effect_low", "effect_high")
    strata = [s for s in strata if s in units.columns]
    # averaged over: axes with two or more levels within some stratum (an axis that only
    # follows the strata, like init_method within init families, averages over nothing)
    within = units.group_by(strata).agg(pl.all().n_unique()) if strata else None
    varying = [
        c for c in units.columns
        if c not in (*extra, *strata) and units[c].n_unique() > 1
        and (within is None or within[c].max() > 1)
    ]  # fmt: skip
    shown = [c for c in varying if not (c in SOURCES and set(SOURCES[c]) & set(varying))]
    pooled = tuple(f"{c} ({levels_text(units[c].unique().to_list())})" for c in shown)
    cell_cols = [*strata, *varying]
    cells = units.group_by([*cell_cols, "seed"]).agg(  # a censored unit: the cell's effect NaN
        pl.col("effect").fill_null(float("nan")).mean(),
        pl.col("effect_low").mean(),
        pl.col("effect_high").mean(),
    )
    matrix, seeds, ids = _matrix(cells, cell_cols)
    data = (_matrix(cells, cell_cols, "effect_low")[0], _matrix(cells, cell_cols, "effect_high")[0])
    k = len(strata)

    everything = range(len(ids))

    def by(columns: Sequence[int], key: Callable[[tuple], Any]) -> dict[Any, list[int]]:
        """The cell columns grouped by `key` of their cell."""
        out: dict[Any, list[int]] = {}
        for j in columns:
            out.setdefault(key(ids[j]), []).append(j)
        return out

    def stratum(cell: tuple) -> tuple:
        return cell[:k]

    def part(columns: list[int]) -> Bounds:
        return data[0][:, columns], data[1][:, columns]

    headline, complete = _balanced(data, list(by(everything, stratum).values()))
    left_out = _left_out(data, seeds, complete, "")
    found = []
    if strata:
        for key, columns in by(everything, stratum).items():
            estimate, done = _balanced(data, [columns])
            found.append(Stratum(_label(strata, key), estimate, *rule.decide(estimate)))
            left_out += _left_out(part(columns), seeds, done, _label(strata, key))
    levels = []
    for i, axis in enumerate(varying):
        if axis not in shown:
            continue
        by_level = by(everything, lambda cell, at=k + i: cell[at])
        for level, columns in sorted(by_level.items(), key=lambda kv: str(kv[0])):
            estimate, _ = _balanced(data, list(by(columns, stratum).values()))
            levels.append(Stratum(f"{axis}={level}", estimate, *rule.decide(estimate), axis=axis))
    every = ()
    if rule.kind in INTERSECTION_UNION and varying:  # must hold in every cell, not on average
        names = [*strata, *varying]
        every = tuple(
            Stratum(_label(names, ids[j]), est, *rule.decide(est), axis="cell")
            for j in everything
            for est in [_balanced(data, [[j]])[0]]
        )  # fmt: skip
    exact = complete & ~np.isnan(matrix).any(axis=1)
    hetero = _heterogeneity(matrix[exact], ids, strata, varying, shown)
    return _decide(
        Assessment(
            rule, headline, tuple(found), tuple(levels), pooled, every, units.height, what,
            len(ids), tuple(dict.fromkeys(left_out)), hetero, notes=tuple(notes),
        )
    )  # fmt: skip


def _left_out(data: Bounds, seeds: list, complete: np.ndarray, where: str) -> list[str]:
    lost = [s for s, ok in zip(seeds, complete) if not ok]
    if not lost:
        return []
    low, high = data
    gaps = int((np.isnan(low[~complete]) | np.isnan(high[~complete])).sum())
    place = f" in {where}" if where else ""
    return [
        f"{len(lost)} of {len(seeds)} seeds left out{place} (seed {levels_text(lost)}: "
        f"{gaps} of {low.shape[1] * len(lost)} cells missing)"
    ]


def _heterogeneity(
    matrix: np.ndarray, ids: list[tuple], strata: list[str], varying: list[str], shown: list[str]
) -> tuple[str, ...]:
    """Repeated-measures ANOVA (seeds as subjects) of the effect on the strata, and on each
    averaged-over axis: does the effect depend on it? Only on complete, balanced seeds."""
    if matrix.shape[0] < 2 or len(ids) < 2:
        return ()
    import pandas  # statsmodels' AnovaRM takes a pandas frame
    from statsmodels.stats.anova import AnovaRM

    names = [*strata, *varying]
    out = []
    tests = ([("strata", list(range(len(strata))))] if len(strata) else []) + [
        (axis, [len(strata) + i]) for i, axis in enumerate(varying) if axis in shown
    ]
    for what, positions in tests:
        key = [str(tuple(cell[p] for p in positions)) for cell in ids]
        factors = list(dict.fromkeys(key))
        if len(factors) < 2:
            continue
        # each seed's mean effect per factor level (the cells sharing a level averaged, as
        # AnovaRM's aggregate_func="mean" would), one record per (seed, level)
        means = np.stack(
            [matrix[:, [j for j, k in enumerate(key) if k == f]].mean(axis=1) for f in factors],
            axis=1,
        )
        seeds = matrix.shape[0]
        frame = pandas.DataFrame({
            "seed": np.repeat(np.arange(seeds), len(factors)),
            "factor": np.tile(np.array(factors, dtype=object), seeds),
            "effect": means.reshape(-1),
        })  # fmt: skip
        try:
            with np.errstate(divide="ignore", invalid="ignore"):  # no residual: F undefined
                table = AnovaRM(frame, "effect", "seed", within=["factor"])
                row = table.fit().anova_table.iloc[0]
        except ValueError:
            continue
        f, df1, df2, p = row["F Value"], row["Num DF"], row["Den DF"], row["Pr > F"]
        if not math.isfinite(p) or p >= ALPHA:
            continue
        label = "strata differ" if what == "strata" else f"depends on {names[positions[0]]}"
        out.append(f"{label}: F({df1:g}, {df2:g}) = {f:.1f}, p = {p:.2g}")
    return tuple(out)


def _decide(a: Assessment) -> Assessment:
    """The part's verdict from its headline, strata, levels and cells (the module docstring).

    Disagreement is looked for among the strata, among the levels of each averaged-over axis
    and among the cells (not between a stratum and a level: a stratum's "holds" averages over
    that axis); a margin or equivalence claim holds only if it holds in every cell."""
    from dataclasses import replace

    rule, checks = a.rule, a.checks
    decisive = {s.label: rule.decide(s.estimate, a.level) for s in checks}
    p_adj = {k: min(1.0, p * len(checks)) for k, (v, p) in decisive.items() if v != NOT_ENOUGH}
    groups = [list(a.strata)] + [
        [s for s in a.levels if s.axis == axis] for axis in dict.fromkeys(s.axis for s in a.levels)
    ] + [list(a.cells)]  # fmt: skip

    def named(verdict: str) -> tuple[str, ...]:
        """The strata and levels decisively on this side; cells only where none of those is
        (a cell is finer: it names what the coarser checks cannot)."""
        coarse = tuple(s.label for s in (*a.strata, *a.levels) if decisive[s.label][0] == verdict)
        return coarse or tuple(s.label for s in a.cells if decisive[s.label][0] == verdict)

    holds, against = named(SUPPORTED), named(CONTRADICTED)
    split = [
        g for g in groups
        if {decisive[s.label][0] for s in g} >= {SUPPORTED, CONTRADICTED}
    ]  # fmt: skip
    out = replace(a, holds=holds, against=against)
    intersection = rule.kind in INTERSECTION_UNION and bool(a.strata or a.cells)
    if not a.headline.enough and not (intersection and against):
        short = [s.label for s in a.strata if not s.estimate.enough]
        why = f"fewer than 2 complete seeds in {'; '.join(short)}" if short else ""
        return replace(out, verdict=NOT_ENOUGH, decided_by=why)
    if split:
        group = split[0]
        yes = min(p_adj[s.label] for s in group if decisive[s.label][0] == SUPPORTED)
        no = min(p_adj[s.label] for s in group if decisive[s.label][0] == CONTRADICTED)
        return replace(
            out, verdict=MIXED, p=max(yes, no),
            holds=tuple(s.label for s in group if decisive[s.label][0] == SUPPORTED),
            against=tuple(s.label for s in group if decisive[s.label][0] == CONTRADICTED),
        )  # fmt: skip
    if intersection:
        if against:  # settled: kept even where another cell has too few seeds
            worst = min(against, key=lambda label: p_adj[label])
            return replace(
                out, verdict=CONTRADICTED, p=p_adj[worst], decided_by=worst,
                deciding=_estimate_of(a, worst),
            )  # fmt: skip
        where = list(a.cells or a.strata)  # where the claim must hold: every cell
        short = [s for s in where if not s.estimate.enough]
        if short:
            return replace(out, verdict=NOT_ENOUGH, decided_by=short[0].label)
        if all(s.verdict == SUPPORTED for s in where):
            weakest = max(where, key=lambda s: s.p)
            return replace(
                out, verdict=SUPPORTED, p=weakest.p, decided_by=weakest.label,
                deciding=weakest.estimate,
            )  # fmt: skip
        weakest = max(where, key=lambda s: rule.p_values(s.estimate)[0])
        return replace(
            out, verdict=INCONCLUSIVE, p=rule.p_values(weakest.estimate)[0],
            decided_by=weakest.label, deciding=weakest.estimate,
        )  # fmt: skip
    verdict, p = rule.decide(a.headline)
    if (verdict == SUPPORTED and against) or (verdict == CONTRADICTED and holds):
        other = against if verdict == SUPPORTED else holds
        return replace(
            out, verdict=MIXED, p=max(p, min(p_adj[x] for x in other)),
            holds=holds if verdict == CONTRADICTED else ("the main effect",),
            against=against if verdict == SUPPORTED else ("the main effect",),
        )  # fmt: skip
    return replace(out, verdict=verdict, p=p)


def _estimate_of(a: Assessment, label: str) -> Estimate | None:
    return next((s.estimate for s in (*a.strata, *a.levels, *a.cells) if s.label == label),
                None)  # fmt: skip


def conjunction(parts: Sequence[Assessment]) -> tuple[str, float, int]:
    """A claim made of several parts (the order's three steps; scale and family) holds when
    every part holds: (verdict, its p, the index of the part that decides it).

    Supported needs every part supported, each at the full level (intersection-union, no
    adjustment). Refuting it needs only one part against it, which is a union of the parts'
    tests: a contradicted (or mixed) part decides the claim only when its p times the number of
    parts is below 5% (Bonferroni), and that adjusted p is the one printed, so the row never
    says "contradicted" beside p >= 0.05. A part without data makes the claim not enough data
    (unless a part refutes it); else the weakest part decides, inconclusive."""
    k = len(parts)
    verdicts = [p.verdict for p in parts]

    def adjusted(j: int) -> float:
        return min(1.0, parts[j].p * k) if math.isfinite(parts[j].p) else 1.0

    for wanted in (CONTRADICTED, MIXED):
        hits = [i for i, v in enumerate(verdicts) if v == wanted and adjusted(i) < ALPHA]
        if hits:
            i = min(hits, key=adjusted)
            return wanted, adjusted(i), i
    missing = [i for i, v in enumerate(verdicts) if v == NOT_ENOUGH]
    if missing:
        return NOT_ENOUGH, math.nan, missing[0]
    if all(v == SUPPORTED for v in verdicts):
        i = max(range(k), key=lambda j: parts[j].p)
        return SUPPORTED, parts[i].p, i
    # undecided: inconclusive parts, and refutations that do not survive the adjustment
    undecided = [i for i, v in enumerate(verdicts) if v != SUPPORTED]
    i = max(undecided, key=lambda j: adjusted(j) if verdicts[j] != INCONCLUSIVE else parts[j].p)
    p = parts[i].p if verdicts[i] == INCONCLUSIVE else adjusted(i)
    return INCONCLUSIVE, p, i
