"""The HTML report of one sweep: every chart as standalone HTML and PNG, and an index page.

`build_report(sweep, out)` writes into `out`:

    index.html          every chart (interactive), the counts, the findings and the gallery
    <chart>.html        each chart on its own page (Vega, Vega-Lite and vega-embed inline)
    <chart>.png         each chart rendered by vl-convert
    gallery.html/.png   ground truth beside reconstruction for representative trials
    findings.csv        the seed's claims against our numbers
    counts.json         rows by status, skipped files, expected vs present trials, per chart n

All pages work offline: the JavaScript is inlined once per page (no CDN). A partial sweep is
fine: each chart says how many trials its points rest on; error rows are excluded and counted;
a chart without data (say, no bn_mode variation) is skipped with its reason on the index page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import posixpath
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl
import vl_convert as vlc

from analysis import charts, findings, load

GALLERY_MAX = 24
_PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; }
td, th { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.verdict-supported { color: #0a6b16; font-weight: 600; }
.verdict-not-supported { color: #a11; font-weight: 600; }
.verdict-not-enough-data { color: #777; font-weight: 600; }
.gallery img { image-rendering: pixelated; height: 96px; }
.note { color: #555; }
section { margin-bottom: 2rem; }
"""


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


@dataclass
class Report:
    out: Path
    sweep: str
    counts: dict[str, Any]
    charts: list[ChartOutput] = field(default_factory=list)
    findings: list[findings.Finding] = field(default_factory=list)
    gallery_rows: int = 0


@lru_cache(maxsize=1)
def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed as one script (vl-convert's bundle, no network)."""
    version = alt.SCHEMA_VERSION.rsplit(".", 1)[0]  # "v6.4.1" -> "v6.4"
    return vlc.javascript_bundle(vl_version=version)


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("</", "<\\/")


def chart_page(title: str, spec: dict[str, Any]) -> str:
    """A standalone, offline HTML page for one chart."""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_PAGE_STYLE}</style>
<script>{javascript_bundle()}</script></head>
<body><h2>{html.escape(title)}</h2><div id="chart"></div>
<script>
vegaEmbed("#chart", {_script_json(spec)}, {{"renderer": "svg"}})
  .then(() => {{ document.body.dataset.rendered = "1"; }})
  .catch((err) => {{
    console.error("vega error: " + err); document.body.dataset.error = String(err); }});
</script></body></html>
"""


def build_report(sweep_path: str, out: str | Path, *, png_scale: float = 1.5) -> Report:
    """Load the sweep at `sweep_path`, write the report into `out`, return what was written."""
    trials = load.load(sweep_path)
    if len(trials.files) > 1:
        from workloads.errors import UserError

        raise UserError(
            f"{sweep_path} holds {len(trials.files)} sweeps ({', '.join(trials.files)}); "
            "give one sweep folder, <results>/<sweep>"
        )
    frame = trials.frame
    sweep = next(iter(trials.files), posixpath.basename(str(sweep_path).rstrip("/")))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out=out, sweep=sweep, counts=counts(sweep_path, trials))

    for spec in charts.CHARTS.values():
        report.charts.append(_write_chart(spec, frame, out, png_scale))
    report.findings = findings.findings(frame)
    findings.table(frame).write_csv(out / "findings.csv")
    gallery = gallery_frame(sweep_path, frame)
    report.gallery_rows = gallery.height
    (out / "gallery.html").write_text(_page("Gallery: " + sweep, gallery_html(gallery)))
    if gallery.height:
        (out / "gallery.png").write_bytes(gallery_png(gallery))
    report.counts["charts"] = {
        c.name: {"points": c.points, "n_min": c.n_min, "n_max": c.n_max, "skipped": c.skipped}
        for c in report.charts
    }
    (out / "counts.json").write_text(json.dumps(report.counts, indent=2, default=str))
    (out / "index.html").write_text(index_html(report, gallery))
    return report


def counts(sweep_path: str, trials: load.Trials) -> dict[str, Any]:
    """Rows by status, error messages grouped, files skipped, expected vs present trials."""
    frame = trials.frame
    by_status = {s: 0 for s in ("ok", "diverged", "error")}
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
    expected = expected_trials(sweep_path)
    if expected is not None:
        present = set(frame["trial_key"].to_list())
        out["expected"] = len(expected)
        out["missing"] = len(set(expected) - present)
    return out


def expected_trials(sweep_path: str) -> list[str] | None:
    """The trial keys the sweep's spec.yaml asks for (None if there is no readable spec)."""
    from orchestrator.sink import SweepStore
    from orchestrator.spec import parse_yaml

    try:
        text = SweepStore(sweep_path).read_spec()
        if text is None:
            return None
        return [config.trial_key for config in parse_yaml(text).trials()]
    except Exception:  # no spec, or one this version cannot read: counts go without "expected"
        return None


