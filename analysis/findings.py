"""The seed study's claims, each checked against our rows: a number, an interval, a verdict.

Claims (Li 2024, "Attacking gradients", conclusion and figure notes):
1. ReLU leaks less than Sigmoid (lower PSNR with ReLU).
2. Worst to best: Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid.
3. PSNR falls as the batch grows.
4. Pruning the gradient (20% smallest entries) lowers PSNR, much more under Xavier than Kaiming.
5. The McMahan CNN gives lower PSNR than ResNet-18.

Comparisons are paired where the grid allows: two trials that differ only in the compared field
(same seed, same everything else) form a pair, and the verdict rests on the 95% t-interval of
the paired differences. Where fewer than two pairs exist the groups are compared unpaired
(Welch). Verdicts: `supported` (the interval lies on the claimed side of zero), `not supported`
(it does not: it includes zero or lies on the other side), `not enough data` (fewer than two
trials on a side, or a level missing from the sweep). Only ok/diverged rows count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.load import result_rows
from analysis.stats import interval, welch
from orchestrator.schema import CONFIG_COLUMNS

SUPPORTED, NOT_SUPPORTED, NOT_ENOUGH = "supported", "not supported", "not enough data"
CONFIG_FIELDS = [name for name, _ in CONFIG_COLUMNS]


@dataclass(frozen=True)
class Finding:
    claim: str
    evidence: str  # our numbers, in words
    verdict: str  # supported | not supported | not enough data
    n: int  # trials the verdict rests on


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its 95% interval, and how it was computed."""

    diff: float
    low: float
    high: float
    n: int  # pairs, or trials on both sides when unpaired
    paired: bool

    def text(self) -> str:
        how = f"{self.n} pairs" if self.paired else f"unpaired, {self.n} trials"
        if math.isnan(self.low):
            return f"{self.diff:+.2f} dB ({how}, no interval)"
        return f"{self.diff:+.2f} dB [95% CI {self.low:+.2f}, {self.high:+.2f}] ({how})"


def paired_differences(
    rows: pl.DataFrame,
    field: str,
    a: str,
    b: str,
    value: str = "psnr_mean",
    ignore: tuple[str, ...] = (),
) -> np.ndarray:
    """value(a) - value(b) for trials equal in every other config field (seed included).

    Fields in `ignore` are left out of the match (a derived `field` such as init family x
    activation); trials that then share a key are averaged first, so each key is one pair.
    """
    keys = [c for c in CONFIG_FIELDS if c != field and c not in ignore and c in rows.columns]

    def side(level: str, name: str) -> pl.DataFrame:
        part = rows.filter(pl.col(field) == level)
        return part.group_by(keys).agg(pl.col(value).mean().alias(name))

    if not keys:
        return np.array([])
    pairs = side(a, "a").join(side(b, "b"), on=keys, how="inner", nulls_equal=True)
    return (pairs["a"] - pairs["b"]).to_numpy()


def difference(
    rows: pl.DataFrame,
    field: str,
    a: str,
    b: str,
    value: str = "psnr_mean",
    ignore: tuple[str, ...] = (),
) -> Difference:
    """value(field=a) - value(field=b), paired on every other config field where possible."""
    pairs = paired_differences(rows, field, a, b, value, ignore)
    if len(pairs) >= 2:
        mean, low, high, n = interval(pairs.tolist())
        return Difference(mean, low, high, n, True)
    side_a = rows.filter(pl.col(field) == a).select(pl.col(value).alias("a"))
    side_b = rows.filter(pl.col(field) == b).select(pl.col(value).alias("b"))
    diff, low, high = welch(side_a["a"].to_numpy(), side_b["b"].to_numpy())
    return Difference(diff, low, high, side_a.height + side_b.height, False)


def _verdict(d: Difference, sign: int) -> str:
    """sign=-1: the claim is a < b (difference below zero); +1: a > b."""
    if math.isnan(d.low):
        return NOT_ENOUGH
    return SUPPORTED if (d.high < 0 if sign < 0 else d.low > 0) else NOT_SUPPORTED


