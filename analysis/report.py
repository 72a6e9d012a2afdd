"""The HTML report of one or several sweeps: every chart as HTML and PNG, findings, an explorer.

`build_report(paths, out)` writes into `out`:

    index.html          the findings (one verdict column per sweep, or per variant of a sweep
                        with `variants:`), where each part's protocol departs from the deck's,
                        the counts, every chart, the gallery (images linked from explorer/)
    explorer.html       every trial as a row (sortable, filterable), parallel coordinates of the
                        config axes against PSNR; a click shows the trial's ground truth,
                        reconstruction and convergence curve (images under explorer/)
    <chart>.html        each chart on its own page (Vega, Vega-Lite and vega-embed inline)
    <chart>.png         each chart rendered by vl-convert
    gallery.html/.png   ground truth beside reconstruction, one trial per config group
    findings.csv        the claims against our numbers, one row per (sweep, claim)
    counts.json         rows by status, skipped files, expected vs present trials, per chart n
    frontier.csv        for a sweep whose spec has `search:` (issue 17): one row per cell, the
                        strength found, its bracket and the gradient distortion there; with
                        frontier_seeds.csv (each seed's own threshold), the defense_frontier
                        chart and the frontier's findings (`analysis.frontier`)

Several sweeps (`dlgsweep report A B --out DIR`) share every chart: each sweep is a facet row;
a sweep with variants is one part per variant (`corrections/seed-protocol`, ...), as if each
were a sweep of its own: a findings column and a facet row each, counted with its sweep.
All pages work offline, opened from disk: the JavaScript is inlined (no CDN), images are files
next to the pages. A partial sweep is fine: each chart says how many trials its points rest on;
error rows are excluded and counted; a chart without data is skipped with its reason.
"""

from __future__ import annotations

import html
import io
import json
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import vl_convert as vlc

from analysis import charts, explorer, findings, frontier
from analysis.findings import attackers
from analysis.stats import VERDICTS
from store import load

