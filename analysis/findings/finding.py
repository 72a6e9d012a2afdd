"""A claim's finding: its verdict, the numbers it rests on, and the evidence in words; the
findings of one sweep (or variant) as a table, with a Holm column over its claims."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import polars as pl

from analysis.findings.claims import Claim
from analysis.findings.combine import MIXED, Assessment, Stratum, conjunction
from analysis.stats import (
    ALPHA,
    CONTRADICTED,
    INCONCLUSIVE,
    MAX_REPLICATES_ADVISED,
    NOT_ENOUGH,
    SUPPORTED,
    Estimate,
)

VERDICTS = (SUPPORTED, CONTRADICTED, MIXED, INCONCLUSIVE, NOT_ENOUGH)


@dataclass(frozen=True)
class Finding:
    claim: str
    evidence: str  # our numbers, in words
    verdict: str  # supported | contradicted | mixed | inconclusive | not enough data
    n: int  # complete seeds (independent replicates) the headline rests on
    test: str = ""  # the decision rule, e.g. "ReLU - Sigmoid < 0 dB"
    estimate: Estimate | None = None  # the headline (compound claims: the deciding part's)
    detectable: float = math.nan  # smallest effect the seeds decide (80% power)
    seeds_needed: int | None = None  # for a decision at the observed effect
    strata: tuple[Stratum, ...] = ()
    levels: tuple[Stratum, ...] = ()  # per level of each averaged-over axis
    key: str = ""
    unit: str = "dB"
    notes: tuple[str, ...] = field(default=())
    score: str = "psnr_mean"
    margin: float | None = None  # dB, for margin and equivalence claims
    p: float = math.nan  # of the verdict reached (5% two-sided scale)
    holm: str | None = None  # "survives" | "does not survive" Holm over the claims tested
    p_holm: float = math.nan  # the Holm-adjusted p (every claim tested is in the family)
    tested: bool = True  # False: the sweep cannot test it (a level, a field or a column missing)
    decided_by: str = ""  # the stratum or step that decides, with its numbers
    holds: tuple[str, ...] = ()
    against: tuple[str, ...] = ()


def _seeds(n: int | None) -> str:
    return "> 1000" if n is not None and n > MAX_REPLICATES_ADVISED else str(n)


def _part_text(test: str, a: Assessment, unit: str) -> list[str]:
    est = a.headline
    parts = [
        f"{test}: {est.text(unit)} over {est.n} seeds complete in its {a.n_cells or a.units} cells "
        f"({a.units} {a.what}), {a.verdict}"
    ]
    if a.strata:
        counts = {}
        for s in a.strata:
            counts[s.verdict] = counts.get(s.verdict, 0) + 1
        checks = len(a.checks)
        level = f"; the verdict asks p < {a.level:.2g} of its {checks} checks" if checks > 1 else ""
        parts.append(f"per stratum, each at {ALPHA:.0%} alone: "
                     + ", ".join(f"{v} {c}" for v, c in counts.items()) + level)  # fmt: skip
    if a.holds and a.against:
        parts.append(f"holds for {'; '.join(a.holds)}; contradicted for {'; '.join(a.against)}")
    elif a.against:
        parts.append("contradicted for " + "; ".join(
            f"{s.label} {s.estimate.text(unit)}" for s in (*a.strata, *a.levels, *a.cells)
            if s.label in a.against
        ))  # fmt: skip
    parts.extend(a.heterogeneity)
    if a.pooled:
        parts.append("averaged over (matched): " + "; ".join(a.pooled))
    parts.extend(a.left_out)
    return parts


def build(claim: Claim, parts: list, score: str, extra: str = "", why: str = "") -> Finding:
    """The finding from a claim's measured parts (`why`: the reason it cannot be tested)."""
    test = claim.rule_text
    unit = claim.parts[0].unit
    margin = next((p.rule.margin for p in claim.parts if p.rule.kind in ("exceeds", "equivalent")),
                  None)  # fmt: skip
    base = dict(claim=claim.text, test=test, key=claim.key, unit=unit, score=score, margin=margin)
    missing = [(part, notes) for part, (a, notes) in parts if a is None]
    if missing or why:
        notes = list(dict.fromkeys(([why] if why else []) + [n for _, ns in missing for n in ns]))
        return Finding(evidence="; ".join(notes) or "no data", verdict=NOT_ENOUGH, n=0,
                       notes=tuple(notes), tested=False, **base)  # fmt: skip
    measured = [a for _, (a, _) in parts]
    if len(measured) == 1:
        a = measured[0]
        verdict, p, i = a.verdict, a.p, 0
    else:
        verdict, p, i = conjunction(measured)
    if verdict in (SUPPORTED, CONTRADICTED, MIXED) and not p < ALPHA:  # never beside p >= 5%
        verdict = INCONCLUSIVE
    deciding = measured[i]
    est = deciding.headline
    rule = deciding.rule
    judged = deciding.deciding or est  # IU claims: the stratum that decides
    needed = rule.seeds_needed(judged) if verdict == INCONCLUSIVE else None
    detectable = rule.detectable(judged)
    lines: list[str] = []
    for (part, _), a in zip(parts, measured):
        lines += _part_text(part.test, a, part.unit)
        lines += list(a.notes)
    deciding_unit = claim.parts[i].unit
    if deciding.decided_by:
        shown = judged.text(deciding_unit) if judged is not est else ""
        lines.append(f"decided by {deciding.decided_by}" + (f": {shown}" if shown else ""))
    if math.isfinite(detectable):
        kind = "narrowest margin provable at 0" if rule.kind == "equivalent" else (
            "smallest detectable effect")  # fmt: skip
        every = (f"; per cell: the claim must hold in all {len(deciding.cells)} cells"
                 if deciding.cells else "")  # fmt: skip
        lines.append(f"{kind} {detectable:.2f} {deciding_unit} (80% power, n={judged.n}{every})")
    if needed is not None:
        lines.append(f"about {_seeds(needed)} seeds to decide at this effect")
    if extra:
        lines.insert(0, extra)
    decided = ""
    if len(measured) > 1:
        decided = claim.parts[i].test
    elif deciding.decided_by and judged is not est:
        decided = f"{deciding.decided_by}: {judged.text(unit)}"

    def tag(j: int, label: str) -> str:  # a stratum of one part of a claim of several
        return f"{claim.parts[j].test}: {label}" if len(measured) > 1 else label

    def named(j: int, s: Stratum) -> Stratum:
        return Stratum(tag(j, s.label), s.estimate, s.verdict, s.p, s.axis)

    strata = tuple(named(j, s) for j, a in enumerate(measured) for s in a.strata)
    levels = tuple(named(j, s) for j, a in enumerate(measured) for s in a.levels)
    return Finding(
        evidence="; ".join(lines), verdict=verdict, n=est.n, estimate=est,
        detectable=detectable, seeds_needed=needed, strata=strata, levels=levels,
        notes=tuple(n for a in measured for n in a.notes), p=p, decided_by=decided,
        holds=tuple(tag(j, h) for j, a in enumerate(measured) for h in a.holds),
        against=tuple(tag(j, c) for j, a in enumerate(measured) for c in a.against), **base,
    )  # fmt: skip


