"""Means with 95% intervals, replicate-level effect estimates and verdicts, computed with polars.

Intervals are Student-t intervals: mean +- t(0.975, n-1) * sd / sqrt(n) over the trials at a
point (its seeds, and any grid axis the point does not name). A point resting on one trial has
no interval (null bounds); `n` is always reported so a partial sweep shows what each point rests
on. Log-scale quantities (gradient loss) are summarised in log10 space: geometric mean and a
t-interval on log10 values, mapped back.

`Estimate` is one effect measured on independent replicates (in `analysis.findings`: one value
per seed, or jackknife pseudo-values), with its t-interval and one-sided and TOST p-values
(statsmodels). `Rule` turns an estimate into a verdict and says the smallest effect its
replicates decide with 80% power and how many a decision at the observed effect would need
(statsmodels' TTestPower for one-sided tests; an exact integral for TOST power).
"""

from __future__ import annotations

import functools
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


# -- replicate-level estimates and the decision rules (analysis.findings) ---------------------

ALPHA = 1 - LEVEL  # every decision: a 5% test on the two-sided scale (2.5% each side)


@dataclass(frozen=True)
class Estimate:
    """An effect measured once per independent replicate (seed): the values, their mean, the
    95% t-interval over them, n and sd. Jackknife estimates carry their pseudo-values, so the
    same t machinery (statsmodels' DescrStatsW) gives their interval and tests.

    Censored replicates (a frontier threshold beyond the searched range: only a bound is
    known) make a censored estimate (`bounded`): every replicate is an interval (low, high),
    exact ones with low == high, never imputed. Its tests are sign tests that count only the
    replicates whose bounds prove the side (a replicate the bounds leave undecided counts
    against every claim: conservative for any censoring), its interval the distribution-free
    order-statistic interval of the median (lower bounds for its low end, upper bounds for its
    high end), and it has no mean or sd."""

    values: tuple[float, ...]
    bounds: tuple[tuple[float, float], ...] = ()  # censored estimates: every replicate's

    @classmethod
    def of(cls, values: np.ndarray | list[float]) -> Estimate:
        return cls(tuple(float(v) for v in values if v is not None and math.isfinite(v)))

    @classmethod
    def bounded(cls, lows: np.ndarray | list[float], highs: np.ndarray | list[float]) -> Estimate:
        """Replicates known as intervals [low, high] (infinite where unbounded; NaN: missing,
        left out). Exact when every low equals its high: then the ordinary estimate."""
        pairs = [
            (float(lo), float(hi)) for lo, hi in zip(lows, highs)
            if not (math.isnan(lo) or math.isnan(hi))
        ]  # fmt: skip
        if all(lo == hi and math.isfinite(lo) for lo, hi in pairs):
            return cls.of([lo for lo, _ in pairs])
        exact = tuple(lo for lo, hi in pairs if lo == hi and math.isfinite(lo))
        return cls(exact, tuple(pairs))

    @property
    def censored(self) -> int:
        """Replicates known only by a bound (0 for an ordinary estimate)."""
        return sum(1 for lo, hi in self.bounds if lo != hi)

    @property
    def n(self) -> int:
        return len(self.bounds) if self.bounds else len(self.values)

    @property
    def mean(self) -> float:
        if self.bounds:
            return math.nan  # not identified: the median's bounds say what is known
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def sd(self) -> float:
        if self.bounds:
            return math.nan
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan

    @property
    def low(self) -> float:
        return self._bounds[0]

    @property
    def high(self) -> float:
        return self._bounds[1]

    @property
    def _bounds(self) -> tuple[float, float]:
        if self.bounds:
            return self._median_interval()
        _, low, high, _ = interval(self.values)
        return low, high

    def _median_interval(self) -> tuple[float, float]:
        """The 95% order-statistic interval of the median from the replicates' bounds: the
        k-th smallest lower bound to the k-th largest upper bound, k the largest with
        P(Binomial(n, 1/2) < k) <= 2.5% (infinite where n is too small for one)."""
        n, k = self.n, 0
        while _stats.binom.cdf(k, n, 0.5) <= (1 - LEVEL) / 2:
            k += 1
        if k < 1:
            return -math.inf, math.inf
        lows = sorted(lo for lo, _ in self.bounds)
        highs = sorted(hi for _, hi in self.bounds)
        return lows[k - 1], highs[n - k]

    @property
    def median_bounds(self) -> tuple[float, float]:
        """The median of the lower bounds and of the upper bounds (a censored estimate)."""
        return (float(np.median([lo for lo, _ in self.bounds])),
                float(np.median([hi for _, hi in self.bounds])))  # fmt: skip

    @property
    def enough(self) -> bool:
        return self.n >= MIN_REPLICATES

    def p_above(self, bound: float) -> float:
        """One-sided p of "the mean is above `bound`" (a t-test over the replicates; for a
        censored estimate, a sign test of the median counting the replicates whose lower
        bound is above `bound`)."""
        if not self.enough:
            return math.nan
        if self.bounds:
            above = sum(1 for lo, _ in self.bounds if lo > bound)
            return float(_stats.binom.sf(above - 1, self.n, 0.5))
        if self.sd == 0:  # identical replicates: decided by where they lie
            return 0.0 if self.mean > bound else 1.0
        from statsmodels.stats.weightstats import DescrStatsW

        return float(DescrStatsW(np.asarray(self.values)).ttest_mean(bound, "larger")[1])

    def p_below(self, bound: float) -> float:
        return self._flip().p_above(-bound)

    def _flip(self) -> Estimate:
        return Estimate(tuple(-v for v in self.values),
                        tuple((-hi, -lo) for lo, hi in self.bounds))  # fmt: skip

    def p_within(self, margin: float) -> float:
        """TOST p (statsmodels) of "the mean lies within +-margin" (censored: both sign tests)."""
        if not self.enough:
            return math.nan
        if self.bounds:
            return max(self.p_above(-margin), self.p_below(margin))
        if self.sd == 0:
            return 0.0 if abs(self.mean) < margin else 1.0
        from statsmodels.stats.weightstats import DescrStatsW

        return float(DescrStatsW(np.asarray(self.values)).ttost_mean(-margin, margin)[0])

    def text(self, unit: str = "dB") -> str:
        if self.n == 0:
            return "no replicates"
        if self.bounds:
            lo, hi = self.median_bounds
            ci_lo, ci_hi = self._bounds
            return (
                f"median between {lo:+.2f} and {hi:+.2f} {unit} [95% CI {ci_lo:+.2f}, "
                f"{ci_hi:+.2f}] (n={self.n}, {self.censored} known only by a bound: sign test)"
            )
        if self.n < 2:
            return f"{self.mean:+.2f} {unit} (n={self.n}, no interval)"
        # two replicates: a t-interval on 1 degree of freedom, +-12.7 standard errors: say so
        width = f", 1 df: +-{float(t_quantile(2)):.1f} SE" if self.n == 2 else ""
        return (
            f"{self.mean:+.2f} {unit} [95% CI {self.low:+.2f}, {self.high:+.2f}] "
            f"(n={self.n}{width})"
        )


