"""Layout: a chart spec's panels drawn, concatenated, their dropdowns merged, titled; and the
chart's Vega-Lite JSON made small for a page (`compact`, `pack`).
"""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import polars as pl

from analysis.charts import derive
from analysis.charts.derive import ChartSkipped
from analysis.charts.draw import DRAWERS, Drawn, param_name, title_of
from analysis.charts.specs import ChartSpec
from analysis.load import result_rows

PAGE_DIGITS = 5  # significant digits of the numbers a page carries (tooltips show 3)


def compose(spec: ChartSpec, frame: pl.DataFrame) -> alt.TopLevelMixin:
    """The chart `spec` of `frame`: every panel with data, laid out, one title."""
    frame = derive.with_parts(frame)
    if spec.rows is not None:
        rows = spec.rows(frame)
    else:
        rows = result_rows(frame) if "status" in frame.columns else frame
    if rows.is_empty() and spec.skip:
        raise ChartSkipped(f"{spec.name}: {spec.skip}")
    ready, absent, reasons = [], [], []
    for panel in spec.panels:
        try:
            ready.append((panel, derive.panel_rows(panel, rows)))
        except ChartSkipped as reason:
            if not panel.optional:
                raise
            reasons.append(str(reason))
            absent += [panel.absent] if panel.absent else []
    if not ready:
        raise ChartSkipped(f"{spec.name}: {spec.skip}" if spec.skip else reasons[0])
    select = len(ready) == 1  # a legend selection per panel would clash in a concat
    panels = [DRAWERS[panel.kind](panel, part, select=select) for panel, part in ready]
    how = spec.layout if len(panels) > 1 or ready[0][0].title else "single"
    chart = finish(panels, spec.heading, how)
    if absent:
        chart.title.subtitle = [*chart.title.subtitle, f"not varied: {' and '.join(absent)}"]
    return chart


def finish(panels: list[Drawn], title: str, how: str = "single") -> alt.TopLevelMixin:
    """Top-level chart: panels concatenated (`vconcat`/`hconcat`), dropdowns merged, titled."""
    options: dict[str, list[str]] = {}
    subtitle: list[str] = []
    defaults: dict[str, str] = {}
    for panel in panels:
        for axis in panel.params:
            options[axis] = list(dict.fromkeys([*options.get(axis, []), *panel.options[axis]]))
            defaults.setdefault(axis, panel.defaults[axis])
        subtitle += [line for line in panel.subtitle if line not in subtitle]
    if defaults:  # the PNG shows the page as it opens: name each dropdown and its level
        shown = ", ".join(f"{title_of(a)} = {v}" for a, v in defaults.items())
        subtitle.append(f"set in the page: {', '.join(map(title_of, defaults))} (shown: {shown})")
    merged = [
        alt.param(
            name=param_name(axis), value=value,
            bind=alt.binding_select(options=options[axis], name=f"{title_of(axis)} "),
        )
        for axis, value in defaults.items()
    ]  # fmt: skip
    if how == "single":
        chart = panels[0].chart
    else:
        concat = alt.hconcat if how == "hconcat" else alt.vconcat
        chart = concat(*(p.chart for p in panels))
        if len({p.color for p in panels}) > 1:  # different fields on color: a legend each
            chart = chart.resolve_scale(color="independent")
    # set in place: add_params/properties deep-copy the whole layered, faceted spec each time
    if merged:
        chart.params = [
            *([] if alt.utils.is_undefined(chart.params) else chart.params),
            *(p.param for p in merged),
        ]
    chart.title = alt.Title(title, subtitle=subtitle, anchor="start")
    return chart


# -- the spec on a page ------------------------------------------------------------------------


def compact(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with null fields left out of its datasets' rows (a missing field reads as null
    in every test these charts make): a third smaller pages for large sweeps."""
    datasets = spec.get("datasets", {})
    spec["datasets"] = {
        name: [{k: v for k, v in row.items() if v is not None} for row in rows]
        for name, rows in datasets.items()
    }
    return spec


def _round(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{PAGE_DIGITS}g}")
    return value


def pack(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as a page carries it: each dataset as columns, strings as indices into the
    column's levels, numbers to PAGE_DIGITS significant digits (`UNPACK_JS` rebuilds the rows,
    a missing field staying missing). A 960-trial convergence chart shrinks from 10 MB to about
    1; the PNG and the chart's own JSON keep every row as it is."""
    packed = {}
    for name, rows in spec.get("datasets", {}).items():
        fields = list(dict.fromkeys(k for row in rows for k in row))
        columns, levels = [], {}
        for field in fields:
            values = [row.get(field) for row in rows]
            if any(isinstance(v, str) for v in values):
                index: dict[Any, int] = {}
                codes = [None if v is None else index.setdefault(v, len(index)) for v in values]
                levels[field] = list(index)
                columns.append(codes)
            else:
                columns.append([_round(v) for v in values])
        packed[name] = {"fields": fields, "levels": levels, "columns": columns, "rows": len(rows)}
    return {**spec, "datasets": packed}


# Rebuilds the rows of `pack`'s datasets in the page, before vegaEmbed reads the spec.
UNPACK_JS = """function unpack(spec) {
  for (const [name, d] of Object.entries(spec.datasets || {})) {
    if (Array.isArray(d)) continue;
    const rows = Array.from({length: d.rows}, () => ({}));
    d.fields.forEach((field, i) => {
      const column = d.columns[i], levels = d.levels[field];
      for (let r = 0; r < d.rows; r++) {
        const v = column[r];
        if (v !== null) rows[r][field] = levels ? levels[v] : v;
      }
    });
    spec.datasets[name] = rows;
  }
  return spec;
}"""