def with_holm(items: list[Finding], alpha: float = ALPHA) -> list[Finding]:
    """Holm over every claim this part of the report tested (statsmodels multipletests): the
    family is every finding with a p, decided or not (an inconclusive claim was tested too,
    and leaving it out would shrink the family after looking at the results). Each finding
    gets its Holm-adjusted p; each supported / contradicted / mixed verdict says whether it
    survives. Claims not tested (not enough data) are not in the family."""
    from statsmodels.stats.multitest import multipletests

    family = [i for i, f in enumerate(items) if f.verdict != NOT_ENOUGH and math.isfinite(f.p)]
    if not family:
        return items
    with _no_forced_collection():
        reject, adjusted, _, _ = multipletests([items[i].p for i in family], alpha=alpha,
                                               method="holm")  # fmt: skip
    out = list(items)
    for i, kept, p in zip(family, reject, adjusted):
        decided = items[i].verdict in (SUPPORTED, CONTRADICTED, MIXED)
        holm = ("survives" if kept else "does not survive") if decided else None
        out[i] = replace(items[i], holm=holm, p_holm=float(p))
    return out


@contextmanager
def _no_forced_collection() -> Iterator[None]:
    """statsmodels' Holm branch ends with a full `gc.collect()` (multitest.py) that frees
    nothing of ours: 0.2 s per call in a process holding torch and Ray, more than the rest
    of a report's findings. The collector's automatic runs are untouched."""
    collect = gc.collect
    gc.collect = lambda generation=2: 0
    try:
        yield
    finally:
        gc.collect = collect