def jackknife(statistic: float, leave_one_out: list[float]) -> Estimate:
    """The delete-one-replicate jackknife as an Estimate of pseudo-values: their mean is the
    bias-corrected statistic, their t-interval the jackknife interval (Efron & Stein 1981)."""
    n = len(leave_one_out)
    if n < 2 or not math.isfinite(statistic):
        return Estimate.of([statistic] if math.isfinite(statistic) else [])
    return Estimate.of([n * statistic - (n - 1) * loo for loo in leave_one_out])


# -- power: statsmodels' noncentral t for one-sided tests, an exact integral for TOST ----------


def _one_sided_power() -> object:
    from statsmodels.stats.power import TTestPower

    return TTestPower()


def detectable_shift(n: int, sd: float, alpha: float = ALPHA / 2, power: float = POWER) -> float:
    """The smallest shift past a boundary that a one-sided level-`alpha` t-test over `n`
    replicates of this sd detects with `power` (statsmodels TTestPower: noncentral t)."""
    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    return _standard_shift(n, alpha, power) * sd


@functools.lru_cache(maxsize=256)
def _standard_shift(n: int, alpha: float, power: float) -> float:
    """detectable_shift in units of sd: it depends on n, alpha and power alone, and solving for
    it is a root search (a report asks it for every stratum, level and cell)."""
    d = _one_sided_power().solve_power(
        effect_size=None, nobs=n, alpha=alpha, power=power, alternative="larger"
    )
    return float(d)


