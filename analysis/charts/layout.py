"""Layout: a chart spec's panels drawn, concatenated, their dropdowns merged, titled; and the
chart's Vega-Lite JSON made small for a page (`compact`, `pack`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import altair as alt
import polars as pl

from analysis.charts import derive
from analysis.charts.derive import ChartSkipped
from analysis.charts.draw import DRAWERS, Drawn, param_name, title_of
from analysis.charts.panel import ChartSpec
from store.load import result_rows

PAGE_DIGITS = 4  # significant digits of the numbers a page carries (tooltips show 3)


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


def _runs(present: list[int]) -> list[int]:
    """Row indices as runs: [start, length, start, length, ...]."""
    runs: list[int] = []
    for i in present:
        if runs and runs[-2] + runs[-1] == i:
            runs[-1] += 1
        else:
            runs += [i, 1]
    return runs


def pack(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as a page carries it: each dataset as columns holding only the rows where the
    field is present (as runs of row indices), strings as indices into the column's levels,
    numbers to PAGE_DIGITS significant digits, a column equal to an earlier one as a reference
    to it. `UNPACK_JS` (and `unpack`) rebuild the rows, a missing field staying missing. The
    PNG and the chart's own JSON keep every row as it is."""
    packed = {}
    for name, rows in spec.get("datasets", {}).items():
        columns, seen = [], {}
        for field in dict.fromkeys(k for row in rows for k in row):
            present = [i for i, row in enumerate(rows) if row.get(field) is not None]
            values = [_round(rows[i][field]) for i in present]
            column: dict[str, Any] = {"field": field}
            if len(present) < len(rows):
                column["runs"] = _runs(present)
            signature = json.dumps([column.get("runs"), values], default=str)
            if signature in seen:
                columns.append({"field": field, "same": seen[signature]})
                continue
            seen[signature] = field
            if any(isinstance(v, str) for v in values):
                index: dict[Any, int] = {}
                column["values"] = [index.setdefault(v, len(index)) for v in values]
                column["levels"] = list(index)
            else:
                column["values"] = values
            columns.append(column)
        packed[name] = {"rows": len(rows), "columns": columns}
    return {**spec, "datasets": packed}


def unpack(spec: dict[str, Any]) -> dict[str, Any]:
    """`pack` undone (what `UNPACK_JS` does in the page)."""
    datasets = {}
    for name, packed in spec.get("datasets", {}).items():
        if isinstance(packed, list):
            datasets[name] = packed
            continue
        rows: list[dict[str, Any]] = [{} for _ in range(packed["rows"])]
        by_field: dict[str, dict[str, Any]] = {}
        for column in packed["columns"]:
            source = by_field[column["same"]] if "same" in column else column
            by_field[column["field"]] = source
            runs = source.get("runs", [0, packed["rows"]])
            at = (i for s, n in zip(runs[::2], runs[1::2]) for i in range(s, s + n))
            levels = source.get("levels")
            for i, value in zip(at, source["values"]):
                rows[i][column["field"]] = levels[value] if levels else value
        datasets[name] = rows
    return {**spec, "datasets": datasets}


# `unpack` in the page: rebuilds the rows of `pack`'s datasets before vegaEmbed reads the spec.
UNPACK_JS = """function unpack(spec) {
  for (const [name, d] of Object.entries(spec.datasets || {})) {
    if (Array.isArray(d)) continue;
    const rows = Array.from({length: d.rows}, () => ({}));
    const byField = {};
    for (const column of d.columns) {
      const source = column.same ? byField[column.same] : column;
      byField[column.field] = source;
      const runs = source.runs || [0, d.rows];
      let k = 0;
      for (let r = 0; r < runs.length; r += 2) {
        for (let i = runs[r]; i < runs[r] + runs[r + 1]; i++, k++) {
          const v = source.values[k];
          rows[i][column.field] = source.levels ? source.levels[v] : v;
        }
      }
    }
    spec.datasets[name] = rows;
  }
  return spec;
}"""
