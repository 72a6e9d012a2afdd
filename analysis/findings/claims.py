"""The seed study's claims, one registry: each claim is a key, its words, and the parts it
is tested on (a comparison, a slope, a spread, ...), each part with its strata and its rule.
Measuring, combining (`combine`) and wording (`finding`) are written once for all of them.

Claims (Li 2024, "Attacking gradients": the conclusion and the notes beside its figures), plus
our own questions (issues 11 and 24):

 relu_vs_sigmoid    ReLU leaks less than Sigmoid.                  ReLU - Sigmoid < 0
 order              Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid: each step > 0
 batch_trend        PSNR falls as the batch grows.                 slope per doubling of B < 0
 batch_shrink       Differences large at small B, small at large.  spread(B min) - spread(B max) > 0
 uniform_vs_normal  No big variation between uniform and normal.   |uniform - normal| < margin
 pruning_xavier     Pruning has a big effect under Xavier.         none - pruned > margin
 pruning_kaiming    Pruning has low effect under Kaiming.          |none - pruned| < margin
 pruning_defends    Pruning 20% defends ("sparsification over 20%").  none - pruned > margin
 model              The McMahan CNN gives lower PSNR than ResNet-18.  McMahan - ResNet < 0
 pruning_aware      20% pruning defends an attacker who masks the pruned entries.
 scale_not_family   ReLU leakage follows the init scale, not the family.
 local_steps        More local steps reduce leakage (FedAvg, issue 24).  K - (K = 1) < 0,
                    averaged over the sweep's K > 1, per activation

How a claim is measured. The replicate is the seed: trials of one seed share its model weights
(scaled per init), images and dummy start, so they are not independent of each other, while
seeds are. An effect is measured on matched pairs (two trials equal in every config field but
the compared one, seed included), or per group (a slope over batch sizes); other axes that vary
among the units are averaged over (matched, never confounded) and named; conditions the claim
speaks of (prune none, Xavier only, ...) select rows, and rows whose value there is unknown
(null: written before the field existed) are left out and counted, never read as the default.

MARGIN_DB = 2 dB is the line between "small"/"no big variation" and "big" (equivalence
margins, "defends"): a 2 dB change is an MSE ratio of 1.6, small beside the 10-20 dB spreads
between the deck's init x activation cells, and about the seed-to-seed sd of one trial's PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from analysis.findings.combine import Assessment, Stratum, _decide, _label, assess
from analysis.findings.rows import (
    Where,
    condition,
    keys,
    levels_text,
    missing_levels,
    paired,
    scored,
    select,
    slopes,
)
from analysis.stats import Estimate, Rule, jackknife

MARGIN_DB = 2.0
# dB per doubling of init_scale: "follows the scale" needs |slope| above this, "flat" below it
# (one line between the two hypotheses, so no true slope can read as both)
SLOPE_MARGIN_DB = 0.5

# nothing pruned: prune none, or prune small with prune_ratio 0 (the pruning-aware grid's start)
UNPRUNED = Where("strength", (0.0,), "no pruning")
STRENGTH_0_OR_20 = Where("strength", (0.0, 0.2), "pruned share 0 or 0.2")

Measured = tuple[Assessment | None, list[str]]  # (the assessment, or None: notes say why)


@dataclass(frozen=True)
class Compare:
    """value(column = a) - value(column = b) on matched pairs, within `strata`."""

    column: str
    a: Any
    b: Any
    labels: tuple[str, str]
    rule: Rule
    strata: tuple[str, ...]
    where: tuple[Where, ...] = ()
    ignore: tuple[str, ...] = ()
    # conditions the rows at level `a` may break when no row meets them (the unpruned
    # baseline: with prune none the attacker's mask is a no-op, so either setting serves;
    # prune_ratio 0 rows of the attacker's own setting are preferred: on ReLU the mask also
    # drops the gradient's natural zeros)
    free_at_a: tuple[str, ...] = ()
    unit: str = "dB"

    @property
    def test(self) -> str:
        return self.rule.test(f"{self.labels[0]} - {self.labels[1]}", self.unit)

    def measure(self, rows: pl.DataFrame, value: str) -> Measured:
        missing = missing_levels(rows, self.column, [self.a, self.b])
        if missing:
            return None, [f"no trials with {self.column} {', '.join(map(str, missing))}"]
        _, notes = select(rows, self.where)
        keep = condition(rows, self.where)
        baseline = rows.filter(keep & (pl.col(self.column) == self.a))
        if self.free_at_a and baseline.is_empty():  # borrow the baseline from the other setting
            loose = [w for w in self.where if w.column not in self.free_at_a]
            keep = keep | (condition(rows, loose) & (pl.col(self.column) == self.a))
            notes.append(f"baseline ({self.labels[0]}) taken from rows of any "
                         f"{', '.join(self.free_at_a)}")  # fmt: skip
        units, more = paired(
            rows.filter(keep), self.column, self.a, self.b, value, self.ignore, self.labels
        )
        notes += more
        where = "; ".join(w.text() for w in self.where)
        if units.is_empty():
            return None, ["no matched pairs" + (f" in rows: {where}" if where else ""), *notes]
        if where:
            notes.insert(0, f"rows: {where}")
        return assess(units, self.strata, self.rule, "matched pairs", notes), notes


@dataclass(frozen=True)
class FromBase:
    """value(column = each level above `base`) - value(column = base) on matched pairs (twins
    differing in `column` alone), for every level the rows have above `base`, within `strata`.

    The level is an axis averaged over, named with its own estimate and verdict: a claim about
    "more" (more local steps) is then the average effect over the levels the sweep tested,
    guarded like any directional claim (a level or stratum decisively on the other side makes
    it mixed), and it reuses that calibrated rule instead of one comparison per level, whose
    levels would have to be known before the sweep is."""

    column: str
    base: Any
    labels: tuple[str, str]  # (any level above the base, the base)
    rule: Rule
    strata: tuple[str, ...]
    unit: str = "dB"

    @property
    def test(self) -> str:
        diff = f"{self.labels[0]} - {self.labels[1]}"
        return (f"{self.rule.test(diff, self.unit)}, averaged over the {self.column} levels "
                f"above {self.base}")  # fmt: skip

    def measure(self, rows: pl.DataFrame, value: str) -> Measured:
        recorded = self.column in rows.columns
        known = rows[self.column].drop_nulls().unique().sort().to_list() if recorded else []
        above = [level for level in known if level > self.base]
        if self.base not in known or not above:
            return None, [f"{self.column} {levels_text(known) or 'not recorded'} here: needs "
                          f"{self.base} and a level above it"]  # fmt: skip
        _, notes = select(rows, [Where(self.column, (self.base, *above))])
        pieces = []
        for level in above:
            pairs, more = paired(rows, self.column, level, self.base, value,
                                 names=(f"{self.column} {level}", self.labels[1]))  # fmt: skip
            pieces.append(pairs.with_columns(pl.lit(level, rows.schema[self.column])
                                             .alias(self.column)))  # fmt: skip
            notes += more
        units = pl.concat(pieces, how="vertical_relaxed")
        if units.is_empty():
            return None, ["no matched pairs", *notes]
        notes.append(self._per_cell(units))
        return assess(units, self.strata, self.rule, "matched pairs", notes), notes

    def _per_cell(self, units: pl.DataFrame) -> str:
        """Each stratum x level's effect over its seeds (the other axes averaged as in the
        headline): the numbers a reader quotes per activation and K, in the evidence."""
        strata = [s for s in self.strata if s in units.columns and units[s].n_unique() > 1]
        by = [*strata, self.column]
        cells = []
        for cell, part in sorted(units.group_by(by), key=lambda kv: tuple(map(str, kv[0]))):
            est = assess(part, (), self.rule).headline
            cells.append(f"{_label(by, cell)}: {est.text(self.unit)}")
        return f"per {' x '.join(by)} ({self.labels[0]} - {self.labels[1]}): " + "; ".join(cells)


@dataclass(frozen=True)
class Slope:
    """The least-squares slope of value on log2(x), per group of every other key."""

    x: str
    label: str
    rule: Rule
    strata: tuple[str, ...]
    where: tuple[Where, ...] = (UNPRUNED,)
    unit: str = "dB/doubling"

    @property
    def test(self) -> str:
        return self.rule.test(f"slope of PSNR on log2({self.label})", self.unit)

    def measure(self, rows: pl.DataFrame, value: str) -> Measured:
        picked, notes = select(rows, self.where)
        picked, more = scored(picked, value)
        notes += more
        if self.x not in picked.columns or picked[self.x].n_unique() < 2:
            return None, [f"{self.x} does not vary in rows: "
                          f"{'; '.join(w.text() for w in self.where)}", *notes]  # fmt: skip
        units = slopes(picked, self.x, value, self.strata)
        groups = picked.select(keys(picked, (self.x,))).unique().height
        if units.height < groups:
            notes.append(
                f"{groups - units.height} of {groups} groups lack a {self.x} level their "
                "stratum has: left out"
            )
        if units.is_empty():
            return None, notes
        return assess(units, self.strata, self.rule, "per-group slopes", notes), notes


CELL_FIELDS = ("init_method", "family", "distribution", "activation")


def _cell_variance(y: np.ndarray) -> float:
    """The variance over cells of the true cell means, from y[seed, cell] (one trial each):
    the two-way ANOVA method-of-moments estimate (MS_cell - MS_residual) / n_seeds. It equals
    the mean over pairs of distinct seeds of their cross-product of cell deviations (a
    U-statistic), so trial noise cancels from it exactly in expectation, whatever the noise
    at each batch size; it is never truncated at 0 (a truncated estimate, or its square root,
    piles up at 0 where noise dominates, and its delete-one-seed values with it, so the
    interval would come from the quiet end alone)."""
    n, c = y.shape
    if n < 2 or c < 2:
        return math.nan
    cell_means = y.mean(axis=0)
    resid = y - y.mean(axis=1, keepdims=True) - cell_means + y.mean()
    ms_cell = n * cell_means.var(ddof=1)
    ms_resid = (resid**2).sum() / ((n - 1) * (c - 1))
    return float((ms_cell - ms_resid) / n)


def _null_variance(y1: np.ndarray, y2: np.ndarray) -> float:
    """The variance of _cell_variance(y1) - _cell_variance(y2) where the two true spreads are
    equal (their common value pooled from both ends, each weighted by its precision), from the
    two-way model: Var = 4 s2 theta / (n (c - 1)) + 2 s2^2 / (n (n - 1) (c - 1)) per end, s2 its
    residual mean square (the trial noise, estimated apart from the cell means). Unlike the
    jackknife's, it does not shrink when noise happens to shrink one end's estimate."""
    n, c = y1.shape
    parts = []
    for y in (y1, y2):
        resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0) + y.mean()
        s2 = max(float((resid**2).sum() / ((n - 1) * (c - 1))), 1e-12)
        parts.append((_cell_variance(y), s2))
    theta = max(0.0, sum(u / s2 for u, s2 in parts) / sum(1 / s2 for _, s2 in parts))
    return sum(4 * s2 * theta / (n * (c - 1)) + 2 * s2**2 / (n * (n - 1) * (c - 1))
               for _, s2 in parts)  # fmt: skip


def _widened(est: Estimate, se: float) -> Estimate:
    """The jackknife estimate, its pseudo-values spread so that its standard error is at least
    `se`: a verdict needs both the jackknife interval and the equal-spread test to decide
    (the jackknife's error shrinks with a noisy end's estimate, which alone reads 5% on one
    side where 2.5% is due; both together keep each side at or under 2.5%)."""
    if est.n < 2 or not math.isfinite(se):
        return est
    values = np.asarray(est.values)
    own = float(values.std(ddof=1)) / math.sqrt(len(values))
    if own >= se:
        return est
    if own == 0:
        return est
    mean = values.mean()
    return Estimate.of(mean + (values - mean) * (se / own))


@dataclass(frozen=True)
class Spread:
    """The spread between init x activation cells at the smallest batch size minus at the
    largest, as variances (spread^2, dB^2: the sd is larger at one end exactly when the
    variance is): per group of the other keys, the unbiased, untruncated noise-free estimate
    (`_cell_variance`) over its complete seeds, averaged over groups (equal weight per
    stratum); the interval is the delete-one-seed jackknife's (a U-statistic's: consistent
    whatever the noise at either end), widened where the equal-spread standard error
    (`_null_variance`) is larger (`_widened`), so it needs >= 3 seeds."""

    rule: Rule
    strata: tuple[str, ...] = ("network",)
    unit: str = "dB^2"
    test: str = (
        "variance over init x activation cells (noise removed) at the smallest B - at the "
        "largest B > 0 dB^2"
    )

    def measure(self, rows: pl.DataFrame, value: str) -> Measured:
        picked, notes = select(rows, [UNPRUNED])
        picked, more = scored(picked, value)
        notes += more
        if "batch_size" not in picked.columns or picked["batch_size"].n_unique() < 2:
            return None, ["batch size does not vary without pruning", *notes]
        unknown = picked.filter(pl.col("init_method").is_null() | pl.col("activation").is_null())
        if unknown.height:
            notes.append(f"{unknown.height} rows with unknown init_method or activation left out")
        sizes = sorted(picked["batch_size"].unique().to_list())
        ends = (sizes[0], sizes[-1])
        cells = picked.filter(
            pl.col("batch_size").is_in(ends)
            & pl.col("init_method").is_not_null()
            & pl.col("activation").is_not_null()
        ).with_columns((pl.col("init_method") + "/" + pl.col("activation")).alias("_cell"))
        group_keys = keys(cells, (*CELL_FIELDS, "batch_size", "seed"))
        strata = [s for s in self.strata if s in group_keys]
        tables = []  # (stratum, {B: y[seed, cell]} over the seeds present, seeds)
        seeds_all = sorted(cells["seed"].unique().to_list())
        for _, group in cells.group_by(group_keys):
            mean = group.group_by("batch_size", "_cell", "seed").agg(pl.col(value).mean())
            cell_ids = sorted(mean["_cell"].unique().to_list())
            if len(cell_ids) < 2:
                continue
            y = {b: np.full((len(seeds_all), len(cell_ids)), np.nan) for b in ends}
            for b, cell, seed, v in mean.select("batch_size", "_cell", "seed", value).iter_rows():
                y[b][seeds_all.index(seed), cell_ids.index(cell)] = v
            tables.append((tuple(group[s][0] for s in strata), y))
        if not tables:
            return None, ["need >= 2 init x activation cells at 2 batch sizes", *notes]

        def complete(selected: list) -> np.ndarray:
            ok = np.ones(len(seeds_all), bool)
            for _, y in selected:
                for b in ends:
                    ok &= ~np.isnan(y[b]).any(axis=1)
            return ok

        def statistic(selected: list, rows_: np.ndarray) -> float:
            by: dict[tuple, list[float]] = {}
            for stratum, y in selected:
                d = _cell_variance(y[ends[0]][rows_]) - _cell_variance(y[ends[1]][rows_])
                by.setdefault(stratum, []).append(d)
            return float(np.mean([np.mean(v) for v in by.values()]))

        def estimate(selected: list) -> tuple[Estimate, list[str]]:
            ok = np.flatnonzero(complete(selected))
            lost = len(seeds_all) - len(ok)
            note = [f"{lost} of {len(seeds_all)} seeds left out (incomplete)"] if lost else []
            if len(ok) < 3:
                return Estimate.of([]), note
            loo = [statistic(selected, np.delete(ok, i)) for i in range(len(ok))]
            return _widened(jackknife(statistic(selected, ok), loo), null_se(selected, ok)), note

        def null_se(selected: list, rows_: np.ndarray) -> float:
            """The statistic's standard error where the spreads are equal (`_null_variance`
            per group, groups weighted as `statistic` weighs them)."""
            by: dict[tuple, list[float]] = {}
            for stratum, y in selected:
                by.setdefault(stratum, []).append(_null_variance(y[ends[0]][rows_],
                                                                 y[ends[1]][rows_]))  # fmt: skip
            k = len(by)
            return math.sqrt(sum(v / (k * len(vs)) ** 2 for vs in by.values() for v in vs))

        headline, left = estimate(tables)
        ok = np.flatnonzero(complete(tables))
        if len(ok) >= 2:
            sds = [
                math.sqrt(max(0.0, float(np.mean([_cell_variance(y[b][ok]) for _, y in tables]))))
                for b in ends
            ]  # fmt: skip
            notes.append(f"noise-free sd over cells: {sds[0]:.2f} dB at B {ends[0]}, "
                         f"{sds[1]:.2f} dB at B {ends[1]} (variance truncated at 0 for this "
                         "line only)")  # fmt: skip
        found = []
        for stratum in sorted({s for s, _ in tables}, key=str):
            est, _ = estimate([t for t in tables if t[0] == stratum])
            found.append(
                Stratum(", ".join(f"{s}={v}" for s, v in zip(strata, stratum)), est,
                        *self.rule.decide(est))
            )  # fmt: skip
        if not headline.enough:
            notes.append("the noise-free spread and its jackknife interval need >= 3 seeds")
        notes.append(f"without pruning, B {ends[0]} vs {ends[1]}")
        result = Assessment(
            self.rule, headline, tuple(found), units=len(tables), what="groups of cells",
            n_cells=sum(y[ends[0]].shape[1] * 2 for _, y in tables),
            left_out=tuple(left), notes=tuple(notes),
        )  # fmt: skip
        return _decide(result), notes


def _matched_std_gap(group: pl.DataFrame, value: str) -> float:
    """Kaiming - Xavier PSNR at equal first-layer weight std, by linear interpolation in
    log(std) over the range both families cover; NaN when the ranges do not overlap."""
    curves = {}
    for family in ("kaiming", "xavier"):
        part = (
            group.filter(pl.col("family") == family)
            .group_by("init_scale")
            .agg(pl.col("init_weight_std").log().mean().alias("x"), pl.col(value).mean().alias("y"))
            .sort("x")
        )
        curves[family] = (part["x"].to_numpy(), part["y"].to_numpy())
    gaps = []
    (kx, ky), (xx, xy) = curves["kaiming"], curves["xavier"]
    if len(kx) == 0 or len(xx) == 0:
        return math.nan
    for x, y in zip(kx, ky):  # Kaiming's points inside Xavier's range
        if xx[0] - 1e-9 <= x <= xx[-1] + 1e-9:
            gaps.append(y - float(np.interp(x, xx, xy)))
    for x, y in zip(xx, xy):  # and Xavier's inside Kaiming's
        if kx[0] - 1e-9 <= x <= kx[-1] + 1e-9:
            gaps.append(float(np.interp(x, kx, ky)) - y)
    return float(np.mean(gaps)) if gaps else math.nan


RELU_UNPRUNED = (UNPRUNED, Where("activation", ("relu",)))


def _scale_rows(rows: pl.DataFrame, value: str) -> tuple[pl.DataFrame | None, list[str]]:
    picked, notes = select(rows, RELU_UNPRUNED)
    picked, more = scored(picked, value)
    notes += more
    if not {"init_scale", "init_weight_std", "family"} <= set(picked.columns):
        return None, ["init_scale or init_weight_std not recorded", *notes]
    unknown = picked.filter(pl.col("init_weight_std").is_null()).height
    if unknown:
        notes.append(f"{unknown} rows without init_weight_std left out")
    picked = picked.filter(
        pl.col("family").is_in(["xavier", "kaiming"])
        & pl.col("init_weight_std").is_not_null()
        & (pl.col("init_weight_std") > 0)
        & pl.col("init_scale").is_not_null()
    )
    both = not missing_levels(picked, "family", ["xavier", "kaiming"])
    if picked["init_scale"].n_unique() < 2 or not both:
        return None, ["needs ReLU trials of both families at >= 2 init scales", *notes]
    return picked, notes


@dataclass(frozen=True)
class FamilyGap:
    """Kaiming - Xavier at equal first-layer weight std (interpolated in log std), ReLU."""

    rule: Rule
    strata: tuple[str, ...] = ("network", "batch_size")
    unit: str = "dB"
    test: str = ""

    def measure(self, rows: pl.DataFrame, value: str) -> Measured:
        picked, notes = _scale_rows(rows, value)
        if picked is None:
            return None, notes
        group = keys(picked, ("init_method", "family", "init_scale"))
        gaps = [
            {**dict(zip(group, k)), "effect": _matched_std_gap(part, value)}
            for k, part in picked.group_by(group)
        ]
        units = pl.DataFrame(gaps, infer_schema_length=None).filter(pl.col("effect").is_not_nan())
        if units.is_empty():
            return None, ["the families' weight-std ranges do not overlap", *notes]
        reference = assess(
            paired(picked, "family", "kaiming", "xavier", value, ("init_method",))[0],
            self.strata, Rule("greater"),
        ).headline  # fmt: skip
        notes.append(f"for reference, at equal init_scale Kaiming - Xavier {reference.text()}")
        return assess(units, self.strata, self.rule, "pairs of curves", notes), notes


@dataclass(frozen=True)
class ScaleSlope(Slope):
    def measure(self, rows: pl.DataFrame, value: str) -> Measured:
        picked, notes = _scale_rows(rows, value)
        if picked is None:
            return None, notes
        units = slopes(picked, "init_scale", value, self.strata)
        if units.is_empty():
            return None, notes
        return assess(units, self.strata, self.rule, "per-group slopes", notes), notes


Part = Compare | FromBase | Slope | Spread | FamilyGap


@dataclass(frozen=True)
class Claim:
    key: str
    text: str
    parts: tuple[Part, ...]
    test: str = ""  # the decision rule in words; default: the one part's
    requires: Callable[[pl.DataFrame], str | None] | None = None  # why it cannot be tested
    extra: Callable[[pl.DataFrame, str], str] | None = None  # evidence beyond the parts'

    @property
    def rule_text(self) -> str:
        return self.test or "; ".join(p.test for p in self.parts)


def _relu_vs_sigmoid_family(rule: Rule) -> Compare:
    return Compare("activation", "relu", "sigmoid", ("ReLU", "Sigmoid"), rule,
                   ("network", "family"), (UNPRUNED,))  # fmt: skip


def _pruning(kind: str, family: str | None, aware: bool) -> Compare:
    where = [STRENGTH_0_OR_20, Where("mask_pruned", (aware,))]
    if family:
        where.append(Where("family", (family,)))
    return Compare(
        "strength", 0.0, 0.2, ("unpruned", "pruned 20%"), Rule(kind, MARGIN_DB),
        ("network", "activation"), tuple(where), ("prune", "prune_ratio", "mask_pruned"),
        free_at_a=("mask_pruned",),
    )  # fmt: skip


ORDER = [("xavier", "relu"), ("kaiming", "relu"), ("kaiming", "sigmoid"), ("xavier", "sigmoid")]
_STEP_STRATA = ("network", "batch_size")
ORDER_STEPS = (
    Compare("family", "kaiming", "xavier", ("Kaiming-ReLU", "Xavier-ReLU"), Rule("greater"),
            _STEP_STRATA, (UNPRUNED, Where("activation", ("relu",))), ("init_method",)),
    Compare("activation", "sigmoid", "relu", ("Kaiming-Sigmoid", "Kaiming-ReLU"), Rule("greater"),
            _STEP_STRATA, (UNPRUNED, Where("family", ("kaiming",)))),
    Compare("family", "xavier", "kaiming", ("Xavier-Sigmoid", "Kaiming-Sigmoid"), Rule("greater"),
            _STEP_STRATA, (UNPRUNED, Where("activation", ("sigmoid",))), ("init_method",)),
)  # fmt: skip


def _observed_order(rows: pl.DataFrame, value: str) -> str:
    picked, _ = select(rows, [UNPRUNED, Where("family", ("xavier", "kaiming"))])
    picked, _ = scored(picked, value)
    if "activation" not in picked.columns:
        return ""
    means = (
        picked.filter(pl.col("activation").is_not_null())
        .group_by("family", "activation")
        .agg(pl.col(value).mean())
        .sort(value)
    )
    cells = [f"{f.capitalize()}-{a}" for f, a, _ in means.iter_rows()]
    return "without pruning, observed order of means: " + " < ".join(cells) if cells else ""


def _needs_order_cells(rows: pl.DataFrame) -> str | None:
    picked, _ = select(rows, [UNPRUNED])
    if not {"family", "activation"} <= set(picked.columns):
        return "no init family or activation recorded"
    present = set(picked.select("family", "activation").unique().iter_rows())
    missing = [f"{f}-{a}" for f, a in ORDER if (f, a) not in present]
    return f"no unpruned trials for {', '.join(missing)}" if missing else None


CLAIMS: dict[str, Claim] = {
    claim.key: claim
    for claim in (
        Claim("relu_vs_sigmoid", "ReLU leaks less than Sigmoid (lower PSNR with ReLU)",
              (_relu_vs_sigmoid_family(Rule("less")),)),
        Claim("order",
              "Worst to best PSNR: Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid",
              ORDER_STEPS, "each step > 0 dB, per network x batch size, without pruning",
              requires=_needs_order_cells, extra=_observed_order),
        Claim("batch_trend", "PSNR falls as the batch size grows",
              (Slope("batch_size", "batch size", Rule("less"), ("network",)),)),
        Claim("batch_shrink",
              "Differences between init x activation are large at small batch sizes, small at "
              "large",
              (Spread(Rule("greater")),)),
        Claim("uniform_vs_normal", "No big variation of PSNR between uniform and normal init",
              (Compare("distribution", "uniform", "normal", ("uniform", "normal"),
                       Rule("equivalent", MARGIN_DB), ("network", "family"), (UNPRUNED,),
                       ("init_method",)),)),
        Claim("pruning_xavier", "Pruning has a big effect under Xavier init",
              (_pruning("exceeds", "xavier", False),)),
        Claim("pruning_kaiming", "Pruning has low effect under Kaiming init",
              (_pruning("equivalent", "kaiming", False),)),
        Claim("pruning_defends",
              "Pruning 20% of the gradient defends (deck: sparsification over 20%)",
              (_pruning("exceeds", None, False),)),
        Claim("model", "The McMahan CNN gives lower PSNR than ResNet-18",
              (Compare("network", "mcmahan", "resnet18", ("McMahan CNN", "ResNet-18"),
                       Rule("less"), ("activation", "family"), (UNPRUNED,), ("model",)),)),
        Claim("pruning_aware",
              "Pruning 20% still defends against an attacker who matches only the unpruned "
              "entries", (_pruning("exceeds", None, True),)),
        Claim("scale_not_family",
              "ReLU leakage follows the init scale, not the family (Xavier vs Kaiming)",
              (FamilyGap(Rule("equivalent", MARGIN_DB),
                         test=f"at equal first-layer weight std |Kaiming - Xavier| < "
                              f"{MARGIN_DB:g} dB"),
               ScaleSlope("init_scale", "init_scale", Rule("nonzero", SLOPE_MARGIN_DB),
                          ("network", "batch_size"), RELU_UNPRUNED)),
              f"at equal first-layer weight std |Kaiming - Xavier| < {MARGIN_DB:g} dB, and the "
              f"slope of PSNR on log2(init_scale) is away from 0: |slope| > {SLOPE_MARGIN_DB:g} "
              "dB/doubling (within it: flat)"),
        Claim("local_steps",
              "More local steps reduce leakage: a FedAvg update of K > 1 local steps gives lower "
              "PSNR than FedSGD (K = 1)",
              (FromBase("local_steps", 1, ("K steps", "1 step"), Rule("less"),
                        ("network", "activation")),)),
    )
}  # fmt: skip