def frame(items: list[Finding]) -> pl.DataFrame:
    """The findings as a frame: key, claim, verdict, score, margin, estimate and interval, n,
    what decided it, the Holm column, power, evidence."""

    def number(f: Finding, attr: str) -> float | None:
        return _number(getattr(f.estimate, attr) if f.estimate is not None else math.nan)

    return pl.DataFrame(
        {
            "key": [f.key for f in items],
            "claim": [f.claim for f in items],
            "verdict": [f.verdict for f in items],
            "score": [f.score for f in items],
            "margin": [f.margin for f in items],
            "test": [f.test for f in items],
            "estimate": [number(f, "mean") for f in items],
            "ci_low": [number(f, "low") for f in items],
            "ci_high": [number(f, "high") for f in items],
            "unit": [f.unit for f in items],
            "n": [f.n for f in items],
            "decided_by": [f.decided_by or None for f in items],
            "holds_for": ["; ".join(f.holds) or None for f in items],
            "contradicted_for": ["; ".join(f.against) or None for f in items],
            "p": [f.p if math.isfinite(f.p) else None for f in items],
            "holm": [f.holm for f in items],
            "p_holm": [f.p_holm if math.isfinite(f.p_holm) else None for f in items],
            "tested": [f.tested for f in items],
            "detectable": [None if math.isnan(f.detectable) else f.detectable for f in items],
            "seeds_needed": [f.seeds_needed for f in items],
            "evidence": [f.evidence for f in items],
        },
        schema_overrides={"estimate": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64,
                          "margin": pl.Float64, "p": pl.Float64, "detectable": pl.Float64,
                          "seeds_needed": pl.Int64, "decided_by": pl.String,
                          "holds_for": pl.String, "contradicted_for": pl.String,
                          "holm": pl.String, "p_holm": pl.Float64},
    )  # fmt: skip


def _number(v: float | None) -> float | None:
    """A CSV cell: None for a missing or NaN number."""
    return None if v is None or math.isnan(v) else float(v)


def strata_frame(items: list[Finding]) -> pl.DataFrame:
    """Each finding's strata, and the levels of each axis it averages over, a row each: the
    per-stratum numbers its evidence quotes in words (the report's findings_strata.csv).

    A row's `verdict` is that stratum's own, at the full 5% level: descriptive. The claim's
    verdict (findings.csv) weighs its strata, levels and cells at the level all of them
    together ask, so a stratum can read contradicted here beside an inconclusive claim."""
    rows = [(f, s) for f in items for s in (*f.strata, *f.levels)]
    return pl.DataFrame(
        {
            "key": [f.key for f, _ in rows],
            "kind": ["level" if s.axis else "stratum" for _, s in rows],
            "axis": [s.axis or None for _, s in rows],
            "label": [s.label for _, s in rows],
            "verdict": [s.verdict for _, s in rows],
            "estimate": [_number(s.estimate.mean) for _, s in rows],
            "ci_low": [_number(s.estimate.low) for _, s in rows],
            "ci_high": [_number(s.estimate.high) for _, s in rows],
            "unit": [f.unit for f, _ in rows],
            "n": [s.estimate.n for _, s in rows],
            "censored": [s.estimate.censored for _, s in rows],
            "p": [_number(s.p) for _, s in rows],
        },
        schema={"key": pl.String, "kind": pl.String, "axis": pl.String, "label": pl.String,
                "verdict": pl.String, "estimate": pl.Float64, "ci_low": pl.Float64,
                "ci_high": pl.Float64, "unit": pl.String, "n": pl.Int64, "censored": pl.Int64,
                "p": pl.Float64},
    )  # fmt: skip
