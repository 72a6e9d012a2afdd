"""Means with 95% intervals, replicate-level effect estimates and verdicts, computed with polars.

Intervals are Student-t intervals: mean +- t(0.975, n-1) * sd / sqrt(n) over the trials at a
point (its seeds, and any grid axis the point does not name). A point resting on one trial has
no interval (null bounds); `n` is always reported so a partial sweep shows what each point rests
on. Log-scale quantities (gradient loss) are summarised in log10 space: geometric mean and a
t-interval on log10 values, mapped back.

`Estimate` is one effect measured on independent replicates (in `analysis.findings`: one value
per seed). Besides its interval it knows the smallest effect its replicates could have detected
(two-sided 5% test, 80% power: (t(0.975) + t(0.80)) * sd / sqrt(n), the usual normal-theory
approximation with t quantiles) and how many replicates a decision at the observed effect would
need. `decide_*` turn an estimate into one of the four verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats as _stats

LEVEL = 0.95
POWER = 0.80
SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH = (
    "supported",
    "contradicted",
    "inconclusive",
    "not enough data",
)
VERDICTS = (SUPPORTED, CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH)
# Independent replicates (seeds) below which no verdict is given: one seed has no variance, so
# no interval. Two seeds do give a t-interval (df 1, +-12.7 standard errors): valid, and wide
# enough that only very consistent effects decide; the smallest detectable effect says how wide.
MIN_REPLICATES = 2
MAX_REPLICATES_ADVISED = 1000  # "seeds needed" above this reads as "> 1000"


def t_quantile(n: np.ndarray | int, level: float = LEVEL) -> np.ndarray:
    """t(0.5 + level/2, n - 1) per n; NaN where n < 2."""
    counts = np.asarray(n, dtype=float)
    out = np.full(counts.shape, np.nan)
    ok = counts >= 2
    out[ok] = _stats.t.ppf(0.5 + level / 2, counts[ok] - 1)
    return out


def summarize(
    frame: pl.DataFrame,
    by: list[str],
    value: str = "psnr_mean",
    *,
    log: bool = False,
    bounds: tuple[float | None, float | None] | None = None,
) -> pl.DataFrame:
    """One row per group: `by...`, mean, ci_low, ci_high, sd, n (nulls in `value` dropped).

    `bounds` clips the interval to the range the quantity can take (label accuracy: [0, 1]).
    """
    column = pl.col(value).cast(pl.Float64)
    rows = frame.filter(column.is_not_null() & column.is_finite())
    if log:
        rows = rows.filter(column > 0).with_columns(column.log10().alias(value))
    grouped = (
        rows.group_by(by, maintain_order=True)
        .agg(
            pl.col(value).cast(pl.Float64).mean().alias("mean"),
            pl.col(value).cast(pl.Float64).std().alias("sd"),
            pl.len().alias("n"),
        )
        .sort(by, nulls_last=True)
    )
    half = t_quantile(grouped["n"].to_numpy()) * grouped["sd"].fill_null(np.nan).to_numpy()
    half = half / np.sqrt(np.maximum(grouped["n"].to_numpy(), 1))
    half_col = pl.Series("half", half, dtype=pl.Float64).fill_nan(None)
    grouped = grouped.with_columns(half_col).with_columns(
        (pl.col("mean") - pl.col("half")).alias("ci_low"),
        (pl.col("mean") + pl.col("half")).alias("ci_high"),
    )
    if log:
        grouped = grouped.with_columns(
            (10 ** pl.col(c)).alias(c) for c in ("mean", "ci_low", "ci_high")
        ).with_columns(pl.lit(None, pl.Float64).alias("sd"))
    if bounds is not None:  # None: unbounded on that side
        grouped = grouped.with_columns(
            pl.col(c).clip(bounds[0], bounds[1]) for c in ("ci_low", "ci_high")
        )
    return grouped.select(*by, "mean", "ci_low", "ci_high", "sd", pl.col("n").cast(pl.Int64))


def interval(values: np.ndarray | list[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of one sample; low/high NaN when n < 2."""
    sample = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(sample)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(sample.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(t_quantile(n)) * float(sample.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) - mean(b) with a 95% Welch interval; NaN bounds when either side has n < 2."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan, math.nan
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(_stats.t.ppf(0.5 + LEVEL / 2, dof)) * se
    return diff, diff - half, diff + half


def _power_factor(n: int) -> float:
    """(t(0.975, n-1) + t(0.80, n-1)) / sqrt(n): detectable effect per unit of sd."""
    return float((_stats.t.ppf(0.5 + LEVEL / 2, n - 1) + _stats.t.ppf(POWER, n - 1)) / math.sqrt(n))


@dataclass(frozen=True)
class Estimate:
    """An effect measured once per independent replicate: mean, 95% t-interval, n, sd."""

    mean: float
    low: float
    high: float
    n: int
    sd: float

    @classmethod
    def of(cls, values: np.ndarray | list[float]) -> Estimate:
        sample = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        mean, low, high, n = interval(sample.tolist())
        sd = float(sample.std(ddof=1)) if n >= 2 else math.nan
        return cls(mean, low, high, n, sd)

    @property
    def enough(self) -> bool:
        return self.n >= MIN_REPLICATES and not math.isnan(self.low)

    @property
    def detectable(self) -> float:
        """The smallest |effect| these replicates detect with 80% power (NaN below 2)."""
        if self.n < 2 or math.isnan(self.sd):
            return math.nan
        return _power_factor(self.n) * self.sd

    def replicates_needed(self, gap: float) -> int | None:
        """Replicates for the interval to clear a boundary `gap` away from the estimate with 80%
        power, at this sd; None when it cannot be said (no sd, or the estimate on the boundary)."""
        if math.isnan(self.sd) or not math.isfinite(gap) or gap <= 0:
            return None
        if self.sd == 0:
            return MIN_REPLICATES
        for n in range(2, MAX_REPLICATES_ADVISED + 1):
            if _power_factor(n) * self.sd <= gap:
                return n
        return MAX_REPLICATES_ADVISED + 1

    def text(self, unit: str = "dB") -> str:
        if self.n == 0:
            return "no replicates"
        if math.isnan(self.low):
            return f"{self.mean:+.2f} {unit} (n={self.n}, no interval)"
        return f"{self.mean:+.2f} {unit} [95% CI {self.low:+.2f}, {self.high:+.2f}] (n={self.n})"


def decide_sign(estimate: Estimate, sign: int) -> tuple[str, float]:
    """Claim: the effect is below zero (sign -1) or above (+1). (verdict, gap to the boundary)."""
    if not estimate.enough:
        return NOT_ENOUGH, math.nan
    low, high = (estimate.low, estimate.high) if sign > 0 else (-estimate.high, -estimate.low)
    if low > 0:
        return SUPPORTED, abs(estimate.mean)
    if high < 0:
        return CONTRADICTED, abs(estimate.mean)
    return INCONCLUSIVE, abs(estimate.mean)


def decide_exceeds(estimate: Estimate, margin: float) -> tuple[str, float]:
    """Claim: the effect is above `margin` (a "big" effect)."""
    if not estimate.enough:
        return NOT_ENOUGH, math.nan
    gap = abs(estimate.mean - margin)
    if estimate.low > margin:
        return SUPPORTED, gap
    if estimate.high < margin:
        return CONTRADICTED, gap
    return INCONCLUSIVE, gap


def decide_equivalent(estimate: Estimate, margin: float) -> tuple[str, float]:
    """Claim: the effect lies within +-margin (an equivalence test: the 95% interval inside the
    margin; contradicted when the interval lies wholly outside it)."""
    if not estimate.enough:
        return NOT_ENOUGH, math.nan
    gap = abs(margin - abs(estimate.mean))
    if -margin < estimate.low and estimate.high < margin:
        return SUPPORTED, gap
    if estimate.low >= margin or estimate.high <= -margin:
        return CONTRADICTED, gap
    return INCONCLUSIVE, gap
