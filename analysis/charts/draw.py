"""Drawing: one panel of `specs` as Altair layers, from the rows `derive` shaped.

A summary panel is, bottom to top: the individual trials (small hollow marks, or thin lines for
curves), the bars (95% t-interval where n >= 3, translucent bands on lines; the range of the two
trials, dashed, where n = 2), the means (hollow where n = 1) and their n. Every layer is
filtered by the page's dropdowns. A kernels panel draws one trial pair per facet, not averaged.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import altair as alt
import polars as pl

from analysis.charts import derive
from analysis.charts.derive import MIN_T_INTERVAL, ChartSkipped
from analysis.charts.panel import Panel

# explicit view names: altair cannot name the layers of facets inside a concat by itself
_VIEW_IDS = itertools.count()
TRIAL_OPACITY = 0.5
BAND_OPACITY = 0.2  # interval bands: the lines must show through
RANGE_DASH = [3, 2]  # the bar of a point resting on two trials: their range, not an interval

if alt.data_transformers.active == "default":
    # every trial is drawn under the means: a paper sweep's chart holds thousands of rows, past
    # the 5,000 that Altair's default transformer allows (only that limit is lifted)
    alt.data_transformers.disable_max_rows()


@dataclass
class Drawn:
    """A drawn panel before its title: the chart, its dropdowns, its subtitle lines."""

    chart: alt.TopLevelMixin
    params: dict[str, alt.Parameter] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    subtitle: list[str] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)  # the level each dropdown opens on
    color: str | None = None  # the field on color (panels sharing it share one legend)


def title_of(name: str) -> str:
    return name.replace("_", " ")


def param_name(axis: str) -> str:
    return "pick_" + re.sub(r"\W", "_", axis)


def _kind(rows: pl.DataFrame, column: str) -> str:
    return "O" if rows.schema[column].is_numeric() else "N"


def _named(chart: alt.Chart) -> alt.Chart:
    return chart.properties(name=f"v{next(_VIEW_IDS)}layer")


def _x_encoding(panel: Panel, rows: pl.DataFrame, summary: pl.DataFrame) -> alt.X:
    title = panel.x_title or title_of(panel.x)
    if panel.x_scale == "nominal":
        return alt.X(f"x:{_kind(rows, panel.x)}", title=title, sort="ascending")
    if panel.x_scale == "log2":
        values = sorted(v for v in summary["x"].unique().to_list() if v is not None)
        return alt.X(
            "x:Q", title=title, scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=values)
        )
    if panel.x_scale == "log":
        return alt.X("x:Q", title=title, scale=alt.Scale(type="log"))
    if panel.x_scale == "symlog":
        positive = summary.filter(pl.col("x") > 0)["x"]
        constant = float(positive.min()) if positive.len() else 1.0
        return alt.X("x:Q", title=title, scale=alt.Scale(type="symlog", constant=constant))
    return alt.X("x:Q", title=title)


def summary(panel: Panel, rows: pl.DataFrame, *, select: bool = True) -> Drawn:
    """The panel: means with their bars and n over the trials; `select`: clicking a legend
    entry highlights its series (one panel per chart only: selections would clash)."""
    encoded = panel.encoded()
    row = "sweep" if derive.several_sweeps(rows) else None
    if row:
        encoded.append(row)
    filters = derive.filter_axes(rows, [*encoded, *panel.covers])
    groups = [*encoded, *derive.covered(panel, rows, encoded), *filters]
    groups = [g for g in groups if g != "metric"] + (["metric"] if len(panel.metrics) > 1 else [])
    data = derive.points(panel, rows, groups, filters)
    data, trial_note = derive.sample_curves(panel, data, groups)
    defaults = derive.default_levels(rows, filters, panel.group_x)
    options = {axis: derive.levels(rows, axis) for axis in filters}
    params = {
        axis: alt.param(
            name=param_name(axis),
            value=defaults[axis],
            bind=alt.binding_select(options=options[axis], name=f"{title_of(axis)} "),
        )
        for axis in filters
    }
    chart: alt.TopLevelMixin = _layers(panel, rows, data, params, select)
    facets = {}
    if panel.column or len(panel.metrics) > 1:
        col = "metric" if len(panel.metrics) > 1 else panel.column
        assert col is not None
        facets["column"] = alt.Column(
            f"{col}:{_kind(data, col)}", title=None if col == "metric" else title_of(col)
        )
    if row:
        parts = any("/" in str(s) for s in rows["sweep"].unique().to_list())
        # rows of panels in Vega-Lite's own (alphabetical) order: a layered facet sorted by an
        # explicit list, or by a field, draws some rows' data under another row's header
        facets["row"] = alt.Row("sweep:N", title="sweep/variant" if parts else "sweep")
    if facets:
        chart = chart.facet(**facets)
        if len(panel.metrics) > 1:
            chart = chart.resolve_scale(y="independent")
    if panel.title:
        chart = chart.properties(title=panel.title)
    lines = [_reading(panel, data["n"].filter(data["kind"] == "mean"))]
    if panel.subtitle:
        lines.append(panel.subtitle)
    if panel.where:
        kept = "; ".join(f"{c} = {', '.join(map(str, v))}" for c, v in panel.where)
        lines.append("rows: " + kept)
    if trial_note:
        lines.append(trial_note)
    return Drawn(chart, params, options, lines, defaults, panel.color)


def _reading(panel: Panel, n: pl.Series) -> str:
    """How to read the panel's marks, for the n it holds."""
    what = "thin lines" if panel.trials == "line" else "small hollow marks"
    line = "mean"
    if (n >= MIN_T_INTERVAL).any():
        line += f" and 95% t-interval over seeds (n >= {MIN_T_INTERVAL})"
    line += f"; {what}: the individual trials; n = trials per point ({n.min()}-{n.max()})"
    if (n == 2).any():
        line += "; n = 2: the dashed bar is the range of the two trials, not an interval"
    if (n == 1).any():
        line += "; hollow mean: one trial, no interval"
    return line