def _mean_text(rows: pl.DataFrame, label: str) -> str:
    mean, low, high, n = interval(rows["psnr_mean"].to_list())
    if n == 0:
        return f"{label}: no trials"
    if math.isnan(low):
        return f"{label} {mean:.2f} dB (n={n})"
    return f"{label} {mean:.2f} dB [{low:.2f}, {high:.2f}] (n={n})"


def _levels(rows: pl.DataFrame, field: str, needed: list[str]) -> list[str]:
    present = set(rows[field].unique().to_list())
    return [level for level in needed if level not in present]


def _lower_than(
    rows: pl.DataFrame, claim: str, field: str, low: tuple[str, str], high: tuple[str, str]
) -> Finding:
    """The claim "PSNR with `low` is below PSNR with `high`" on `field`; (level, label) each."""
    missing = _levels(rows, field, [low[0], high[0]])
    if missing:
        return Finding(claim, f"no trials with {field} {', '.join(missing)}", NOT_ENOUGH, 0)
    d = difference(rows, field, low[0], high[0])
    evidence = (
        f"{_mean_text(rows.filter(pl.col(field) == low[0]), low[1])} vs "
        f"{_mean_text(rows.filter(pl.col(field) == high[0]), high[1])}; "
        f"{low[1]} - {high[1]} {d.text()}"
    )
    return Finding(claim, evidence, _verdict(d, -1), d.n)


def relu_vs_sigmoid(rows: pl.DataFrame) -> Finding:
    claim = "ReLU leaks less than Sigmoid (lower PSNR with ReLU)"
    return _lower_than(rows, claim, "activation", ("relu", "ReLU"), ("sigmoid", "Sigmoid"))


ORDER = [("xavier", "relu"), ("kaiming", "relu"), ("kaiming", "sigmoid"), ("xavier", "sigmoid")]


def init_activation_order(rows: pl.DataFrame) -> Finding:
    claim = "Worst to best PSNR: Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid"
    cells = rows.with_columns(
        pl.col("init_method").str.split("_").list.first().alias("family"),
    ).with_columns((pl.col("family") + "-" + pl.col("activation")).alias("cell"))
    names = [f"{family}-{act}" for family, act in ORDER]
    present = set(cells["cell"].unique().to_list())
    missing = [n for n in names if n not in present]
    if missing:
        return Finding(claim, f"no trials for {', '.join(missing)}", NOT_ENOUGH, 0)
    means = [_mean_text(cells.filter(pl.col("cell") == n), n) for n in names]
    steps = [
        difference(cells, "cell", hi, lo, ignore=("init_method", "activation"))
        for lo, hi in zip(names, names[1:])
    ]
    verdicts = [_verdict(step, +1) for step in steps]
    step_text = "; ".join(
        f"{hi} - {lo} {step.text()}" for (lo, hi), step in zip(zip(names, names[1:]), steps)
    )
    if NOT_ENOUGH in verdicts:
        verdict = NOT_ENOUGH
    elif all(v == SUPPORTED for v in verdicts):
        verdict = SUPPORTED
    else:
        verdict = NOT_SUPPORTED
    observed = " < ".join(
        sorted(names, key=lambda n: cells.filter(pl.col("cell") == n)["psnr_mean"].mean())
    )
    evidence = f"{'; '.join(means)}. Observed order: {observed}. Steps: {step_text}"
    return Finding(claim, evidence, verdict, cells.height)


