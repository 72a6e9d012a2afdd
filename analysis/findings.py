"""The seed study's claims, each tested against our rows: an effect, its interval, a verdict.

Claims (Li 2024, "Attacking gradients": the conclusion and the notes beside its figures), plus
two of our own questions (issue 11):

 1. ReLU leaks less than Sigmoid.                       effect ReLU - Sigmoid < 0
 2. Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid.   each step > 0
 3. PSNR falls as the batch grows.                      slope per doubling of B < 0
 4. Differences are large at small B, smaller at large B.   spread(B min) - spread(B max) > 0
 5. No big variation between uniform and normal init.   |uniform - normal| < margin
 6. Pruning has a big effect under Xavier.              none - pruned > margin
 7. Pruning has low effect under Kaiming.               |none - pruned| < margin
 8. Pruning 20% of the gradient defends (deck: "sparsification over 20%").   none - pruned > margin
 9. The McMahan CNN gives lower PSNR than ResNet-18.    McMahan - ResNet < 0
10. 20% pruning still defends against an attacker who masks the pruned entries.
11. ReLU leakage follows the init scale, not the family.

How a claim is tested. The replicate is the seed: trials of one seed share its model weights
(scaled per init), images and dummy start, so they are not independent of each other, while
seeds are. An effect is measured on matched pairs (two trials equal in every config field but
the compared one, seed included), averaged per seed within each stratum the claim speaks of
(say model x batch size), and the claim's overall effect is, per seed, the mean over its strata;
the 95% Student-t interval is over seeds. Other axes that vary among the pairs are averaged over
(matched, never confounded) and named in the evidence as pooled; conditions the claim speaks of
(prune none, Xavier only, ...) select rows, and rows whose value there is unknown (null: written
before the field existed) are left out and counted, never read as the default.

Verdicts (`analysis.stats`): `supported` (the interval lies on the claimed side of zero, or of
the margin; inside +-margin for an equivalence), `contradicted` (it lies wholly on the other
side), `inconclusive` (it straddles), `not enough data` (fewer than MIN_REPLICATES seeds, or a
level missing). Each verdict comes with the smallest effect its seeds could have detected (80%
power) and the seeds a decision would need at the observed effect. Per-stratum verdicts are
descriptive (unadjusted for multiplicity); the claim's verdict is the combined one.

MARGIN_DB = 2 dB is the line between "small"/"no big variation" and "big" (equivalence
margins, "defends"): a 2 dB change is an MSE ratio of 1.6, small beside the 10-20 dB spreads
between the deck's init x activation cells, and about the seed-to-seed sd of one trial's PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from analysis.load import result_rows
from analysis.stats import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_ENOUGH,
    SUPPORTED,
    VERDICTS,
    Estimate,
    decide_equivalent,
    decide_exceeds,
    decide_sign,
)
from orchestrator.schema import CONFIG_COLUMNS

__all__ = [
    "CONTRADICTED", "INCONCLUSIVE", "NOT_ENOUGH", "SUPPORTED", "VERDICTS", "MARGIN_DB",
    "Finding", "findings", "table", "protocol_notes", "prepare",
]  # fmt: skip

MARGIN_DB = 2.0
SLOPE_MARGIN_DB = 0.5  # dB per doubling of init_scale: "follows the scale" needs more than this
CONFIG_FIELDS = [name for name, _ in CONFIG_COLUMNS]
# columns derived from config fields, used as comparison fields and as pairing keys
DERIVED = ("family", "distribution", "network", "strength")
VALUE = "psnr_mean"
SCORES = ("psnr_mean", "psnr_raw_mean")  # what a verdict may be computed on
SOURCES = {"family": ("init_method",), "distribution": ("init_method",), "network": ("model",),
           "strength": ("prune", "prune_ratio")}  # fmt: skip


# -- rows ------------------------------------------------------------------------------------


def prepare(frame: pl.DataFrame, value: str = VALUE) -> pl.DataFrame:
    """The ok/diverged rows with a finite `value`, plus the derived columns.

    family: xavier | kaiming | default (from init_method); distribution: normal | uniform;
    network: mcmahan (both McMahan CNN variants) | resnet18 | lenet_zhu; strength: the pruned
    share (0 when prune is none, prune_ratio otherwise).
    """
    rows = result_rows(frame)
    if value not in rows.columns:
        return rows.clear()
    rows = rows.filter(pl.col(value).is_not_null() & pl.col(value).cast(pl.Float64).is_finite())
    derived = []
    if "init_method" in rows.columns:
        method = pl.col("init_method")
        derived += [
            method.str.split("_").list.first().alias("family"),
            pl.when(method.str.ends_with("_uniform")).then(pl.lit("uniform"))
            .when(method.str.ends_with("_normal")).then(pl.lit("normal"))
            .otherwise(method).alias("distribution"),
        ]  # fmt: skip
    if "model" in rows.columns:
        derived.append(
            pl.when(pl.col("model").str.starts_with("mcmahan"))
            .then(pl.lit("mcmahan"))
            .otherwise(pl.col("model"))
            .alias("network")
        )
    if {"prune", "prune_ratio"} <= set(rows.columns):
        derived.append(
            pl.when(pl.col("prune") == "none")
            .then(0.0)
            .when(pl.col("prune").is_null())
            .then(None)
            .otherwise(pl.col("prune_ratio").round(6))
            .alias("strength")
        )
    return rows.with_columns(derived)


def _keys(rows: pl.DataFrame, exclude: Sequence[str]) -> list[str]:
    return [k for k in (*CONFIG_FIELDS, *DERIVED) if k in rows.columns and k not in exclude]


def _levels_text(values: list[Any]) -> str:
    shown = sorted((v for v in values if v is not None), key=lambda v: (str(type(v)), v))
    text = ", ".join(str(v) for v in shown[:6]) + (", ..." if len(shown) > 6 else "")
    return text + (", unknown" if None in values else "")


# -- selecting rows: the conditions a claim speaks of ------------------------------------------


@dataclass(frozen=True)
class Where:
    """Rows with `column` in `levels`; rows where it is null are unknown, left out, counted."""

    column: str
    levels: tuple[Any, ...]
    label: str = ""  # how the evidence says it

    def text(self) -> str:
        return self.label or f"{self.column} = {' or '.join(str(v) for v in self.levels)}"


def condition(rows: pl.DataFrame, where: Sequence[Where]) -> pl.Expr:
    """The rows meeting every condition (null values never match)."""
    expr = pl.lit(True)
    for cond in where:
        if cond.column not in rows.columns:
            return pl.lit(False)
        expr = expr & pl.col(cond.column).is_in(list(cond.levels)).fill_null(False)
    return expr


def select(rows: pl.DataFrame, where: Sequence[Where]) -> tuple[pl.DataFrame, list[str]]:
    """(rows meeting every condition, notes on rows left out because a value was unknown)."""
    notes = []
    for cond in where:
        if cond.column not in rows.columns:
            notes.append(f"{cond.column} not recorded in these rows")
            continue
        unknown = rows.filter(pl.col(cond.column).is_null()).height
        if unknown:
            notes.append(f"{unknown} rows with unknown {cond.column} left out")
    return rows.filter(condition(rows, where)), notes


# -- effects on matched pairs, aggregated over seeds ----------------------------------------


def paired(
    rows: pl.DataFrame,
    column: str,
    a: Any,
    b: Any,
    value: str = VALUE,
    ignore: Sequence[str] = (),
) -> pl.DataFrame:
    """One row per matched pair: the keys (every config field but `column` and `ignore`, seed
    included) and `effect` = value(a) - value(b). Trials sharing a key are averaged first."""
    keys = _keys(rows, (column, *ignore))

    def side(level: Any, name: str) -> pl.DataFrame:
        return (
            rows.filter(pl.col(column) == level)
            .group_by(keys)
            .agg(pl.col(value).cast(pl.Float64).mean().alias(name))
        )

    if not keys:
        return pl.DataFrame({"effect": []}, schema={"effect": pl.Float64})
    pairs = side(a, "_a").join(side(b, "_b"), on=keys, how="inner", nulls_equal=True)
    return pairs.with_columns((pl.col("_a") - pl.col("_b")).alias("effect")).drop("_a", "_b")


@dataclass(frozen=True)
class Stratum:
    label: str  # "network=mcmahan, batch_size=1"
    estimate: Estimate
    verdict: str


@dataclass(frozen=True)
class Assessment:
    """An effect over seeds: overall, per stratum, the pooled axes, how many units it rests on."""

    overall: Estimate
    strata: tuple[Stratum, ...]
    pooled: tuple[str, ...]  # "batch_size (1, 2)"
    units: int  # matched pairs (or per-group slopes, spreads, ...)
    what: str = "matched pairs"


Decide = Callable[[Estimate], tuple[str, float]]


def assess(
    units: pl.DataFrame, strata: Sequence[str], decide: Decide, what: str = "matched pairs"
) -> Assessment:
    """Per stratum: mean effect per seed, t-interval over seeds. Overall: per seed, the mean of
    its strata, t-interval over seeds. Axes varying among the units (other than seed and the
    strata) are pooled: matched within each unit, averaged over, named."""
    if units.is_empty() or "seed" not in units.columns:
        return Assessment(Estimate.of([]), (), (), 0)
    strata = [s for s in strata if s in units.columns]
    varying = [
        c for c in units.columns
        if c not in ("seed", "effect", *strata) and units[c].n_unique() > 1
    ]  # fmt: skip
    pooled = tuple(
        f"{c} ({_levels_text(units[c].unique().to_list())})"
        for c in varying
        if not (c in SOURCES and set(SOURCES[c]) & set(varying))  # family when init_method is
    )
    cells = units.group_by([*strata, "seed"]).agg(pl.col("effect").mean())
    overall = Estimate.of(cells.group_by("seed").agg(pl.col("effect").mean())["effect"].to_list())
    found = []
    if strata:
        for key, part in sorted(
            cells.group_by(strata), key=lambda kv: tuple(str(k) for k in kv[0])
        ):
            label = ", ".join(f"{s}={k}" for s, k in zip(strata, key))
            estimate = Estimate.of(part["effect"].to_list())
            found.append(Stratum(label, estimate, decide(estimate)[0]))
    return Assessment(overall, tuple(found), pooled, units.height, what)


# -- findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    claim: str
    evidence: str  # our numbers, in words
    verdict: str  # supported | contradicted | inconclusive | not enough data
    n: int  # seeds (independent replicates) the verdict rests on
    test: str = ""  # the decision rule, e.g. "ReLU - Sigmoid < 0 dB"
    estimate: Estimate | None = None
    detectable: float = math.nan  # smallest effect the seeds detect (80% power)
    seeds_needed: int | None = None  # for a decision at the observed effect
    strata: tuple[Stratum, ...] = ()
    key: str = ""
    unit: str = "dB"
    notes: tuple[str, ...] = field(default=())


def _missing(rows: pl.DataFrame, column: str, levels: Sequence[Any]) -> list[Any]:
    if column not in rows.columns:
        return list(levels)
    present = set(rows[column].unique().to_list())
    return [level for level in levels if level not in present]


def _finding(
    key: str,
    claim: str,
    test: str,
    result: Assessment,
    decide: Decide,
    notes: Sequence[str],
    unit: str = "dB",
    extra: str = "",
) -> Finding:
    verdict, gap = decide(result.overall)
    est = result.overall
    needed = est.replicates_needed(gap) if verdict in (INCONCLUSIVE,) else None
    return Finding(
        claim=claim,
        evidence=_evidence(test, result, verdict, needed, notes, unit, extra),
        verdict=verdict,
        n=est.n,
        test=test,
        estimate=est,
        detectable=est.detectable,
        seeds_needed=needed,
        strata=result.strata,
        key=key,
        unit=unit,
        notes=tuple(notes),
    )


def _evidence(
    test: str,
    result: Assessment,
    verdict: str,
    needed: int | None,
    notes: Sequence[str],
    unit: str,
    extra: str,
) -> str:
    est = result.overall
    if est.n == 0:
        return "; ".join(["no matched trials", *notes])
    parts = [f"{test}: {est.text(unit)} over {est.n} seeds ({result.units} {result.what})"]
    if not math.isnan(est.detectable):
        parts.append(f"smallest detectable effect {est.detectable:.1f} {unit} (80% power)")
    if needed is not None:
        parts.append(
            f"about {needed if needed <= 1000 else '> 1000'} seeds to decide at this effect"
        )
    if verdict == NOT_ENOUGH:
        parts.append("fewer than 2 seeds: no interval")
    if result.pooled:
        parts.append("averaged over (matched): " + "; ".join(result.pooled))
    if result.strata:
        counts = {v: sum(s.verdict == v for s in result.strata) for v in VERDICTS}
        summary = ", ".join(f"{v} {c}" for v, c in counts.items() if c)
        parts.append(f"per stratum: {summary}")
        against = [s for s in result.strata if s.verdict == CONTRADICTED]
        if against:
            parts.append(
                "contradicted at "
                + "; ".join(f"{s.label} {s.estimate.text(unit)}" for s in against)
            )
    if extra:
        parts.append(extra)
    parts.extend(notes)
    return "; ".join(parts)


def _not_enough(key: str, claim: str, test: str, why: str, notes: Sequence[str] = ()) -> Finding:
    return Finding(claim, "; ".join([why, *notes]), NOT_ENOUGH, 0, test=test, key=key)


@dataclass(frozen=True)
class Comparison:
    """A claim about value(column=a) - value(column=b), tested within `strata`."""

    key: str
    claim: str
    column: str
    a: Any
    b: Any
    labels: tuple[str, str]
    kind: str  # less | greater | exceeds | equivalent
    strata: tuple[str, ...]
    where: tuple[Where, ...] = ()
    ignore: tuple[str, ...] = ()
    # conditions the rows at level `a` may break when no row meets them (the unpruned
    # baseline: with prune none the attacker's mask is a no-op, so either setting serves;
    # prune_ratio 0 rows of the attacker's own setting are preferred: on ReLU the mask also
    # drops the gradient's natural zeros)
    free_at_a: tuple[str, ...] = ()

    def decide(self) -> Decide:
        return {
            "less": lambda e: decide_sign(e, -1),
            "greater": lambda e: decide_sign(e, +1),
            "exceeds": lambda e: decide_exceeds(e, MARGIN_DB),
            "equivalent": lambda e: decide_equivalent(e, MARGIN_DB),
        }[self.kind]

    def test(self) -> str:
        diff = f"{self.labels[0]} - {self.labels[1]}"
        return {
            "less": f"{diff} < 0 dB",
            "greater": f"{diff} > 0 dB",
            "exceeds": f"{diff} > {MARGIN_DB:g} dB",
            "equivalent": f"|{diff}| < {MARGIN_DB:g} dB",
        }[self.kind]

    def units(self, rows: pl.DataFrame, value: str = VALUE) -> tuple[pl.DataFrame, list[str]]:
        _, notes = select(rows, self.where)
        keep = condition(rows, self.where)
        baseline = rows.filter(keep & (pl.col(self.column) == self.a))
        if self.free_at_a and baseline.is_empty():  # borrow the baseline from the other setting
            loose = [w for w in self.where if w.column not in self.free_at_a]
            keep = keep | (condition(rows, loose) & (pl.col(self.column) == self.a))
            notes = [*notes, f"baseline ({self.labels[0]}) taken from rows of any "
                     f"{', '.join(self.free_at_a)}"]  # fmt: skip
        picked = rows.filter(keep & pl.col(self.column).is_in([self.a, self.b]))
        return paired(picked, self.column, self.a, self.b, value, self.ignore), notes

    def __call__(self, rows: pl.DataFrame, value: str = VALUE) -> Finding:
        missing = _missing(rows, self.column, [self.a, self.b])
        if missing:
            return _not_enough(
                self.key, self.claim, self.test(),
                f"no trials with {self.column} {', '.join(map(str, missing))}",
            )  # fmt: skip
        units, notes = self.units(rows, value)
        where = "; ".join(w.text() for w in self.where)
        if units.is_empty():
            why = "no matched pairs" + (f" in rows: {where}" if where else "")
            return _not_enough(self.key, self.claim, self.test(), why, notes)
        result = assess(units, self.strata, self.decide())
        extra = f"rows: {where}" if where else ""
        return _finding(
            self.key, self.claim, self.test(), result, self.decide(), notes, extra=extra
        )


# nothing pruned: prune none, or prune small with prune_ratio 0 (the pruning-aware grid's start)
UNPRUNED = Where("strength", (0.0,), "no pruning")
STRENGTH_0_OR_20 = Where("strength", (0.0, 0.2), "pruned share 0 or 0.2")

RELU_VS_SIGMOID = Comparison(
    "relu_vs_sigmoid", "ReLU leaks less than Sigmoid (lower PSNR with ReLU)",
    "activation", "relu", "sigmoid", ("ReLU", "Sigmoid"), "less",
    strata=("network", "family"), where=(UNPRUNED,),
)  # fmt: skip

UNIFORM_VS_NORMAL = Comparison(
    "uniform_vs_normal", "No big variation of PSNR between uniform and normal init",
    "distribution", "uniform", "normal", ("uniform", "normal"), "equivalent",
    strata=("network", "family"), where=(UNPRUNED,), ignore=("init_method",),
)  # fmt: skip


def _pruning(key: str, claim: str, kind: str, family: str | None, aware: bool) -> Comparison:
    where = [STRENGTH_0_OR_20, Where("mask_pruned", (aware,))]
    if family:
        where.append(Where("family", (family,)))
    strata = ("network", "activation")
    return Comparison(
        key, claim, "strength", 0.0, 0.2, ("unpruned", "pruned 20%"), kind, strata=strata,
        where=tuple(where), ignore=("prune", "prune_ratio", "mask_pruned"),
        free_at_a=("mask_pruned",),
    )  # fmt: skip


PRUNING_XAVIER = _pruning(
    "pruning_xavier", "Pruning has a big effect under Xavier init", "exceeds", "xavier", False
)
PRUNING_KAIMING = _pruning(
    "pruning_kaiming", "Pruning has low effect under Kaiming init", "equivalent", "kaiming", False
)
PRUNING_DEFENDS = _pruning(
    "pruning_defends", "Pruning 20% of the gradient defends (deck: sparsification over 20%)",
    "exceeds", None, False,
)  # fmt: skip
PRUNING_AWARE = _pruning(
    "pruning_aware",
    "Pruning 20% still defends against an attacker who matches only the unpruned entries",
    "exceeds", None, True,
)  # fmt: skip

MODEL = Comparison(
    "model", "The McMahan CNN gives lower PSNR than ResNet-18",
    "network", "mcmahan", "resnet18", ("McMahan CNN", "ResNet-18"), "less",
    strata=("activation", "family"), where=(UNPRUNED,), ignore=("model",),
)  # fmt: skip


# -- claim 2: the order of the four init x activation cells ----------------------------------

ORDER = [("xavier", "relu"), ("kaiming", "relu"), ("kaiming", "sigmoid"), ("xavier", "sigmoid")]
ORDER_STEPS = (
    Comparison("order", "", "family", "kaiming", "xavier", ("Kaiming-ReLU", "Xavier-ReLU"),
               "greater", ("network", "batch_size"),
               (UNPRUNED, Where("activation", ("relu",))), ignore=("init_method",)),
    Comparison("order", "", "activation", "sigmoid", "relu", ("Kaiming-Sigmoid", "Kaiming-ReLU"),
               "greater", ("network", "batch_size"), (UNPRUNED, Where("family", ("kaiming",)))),
    Comparison("order", "", "family", "xavier", "kaiming", ("Xavier-Sigmoid", "Kaiming-Sigmoid"),
               "greater", ("network", "batch_size"),
               (UNPRUNED, Where("activation", ("sigmoid",))), ignore=("init_method",)),
)  # fmt: skip


def init_activation_order(rows: pl.DataFrame, value: str = VALUE) -> Finding:
    key = "order"
    claim = "Worst to best PSNR: Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid"
    test = "each step > 0 dB, per network x batch size, without pruning"
    unpruned, notes = select(rows, [UNPRUNED])
    cells = (
        unpruned.filter(pl.col("family").is_in(["xavier", "kaiming"])).with_columns(
            (pl.col("family") + "-" + pl.col("activation")).alias("cell")
        )
        if {"family", "activation"} <= set(unpruned.columns)
        else unpruned.clear().with_columns(pl.lit("").alias("cell"))
    )
    names = [f"{f}-{a}" for f, a in ORDER]
    missing = _missing(cells, "cell", names)
    if missing:
        return _not_enough(key, claim, test, f"no unpruned trials for {', '.join(missing)}", notes)
    steps = []
    for step in ORDER_STEPS:
        units, more = step.units(rows, value)
        result = assess(units, step.strata, step.decide())
        steps.append((step, result, step.decide()(result.overall)[0]))
    verdicts = [v for _, _, v in steps]
    if NOT_ENOUGH in verdicts:
        verdict = NOT_ENOUGH
    elif CONTRADICTED in verdicts:
        verdict = CONTRADICTED
    elif all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    means = cells.group_by("cell").agg(pl.col(value).mean()).sort(value)
    observed = " < ".join(means["cell"].to_list())
    # the step closest to failing carries the finding's numbers
    weakest_step, weakest, _ = min(
        steps, key=lambda s: s[1].overall.low if s[1].overall.enough else -math.inf
    )
    step_text = "; ".join(
        f"{s.labels[0]} - {s.labels[1]} {r.overall.text()} {v}" for s, r, v in steps
    )
    pooled = sorted({p for _, r, _ in steps for p in r.pooled})
    strata_all = tuple(
        Stratum(f"{s.labels[0]} - {s.labels[1]}: {x.label}", x.estimate, x.verdict)
        for s, r, _ in steps
        for x in r.strata
    )
    against = [x for x in strata_all if x.verdict == CONTRADICTED]
    evidence = (
        f"without pruning, observed order of means: {observed}. Steps (over seeds): {step_text}"
        + (f"; averaged over (matched): {'; '.join(pooled)}" if pooled else "")
        + (
            "; contradicted at " + "; ".join(f"{x.label} {x.estimate.text()}" for x in against)
            if against
            else ""
        )
        + "".join(f"; {n}" for n in notes)
    )
    est = weakest.overall
    needed = est.replicates_needed(abs(est.mean)) if verdict == INCONCLUSIVE else None
    if not math.isnan(est.detectable):
        evidence += (
            f"; weakest step {weakest_step.labels[0]} - {weakest_step.labels[1]}: smallest "
            f"detectable effect {est.detectable:.1f} dB (80% power)"
        )
    if needed is not None:
        evidence += f", about {needed if needed <= 1000 else '> 1000'} seeds to decide"
    return Finding(
        claim, evidence, verdict, min(r.overall.n for _, r, _ in steps), test=test,
        estimate=est, detectable=est.detectable, seeds_needed=needed, strata=strata_all, key=key,
        notes=tuple(notes),
    )  # fmt: skip


# -- claims 3 and 4: batch size ---------------------------------------------------------------


def _slopes(rows: pl.DataFrame, x: str, value: str, keys: list[str]) -> pl.DataFrame:
    """Least-squares slope of value on log2(x) per group of `keys` holding >= 2 levels of x."""
    lx = pl.col(x).cast(pl.Float64).log(2)
    y = pl.col(value).cast(pl.Float64)
    centred = rows.filter(pl.col(x).is_not_null() & (pl.col(x) > 0)).with_columns(
        (lx - lx.mean().over(keys)).alias("_x"), (y - y.mean().over(keys)).alias("_y")
    )
    return (
        centred.group_by(keys)
        .agg(
            ((pl.col("_x") * pl.col("_y")).sum() / (pl.col("_x") ** 2).sum()).alias("effect"),
            pl.col(x).n_unique().alias("_levels"),
        )
        .filter(pl.col("_levels") >= 2)
        .drop("_levels")
    )


def batch_size_trend(rows: pl.DataFrame, value: str = VALUE) -> Finding:
    key, claim = "batch_trend", "PSNR falls as the batch size grows"
    test = "slope of PSNR on log2(batch size) < 0 dB per doubling"
    picked, notes = select(rows, [UNPRUNED])
    if "batch_size" not in picked.columns or picked["batch_size"].n_unique() < 2:
        return _not_enough(key, claim, test, "batch size does not vary without pruning", notes)
    units = _slopes(picked, "batch_size", value, _keys(picked, ("batch_size",)))
    decide: Decide = lambda e: decide_sign(e, -1)  # noqa: E731
    result = assess(units, ("network",), decide, "per-group slopes")
    return _finding(key, claim, test, result, decide, notes, "dB/doubling", "without pruning")


def batch_differences_shrink(rows: pl.DataFrame, value: str = VALUE) -> Finding:
    key = "batch_shrink"
    claim = "Differences between init x activation are large at small batch sizes, small at large"
    test = "sd over init x activation cells at the smallest B - at the largest B > 0 dB"
    picked, notes = select(rows, [UNPRUNED])
    cell_fields = ("init_method", "family", "distribution", "activation")
    if "batch_size" not in picked.columns or picked["batch_size"].n_unique() < 2:
        return _not_enough(key, claim, test, "batch size does not vary without pruning", notes)
    keys = _keys(picked, (*cell_fields, "batch_size"))
    cells = picked.with_columns((pl.col("init_method") + "/" + pl.col("activation")).alias("_cell"))
    spread = (
        cells.group_by([*keys, "batch_size", "_cell"])
        .agg(pl.col(value).cast(pl.Float64).mean())
        .group_by([*keys, "batch_size"])
        .agg(pl.col(value).std().alias("_sd"), pl.len().alias("_cells"))
        .filter(pl.col("_cells") >= 2)
    )
    ends = spread.group_by(keys).agg(
        pl.col("_sd").sort_by("batch_size").first().alias("_small"),
        pl.col("_sd").sort_by("batch_size").last().alias("_large"),
        pl.col("batch_size").n_unique().alias("_sizes"),
    )
    units = (
        ends.filter(pl.col("_sizes") >= 2)
        .with_columns((pl.col("_small") - pl.col("_large")).alias("effect"))
        .drop("_small", "_large", "_sizes")
    )
    if units.is_empty():
        return _not_enough(key, claim, test, "need >= 2 init x activation cells at 2 batch sizes")
    decide: Decide = lambda e: decide_sign(e, +1)  # noqa: E731
    result = assess(units, ("network",), decide, "per-group spreads")
    sizes = sorted(picked["batch_size"].unique().to_list())
    return _finding(
        key, claim, test, result, decide, notes,
        extra=f"without pruning, B {sizes[0]} vs {sizes[-1]}",
    )  # fmt: skip


# -- claim 11: init scale vs family (issue 11) -------------------------------------------------


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


def relu_scale_not_family(rows: pl.DataFrame, value: str = VALUE) -> Finding:
    key = "scale_not_family"
    claim = "ReLU leakage follows the init scale, not the family (Xavier vs Kaiming)"
    test = (
        f"at equal first-layer weight std |Kaiming - Xavier| < {MARGIN_DB:g} dB, and the slope "
        "of PSNR on log2(init_scale) is non-zero"
    )
    picked, notes = select(rows, [UNPRUNED, Where("activation", ("relu",))])
    needed = {"init_scale", "init_weight_std", "family"}
    if not needed <= set(picked.columns):
        return _not_enough(key, claim, test, "init_scale or init_weight_std not recorded", notes)
    unknown = picked.filter(pl.col("init_weight_std").is_null()).height
    if unknown:
        notes.append(f"{unknown} rows without init_weight_std left out")
    picked = picked.filter(
        pl.col("family").is_in(["xavier", "kaiming"])
        & pl.col("init_weight_std").is_not_null()
        & (pl.col("init_weight_std") > 0)
        & pl.col("init_scale").is_not_null()
    )
    if picked["init_scale"].n_unique() < 2 or _missing(picked, "family", ["xavier", "kaiming"]):
        return _not_enough(
            key, claim, test, "needs ReLU trials of both families at >= 2 init scales", notes
        )
    keys = _keys(picked, ("init_method", "family", "init_scale"))
    gaps = [
        {**dict(zip(keys, k)), "effect": _matched_std_gap(part, value)}
        for k, part in picked.group_by(keys)
    ]
    gap_units = pl.DataFrame(gaps, infer_schema_length=None).filter(pl.col("effect").is_not_nan())
    equivalent: Decide = lambda e: decide_equivalent(e, MARGIN_DB)  # noqa: E731
    slope_nonzero: Decide = lambda e: _decide_nonzero(e, SLOPE_MARGIN_DB)  # noqa: E731
    strata = ("network", "batch_size")
    family = assess(gap_units, strata, equivalent)
    slopes = assess(
        _slopes(picked, "init_scale", value, _keys(picked, ("init_scale",))), strata, slope_nonzero
    )
    fam_verdict, fam_gap = equivalent(family.overall)
    scale_verdict, _ = slope_nonzero(slopes.overall)
    if NOT_ENOUGH in (fam_verdict, scale_verdict):
        verdict = NOT_ENOUGH
    elif CONTRADICTED in (fam_verdict, scale_verdict):
        verdict = CONTRADICTED
    elif fam_verdict == scale_verdict == SUPPORTED:
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    at_scale = assess(
        paired(picked, "family", "kaiming", "xavier", value, ("init_method", "init_weight_std")),
        strata,
        lambda e: decide_sign(e, +1),
    ).overall
    evidence = (
        f"family gap at equal first-layer weight std (Kaiming - Xavier, interpolated in log "
        f"std, {family.units} pairs of curves): {family.overall.text()}, {fam_verdict} as "
        f"'within +-{MARGIN_DB:g} dB'; scale: slope {slopes.overall.text('dB/doubling')}, "
        f"{'non-zero' if scale_verdict == SUPPORTED else scale_verdict}"
        f" ('flat' = within +-{SLOPE_MARGIN_DB:g}); for reference, at equal init_scale "
        f"Kaiming - Xavier {at_scale.text()}"
        + (f"; averaged over (matched): {'; '.join(family.pooled)}" if family.pooled else "")
        + "".join(f"; {n}" for n in notes)
    )
    est = family.overall
    return Finding(
        claim, evidence, verdict, min(est.n, slopes.overall.n), test=test, estimate=est,
        detectable=est.detectable,
        seeds_needed=est.replicates_needed(fam_gap) if verdict == INCONCLUSIVE else None,
        strata=tuple(
            Stratum(f"{what}: {s.label}", s.estimate, s.verdict)
            for what, r in (("family gap", family), ("scale slope", slopes))
            for s in r.strata
        ),
        key=key, notes=tuple(notes),
    )  # fmt: skip


def _decide_nonzero(estimate: Estimate, flat: float) -> tuple[str, float]:
    """Claim: the effect is not zero. Supported when the interval excludes zero; contradicted
    when it lies within +-flat (the effect is demonstrably negligible)."""
    if not estimate.enough:
        return NOT_ENOUGH, math.nan
    if estimate.low > 0 or estimate.high < 0:
        return SUPPORTED, abs(estimate.mean)
    if -flat < estimate.low and estimate.high < flat:
        return CONTRADICTED, abs(estimate.mean)
    return INCONCLUSIVE, abs(estimate.mean)


CLAIMS: tuple[Callable[..., Finding], ...] = (
    RELU_VS_SIGMOID,
    init_activation_order,
    batch_size_trend,
    batch_differences_shrink,
    UNIFORM_VS_NORMAL,
    PRUNING_XAVIER,
    PRUNING_KAIMING,
    PRUNING_DEFENDS,
    MODEL,
    PRUNING_AWARE,
    relu_scale_not_family,
)


def findings(frame: pl.DataFrame, value: str = VALUE) -> list[Finding]:
    """Every claim checked against the ok/diverged rows of `frame` (one sweep)."""
    rows = prepare(frame, value)
    return [check(rows, value) for check in CLAIMS]


def table(frame: pl.DataFrame, value: str = VALUE) -> pl.DataFrame:
    """The findings as a frame: claim, verdict, estimate and interval, n, evidence, ..."""
    return findings_frame(findings(frame, value))


def findings_frame(items: list[Finding]) -> pl.DataFrame:
    def number(f: Finding, attr: str) -> float | None:
        v = getattr(f.estimate, attr) if f.estimate is not None else math.nan
        return None if v is None or math.isnan(v) else float(v)

    return pl.DataFrame(
        {
            "claim": [f.claim for f in items],
            "verdict": [f.verdict for f in items],
            "test": [f.test for f in items],
            "estimate": [number(f, "mean") for f in items],
            "ci_low": [number(f, "low") for f in items],
            "ci_high": [number(f, "high") for f in items],
            "unit": [f.unit for f in items],
            "n": [f.n for f in items],
            "detectable": [None if math.isnan(f.detectable) else f.detectable for f in items],
            "seeds_needed": [f.seeds_needed for f in items],
            "evidence": [f.evidence for f in items],
        },
        schema_overrides={"estimate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                          "detectable": pl.Float64, "seeds_needed": pl.Int64},
    )  # fmt: skip


# -- protocol: where the sweep departs from the deck's ---------------------------------------

# The seed study's own protocol (its slides and its code; DESIGN.md "Replication").
DECK_PROTOCOL: dict[str, tuple[Any, str]] = {
    "dataset": ("cifar10", "CIFAR-10"),
    "iterations": (500, "500 iterations"),
    "optimizer": ("adam", "Adam"),
    "lr": (0.1, "learning rate 0.1"),
    "loss": ("cosine", "cosine distance"),
    "stop": ("iterations", "a fixed iteration count"),
    "label_strategy": ("oracle", "true labels handed to the attacker (its code)"),
    "init_gain": ("seed", "Xavier gain 1, Kaiming a=sqrt(5)"),
    "init_scale": (1.0, "no extra weight scale"),
    "image_choice": ("first", "the first B test images, the same for every seed"),
    "image_norm": ("minmax", "per-image min-max normalisation"),
    "prune_mode": ("tensors", "pruning whole tensors by list position"),
    "skip_zero_tensors": (True, "a distance skipping all-zero tensors"),
    "dummy_init": ("randn", "a N(0, 1) dummy start"),
    "iterate": ("last", "the last iterate as the reconstruction"),
    "mask_pruned": (False, "an attacker unaware of pruning"),
    "tv_weight": (0.0, "no TV prior"),
    "image_size": (0, "native resolution"),
}


def protocol_notes(frame: pl.DataFrame) -> list[str]:
    """Where the rows' protocol differs from the deck's, one line each (unknown: said so)."""
    rows = result_rows(frame)
    if rows.is_empty():
        return []
    notes = []
    if "model" in rows.columns:
        models = set(rows["model"].drop_nulls().unique().to_list())
        if "mcmahan_cnn" in models:
            notes.append(
                "model: mcmahan_cnn is the FedAvg paper's McMahan CNN; the deck's code used its "
                "own variant (padding 1, BatchNorm, pool padding 1: mcmahan_cnn_seed)"
            )
    for column, (deck, words) in DECK_PROTOCOL.items():
        if column not in rows.columns:
            notes.append(f"{column}: not recorded (deck: {words})")
            continue
        values = rows[column].unique().to_list()
        unknown = rows.filter(pl.col(column).is_null()).height
        known = [v for v in values if v is not None]
        differ = [v for v in known if v != deck]
        if differ:
            notes.append(f"{column}: {_levels_text(known)} here (deck: {words})")
        if unknown:
            notes.append(f"{column}: unknown in {unknown} rows (written before the field existed)")
    if "seed" in rows.columns:
        seeds = rows["seed"].n_unique()
        if seeds < 6:
            notes.append(f"seeds: {seeds} here (deck: 6)")
    notes.append(
        "score: PSNR of the reconstruction clamped to [0, 1] and matched to the ground truth "
        "(psnr_mean); the deck's unclamped, unmatched score is psnr_raw_mean"
    )
    return notes