def one_sided_n(gap: float, sd: float, alpha: float = ALPHA / 2, power: float = POWER) -> int:
    """Replicates for a one-sided level-`alpha` t-test to detect `gap` with `power`."""
    if gap <= 0 or not math.isfinite(sd) or not math.isfinite(gap):
        return MAX_REPLICATES_ADVISED + 1
    if sd == 0:
        return MIN_REPLICATES
    if detectable_shift(MAX_REPLICATES_ADVISED, sd, alpha, power) > gap:
        return MAX_REPLICATES_ADVISED + 1
    if detectable_shift(MIN_REPLICATES, sd, alpha, power) <= gap:  # the fewest seeds suffice
        return MIN_REPLICATES
    n = _one_sided_power().solve_power(
        effect_size=gap / sd, nobs=None, alpha=alpha, power=power, alternative="larger"
    )
    n = float(np.atleast_1d(n)[0])
    return max(MIN_REPLICATES, math.ceil(n - 1e-9)) if math.isfinite(n) else MIN_REPLICATES


def tost_power(mu: float, sd: float, n: int, margin: float, alpha: float = ALPHA) -> float:
    """Exact power of the one-sample TOST (level alpha) within +-margin at true mean `mu`:
    the probability over the sample sd (chi-square) that the 1 - 2 alpha interval of the mean
    falls inside the margin. statsmodels has TOST power for proportions and rates, not for t."""
    from scipy.special import ndtr

    if n < 2 or not math.isfinite(sd) or margin <= 0:
        return math.nan
    if sd == 0:
        return 1.0 if abs(mu) < margin else 0.0
    tc = float(_stats.t.ppf(1 - alpha, n - 1))
    se = sd / math.sqrt(n)
    df = n - 1
    v_max = df * (margin / (tc * se)) ** 2  # beyond it the interval is wider than the margin
    low, high = _stats.chi2.ppf([1e-12, 1 - 1e-12], df)  # where chi2(df) has its mass
    if v_max <= low:
        return 0.0
    # v = (n-1) s^2 / sd^2 ~ chi2(n-1); Gauss-Legendre over [low, min(v_max, high)]
    nodes, weights = _GAUSS
    a, b = low, min(v_max, high)
    v = a + (b - a) * (nodes + 1) / 2
    half = np.maximum(margin - tc * se * np.sqrt(v / df), 0.0)
    inside = ndtr((half - mu) / se) - ndtr((-half - mu) / se)
    return float(np.sum(weights * inside * _stats.chi2.pdf(v, df)) * (b - a) / 2)


_GAUSS = np.polynomial.legendre.leggauss(256)


