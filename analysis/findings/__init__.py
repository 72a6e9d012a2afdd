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

from typing import Any

import polars as pl

from analysis.findings.claims import CLAIMS, MARGIN_DB, SLOPE_MARGIN_DB, Claim
from analysis.findings.combine import MIXED, Stratum
from analysis.findings.finding import VERDICTS, Finding, build, strata_frame, with_holm
from analysis.findings.finding import frame as findings_frame
from analysis.findings.protocol import DECK_PROTOCOL, protocol_notes
from analysis.findings.rows import prepare
from analysis.stats import CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH, SUPPORTED

__all__ = [
    "CLAIMS", "CONTRADICTED", "DECK_PROTOCOL", "GROUP_COLUMNS", "INCONCLUSIVE", "MARGIN_DB",
    "MIXED", "UNKNOWN", "named_parts", "part_label", "parts",
    "NOT_ENOUGH", "SCORES", "SLOPE_MARGIN_DB", "SUPPORTED", "VALUE", "VERDICTS", "Claim",
    "Finding", "Stratum", "check", "findings", "findings_frame", "prepare", "protocol_notes",
    "strata_frame", "table",
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
    """Every claim checked against the ok/diverged rows of `frame` (one sweep or variant: a
    frame of several parts is split by `table`, or by the caller through `parts`), with a
    Holm column over every claim tested."""
    if value not in SCORES:
        raise ValueError(f"score {value!r}: one of {', '.join(SCORES)}")
    rows = prepare(frame)
    return with_holm([check(claim, rows, value) for claim in CLAIMS.values()])


# Columns that split a frame into parts judged apart, never pooled: one set of findings (and
# one Holm family) per combination of their values present. A null value (rows written before
# the column existed, or naming none) is a part of its own, never merged into a named one.
# To judge per another column (e.g. an attack `recipe`), add it here: `table` inserts it into
# its output, and every caller that splits through `parts` follows.
GROUP_COLUMNS: tuple[str, ...] = ("variant", "recipe")


def parts(
    frame: pl.DataFrame, columns: tuple[str, ...] = GROUP_COLUMNS
) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    """The frame split by the grouping `columns` it has ({column: value} per part, in the
    order the rows name them; nulls a part of their own). [({}, frame)] when it has none."""
    present = [c for c in columns if c in frame.columns]
    if not present or frame.is_empty():
        return [({}, frame)]
    out = []
    for values in frame.select(present).unique(maintain_order=True).iter_rows():
        where = pl.lit(True)
        for column, value in zip(present, values):
            where = where & pl.col(column).eq_missing(pl.lit(value, frame.schema[column]))
        out.append((dict(zip(present, values)), frame.filter(where)))
    return out


def table(frame: pl.DataFrame, value: str = VALUE) -> pl.DataFrame:
    """The findings as a frame: key, claim, verdict, score, estimate and interval, n, ...

    A frame whose rows belong to several parts (`GROUP_COLUMNS`: variants of a spec, rows that
    name none among them) is judged per part, as several sweeps are: one row per (part,
    claim), never pooled; the grouping columns that vary lead the table (null: the rows that
    name none)."""
    split = parts(frame)
    if len(split) == 1:
        return findings_frame(findings(frame, value))
    varying = [c for c in split[0][0] if len({str(p[c]) for p, _ in split}) > 1]
    out = []
    for names, rows in split:
        part = findings_frame(findings(rows, value))
        for i, column in enumerate(varying):
            part = part.insert_column(i, pl.lit(names[column], frame.schema[column]).alias(column))
        out.append(part)
    return pl.concat(out)


UNKNOWN = "unknown"  # how a part names rows that name no variant (or recipe) beside named ones


def named_parts(
    frame: pl.DataFrame, order: list[str] | tuple[str, ...] = ()
) -> list[tuple[str | None, str | None, pl.DataFrame]]:
    """`parts` as a report names them: (variant, recipe, rows), variants in `order` (a spec's)
    then as the rows name them. `variant` is None where no row names one, and `unknown` for the
    rows naming none beside named ones; `recipe` is None unless the variant's rows mix attack
    recipes (then each part names its own, `unknown` for rows naming none). Every caller that
    shows parts (the report's columns, the frontier's findings) splits through this."""
    split = parts(frame)
    named = any(p.get("variant") is not None for p, _ in split)
    variant_of = [(p.get("variant") or UNKNOWN) if named else None for p, _ in split]
    ranked = [*order, *(v for v in variant_of if v not in order)]
    out = []
    for (names, rows), variant in zip(split, variant_of):
        mixed = sum(v == variant for v in variant_of) > 1  # the variant's rows mix recipes
        recipe = (names.get("recipe") or UNKNOWN) if mixed else None
        out.append((variant, recipe, rows))
    return sorted(out, key=lambda part: ranked.index(part[0]) if part[0] is not None else 0)


def part_label(sweep: str, variant: str | None, recipe: str | None) -> str:
    """`sweep`, `sweep/variant`, `sweep [recipe]` or `sweep/variant [recipe]`."""
    label = sweep if variant is None else f"{sweep}/{variant}"
    return label if recipe is None else f"{label} [{recipe}]"
