"""The seed study's claims tested against our rows: an effect, its interval, a verdict.

- `claims`: the registry (`CLAIMS`, keyed by `key`): each claim's words and the parts it is
  tested on, each part with its strata and decision rule.
- `combine`: units to estimates (balanced over complete seeds) and verdicts (per stratum,
  intersection-union or main effect with a heterogeneity guard; `mixed` where strata disagree).
- `finding`: the verdict with its numbers and evidence in words; the table, with Holm.
- `protocol`: where the sweep's protocol departs from the deck's.

Verdicts: `supported`, `contradicted`, `mixed` (strata decisively disagree: it holds for some
and is contradicted for others, named), `inconclusive` (with the smallest effect the seeds
could decide and the seeds a decision would need), `not enough data` (fewer than 2 complete
seeds, or a level missing). The score is `psnr_mean` unless asked otherwise (`SCORES`).
"""

from __future__ import annotations

import polars as pl

from analysis.findings.claims import CLAIMS, MARGIN_DB, SLOPE_MARGIN_DB, Claim
from analysis.findings.combine import MIXED, Stratum
from analysis.findings.finding import VERDICTS, Finding, build, with_holm
from analysis.findings.finding import frame as findings_frame
from analysis.findings.protocol import DECK_PROTOCOL, protocol_notes
from analysis.findings.rows import prepare
from analysis.stats import CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH, SUPPORTED

__all__ = [
    "CLAIMS", "CONTRADICTED", "DECK_PROTOCOL", "INCONCLUSIVE", "MARGIN_DB", "MIXED",
    "NOT_ENOUGH", "SCORES", "SLOPE_MARGIN_DB", "SUPPORTED", "VALUE", "VERDICTS", "Claim",
    "Finding", "Stratum", "check", "findings", "findings_frame", "prepare", "protocol_notes",
    "table",
]  # fmt: skip

VALUE = "psnr_mean"
SCORES = ("psnr_mean", "psnr_raw_mean")  # what a verdict may be computed on


def check(claim: Claim, rows: pl.DataFrame, value: str = VALUE) -> Finding:
    """One claim against prepared rows (`prepare`)."""
    why = claim.requires(rows) if claim.requires else None
    if why:
        return build(claim, [], value, why=why)
    parts = [(part, part.measure(rows, value)) for part in claim.parts]
    extra = claim.extra(rows, value) if claim.extra else ""
    return build(claim, parts, value, extra)


def findings(frame: pl.DataFrame, value: str = VALUE) -> list[Finding]:
    """Every claim checked against the ok/diverged rows of `frame` (one sweep or variant),
    with a Holm column over the claims decided."""
    if value not in SCORES:
        raise ValueError(f"score {value!r}: one of {', '.join(SCORES)}")
    rows = prepare(frame)
    return with_holm([check(claim, rows, value) for claim in CLAIMS.values()])


def table(frame: pl.DataFrame, value: str = VALUE) -> pl.DataFrame:
    """The findings as a frame: key, claim, verdict, score, estimate and interval, n, ...

    A frame whose rows belong to several variants of a spec (`variant` column) is judged per
    variant, as several sweeps are: one row per (variant, claim), never pooled over variants."""
    names = _variants(frame)
    if not names:
        return findings_frame(findings(frame, value))
    parts = [
        findings_frame(findings(frame.filter(pl.col("variant") == name), value)).insert_column(
            0, pl.lit(name).alias("variant")
        )
        for name in names
    ]
    return pl.concat(parts)


def _variants(frame: pl.DataFrame) -> list[str]:
    if "variant" not in frame.columns:
        return []
    names = frame["variant"].drop_nulls().unique(maintain_order=True).to_list()
    return names if frame["variant"].null_count() == 0 and len(names) > 1 else []