def tost_margin(n: int, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The narrowest margin n replicates of this sd show equivalence within, with `power`,
    when the true effect is 0."""
    from scipy import optimize

    if n < 2 or not math.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    high = sd
    while tost_power(0.0, sd, n, high, alpha) < power:
        high *= 2
    gap = lambda m: tost_power(0.0, sd, n, m, alpha) - power  # noqa: E731
    return float(optimize.brentq(gap, sd * 1e-9, high))


def tost_n(mu: float, sd: float, margin: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Replicates for the TOST to show |mean| < margin with `power` at true mean `mu`."""
    if abs(mu) >= margin or not math.isfinite(sd):
        return MAX_REPLICATES_ADVISED + 1
    if tost_power(mu, sd, MAX_REPLICATES_ADVISED, margin, alpha) < power:
        return MAX_REPLICATES_ADVISED + 1
    low, high = MIN_REPLICATES, MAX_REPLICATES_ADVISED  # power grows with n: bisect
    while low < high:
        mid = (low + high) // 2
        if tost_power(mu, sd, mid, margin, alpha) >= power:
            high = mid
        else:
            low = mid + 1
    return low


# -- decision rules ---------------------------------------------------------------------------

KINDS = ("less", "greater", "exceeds", "equivalent", "nonzero")


@dataclass(frozen=True)
class Rule:
    """How an estimate decides a claim. less/greater: the effect is below/above 0; exceeds:
    above +margin (a "big" effect); equivalent: within +-margin (TOST); nonzero: outside
    +-margin (|effect| > margin; contradicted when demonstrably within it: the two hypotheses
    do not overlap, an effect inside the band is never "non-zero"). Every decision is a 5%
    test on the two-sided scale: one-sided tests at 2.5% (the 95% interval clears the
    boundary), TOST at 5% each side (the 90% interval inside the margin); the power figures
    are computed at the level the test uses."""

    kind: str
    margin: float = 0.0

    def p_values(self, est: Estimate) -> tuple[float, float]:
        """(p for the claim, p against it), each to compare with ALPHA."""
        m = self.margin
        if self.kind in ("less", "greater", "exceeds"):
            bound = m if self.kind == "exceeds" else 0.0
            above, below = est.p_above(bound), est.p_below(bound)
            claim, against = (below, above) if self.kind == "less" else (above, below)
            return min(1.0, 2 * claim), min(1.0, 2 * against)
        outside = min(1.0, 2 * min(est.p_above(m), est.p_below(-m)))
        if self.kind == "equivalent":
            return est.p_within(m), outside
        return outside, est.p_within(m)  # nonzero: outside the band, or within it

    def decide(self, est: Estimate, alpha: float = ALPHA) -> tuple[str, float]:
        """(verdict, p of the verdict reached; for inconclusive, p for the claim)."""
        if not est.enough:
            return NOT_ENOUGH, math.nan
        claim, against = self.p_values(est)
        if claim < alpha:
            return SUPPORTED, claim
        if against < alpha:
            return CONTRADICTED, against
        return INCONCLUSIVE, claim

    def detectable(self, est: Estimate) -> float:
        """The smallest effect these replicates decide with 80% power: past the boundary for
        one-sided claims; for equivalence, the narrowest margin provable at a true effect of 0."""
        if not est.enough:
            return math.nan
        if self.kind == "equivalent":
            return tost_margin(est.n, est.sd)
        return detectable_shift(est.n, est.sd, ALPHA / 2)  # each side of the test is at 2.5%

    @property
    def boundary(self) -> float:
        """Where the claim's side begins (the detectable effect is past it): the margin for
        exceeds and nonzero, 0 otherwise (an equivalence's detectable is a narrowest margin)."""
        return self.margin if self.kind in ("exceeds", "nonzero") else 0.0

    def seeds_needed(self, est: Estimate) -> int | None:
        """Replicates for a decision (either way) at the observed effect and sd, 80% power."""
        if not est.enough or not math.isfinite(est.sd):
            return None
        mean, m = est.mean, self.margin
        if self.kind == "equivalent" and abs(mean) < m:
            return tost_n(mean, est.sd, m)
        if self.kind == "nonzero" and abs(mean) < m:  # inside the band: only "flat" is decidable
            return tost_n(mean, est.sd, m)
        if self.kind == "nonzero":
            return one_sided_n(abs(mean) - m, est.sd)
        bound = {"exceeds": m, "equivalent": m if mean > 0 else -m}.get(self.kind, 0.0)
        return one_sided_n(abs(mean - bound), est.sd)

    def test(self, diff: str, unit: str = "dB") -> str:
        m = f"{self.margin:g}"
        return {
            "less": f"{diff} < 0 {unit}",
            "greater": f"{diff} > 0 {unit}",
            "exceeds": f"{diff} > {m} {unit}",
            "equivalent": f"|{diff}| < {m} {unit}",
            "nonzero": f"|{diff}| > {m} {unit} (flat: within +-{m})",
        }[self.kind]
