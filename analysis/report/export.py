"""The report's output folder: `build_report` opens the sweeps once, builds the model
(`model.build`) and writes everything: the charts (`charts`), the pages (`pages`), and the
tables and images here: findings.csv, findings_strata.csv, attackers.csv, frontier.csv and
frontier_seeds.csv, counts.json, the gallery (its trials picked, gallery.png drawn) and the
explorer.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import polars as pl

from analysis import charts, explorer, findings, frontier
from analysis.report import model
from analysis.report.charts import write_chart, write_frontier
from analysis.report.model import Report
from analysis.report.pages import gallery_html, index_html, page, trial_caption
from store import load
from store.opened import OpenedSweep

GALLERY_MAX = 240  # trials in gallery.html; beyond this the page says which groups are left out
GALLERY_PNG_MAX = 48  # rows of gallery.png (gallery.html has them all)


def build_report(
    paths: str | list[str],
    out: str | Path,
    *,
    png_scale: float = 1.5,
    score: str = findings.VALUE,
) -> Report:
    """Open the sweep(s) at `paths` (each once), write the report into `out`, return what was
    written. `score`: the column the findings test (one of `findings.SCORES`)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = model.open_sweeps(paths)
    report = model.build(sweeps, out, score)
    write_tables(report)
    specs = charts.CHARTS.values()
    report.charts = [write_chart(spec, report.rows, out, png_scale) for spec in specs]
    if report.frontiers:
        report.charts.append(write_frontier(report.frontiers, out, png_scale))
    shown, gallery = write_gallery(report, sweeps)
    report.explorer_rows = explorer.write_explorer(
        [(s.path, s.frame) for s in sweeps], out, title="Explorer: " + report.sweep
    )
    write_counts(report)
    (out / "index.html").write_text(index_html(report, shown, gallery))
    return report


def write_tables(report: Report) -> None:
    """attackers.csv (where recipes were compared), frontier.csv and frontier_seeds.csv (where
    a sweep searched), findings.csv and findings_strata.csv."""
    out = report.out
    if report.compared is not None:
        report.compared.drop("evidence").write_csv(out / "attackers.csv")
    if report.frontiers:
        frontier_csv(report.frontiers, "table").write_csv(out / "frontier.csv")
        frontier_csv(report.frontiers, "thresholds").write_csv(out / "frontier_seeds.csv")
    findings_csv(report).write_csv(out / "findings.csv")
    strata_csv(report).write_csv(out / "findings_strata.csv")


def write_gallery(report: Report, sweeps: list[OpenedSweep]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """gallery.html and gallery.png; (the groups shown, every group)."""
    galleries = [gallery_frame(s.path, s.frame) for s in sweeps]
    gallery = pl.concat(galleries, how="diagonal_relaxed") if galleries else pl.DataFrame()
    report.gallery_groups = gallery.height
    shown = gallery.head(GALLERY_MAX)
    report.gallery_rows = shown.height
    report.out.joinpath("gallery.html").write_text(
        page("Gallery: " + report.sweep, gallery_html(shown, gallery))
    )
    if shown.height:
        report.out.joinpath("gallery.png").write_bytes(
            gallery_png(shown.head(GALLERY_PNG_MAX), groups=gallery.height)
        )
    return shown, gallery


def write_counts(report: Report) -> None:
    """counts.json: the sweep's counts (several: under `sweeps`), and each chart's."""
    chart_counts = {
        c.name: {"points": c.points, "n_min": c.n_min, "n_max": c.n_max, "skipped": c.skipped}
        for c in report.charts
    }
    written = dict(report.counts) if len(report.sweeps) == 1 else {"sweeps": report.counts}
    written["charts"] = chart_counts
    report.out.joinpath("counts.json").write_text(json.dumps(written, indent=2, default=str))


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


def findings_csv(report: Report) -> pl.DataFrame:
    """One row per (sweep, variant, recipe, claim); `variant` is null for sweeps without
    variants, `recipe` where the rows name no single recipe."""
    return _per_part(report, findings.findings_frame)


def strata_csv(report: Report) -> pl.DataFrame:
    """findings_strata.csv: one row per (sweep, variant, recipe, claim, stratum or level of an
    averaged axis), its estimate, interval and n (`findings.strata_frame`)."""
    return _per_part(report, findings.strata_frame)


def _per_part(
    report: Report, frame_of: Callable[[list[findings.Finding]], pl.DataFrame]
) -> pl.DataFrame:
    """`frame_of` each part's findings (the seed's claims, then the frontier's, keys
    frontier_*), led by the part's sweep, variant and recipe."""
    named = [(p.sweep, p.variant, p.recipe, p.findings) for p in report.parts]
    named += [
        (f.sweep, part.variant, part.recipe, part.findings)
        for f in report.frontiers
        for part in f.parts
    ]
    parts = [
        frame_of(items)
        .insert_column(0, pl.lit(recipe, dtype=pl.String).alias("recipe"))
        .insert_column(0, pl.lit(variant, dtype=pl.String).alias("variant"))
        .insert_column(0, pl.lit(sweep).alias("sweep"))
        for sweep, variant, recipe, items in named
        if items
    ]
    return pl.concat(parts) if parts else pl.DataFrame()


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
        caption = f"{trial_caption(row, axes)}  PSNR {row['psnr_mean']:.2f} dB"
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