def _write_chart(
    spec: charts.ChartSpec, frame: pl.DataFrame, out: Path, png_scale: float
) -> ChartOutput:
    result = ChartOutput(spec.name, spec.title)
    try:
        chart = spec.build(frame)
    except charts.ChartSkipped as reason:
        result.skipped = str(reason)
        return result
    vl_spec = chart.to_dict()
    result.spec = vl_spec
    counts_n = [
        row["n"]
        for values in vl_spec.get("datasets", {}).values()
        for row in values
        if isinstance(row, dict) and "n" in row
    ]
    result.points = len(counts_n)
    result.n_min, result.n_max = (min(counts_n), max(counts_n)) if counts_n else (0, 0)
    (out / f"{spec.name}.html").write_text(chart_page(spec.title, vl_spec))
    (out / f"{spec.name}.png").write_bytes(vlc.vegalite_to_png(vl_spec, scale=png_scale))
    result.html, result.png = f"{spec.name}.html", f"{spec.name}.png"
    return result


# -- gallery ---------------------------------------------------------------------------------


def gallery_frame(sweep_path: str, frame: pl.DataFrame, limit: int = GALLERY_MAX) -> pl.DataFrame:
    """Representative trials with their PNGs: per model x init x activation x batch size, the
    trial whose PSNR is closest to the group's median."""
    rows = load.result_rows(frame).filter(pl.col("psnr_mean").is_not_null())
    if rows.is_empty():
        return rows.with_columns(
            pl.lit(None, pl.Binary).alias("reconstruction_png"),
            pl.lit(None, pl.Binary).alias("ground_truth_png"),
        )
    group = ["model", "init_method", "activation", "batch_size"]
    picked = (
        rows.with_columns(
            (pl.col("psnr_mean") - pl.col("psnr_mean").median().over(group)).abs().alias("_gap")
        )
        .sort([*group, "_gap", "trial_key"])
        .group_by(group, maintain_order=True)
        .first()
        .drop("_gap")
        .head(limit)
    )
    images = load.images(sweep_path, picked["trial_key"].to_list())
    return picked.join(images, on="trial_key", how="left")


def _data_uri(png: bytes | None) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode() if png else ""


def gallery_html(gallery: pl.DataFrame) -> str:
    if gallery.is_empty():
        return "<p class='note'>No ok/diverged trials with images yet.</p>"
    lines = [
        "<table class='gallery'><tr><th>trial</th><th>ground truth</th>"
        "<th>reconstruction</th><th>PSNR / SSIM / label acc.</th></tr>"
    ]
    for row in gallery.iter_rows(named=True):
        caption = (
            f"{row['model']}, {row['init_method']}, {row['activation']}, B={row['batch_size']}, "
            f"seed {row['seed']} <br><code>{row['trial_key']}</code>"
        )
        scores = " / ".join(
            "-" if row.get(k) is None else f"{row[k]:.{p}f}"
            for k, p in (("psnr_mean", 2), ("ssim_mean", 3), ("label_accuracy", 2))
        )
        lines.append(
            f"<tr><td>{caption}</td>"
            f"<td><img alt='ground truth' src='{_data_uri(row['ground_truth_png'])}'></td>"
            f"<td><img alt='reconstruction' src='{_data_uri(row['reconstruction_png'])}'></td>"
            f"<td>{scores} dB</td></tr>"
        )
    lines.append("</table>")
    return "\n".join(lines)