def batch_size_trend(rows: pl.DataFrame) -> Finding:
    claim = "PSNR falls as the batch size grows"
    sizes = sorted(rows["batch_size"].unique().to_list())
    if len(sizes) < 2 or rows.height < 3:
        return Finding(claim, f"batch sizes in the sweep: {sizes}", NOT_ENOUGH, rows.height)
    # least-squares slope of PSNR on log2(batch size), with a t-interval (n - 2 dof)
    x = np.log2(rows["batch_size"].to_numpy().astype(float))
    y = rows["psnr_mean"].to_numpy().astype(float)
    x_c = x - x.mean()
    slope = float((x_c * (y - y.mean())).sum() / (x_c**2).sum())
    resid = y - y.mean() - slope * x_c
    se = math.sqrt((resid**2).sum() / (len(y) - 2) / (x_c**2).sum())
    from scipy import stats as _stats

    half = float(_stats.t.ppf(0.975, len(y) - 2)) * se
    d = Difference(slope, slope - half, slope + half, len(y), False)
    ends = [
        _mean_text(rows.filter(pl.col("batch_size") == b), f"B={b}") for b in (sizes[0], sizes[-1])
    ]
    evidence = (
        f"{ends[0]} vs {ends[1]}; slope {slope:+.2f} dB per doubling "
        f"[95% CI {d.low:+.2f}, {d.high:+.2f}] over {len(y)} trials"
    )
    return Finding(claim, evidence, _verdict(d, -1), len(y))


def pruning_effect(rows: pl.DataFrame) -> Finding:
    claim = "Pruning lowers PSNR, much more under Xavier than under Kaiming init"
    if _levels(rows, "prune", ["none", "small"]):
        return Finding(claim, "prune does not vary in this sweep", NOT_ENOUGH, 0)
    rows = rows.with_columns(pl.col("init_method").str.split("_").list.first().alias("family"))
    effects = {}
    for family in ("xavier", "kaiming"):
        part = rows.filter(pl.col("family") == family)
        effects[family] = difference(part, "prune", "none", "small") if part.height else None
    if any(e is None or math.isnan(e.low) for e in effects.values()):
        return Finding(
            claim, "too few pruned/unpruned trials per init family", NOT_ENOUGH, rows.height
        )
    x, k = effects["xavier"], effects["kaiming"]
    # interaction: Welch interval on the two families' pruning effects (paired diffs if any)
    x_pairs = paired_differences(
        rows.filter(pl.col("family") == "xavier"), "prune", "none", "small"
    )
    k_pairs = paired_differences(
        rows.filter(pl.col("family") == "kaiming"), "prune", "none", "small"
    )
    gap, gap_low, gap_high = welch(x_pairs, k_pairs)
    if math.isnan(gap_low):  # no pairs: the unpaired effects and their widths
        gap = x.diff - k.diff
        se = math.hypot((x.high - x.low) / 3.92, (k.high - k.low) / 3.92)
        gap_low, gap_high = gap - 1.96 * se, gap + 1.96 * se
    evidence = (
        f"PSNR lost to pruning (none - small): Xavier {x.text()}; Kaiming {k.text()}; "
        f"Xavier - Kaiming {gap:+.2f} dB [95% CI {gap_low:+.2f}, {gap_high:+.2f}]"
    )
    verdict = SUPPORTED if (x.low > 0 and gap_low > 0) else NOT_SUPPORTED
    return Finding(claim, evidence, verdict, rows.height)


def model_comparison(rows: pl.DataFrame) -> Finding:
    claim = "The McMahan CNN gives lower PSNR than ResNet-18"
    low, high = ("mcmahan_cnn", "McMahan CNN"), ("resnet18", "ResNet-18")
    return _lower_than(rows, claim, "model", low, high)


CLAIMS = (
    relu_vs_sigmoid,
    init_activation_order,
    batch_size_trend,
    pruning_effect,
    model_comparison,
)


def findings(frame: pl.DataFrame) -> list[Finding]:
    """Every claim of the seed checked against the ok/diverged rows of `frame`."""
    rows = result_rows(frame).filter(
        pl.col("psnr_mean").is_not_null() & pl.col("psnr_mean").is_finite()
    )
    return [check(rows) for check in CLAIMS]


def table(frame: pl.DataFrame) -> pl.DataFrame:
    """The findings as a frame: claim, evidence, verdict, n."""
    rows = findings(frame)
    return pl.DataFrame(
        {
            "claim": [f.claim for f in rows],
            "evidence": [f.evidence for f in rows],
            "verdict": [f.verdict for f in rows],
            "n": [f.n for f in rows],
        }
    )
