"""Means with 95% intervals, and paired / unpaired differences, computed with polars.

Intervals are Student-t intervals: mean +- t(0.975, n-1) * sd / sqrt(n) over the trials at a
point (its seeds, and any grid axis the point does not name). A point resting on one trial has
no interval (null bounds); `n` is always reported so a partial sweep shows what each point rests
on. Log-scale quantities (gradient loss) are summarised in log10 space: geometric mean and a
t-interval on log10 values, mapped back.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from scipy import stats as _stats

LEVEL = 0.95


def t_quantile(n: np.ndarray | int) -> np.ndarray:
    """t(0.975, n - 1) per n; NaN where n < 2."""
    counts = np.asarray(n, dtype=float)
    out = np.full(counts.shape, np.nan)
    ok = counts >= 2
    out[ok] = _stats.t.ppf(0.5 + LEVEL / 2, counts[ok] - 1)
    return out


def summarize(
    frame: pl.DataFrame, by: list[str], value: str = "psnr_mean", *, log: bool = False
) -> pl.DataFrame:
    """One row per group: `by...`, mean, ci_low, ci_high, sd, n (nulls in `value` dropped)."""
    column = pl.col(value).cast(pl.Float64)
    rows = frame.filter(column.is_not_null() & column.is_finite())
    if log:
        rows = rows.filter(column > 0).with_columns(column.log10().alias(value))
    grouped = (
        rows.group_by(by, maintain_order=True)
        .agg(
            pl.col(value).mean().alias("mean"),
            pl.col(value).std().alias("sd"),
            pl.len().alias("n"),
        )
        .sort(by)
    )
    half = t_quantile(grouped["n"].to_numpy()) * grouped["sd"].fill_null(np.nan).to_numpy()
    half = half / np.sqrt(np.maximum(grouped["n"].to_numpy(), 1))
    half_col = pl.Series("half", half).fill_nan(None)
    grouped = grouped.with_columns(half_col).with_columns(
        (pl.col("mean") - pl.col("half")).alias("ci_low"),
        (pl.col("mean") + pl.col("half")).alias("ci_high"),
    )
    if log:
        grouped = grouped.with_columns(
            (10 ** pl.col(c)).alias(c) for c in ("mean", "ci_low", "ci_high")
        ).with_columns(pl.lit(None, pl.Float64).alias("sd"))
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