GALLERY_MAX = 240  # trials in gallery.html; beyond this the page says which groups are left out
GALLERY_PNG_MAX = 48  # rows of gallery.png (gallery.html has them all)
_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
td, th { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.verdict-supported { color: #0a6b16; font-weight: 600; }
.verdict-contradicted { color: #a11; font-weight: 600; }
.verdict-inconclusive { color: #8a6d00; font-weight: 600; }
.verdict-mixed { color: #8e3fb0; font-weight: 600; }
.verdict-not-enough-data { color: #777; font-weight: 600; }
.gallery img { image-rendering: pixelated; height: 96px; }
.note { color: #555; }
.small { font-size: 0.85em; }
section { margin-bottom: 2rem; }
details { margin: 0.3rem 0; }
"""

READING = """<p class='note'>How to read a verdict. Each claim is tested within the strata it speaks
of (say, per network and batch size at prune none) on matched pairs of trials (equal in every
config field but the compared one, seed included), and the effect is averaged per seed: the
interval is a 95% Student-t interval over seeds, the independent replicates. Only seeds complete
in every cell a claim averages over enter its estimate (left-out seeds, unmatched trials and
trials without a score are counted in the evidence), and the headline is the equal-weight mean
over strata. <span class='verdict-supported'>supported</span>: the data carry the claim at 5%;
<span class='verdict-contradicted'>contradicted</span>: they carry its opposite;
<span class='verdict-mixed'>mixed</span>: strata (or the levels of an axis averaged over)
decisively disagree: it holds for some and is contradicted for others, named;
<span class='verdict-inconclusive'>inconclusive</span>: neither, with the smallest effect these
seeds could decide (80% power) and the seeds a decision would need at the observed effect;
<span class='verdict-not-enough-data'>not enough data</span>: fewer than 2 complete seeds.
Claims the sweep cannot test at all (a level, field or column missing) are listed in one line
under the table. Margin and equivalence claims ("big effect", "defends", "no big variation",
"low effect"; margin {margin:g} dB, equivalence by TOST) must hold in every cell: every stratum
at every level of the axes they average over; directional claims are decided on the main
effect, guarded by a per-stratum check (Bonferroni over strata). Every verdict here is
computed on <b>{score}</b>. Holm: does the verdict survive adjusting for every claim tested in this
column, decided or not? Per-stratum verdicts (details) are descriptive. A frontier threshold
beyond the searched range enters as the bound it is (sign tests), never imputed or dropped.</p>"""


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
    """One part of the report: a sweep, or one variant of a sweep with `variants:` (named
    `sweep/variant`); its findings and protocol are the part's, its counts the whole sweep's
    (expected vs present is a property of the sweep's spec)."""

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


@lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert's bundle, no network)."""
    version = alt.SCHEMA_VERSION.rsplit(".", 1)[0]  # "v6.4.1" -> "v6.4"
    return vlc.javascript_bundle(vl_version=version)


def _packed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its datasets packed (`charts.pack`), unless they already are."""
    datasets = spec.get("datasets", {}).values()
    return spec if any(isinstance(d, dict) for d in datasets) else charts.pack(spec)


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value, default=str, separators=(",", ":")).replace("</", "<\\/")


def chart_page(title: str, spec: dict[str, Any]) -> str:
    """A standalone, offline HTML page for one chart (`spec` packed or not)."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_PAGE_STYLE}</style>
<script>{javascript_bundle()}</script></head>
<body><h2>{html.escape(title)}</h2><div id="chart"></div>
<script>
{charts.UNPACK_JS}
vegaEmbed("#chart", unpack({_script_json(_packed(spec))}), {{"renderer": "svg"}})
  .then(() => {{ document.body.dataset.rendered = "1"; }})
  .catch((err) => {{
    console.error("vega error: " + err); document.body.dataset.error = String(err); }});
</script></body></html>
"""


def _load_sweeps(paths: list[str]) -> list[tuple[str, str, load.Trials]]:
    """(name, path, trials) per sweep path; names made unique when two sweeps share one."""
    from dlgsweep.errors import UserError

    loaded, seen = [], {}
    for path in paths:
        trials = load.load(path)
        if not trials.files:
            raise UserError(
                f"{path} holds no sweep (no trials/ folder in it or in a folder below it); "
                "give sweep folders, <results>/<sweep>, as `dlgsweep run` writes them"
            )
        if len(trials.files) > 1:
            raise UserError(
                f"{path} holds {len(trials.files)} sweeps ({', '.join(trials.files)}); "
                "give sweep folders, <results>/<sweep>"
            )
        name = next(iter(trials.files), posixpath.basename(str(path).rstrip("/")))
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        trials.frame = trials.frame.with_columns(pl.lit(name).alias("sweep"))
        loaded.append((name, str(path), trials))
    return loaded


def build_report(
    paths: str | list[str],
    out: str | Path,
    *,
    png_scale: float = 1.5,
    score: str = findings.VALUE,
) -> Report:
    """Load the sweep(s) at `paths`, write the report into `out`, return what was written.
    `score`: the column the findings test (one of `findings.SCORES`)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    loaded = _load_sweeps(paths)
    report = Report(out=out, parts=[], score=score)
    frames = []
    for name, path, trials in loaded:
        frame = trials.frame
        sweep_counts = counts(path, trials)
        for variant, variant_frame in variant_frames(frame, spec_variants(path)):
            for recipe, part_frame in recipe_frames(variant_frame):  # never pooled over attacks
                label = name if variant is None else f"{name}/{variant}"
                label += "" if recipe is None else f" [{recipe}]"
                recipe = recipe or _single(part_frame, "recipe")
                part = SweepPart(
                    label, path, sweep_counts, sweep=name, variant=variant, recipe=recipe,
                    attackers=attackers.describe(part_frame),
                )  # fmt: skip
                part.findings = findings.findings(part_frame, value=score)
                part.protocol = findings.protocol_notes(part_frame)
                report.parts.append(part)
                frames.append(part_frame)  # in the parts' order: the charts' rows follow it
        compared = attackers.comparisons(frame, score)
        if compared is not None:
            compared = compared.insert_column(0, pl.lit(name).alias("sweep"))
            report.compared = pl.concat([c for c in (report.compared, compared) if c is not None])
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    if report.compared is not None:
        report.compared.drop("evidence").write_csv(out / "attackers.csv")

    for spec in charts.CHARTS.values():
        report.charts.append(_write_chart(spec, frame, out, png_scale))
    report.frontiers = [
        f for name, path, tr in loaded if (f := frontier.sweep_frontier(path, tr.frame, name))
    ]
    searched = {f.sweep for f in report.frontiers}
    for part in report.parts:
        if part.sweep in searched:  # the seed's claims are matched pairs, at chosen strengths
            part.protocol.append(SEARCH_NOTE)
    if report.frontiers:
        report.charts.append(_write_frontier(report.frontiers, out, png_scale))
        frontier_csv(report.frontiers, "table").write_csv(out / "frontier.csv")
        frontier_csv(report.frontiers, "thresholds").write_csv(out / "frontier_seeds.csv")
    findings_csv(report).write_csv(out / "findings.csv")

    galleries = [gallery_frame(path, tr.frame) for _, path, tr in loaded]
    gallery = pl.concat(galleries, how="diagonal_relaxed") if galleries else pl.DataFrame()
    report.gallery_groups = gallery.height
    shown = gallery.head(GALLERY_MAX)
    report.gallery_rows = shown.height
    (out / "gallery.html").write_text(
        _page("Gallery: " + report.sweep, gallery_html(shown, gallery))
    )
    if shown.height:
        (out / "gallery.png").write_bytes(
            gallery_png(shown.head(GALLERY_PNG_MAX), groups=gallery.height)
        )
    report.explorer_rows = explorer.write_explorer(
        [(path, tr.frame) for _, path, tr in loaded], out, title="Explorer: " + report.sweep
    )
    chart_counts = {
        c.name: {"points": c.points, "n_min": c.n_min, "n_max": c.n_max, "skipped": c.skipped}
        for c in report.charts
    }
    written = dict(report.counts) if len(report.sweeps) == 1 else {"sweeps": report.counts}
    written["charts"] = chart_counts
    (out / "counts.json").write_text(json.dumps(written, indent=2, default=str))
    (out / "index.html").write_text(index_html(report, shown, gallery))
    return report


def variant_frames(
    frame: pl.DataFrame, order: list[str] | None = None
) -> list[tuple[str | None, pl.DataFrame]]:
    """(variant, its rows), in `order` (the spec's) then as the rows name them; [(None, frame)]
    for a sweep without variants. Rows of a variant sweep that name none (older rows) are a
    part of their own, `unknown`, so no row is left out of the findings."""
    if "variant" not in frame.columns or frame["variant"].null_count() == frame.height:
        return [(None, frame)]
    present = frame["variant"].fill_null("unknown").unique(maintain_order=True).to_list()
    order = [v for v in order or [] if v in present]
    names = order + [v for v in present if v not in order]
    named = frame.with_columns(pl.col("variant").fill_null("unknown").alias("_part"))
    return [(v, named.filter(pl.col("_part") == v).drop("_part")) for v in names]


def recipe_frames(frame: pl.DataFrame) -> list[tuple[str | None, pl.DataFrame]]:
    """(recipe, its rows) where the rows mix attack recipes (rows naming none: `unknown`);
    [(None, frame)] where they hold one recipe or none: the findings are never pooled over
    attackers."""
    if "recipe" not in frame.columns or frame["recipe"].n_unique() < 2:
        return [(None, frame)]
    named = frame.with_columns(pl.col("recipe").fill_null("unknown").alias("_recipe"))
    names = named["_recipe"].unique(maintain_order=True).to_list()
    return [(r, named.filter(pl.col("_recipe") == r).drop("_recipe")) for r in names]


def spec_variants(sweep_path: str) -> list[str]:
    """The variant names of the sweep's spec.yaml, in its order ([] without a readable spec)."""
    from store.spec import parse_yaml
    from store.sweep_store import SweepStore

    try:
        text = SweepStore(sweep_path).read_spec()
        return list(parse_yaml(text).variants) if text else []
    except Exception:  # no spec, or one this version cannot read: the rows' order
        return []


def counts(sweep_path: str, trials: load.Trials) -> dict[str, Any]:
    """Rows by status, error messages grouped, files skipped, expected vs present trials."""
    frame = trials.frame
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
        "skipped_files": [{"path": p, "why": why} for p, why in trials.skipped],
    }
    if "variant" in frame.columns and frame["variant"].null_count() < frame.height:
        out["variants"] = {
            str(variant): {s: n for s, n in part.group_by("status").len().iter_rows()}
            for variant, part in variant_frames(frame, spec_variants(sweep_path))
        }
    expected = expected_trials(sweep_path)
    if expected is not None:
        present = set(frame["trial_key"].to_list())
        out["expected"] = len(expected)
        out["missing"] = len(set(expected) - present)
    return out


def expected_trials(sweep_path: str) -> list[str] | None:
    """The trial keys the sweep's spec.yaml asks for (None if there is no readable spec)."""
    from store.sweep_store import SweepStore

    try:
        keys = SweepStore(sweep_path).trial_keys()
        return None if keys is None else list(keys)
    except Exception:  # no spec, or one this version cannot read: counts go without "expected"
        return None


def _write_chart(
    spec: charts.ChartSpec, frame: pl.DataFrame, out: Path, png_scale: float
) -> ChartOutput:
    def build() -> alt.TopLevelMixin:
        if frame.is_empty():
            raise charts.ChartSkipped(f"{spec.name}: no rows")
        return charts.compose(spec, frame)

    return _render(ChartOutput(spec.name, spec.title), build, out, png_scale)


SEARCH_NOTE = (
    "a defense search (search:): its trials sit at the strengths the search chose from the "
    "outcomes, a different set per cell; the seed's claims pair trials only where two cells "
    "were run at the same strength (often the range's ends), a selection the search made. "
    "The defense frontier's findings answer the search's own question"
)


def _write_frontier(found: list[frontier.Frontier], out: Path, png_scale: float) -> ChartOutput:
    """The defense_frontier chart of the sweeps searching the first one's axis on its scale
    (a chart has one y axis); the others are in frontier.csv and the page's tables."""
    first = found[0].search
    same = [f for f in found if (f.search.axis, f.search.scale) == (first.axis, first.scale)]
    search = replace(first, low=min(f.search.low for f in same),
                     high=max(f.search.high for f in same))  # fmt: skip
    table = pl.concat([f.table for f in same], how="diagonal_relaxed")
    result = ChartOutput(frontier.FRONTIER_CHART, frontier.FRONTIER_TITLE)
    result = _render(result, lambda: frontier.frontier_chart(table, search), out, png_scale)
    left = [f.sweep for f in found if f not in same]
    if left:
        result.notes.append(f"not drawn (another search axis or scale): {', '.join(left)}")
    return result


def frontier_csv(found: list[frontier.Frontier], which: str) -> pl.DataFrame:
    """The sweeps' frontier tables (`which` = "table") or per-seed thresholds ("thresholds"),
    one frame with a `sweep` column and the searched axis named (`axis`)."""
    parts = []
    for f in found:
        part = getattr(f, which)
        if "sweep" not in part.columns:
            part = part.insert_column(0, pl.lit(f.sweep).alias("sweep"))
        parts.append(part.insert_column(1, pl.lit(f.search.axis).alias("axis")))
    return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()


def _render(
    result: ChartOutput, build: Callable[[], alt.TopLevelMixin], out: Path, png_scale: float
) -> ChartOutput:
    """`build()`'s chart written as <name>.html and .png into `out` (or its skip reason)."""
    try:
        chart = build()
    except charts.ChartSkipped as reason:
        result.skipped = str(reason)
        return result
    # the test suite validates every chart's spec; here validation would cost most of the time
    vl_spec = charts.compact(chart.to_dict(validate=False))
    result.spec = vl_spec
    counts_n = [
        row["n"]
        for values in vl_spec.get("datasets", {}).values()
        for row in values
        if isinstance(row, dict) and row.get("kind") == "mean" and row.get("n") is not None
    ]
    subtitle = vl_spec.get("title", {}).get("subtitle", [])
    result.notes = [line for line in subtitle if line.startswith("thin lines:")]
    result.points = len(counts_n)
    result.n_min, result.n_max = (min(counts_n), max(counts_n)) if counts_n else (1, 1)
    result.packed = charts.pack(vl_spec)
    (out / f"{result.name}.html").write_text(chart_page(result.title, result.packed))
    (out / f"{result.name}.png").write_bytes(vlc.vegalite_to_png(vl_spec, scale=png_scale))
    result.html, result.png = f"{result.name}.html", f"{result.name}.png"
    return result


def _single(frame: pl.DataFrame, column: str) -> str | None:
    """The one value `column` takes in `frame` (None: absent, several, or only nulls)."""
    if column not in frame.columns:
        return None
    values = frame[column].unique().to_list()
    return values[0] if len(values) == 1 else None


def findings_csv(report: Report) -> pl.DataFrame:
    """One row per (sweep, variant, recipe, claim); `variant` is null for sweeps without
    variants, `recipe` where the rows name no single recipe."""
    named = [(p.sweep, p.variant, p.recipe, p.findings) for p in report.parts]
    named += [
        (f.sweep, label.partition("/")[2] or None, None, items)
        for f in report.frontiers
        for label, items in f.findings.items()
    ]  # the frontier's claims (keys frontier_*), after the seed's
    parts = [
        findings.findings_frame(items)
        .insert_column(0, pl.lit(recipe, dtype=pl.String).alias("recipe"))
        .insert_column(0, pl.lit(variant, dtype=pl.String).alias("variant"))
        .insert_column(0, pl.lit(sweep).alias("sweep"))
        for sweep, variant, recipe, items in named
        if items
    ]
    return pl.concat(parts) if parts else pl.DataFrame()


# -- gallery ---------------------------------------------------------------------------------


def gallery_groups(rows: pl.DataFrame) -> list[str]:
    """The config axes that vary among the result rows (the seed aside): one trial per group."""
    return [c for c in charts.AXES if c in rows.columns and rows[c].n_unique() > 1] or ["model"]


def gallery_frame(sweep_path: str, frame: pl.DataFrame) -> pl.DataFrame:
    """One trial per group of every varying config axis (the seed aside): the trial whose
    PSNR is closest to its group's median, with its PNGs. Every group is covered."""
    rows = load.result_rows(frame).filter(pl.col("psnr_mean").is_not_null())
    if rows.is_empty():
        return rows.with_columns(
            pl.lit(None, pl.Binary).alias("reconstruction_png"),
            pl.lit(None, pl.Binary).alias("ground_truth_png"),
        )
    group = gallery_groups(rows)
    picked = (
        rows.with_columns(
            (pl.col("psnr_mean") - pl.col("psnr_mean").median().over(group)).abs().alias("_gap"),
            pl.len().over(group).alias("group_trials"),
        )
        .sort([*group, "_gap", "trial_key"], nulls_last=True)
        .group_by(group, maintain_order=True)
        .first()
        .drop("_gap")
    )
    images = load.images(sweep_path, picked["trial_key"].to_list())
    return picked.join(images, on="trial_key", how="left").with_columns(
        pl.lit(", ".join(group)).alias("group_axes")
    )


def _image_src(row: dict[str, Any], column: str) -> str:
    """The trial's PNG as the file the explorer writes (explorer/<sweep>/<key>-*.png): the
    pages link the images, never inline them (a 960-trial gallery inlined is 5 MB)."""
    if not row.get(column):
        return ""
    truth, reconstruction = explorer.image_files(str(row["sweep"]), str(row["trial_key"]))
    return truth if column == "ground_truth_png" else reconstruction


def _caption(row: dict[str, Any], axes: list[str]) -> str:
    parts = [f"{a}={row[a]}" for a in axes if a in row]
    return ", ".join(parts) + f", seed {row['seed']}"


def gallery_html(shown: pl.DataFrame, every: pl.DataFrame | None = None) -> str:
    if shown.is_empty():
        return "<p class='note'>No ok/diverged trials with images yet.</p>"
    every = shown if every is None else every
    lines = []
    left = every.height - shown.height
    if left:
        lines.append(
            f"<p class='note'><b>{left} of {every.height} groups are left out</b> here (the "
            f"first {shown.height} are shown); the explorer shows every trial.</p>"
        )
    lines.append(
        "<table class='gallery'><tr><th>trial</th><th>ground truth</th>"
        "<th>reconstruction</th><th>PSNR / SSIM / label acc.</th></tr>"
    )
    for row in shown.iter_rows(named=True):
        axes = row.get("group_axes", "").split(", ")
        part = str(row["sweep"]) + (f"/{row['variant']}" if row.get("variant") else "")
        several = every["sweep"].n_unique() > 1 or bool(row.get("variant"))
        sweep = f"<b>{html.escape(part)}</b>: " if several else ""
        caption = (
            f"{sweep}{html.escape(_caption(row, axes))} (1 of {row.get('group_trials', 1)})"
            f"<br><code>{row['trial_key']}</code>"
        )
        scores = " / ".join(
            "-" if row.get(k) is None else f"{row[k]:.{p}f}"
            for k, p in (("psnr_mean", 2), ("ssim_mean", 3), ("label_accuracy", 2))
        )
        lines.append(
            f"<tr><td class='small'>{caption}</td>"
            f"<td><img alt='ground truth' src='{_image_src(row, 'ground_truth_png')}'></td>"
            f"<td><img alt='reconstruction' src='{_image_src(row, 'reconstruction_png')}'></td>"
            f"<td>{scores} dB</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def gallery_png(gallery: pl.DataFrame, scale: int = 3, groups: int | None = None) -> bytes:
    """One PNG: a row per trial, ground truth strip | reconstruction strip, captioned; the
    header says how many of the `groups` it shows."""
    from PIL import Image, ImageDraw

    rows = []
    for row in gallery.iter_rows(named=True):
        strips = []
        for column in ("ground_truth_png", "reconstruction_png"):
            data = row[column]
            image = (
                Image.open(io.BytesIO(data)).convert("RGB") if data else Image.new("RGB", (32, 32))
            )
            strips.append(image.resize((image.width * scale, image.height * scale), Image.NEAREST))
        axes = row.get("group_axes", "model").split(", ")
        caption = f"{_caption(row, axes)}  PSNR {row['psnr_mean']:.2f} dB"
        rows.append((caption, strips))
    label_w, gap = 520, 8
    width = label_w + max(s[0].width + s[1].width for _, s in rows) + 3 * gap
    heights = [max(s[0].height, s[1].height) + gap for _, s in rows]
    sheet = Image.new("RGB", (width, sum(heights) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    groups = gallery.height if groups is None else groups
    left = (
        f"; {groups - gallery.height} more groups in gallery.html"
        if groups > gallery.height
        else ""
    )
    header = f"ground truth | reconstruction: one trial per group, {gallery.height} of {groups}"
    draw.text((gap, 4), header + left, fill="black")
    y = 24
    for (caption, (truth, recon)), h in zip(rows, heights):
        for k, line in enumerate(_wrap(caption, 80)[:4]):
            draw.text((gap, y + 4 + 12 * k), line, fill="black")
        sheet.paste(truth, (label_w, y))
        sheet.paste(recon, (label_w + truth.width + gap, y))
        y += h
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line]


# -- index -----------------------------------------------------------------------------------


def _page(title: str, body: str, script: str = "") -> str:
    head_script = f"<script>{javascript_bundle()}</script>" if script else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_PAGE_STYLE}</style>{head_script}</head><body>"
        f"<h1>{html.escape(title)}</h1>{body}{script}</body></html>\n"
    )


def _verdict_cell(f: findings.Finding) -> str:
    css = "verdict-" + f.verdict.replace(" ", "-")
    lines = [f"<span class='{css}'>{html.escape(f.verdict)}</span>"]
    est = f.estimate
    if est is not None and est.n:
        lines.append(html.escape(est.text(f.unit)))
    if f.decided_by:
        lines.append(f"<span class='note'>decided by {html.escape(f.decided_by)}</span>")
    if f.holds and f.against and f.verdict == findings.MIXED:
        lines.append(
            f"<span class='note'>holds for {html.escape('; '.join(f.holds))}; contradicted for "
            f"{html.escape('; '.join(f.against))}</span>"
        )
    if f.holm:
        lines.append(f"<span class='note'>Holm: {f.holm}</span>")
    if f.seeds_needed is not None:
        needed = f.seeds_needed if f.seeds_needed <= 1000 else "> 1000"
        lines.append(f"<span class='note'>detectable {f.detectable:.1f} {f.unit}; "
                     f"~{needed} seeds to decide</span>")  # fmt: skip
    return "<br>".join(lines)


def _strata_table(f: findings.Finding) -> str:
    if not f.strata and not f.levels:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(s.label)}</td><td>{html.escape(s.estimate.text(f.unit))}</td>"
        f"<td class='verdict-{s.verdict.replace(' ', '-')}'>{s.verdict}</td></tr>"
        for s in (*f.strata, *f.levels)
    )
    head = (
        "<tr><th>stratum (or level averaged over)</th><th>effect over seeds</th>"
        "<th>verdict</th></tr>"
    )
    return f"<table class='small'>{head}{rows}</table>"


def findings_html(parts: list[SweepPart]) -> str:
    """The claims table: one verdict column per sweep (or variant), evidence in details below."""
    if not parts:
        return ""
    head = "".join(f"<th>{html.escape(p.name)}</th>" for p in parts)
    rows = [f"<table class='findings'><tr><th>seed's claim</th><th>test</th>{head}</tr>"]
    if any(p.attackers for p in parts):  # what each column's verdicts hold against
        cells = "".join(
            "<td class='small'>" + "<br>".join(html.escape(a) for a in p.attackers) + "</td>"
            for p in parts
        )
        rows.append(f"<tr><td><b>attacker</b></td><td class='small'>every verdict in the "
                    f"column holds against this attack only</td>{cells}</tr>")  # fmt: skip
    untested = not_tested(parts)
    for i, first in enumerate(parts[0].findings):
        if first.key in untested:
            continue
        cells = "".join(f"<td>{_verdict_cell(p.findings[i])}</td>" for p in parts)
        rows.append(
            f"<tr><td>{html.escape(first.claim)} <span class='note'>({first.key})</span></td>"
            f"<td class='small'>{html.escape(first.test)}</td>{cells}</tr>"
        )
    rows.append("</table>")
    if untested:
        rows.append("<p class='small'>" + html.escape(not_tested_line(untested)) + "</p>")
    details = []
    for p in parts:
        items = "".join(
            f"<details><summary>{html.escape(f.claim)}: <span class='verdict-"
            f"{f.verdict.replace(' ', '-')}'>{f.verdict}</span> (n={f.n} seeds, "
            f"{html.escape(f.score)})</summary>"
            f"<p class='small'>{html.escape(f.evidence)}</p>{_strata_table(f)}</details>"
            for f in p.findings
            if f.key not in untested
        )
        title = f"Evidence: {html.escape(p.name)}" if len(parts) > 1 else "Evidence"
        details.append(f"<h3>{title}</h3>{items}")
    return "\n".join(rows + details)


def not_tested(parts: list[SweepPart]) -> dict[str, str]:
    """The claims no column of the table can test ({key: why}, the first part's reason): they
    leave the table for one line, "not tested by this sweep: ..." (`not_tested_line`)."""
    keys = [f.key for f in parts[0].findings] if parts else []
    out = {}
    for i, key in enumerate(keys):
        found = [p.findings[i] for p in parts]
        if all(not f.tested for f in found):
            out[key] = found[0].evidence
    return out


def not_tested_line(untested: dict[str, str]) -> str:
    return "not tested by this sweep: " + "; ".join(
        f"{key} ({why})" for key, why in untested.items()
    )


def protocol_html(parts: list[SweepPart]) -> str:
    out = []
    for p in parts:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in p.protocol) or "<li>none</li>"
        label = f"<b>{html.escape(p.name)}</b>" if len(parts) > 1 else "This sweep"
        out.append(
            f"<p>{label} departs from the deck's protocol in:</p><ul class='small'>{items}</ul>"
        )
    return "\n".join(out)


def counts_html(report: Report) -> str:
    parts = []
    sweeps = report.sweeps
    for part in sweeps.values():
        c = part.counts
        status = c["by_status"]
        name = f"<b>{html.escape(part.sweep)}</b>: " if len(sweeps) > 1 else ""
        parts.append(
            f"<p>{name}{c['rows']} trial rows: {status.get('ok', 0)} ok, "
            f"{status.get('diverged', 0)} diverged (kept: best iterate), "
            f"<b>{status.get('error', 0)} error rows excluded</b> from charts and findings.</p>"
        )
        if "expected" in c:
            done = c["expected"] - c["missing"]
            state = "complete" if not c["missing"] else "partial sweep"
            parts.append(
                f"<p>{done} of {c['expected']} trials of the spec have a row ({state}).</p>"
            )
        if c.get("variants"):
            items = "".join(
                f"<li>{html.escape(v)}: "
                + ", ".join(f"{n} {html.escape(str(s))}" for s, n in sorted(by.items()))
                + "</li>"
                for v, by in c["variants"].items()
            )
            parts.append(f"<p>Rows per variant (each a findings column and a row of panels):"
                         f"</p><ul class='small'>{items}</ul>")  # fmt: skip
        if c["errors"]:
            items = "".join(
                f"<li>{e['count']} x <code>{html.escape(e['message'])}</code></li>"
                for e in c["errors"]
            )
            parts.append(f"<p>Errors, grouped:</p><ul>{items}</ul>")
        if c["skipped_files"]:
            parts.append(f"<p class='note'>{len(c['skipped_files'])} unreadable or temporary "
                         "files skipped (see counts.json).</p>")  # fmt: skip
    rows = ["<table><tr><th>chart</th><th>points</th><th>trials per point</th><th>files</th></tr>"]
    for chart in report.charts:
        if chart.skipped:
            rows.append(f"<tr><td>{html.escape(chart.title)}</td><td colspan='3' class='note'>"
                        f"skipped: {html.escape(chart.skipped)}</td></tr>")  # fmt: skip
            continue
        span = f"{chart.n_min}" if chart.n_min == chart.n_max else f"{chart.n_min}-{chart.n_max}"
        rows.append(
            f"<tr><td><a href='#{chart.name}'>{html.escape(chart.title)}</a></td>"
            f"<td>{chart.points}</td><td>{span}</td><td><a href='{chart.html}'>html</a> "
            f"<a href='{chart.png}'>png</a></td></tr>"
        )
    rows.append("</table>")
    return "\n".join(parts + rows)


FRONTIER_READING = """<p class='note'>The sweep searched <b>{axis}</b> per cell (a grid point
without the seed{variants}) over [{low:g}, {high:g}] on a {scale} scale, {points} strengths
(resolution {resolution:g} {unit}), for the weakest strength at which the seeds' mean
<b>{score}</b> falls below the target ({target}). Each point is decided on the antitonic
(non-increasing) fit of the evaluated points' means; the bracket is the strongest evaluated
strength that does not defeat the attack and the weakest that does. At the strength found:
the seeds' mean score and what the defense did to the gradient there (mean cosine similarity
to the clean gradient and relative L2 error, over the seeds' rows). The findings compare each
seed's own threshold (its antitonic fit, interpolated on the {scale} scale between its last
point at or above the target and its first below) on matched cells, in {unit}, with the
verdicts above; a seed that never crosses inside the points it has is censored: left out and
counted, never imputed. {censored}Every cell: frontier.csv; every seed: frontier_seeds.csv.</p>"""
# epsilon, epsilon_bracket_low: a DP-SGD search's threshold as its guarantee (analysis.frontier)
FRONTIER_COLUMNS = ("outcome", "strength", "epsilon", "bracket_low", "bracket_high",
                    "epsilon_bracket_low", "score_at_strength", "target", "trials", "points",
                    "seeds", "grad_cosine", "grad_rel_error", "seeds_censored")  # fmt: skip


def _cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape(str(value))


def frontier_table_html(table: pl.DataFrame) -> str:
    """The frontier table: the cell's columns, then the search's outcome and its numbers."""
    cells = [c for c in table.columns if c not in (*FRONTIER_COLUMNS, "cell", "sweep",
             "distortion_rows") and table[c].n_unique() > 1] or ["cell"]  # fmt: skip
    shown = [*cells, *(c for c in FRONTIER_COLUMNS if c in table.columns)]
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in shown)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell_text(row[c])}</td>" for c in shown) + "</tr>"
        for row in table.iter_rows(named=True)
    )
    return f"<table class='small frontier'><tr>{head}</tr>{rows}</table>"


def frontier_html(report: Report) -> str:
    """The "Defense frontier" section: per search sweep how it searched, its table; the chart;
    the frontier's findings (one verdict column per sweep or variant)."""
    out = ["<section id='frontier'><h2>Defense frontier: the weakest defense that defeats the "
           "attack, per cell</h2>"]  # fmt: skip
    for found in report.frontiers:
        search = found.search
        target = "failed-attack floor + 2 dB" if search.target is None else f"{search.target:g} dB"
        censored = frontier.censored_text(found.thresholds)
        if len(report.frontiers) > 1:
            out.append(f"<h3>{html.escape(found.sweep)}</h3>")
        out.append(FRONTIER_READING.format(
            axis=search.axis, low=search.low, high=search.high, scale=search.scale,
            points=len(search.lattice()), resolution=search.resolution,
            unit=frontier.unit_of(search), score=search.score, target=target,
            variants=", per variant" if "variant" in found.table.columns else "",
            censored=html.escape(censored + ". ") if censored else "",
        ))  # fmt: skip
        out.append(frontier_table_html(found.table))
    chart = next(c for c in report.charts if c.name == frontier.FRONTIER_CHART)
    if chart.skipped:
        out.append(f"<p class='note'>Chart skipped: {html.escape(chart.skipped)}.</p>")
    else:
        notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in chart.notes)
        out.append(f"<h3>{html.escape(chart.title)}</h3>{notes}"
                   f"<div id='{chart.name}' class='chart'></div>")  # fmt: skip
    parts = [
        SweepPart(label, f.sweep, {}, findings=items, sweep=f.sweep)
        for f in report.frontiers
        for label, items in f.findings.items()
    ]
    out.append("<h3>Findings on the thresholds</h3>" + findings_html(parts) + "</section>")
    return "\n".join(out)


