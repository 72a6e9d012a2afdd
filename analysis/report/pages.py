"""The report's HTML: index.html (findings, protocol, attackers, frontier, counts, every chart,
the gallery), a chart's own page and gallery.html; offline (Vega inlined, images linked).
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from typing import Any

import altair as alt
import polars as pl
import vl_convert as vlc

from analysis import charts, explorer, findings, frontier
from analysis.report.model import Report, SweepPart

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


@lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert's bundle, no network)."""
    version = alt.SCHEMA_VERSION.rsplit(".", 1)[0]  # "v6.4.1" -> "v6.4"
    return vlc.javascript_bundle(vl_version=version)


def packed(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its datasets packed (`charts.pack`), unless they already are."""
    datasets = spec.get("datasets", {}).values()
    return spec if any(isinstance(d, dict) for d in datasets) else charts.pack(spec)


def script_json(value: Any) -> str:
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
vegaEmbed("#chart", unpack({script_json(packed(spec))}), {{"renderer": "svg"}})
  .then(() => {{ document.body.dataset.rendered = "1"; }})
  .catch((err) => {{
    console.error("vega error: " + err); document.body.dataset.error = String(err); }});
</script></body></html>
"""


def _image_src(row: dict[str, Any], column: str) -> str:
    """The trial's PNG as the file the explorer writes (explorer/<sweep>/<key>-*.png): the
    pages link the images, never inline them (a 960-trial gallery inlined is 5 MB)."""
    if not row.get(column):
        return ""
    truth, reconstruction = explorer.image_files(str(row["sweep"]), str(row["trial_key"]))
    return truth if column == "ground_truth_png" else reconstruction


def trial_caption(row: dict[str, Any], axes: list[str]) -> str:
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
            f"{sweep}{html.escape(trial_caption(row, axes))} (1 of {row.get('group_trials', 1)})"
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


def page(title: str, body: str, script: str = "") -> str:
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
    specs = {c.name: c.packed or packed(c.spec) for c in drawn if c.spec is not None}
    script = f"""<script>
{charts.UNPACK_JS}
const specs = {script_json(specs)};
Promise.all(Object.entries(specs).map(([name, spec]) =>
  vegaEmbed("#" + name, unpack(spec), {{"renderer": "svg"}}).catch((err) => {{
    console.error("vega error in " + name + ": " + err); throw err; }})))
  .then(() => {{ document.body.dataset.rendered = String(Object.keys(specs).length); }})
  .catch((err) => {{ document.body.dataset.error = String(err); }});
</script>"""
    return page(f"dlgsweep report: {report.sweep}", "\n".join(sections), script)