def gallery_png(gallery: pl.DataFrame, scale: int = 3) -> bytes:
    """One PNG: a row per trial, ground truth strip | reconstruction strip, captioned."""
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
        caption = (
            f"{row['model']} {row['init_method']} {row['activation']} B={row['batch_size']} "
            f"seed={row['seed']}  PSNR {row['psnr_mean']:.2f} dB"
        )
        rows.append((caption, strips))
    label_w, gap = 330, 8
    width = label_w + max(s[0].width + s[1].width for _, s in rows) + 3 * gap
    heights = [max(s[0].height, s[1].height) + gap for _, s in rows]
    sheet = Image.new("RGB", (width, sum(heights) + 24), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((gap, 4), "ground truth | reconstruction", fill="black")
    y = 24
    for (caption, (truth, recon)), h in zip(rows, heights):
        draw.text((gap, y + 4), caption, fill="black")
        sheet.paste(truth, (label_w, y))
        sheet.paste(recon, (label_w + truth.width + gap, y))
        y += h
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return buffer.getvalue()


# -- index -----------------------------------------------------------------------------------


def _page(title: str, body: str, script: str = "") -> str:
    head_script = f"<script>{javascript_bundle()}</script>" if script else ""
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_PAGE_STYLE}</style>{head_script}</head><body>"
        f"<h1>{html.escape(title)}</h1>{body}{script}</body></html>\n"
    )


def findings_html(items: list[findings.Finding]) -> str:
    rows = ["<table><tr><th>seed's claim</th><th>our numbers</th><th>verdict</th><th>n</th></tr>"]
    for f in items:
        css = "verdict-" + f.verdict.replace(" ", "-")
        rows.append(
            f"<tr><td>{html.escape(f.claim)}</td><td>{html.escape(f.evidence)}</td>"
            f"<td class='{css}'>{html.escape(f.verdict)}</td><td>{f.n}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def counts_html(report: Report) -> str:
    c = report.counts
    status = c["by_status"]
    parts = [
        f"<p>{c['rows']} trial rows: {status.get('ok', 0)} ok, {status.get('diverged', 0)} "
        f"diverged (kept: best iterate), <b>{status.get('error', 0)} error rows excluded</b> "
        "from charts and findings.</p>"
    ]
    if "expected" in c:
        done = c["expected"] - c["missing"]
        state = "complete" if not c["missing"] else "partial sweep"
        parts.append(f"<p>{done} of {c['expected']} trials of the spec have a row ({state}).</p>")
    if c["errors"]:
        items = "".join(
            f"<li>{e['count']} x <code>{html.escape(e['message'])}</code></li>" for e in c["errors"]
        )
        parts.append(f"<p>Errors, grouped:</p><ul>{items}</ul>")
    if c["skipped_files"]:
        parts.append(f"<p class='note'>{len(c['skipped_files'])} unreadable or temporary files "
                     "skipped (see counts.json).</p>")  # fmt: skip
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


def index_html(report: Report, gallery: pl.DataFrame) -> str:
    drawn = [c for c in report.charts if c.spec is not None]
    sections = [
        "<p class='note'>Every point: mean over the trials at that point with a 95% Student-t "
        "interval (seeds, and grid axes the chart does not show); hover for n. Click a legend "
        "entry to highlight a series.</p>",
        "<section><h2>Counts</h2>" + counts_html(report) + "</section>",
        "<section><h2>Findings: the seed's claims against our data</h2>"
        + findings_html(report.findings)
        + "</section>",
    ]
    for chart in report.charts:
        if chart.skipped:
            sections.append(
                f"<section id='{chart.name}'><h2>{html.escape(chart.title)}</h2>"
                f"<p class='note'>Skipped: {html.escape(chart.skipped)}.</p></section>"
            )
        else:
            sections.append(
                f"<section><h2>{html.escape(chart.title)}</h2>"
                f"<div id='{chart.name}' class='chart'></div></section>"
            )
    sections.append(
        "<section id='gallery'><h2>Gallery: ground truth beside reconstruction</h2>"
        "<p class='note'>Per model x init x activation x batch size, the trial closest to the "
        "median PSNR.</p>" + gallery_html(gallery) + "</section>"
    )
    specs = {c.name: c.spec for c in drawn}
    script = f"""<script>
const specs = {_script_json(specs)};
Promise.all(Object.entries(specs).map(([name, spec]) =>
  vegaEmbed("#" + name, spec, {{"renderer": "svg"}}).catch((err) => {{
    console.error("vega error in " + name + ": " + err); throw err; }})))
  .then(() => {{ document.body.dataset.rendered = String(Object.keys(specs).length); }})
  .catch((err) => {{ document.body.dataset.error = String(err); }});
</script>"""
    return _page(f"dlgsweep report: {report.sweep}", "\n".join(sections), script)