def attackers_html(compared: pl.DataFrame) -> str:
    """Attackers compared per cell (`findings.attackers`): one table per comparison."""
    out = ["<section id='attackers'><h2>Attackers compared, per cell</h2><p class='note'>Two "
           "recipes' trials paired on every field but the attacker's (same seed, images, model "
           "and cell); a verdict per cell with Holm over the cells of one comparison, and a row "
           "'all' that must hold in every cell (attackers.csv).</p>"]  # fmt: skip
    columns = ["sweep", "cell", "verdict", "estimate", "ci_low", "ci_high", "n", "p", "holm"]
    for (key,), table in compared.group_by("key", maintain_order=True):
        first = table.row(0, named=True)
        out.append(f"<h3>{html.escape(first['claim'])} ({html.escape(key)})</h3>"
                   f"<p class='small'>{html.escape(first['test'])}</p><table><tr>"
                   + "".join(f"<th>{c}</th>" for c in columns) + "</tr>")  # fmt: skip
        for row in table.iter_rows(named=True):
            out.append("<tr>" + "".join(f"<td>{_cell_text(row.get(c))}</td>" for c in columns)
                       + "</tr>")  # fmt: skip
        out.append("</table>")
    return "\n".join(out) + "</section>"


def index_html(report: Report, shown: pl.DataFrame, every: pl.DataFrame | None = None) -> str:
    drawn = [c for c in report.charts if c.spec is not None]
    several = len(report.parts) > 1
    variants = any(p.variant is not None for p in report.parts)
    rows_of = "each sweep (each variant: sweep/variant) is" if variants else "each sweep is"
    sections = [
        "<p class='note'>Every point: the mean over the trials at that point with a 95% Student-t "
        "interval over seeds where it rests on 3 or more trials; on 2 trials its dashed bar is "
        "their range (a t-interval from two says little); on one, no bar (a hollow mean). Small "
        "hollow marks (thin lines on curves) are the individual trials and each mean says its "
        "n. An axis a chart does not show is a dropdown under it (the PNG says which level it "
        "shows)" + (f"; {rows_of} a row of panels" if several else "") + ". "
        f"<a href='explorer.html'>Explorer</a>: every trial ({report.explorer_rows}), its "
        "images and convergence curve.</p>",
        "<section id='protocol'><h2>Protocol: where the sweep differs from the deck</h2>"
        + protocol_html(report.parts)
        + "</section>",
        "<section id='findings'><h2>Findings: the seed's claims against our data</h2>"
        + READING.format(margin=findings.MARGIN_DB, score=report.score)
        + findings_html(report.parts)
        + "</section>",
        *([attackers_html(report.compared)] if report.compared is not None else []),
        *([frontier_html(report)] if report.frontiers else []),
        "<section><h2>Counts</h2>" + counts_html(report) + "</section>",
    ]
    for chart in report.charts:
        if chart.name == frontier.FRONTIER_CHART:
            continue  # drawn in the frontier's section
        if chart.skipped:
            sections.append(
                f"<section id='{chart.name}'><h2>{html.escape(chart.title)}</h2>"
                f"<p class='note'>Skipped: {html.escape(chart.skipped)}.</p></section>"
            )
        else:
            notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in chart.notes)
            sections.append(
                f"<section><h2>{html.escape(chart.title)}</h2>{notes}"
                f"<div id='{chart.name}' class='chart'></div></section>"
            )
    groups = "" if shown.is_empty() else f" ({shown['group_axes'][0]}; seed aside)"
    sections.append(
        "<section id='gallery'><h2>Gallery: ground truth beside reconstruction</h2>"
        f"<p class='note'>One trial per group of the config axes that vary{groups}: the "
        "trial closest to its group's median PSNR.</p>" + gallery_html(shown, every) + "</section>"
    )
    specs = {c.name: c.packed or _packed(c.spec) for c in drawn if c.spec is not None}
    script = f"""<script>
{charts.UNPACK_JS}
const specs = {_script_json(specs)};
Promise.all(Object.entries(specs).map(([name, spec]) =>
  vegaEmbed("#" + name, unpack(spec), {{"renderer": "svg"}}).catch((err) => {{
    console.error("vega error in " + name + ": " + err); throw err; }})))
  .then(() => {{ document.body.dataset.rendered = String(Object.keys(specs).length); }})
  .catch((err) => {{ document.body.dataset.error = String(err); }});
</script>"""
    return _page(f"dlgsweep report: {report.sweep}", "\n".join(sections), script)


__all__ = ["VERDICTS", "build_report", "Report", "SweepPart", "ChartOutput"]