def _layers(
    panel: Panel, rows: pl.DataFrame, data: pl.DataFrame, params: dict[str, alt.Parameter],
    select: bool,
) -> alt.LayerChart:  # fmt: skip
    """Trials, bars, means and n labels, every layer filtered by the page's dropdowns."""
    metric = panel.metrics[0]
    y_scale = alt.Scale(type="log") if metric.log else alt.Scale(zero=False)
    y_title = metric.title if len(panel.metrics) == 1 else None
    color_field = panel.color or None
    encode: dict[str, Any] = {"x": _x_encoding(panel, rows, data.filter(pl.col("kind") == "mean"))}
    if color_field:
        color_type = f"{color_field}:{_kind(data, color_field)}"
        encode["color"] = alt.Color(color_type, title=title_of(color_field), sort="ascending")
        if panel.mark == "dot" and color_field != panel.x:
            encode["xOffset"] = alt.XOffset(color_type, sort="ascending")
    if panel.dash:
        encode["strokeDash"] = alt.StrokeDash(f"{panel.dash}:N", title=title_of(panel.dash))
    pick = None
    if select and color_field:
        pick = alt.selection_point(
            name=f"pick{next(_VIEW_IDS)}legend", fields=[color_field], bind="legend"
        )
    filters = [alt.datum[axis] == param for axis, param in params.items()]

    def base(kind: str, *extra: str) -> alt.Chart:
        chart = alt.Chart().encode(**encode).transform_filter(alt.datum.kind == kind)
        for condition in (*filters, *extra):
            chart = chart.transform_filter(condition)
        return chart

    def fade(on: float, off: float) -> dict[str, Any]:
        return {"opacity": alt.condition(pick, alt.value(on), alt.value(off))} if pick else {}

    tooltip_fields = [
        c
        for c in data.columns
        if c in derive.AXES or c in ("sweep", "arch", "series", "attacker", "metric", "strength")
    ]
    tooltip = [
        *(
            alt.Tooltip(f"{f}:{'Q' if data.schema[f].is_numeric() else 'N'}")
            for f in dict.fromkeys(tooltip_fields)
        ),
        alt.Tooltip("y:Q", title="mean", format=".3g"),
        alt.Tooltip("bar:N", title="bar"),
        alt.Tooltip("ci_low:Q", title="bar low", format=".3g"),
        alt.Tooltip("ci_high:Q", title="bar high", format=".3g"),
        alt.Tooltip("n:Q", title="trials (n)"),
        *(
            alt.Tooltip(f"{c}:Q", title=f"mean {title_of(c)}", format=".3g")
            for c in panel.tooltip_means
            if c in data.columns
        ),
    ]
    trial_tip = [
        alt.Tooltip("trial_key:N"),
        alt.Tooltip("seed:Q"),
        alt.Tooltip("y:Q", title="value", format=".3g"),
    ]
    y = alt.Y("y:Q", title=y_title, scale=y_scale)
    if panel.trials == "line":
        trials = (
            base("trial")
            .mark_line(strokeWidth=0.6, opacity=TRIAL_OPACITY)
            .encode(y=y, detail="trial_key:N")
        )
    else:
        trials = (
            base("trial")
            .mark_point(size=24, opacity=TRIAL_OPACITY, strokeWidth=1)
            .encode(y=y, tooltip=trial_tip)
        )
    t_interval = f"datum.ci_low != null && datum.n >= {MIN_T_INTERVAL}"
    two = f"datum.ci_low != null && datum.n < {MIN_T_INTERVAL}"
    bar_y = {"y": alt.Y("ci_low:Q", title=y_title, scale=y_scale), "y2": "ci_high:Q"}
    if panel.mark == "line":
        interval = (
            base("mean", t_interval)
            .mark_area(opacity=BAND_OPACITY)
            .encode(
                **bar_y,
                **({"detail": alt.Detail(f"{panel.dash}:N")} if panel.dash else {}),
                **fade(BAND_OPACITY, 0.04),
            )
        )
        extra = [base("mean").mark_line(strokeWidth=2).encode(y="y:Q", **fade(1.0, 0.15))]
    else:
        interval = (
            base("mean", t_interval).mark_rule(strokeWidth=2).encode(**bar_y, **fade(1.0, 0.15))
        )
        extra = []
    ranges = (
        base("mean", two)
        .mark_rule(strokeWidth=1, strokeDash=RANGE_DASH)
        .encode(**bar_y, strokeDash=alt.value(RANGE_DASH), **fade(1.0, 0.15))
    )
    fill = (
        alt.condition(
            "datum.n >= 2",
            alt.Color(f"{color_field}:{_kind(data, color_field)}", sort="ascending", legend=None),
            alt.value("white"),
        )
        if color_field
        else alt.condition("datum.n >= 2", alt.value("#4c78a8"), alt.value("white"))
    )
    bar = (
        f"datum.n >= {MIN_T_INTERVAL} ? '95% t-interval' : datum.n == 2 ? "
        "'range of the 2 trials' : 'none (one trial)'"
    )
    means = (
        base("mean")
        .transform_calculate(bar=bar)
        .mark_point(size=60 if panel.mark == "dot" else 40, filled=False, strokeWidth=1.5)
        .encode(y="y:Q", fill=fill, tooltip=tooltip, **fade(1.0, 0.15))
    )
    if pick is not None:
        means = means.add_params(pick)
    labels = (
        base("mean", "datum.n_label != null")
        .mark_text(
            fontSize=8,
            baseline="top" if panel.mark == "dot" else "bottom",
            dy=4 if panel.mark == "dot" else -6,
        )
        .encode(
            y="label_y:Q" if panel.mark == "dot" else "y:Q", text="n_label:N", **fade(1.0, 0.15)
        )
    )
    layers = [trials, interval, ranges, *extra, means, labels]
    return alt.layer(*map(_named, layers), data=data)


