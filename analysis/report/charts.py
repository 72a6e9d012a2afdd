"""The report's chart files: each chart of `analysis.charts` and the defense frontier's,
written as <name>.html (offline, `pages.chart_page`) and <name>.png (vl-convert), with what
the report says of each (`ChartOutput`: points, trials per point, notes, or why skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import altair as alt
import polars as pl
import vl_convert as vlc

from analysis import charts, frontier
from analysis.report.model import ChartOutput
from analysis.report.pages import chart_page


def write_chart(
    spec: charts.ChartSpec, frame: pl.DataFrame, out: Path, png_scale: float
) -> ChartOutput:
    def build() -> alt.TopLevelMixin:
        if frame.is_empty():
            raise charts.ChartSkipped(f"{spec.name}: no rows")
        return charts.compose(spec, frame)

    return _render(ChartOutput(spec.name, spec.title), build, out, png_scale)


def write_frontier(found: list[frontier.Frontier], out: Path, png_scale: float) -> ChartOutput:
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
