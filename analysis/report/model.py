"""The report's model: its parts (a sweep, or each variant and attack recipe of one), their
findings, protocol notes and counts, the attackers compared and the search sweeps' frontiers,
built from sweeps opened once (store.opened) and written by nothing here (`export` does).

Every sweep is opened once: its rows read, its spec.yaml parsed, its expected trials and a
search's replay derived from those (`OpenedSweep`); the counts, the parts and the frontier all
read that, never the sweep's path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from analysis import findings, frontier
from analysis.findings import attackers
from store.opened import OpenedSweep, open_sweep


@dataclass
class ChartOutput:
    name: str
    title: str
    html: str | None = None  # file name inside out
    png: str | None = None
    spec: dict[str, Any] | None = None
    skipped: str | None = None  # reason, when the sweep has no data for it
    points: int = 0
    n_min: int = 0
    n_max: int = 0
    notes: list[str] = field(default_factory=list)  # what the chart samples, said on the page
    packed: dict[str, Any] | None = None  # `spec` as the pages carry it (charts.pack)


@dataclass
class SweepPart:
    """One part of the report (`findings.named_parts`): a sweep, one variant of a sweep with
    `variants:` (named `sweep/variant`), or one attack recipe where a variant's rows mix them
    (`sweep/variant [recipe]`); its findings and protocol are the part's, its counts the whole
    sweep's (expected vs present is a property of the sweep's spec)."""

    name: str
    path: str
    counts: dict[str, Any]
    findings: list[findings.Finding] = field(default_factory=list)
    protocol: list[str] = field(default_factory=list)
    sweep: str = ""  # the sweep this part belongs to (its name when there are no variants)
    variant: str | None = None
    recipe: str | None = None  # the one attack recipe its rows name (None: several or none)
    attackers: list[str] = field(default_factory=list)  # what its verdicts hold against

    def __post_init__(self) -> None:
        self.sweep = self.sweep or self.name


@dataclass
class Report:
    out: Path
    parts: list[SweepPart]
    charts: list[ChartOutput] = field(default_factory=list)
    gallery_rows: int = 0
    gallery_groups: int = 0
    explorer_rows: int = 0
    score: str = "psnr_mean"  # what the findings were computed on
    frontiers: list[frontier.Frontier] = field(default_factory=list)  # sweeps with `search:`
    compared: pl.DataFrame | None = None  # attackers compared per cell (attackers.csv)
    rows: pl.DataFrame = field(default_factory=pl.DataFrame)  # the parts', in their order

    @property
    def sweep(self) -> str:
        return " vs ".join(self.sweeps)

    @property
    def sweeps(self) -> dict[str, SweepPart]:
        """The first part of each sweep, by sweep name (its counts are the sweep's)."""
        out: dict[str, SweepPart] = {}
        for part in self.parts:
            out.setdefault(part.sweep, part)
        return out

    @property
    def counts(self) -> dict[str, Any]:
        """The one sweep's counts; with several, {sweep: counts}."""
        sweeps = self.sweeps
        if len(sweeps) == 1:
            return next(iter(sweeps.values())).counts
        return {name: p.counts for name, p in sweeps.items()}

    @property
    def findings(self) -> list[findings.Finding]:
        """The first sweep's findings (every sweep's: `parts[i].findings`)."""
        return self.parts[0].findings if self.parts else []


SEARCH_NOTE = (
    "a defense search (search:): its trials sit at the strengths the search chose from the "
    "outcomes, a different set per cell; the seed's claims pair trials only where two cells "
    "were run at the same strength (often the range's ends), a selection the search made. "
    "The defense frontier's findings answer the search's own question"
)


def _single(frame: pl.DataFrame, column: str) -> str | None:
    """The one value `column` takes in `frame` (None: absent, several, or only nulls)."""
    if column not in frame.columns:
        return None
    values = frame[column].unique().to_list()
    return values[0] if len(values) == 1 else None


def open_sweeps(paths: list[str]) -> list[OpenedSweep]:
    """Each sweep path opened once; names made unique where two sweeps share one."""
    opened, seen = [], {}
    for path in paths:
        sweep = open_sweep(path)
        seen[sweep.name] = seen.get(sweep.name, 0) + 1
        if seen[sweep.name] > 1:
            sweep.name = f"{sweep.name} ({seen[sweep.name]})"
        sweep.trials.frame = sweep.frame.with_columns(pl.lit(sweep.name).alias("sweep"))
        opened.append(sweep)
    return opened


def build(sweeps: list[OpenedSweep], out: Path, score: str) -> Report:
    """The report of opened sweeps: one part per variant and recipe of each (never pooled over
    attacks), their findings on `score`, the attackers compared, the frontiers; `rows` holds
    the parts' rows in the parts' order (the charts follow it)."""
    report = Report(out=out, parts=[], score=score)
    frames = []
    for sweep in sweeps:
        sweep_counts = counts(sweep)
        for variant, recipe, rows in findings.named_parts(sweep.frame, sweep.variants):
            part = SweepPart(
                findings.part_label(sweep.name, variant, recipe), sweep.path, sweep_counts,
                sweep=sweep.name, variant=variant, recipe=recipe or _single(rows, "recipe"),
                attackers=attackers.describe(rows),
            )  # fmt: skip
            part.findings = findings.findings(rows, value=score)
            part.protocol = findings.protocol_notes(rows)
            report.parts.append(part)
            frames.append(rows)
        compared = attackers.comparisons(sweep.frame, score)
        if compared is not None:
            compared = compared.insert_column(0, pl.lit(sweep.name).alias("sweep"))
            report.compared = pl.concat([c for c in (report.compared, compared) if c is not None])
    report.rows = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    report.frontiers = [f for sweep in sweeps if (f := frontier.sweep_frontier(sweep))]
    searched = {f.sweep for f in report.frontiers}
    for part in report.parts:
        if part.sweep in searched:  # the seed's claims are matched pairs, at chosen strengths
            part.protocol.append(SEARCH_NOTE)
    return report


def counts(sweep: OpenedSweep) -> dict[str, Any]:
    """Rows by status, error messages grouped, files skipped, expected vs present trials."""
    frame = sweep.frame
    by_status = {s: 0 for s in ("ok", "diverged", "error")}
    if frame.height:
        for status, n in frame.group_by("status").len().iter_rows():
            by_status[str(status)] = n
    errors = (
        frame.filter(pl.col("status") == "error")
        .with_columns(pl.col("error").fill_null("").str.split("\n").list.first().alias("message"))
        .group_by("message")
        .len()
        .sort("len", descending=True)
        .head(10)
    )
    out: dict[str, Any] = {
        "rows": frame.height,
        "by_status": by_status,
        "excluded_error_rows": by_status.get("error", 0),
        "errors": [{"message": m, "count": n} for m, n in errors.iter_rows()],
        "skipped_files": [{"path": p, "why": why} for p, why in sweep.trials.skipped],
    }
    if "variant" in frame.columns and frame["variant"].null_count() < frame.height:
        out["variants"] = variant_counts(sweep)
    if sweep.expected is not None:
        present = set(frame["trial_key"].to_list())
        out["expected"] = len(sweep.expected)
        out["missing"] = len(set(sweep.expected) - present)
    return out


def variant_counts(sweep: OpenedSweep) -> dict[str, dict[str, int]]:
    """Rows by status per variant (the spec's order), over the parts `build` makes: a
    variant whose rows mix recipes is counted once, over all of them."""
    out: dict[str, dict[str, int]] = {}
    for variant, _, rows in findings.named_parts(sweep.frame, sweep.variants):
        by = out.setdefault(str(variant), {})
        for status, n in rows.group_by("status").len().iter_rows():
            by[status] = by.get(status, 0) + n
    return out