def kernels(panel: Panel, rows: pl.DataFrame, *, select: bool = False) -> Drawn:
    """The per-kernel picture: one facet per trial pair (train, eval), a line per mode over the
    kernels of the first conv; kernel k is one filter of one trial, never an average."""
    if rows.is_empty():
        raise ChartSkipped(f"{panel.name}: no trial pair differing only in bn_mode")
    label = (
        rows.group_by("trial", "bn_mode")
        .agg(pl.col("kernel").max(), pl.col("kernel_norm").last())
        .with_columns(pl.lit("n=1 trial").alias("n_label"))
    )
    base = alt.Chart().encode(
        x=alt.X("kernel:Q", title=panel.x_title),
        color=alt.Color("bn_mode:N", title="bn mode"),
    )
    metric = panel.metrics[0]
    line = base.mark_line(point=alt.OverlayMarkDef(size=12)).encode(
        y=alt.Y("kernel_norm:Q", title=metric.title, scale=alt.Scale(type="log")),
        tooltip=[
            "trial:N",
            "trial_key:N",
            "bn_mode:N",
            "kernel:Q",
            alt.Tooltip("kernel_norm:Q", format=".3g"),
        ],
    )
    data = pl.concat(
        [
            rows.with_columns(pl.lit("kernel").alias("kind")),
            label.with_columns(pl.lit("label").alias("kind")),
        ],
        how="diagonal_relaxed",
    )
    text = (
        base.mark_text(align="right", dx=-2, dy=-6, fontSize=8)
        .encode(y="kernel_norm:Q", text="n_label:N")
        .transform_filter(alt.datum.kind == "label")
    )
    chart = (
        alt.layer(
            _named(line.transform_filter(alt.datum.kind == "kernel")), _named(text), data=data
        )
        .properties(width=260, height=160)
        .facet(facet=alt.Facet("trial:N", title="one trial pair (train, eval)"), columns=2)
    )
    if panel.title:
        chart = chart.properties(title=panel.title)
    return Drawn(chart, subtitle=[panel.subtitle] if panel.subtitle else [], color="bn_mode")


# the drawer of each panel kind (Panel.kind)
DRAWERS = {"summary": summary, "kernels": kernels}
