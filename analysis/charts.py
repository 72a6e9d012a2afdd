"""The study's charts: each a function of a trials frame returning an Altair chart.

What differs between the charts is data: `VIEWS` is a table of chart specs (x, color, dash,
facet, metric, the rows kept, the axes that must vary) and one function, `draw`, draws them
all the same way:

- each point is the mean over the trials at that point with its 95% Student-t interval (over
  seeds; bounded metrics such as label accuracy are clipped to their range), and the
  individual trials are drawn under it (small hollow marks; thin lines for curves);
- `n`, the trials behind a point, is printed beside it ("n=6"; a point resting on one trial is
  drawn hollow and has no interval), so a static PNG shows it too;
- nothing is pooled silently: every config axis that varies within the points of the chart
  but is not encoded becomes a dropdown in the page (an Altair parameter bound to a select,
  works offline), and the subtitle names it with the level the PNG shows; axes that are
  functions of the encoded ones (say `iterations` fixed per model) are not filters; several
  sweeps in one frame are facet rows, one per sweep;
- only rows with status `ok` or `diverged` are plotted (`error` rows are counted by the report).

A chart whose axis does not vary in the frame raises `ChartSkipped` with the reason, so a report
of a partial or narrow sweep still builds. Figures of the seed study (Li 2024, "Attacking
gradients"): PSNR by init x activation x prune, McMahan CNN vs ResNet by init, PSNR vs batch
size, label strategy, BN train vs eval and the BN gradient figure; then convergence curves,
defense-strength curves, PSNR vs init scale and the pruning-aware attacker (issue 11).

    >>> chart = charts.build("psnr_vs_batch", load.trials("results/demo"))
    >>> chart.save("psnr_vs_batch.html")
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import altair as alt
import polars as pl

from analysis.load import result_rows
from analysis.stats import summarize
from orchestrator.schema import CONFIG_COLUMNS

# explicit view names: altair cannot name the layers of facets inside a concat by itself
_VIEW_IDS = itertools.count()
TRIAL_OPACITY = 0.5
BAND_OPACITY = 0.2  # interval bands: the lines must show through
MAX_TRIAL_CURVE_ROWS = 8_000  # per view: beyond this, curves of the first seeds only (said so)
# Axes that may be pooled: every config field but the seed (the interval is over seeds), and
# the sweep when several sweeps share a frame.
AXES = [name for name, _ in CONFIG_COLUMNS if name != "seed"]
# levels a filter's first view prefers when two combinations hold as many trials
PREFERRED = {"none", "eval", "idlg", "false", "0.0", "1.0", "unaware"}


if alt.data_transformers.active == "default":
    # every trial is drawn under the means: a paper sweep's chart holds thousands of rows, past
    # the 5,000 that Altair's default transformer allows (only that limit is lifted)
    alt.data_transformers.disable_max_rows()


class ChartSkipped(Exception):
    """The frame holds no data for this chart (the axis it studies does not vary)."""


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    log: bool = False  # geometric mean, interval on log10 values, log y axis
    bounds: tuple[float | None, float | None] | None = None  # the interval is clipped to it


# PSNR of a reconstruction clamped to [0, 1] against an image in [0, 1] is >= 0 (MSE <= 1)
PSNR = Metric("psnr_mean", "PSNR (dB)", bounds=(0.0, None))
LABEL_ACCURACY = Metric("label_accuracy", "label accuracy", bounds=(0.0, 1.0))
ZERO_SHARE = Metric("grad_zero_fraction", "share of exactly-zero gradient entries", bounds=(0, 1))
GRAD_LOSS = Metric("grad_loss", "gradient loss", log=True)
CURVE_PSNR = Metric("psnr", "PSNR (dB)", bounds=(0.0, None))


@dataclass(frozen=True)
class View:
    """One chart panel as data: what is on x, color, dash and facet, and which rows count."""

    name: str
    title: str
    x: str
    x_scale: str = "nominal"  # nominal | log2 | log | linear | symlog
    x_title: str | None = None
    x_group: str | None = None  # group the points by this; x is then the group's mean of `x`
    color: str | None = None
    dash: str | None = None
    column: str | None = None
    metrics: tuple[Metric, ...] = (PSNR,)
    mark: str = "dot"  # dot: points + interval rules, series side by side | line
    trials: str = "point"  # how individual trials are drawn: point | line (curves)
    needs: tuple[str, ...] = ()  # axes that must vary, else ChartSkipped
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # rows kept: (column, levels)
    derive: Callable[[pl.DataFrame], pl.DataFrame] | None = None  # derived columns
    covers: tuple[str, ...] = ()  # config fields the derived encodings stand for
    tooltip_means: tuple[str, ...] = ()  # other columns averaged per point, in the tooltip
    subtitle: str = ""  # what the rows are, when `derive` or `where` shapes them

    @property
    def group_x(self) -> str:
        return self.x_group or self.x

    def encoded(self) -> list[str]:
        named = [self.group_x, self.color, self.dash, self.column]
        if len(self.metrics) > 1:
            named.append("metric")
        return [n for n in dict.fromkeys(named) if n]


@dataclass
class Drawn:
    """A drawn panel before its title: the chart, its dropdowns, its subtitle lines, and its
    rows as named datasets (set on the top-level chart once: altair deep-copies inline data at
    every composition step)."""

    chart: alt.TopLevelMixin
    params: dict[str, alt.Parameter] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)
    subtitle: list[str] = field(default_factory=list)
    datasets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)  # the level each dropdown opens on
    color: str | None = None  # the field on color (panels sharing it share one legend)


def named_data(frame: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, list[dict[str, Any]]]]:
    """The frame itself: altair keeps a frame by reference and writes it once, as a named
    dataset at the top level, without validating its rows."""
    return frame, {}


# -- derived columns ------------------------------------------------------------------------


def with_arch(rows: pl.DataFrame) -> pl.DataFrame:
    """`arch`: the model, with +bn when the McMahan CNN carries BatchNorm."""
    return rows.with_columns(
        pl.when(pl.col("norm") == "batch")
        .then(pl.col("model") + pl.lit("+bn"))
        .otherwise(pl.col("model"))
        .alias("arch")
    )


def with_series(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(
        (pl.col("activation") + pl.lit(", prune ") + pl.col("prune")).alias("series")
    )


def with_strength(rows: pl.DataFrame) -> pl.DataFrame:
    """Defense strength: the pruned share (0 without pruning), the noise scale (0 without
    noise), and the attacker: aware of pruning (matches only the non-zero entries) or not."""
    attacker = (
        pl.when(pl.col("mask_pruned").is_null())
        .then(pl.lit("unknown"))
        .when(pl.col("mask_pruned"))
        .then(pl.lit("aware (masks pruned)"))
        .otherwise(pl.lit("unaware"))
        if "mask_pruned" in rows.columns
        else pl.lit("unknown")
    )
    return rows.with_columns(
        pl.when(pl.col("prune") == "none").then(0.0).otherwise(pl.col("prune_ratio"))
        .alias("prune_strength"),
        pl.when(pl.col("noise") == "none").then(0.0).otherwise(pl.col("noise_scale"))
        .alias("noise_strength"),
        attacker.alias("attacker"),
    )  # fmt: skip


def prune_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows without noise, `strength` = the pruned share of each layer's gradient."""
    rows = with_strength(rows).filter(pl.col("noise_strength") == 0)
    return rows.with_columns(pl.col("prune_strength").alias("strength"))


def aware_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """`prune_rows`, with the unpruned rows serving both attackers (the mask is a no-op there)."""
    rows = prune_rows(rows)
    base = rows.filter(pl.col("strength") == 0)
    kinds = [k for k in rows["attacker"].unique().to_list() if k != "unknown"]
    have = set(base["attacker"].unique().to_list())
    missing = [k for k in kinds if k not in have]
    if base.is_empty() or not missing:  # each attacker has its own unpruned rows: keep them
        return rows
    copies = [base.with_columns(pl.lit(k).alias("attacker")) for k in missing]
    return pl.concat([rows, *copies], how="vertical_relaxed")


def noise_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows without pruning, `strength` = noise scale; noise-free rows are each curve's 0."""
    rows = with_strength(rows).filter(pl.col("prune_strength") == 0)
    kinds = sorted(k for k in rows["noise"].drop_nulls().unique().to_list() if k != "none")
    clean = rows.filter(pl.col("noise") == "none")
    parts = [rows.filter(pl.col("noise") != "none")]
    parts += [clean.with_columns(pl.lit(k).alias("noise")) for k in kinds]
    return pl.concat(parts, how="vertical_relaxed").with_columns(
        pl.col("noise_strength").alias("strength")
    )


def curve_points(frame: pl.DataFrame) -> pl.DataFrame:
    """The convergence curves, one row per (trial, sampled iteration), every config column."""
    rows = result_rows(frame)
    columns = ["curve_iteration", "curve_grad_loss", "curve_psnr"]
    if not set(columns) <= set(rows.columns):
        return rows.clear()
    length = pl.col("curve_iteration").list.len()
    rows = rows.filter(
        (length > 0)
        & (pl.col("curve_grad_loss").list.len() == length)
        & (pl.col("curve_psnr").list.len() == length)
    )
    keep = [c for c in rows.columns if c in AXES or c in ("sweep", "trial_key", "seed")]
    return (
        rows.select(*keep, *columns)
        .explode(columns)
        .rename(
            {"curve_iteration": "iteration", "curve_grad_loss": "grad_loss", "curve_psnr": "psnr"}
        )
        .with_columns(
            (pl.col("init_method") + pl.lit(" / ") + pl.col("activation")).alias("series")
        )
    )


# -- drawing ----------------------------------------------------------------------------------


def _title(name: str) -> str:
    return name.replace("_", " ")


def _param_name(axis: str) -> str:
    return "pick_" + re.sub(r"\W", "_", axis)


def filter_axes(rows: pl.DataFrame, encoded: list[str]) -> list[str]:
    """Axes that vary within the chart's points: each becomes a dropdown.

    Greedy in schema order: an axis that is constant within every group of the axes encoded or
    chosen so far is a function of them (no pooling happens) and needs no filter.
    """
    group = [c for c in dict.fromkeys(encoded) if c in rows.columns]
    chosen = []
    for axis in ["sweep", *AXES]:
        if axis in group or axis not in rows.columns or rows[axis].n_unique() < 2:
            continue
        if group:
            spread = rows.group_by(group).agg(pl.col(axis).n_unique().alias("_k"))["_k"].max()
            if not spread or spread < 2:
                continue
        chosen.append(axis)
        group.append(axis)
    return chosen


def _as_level(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Utf8).fill_null("unknown").alias(column)


def _levels(rows: pl.DataFrame, axis: str) -> list[str]:
    values = rows[axis].unique().to_list()
    numeric = rows.schema[axis].is_numeric() or rows.schema[axis] == pl.Boolean
    known = sorted((v for v in values if v is not None), key=lambda v: v if numeric else str(v))
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in known] + (
        ["unknown"] if None in values else []
    )


def _default_levels(rows: pl.DataFrame, axes: list[str], x: str) -> dict[str, str]:
    """The filter combination the page (and the PNG) opens on: the one covering the most x
    levels, then holding the most trials, then the protocol's usual levels (prune none, ...)."""
    if not axes:
        return {}
    counts = (
        rows.with_columns(_as_level(a) for a in axes)
        .group_by(axes)
        .agg(pl.len().alias("len"), pl.col(x).n_unique().alias("_xs"))
        .with_columns(
            pl.sum_horizontal(
                pl.col(a).str.to_lowercase().is_in(list(PREFERRED)) for a in axes
            ).alias("_pref")
        )
        .sort(["_xs", "len", "_pref", *axes], descending=[True, True, True, *([False] * len(axes))])
    )
    top = counts.row(0, named=True)
    return {a: top[a] for a in axes}


def _x_encoding(view: View, rows: pl.DataFrame, summary: pl.DataFrame) -> alt.X:
    title = view.x_title or _title(view.x)
    if view.x_scale == "nominal":
        kind = "O" if rows.schema[view.x].is_numeric() else "N"
        return alt.X(f"x:{kind}", title=title, sort="ascending")
    if view.x_scale == "log2":
        values = sorted(v for v in summary["x"].unique().to_list() if v is not None)
        return alt.X(
            "x:Q", title=title, scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=values)
        )
    if view.x_scale == "log":
        return alt.X("x:Q", title=title, scale=alt.Scale(type="log"))
    if view.x_scale == "symlog":
        positive = summary.filter(pl.col("x") > 0)["x"]
        constant = float(positive.min()) if positive.len() else 1.0
        return alt.X("x:Q", title=title, scale=alt.Scale(type="symlog", constant=constant))
    return alt.X("x:Q", title=title)


def _kind(rows: pl.DataFrame, column: str) -> str:
    return "O" if rows.schema[column].is_numeric() else "N"


def _data(view: View, rows: pl.DataFrame, groups: list[str], filters: list[str]) -> pl.DataFrame:
    """Means (kind=mean) and trials (kind=trial) in one long frame: a facet needs one dataset."""
    parts = []
    for metric in view.metrics:
        value = metric.column
        part = rows.filter(pl.col(value).is_not_null() & pl.col(value).cast(pl.Float64).is_finite())
        if metric.log:
            part = part.filter(pl.col(value) > 0)
        if part.is_empty():
            continue
        by = [g for g in groups if g != "metric"]
        means = summarize(part, by, value, log=metric.log, bounds=metric.bounds).drop("sd")
        extra = [c for c in view.tooltip_means if c in part.columns]
        if view.x_group:
            extra = [view.x, *[c for c in extra if c != view.x]]
        if extra:
            means = means.join(
                part.group_by(by).agg(pl.col(c).cast(pl.Float64).mean() for c in extra),
                on=by, how="left", nulls_equal=True,
            )  # fmt: skip
        x_source = view.x if view.x_group else view.group_x
        means = means.with_columns(
            pl.lit("mean").alias("kind"),
            pl.col(x_source).alias("x"),
            pl.col("mean").alias("y"),
            pl.lit(metric.title).alias("metric"),
            ("n=" + pl.col("n").cast(pl.Utf8)).alias("n_label"),
            pl.coalesce("ci_low", "mean").alias("label_y"),
        )
        keep = [c for c in ("trial_key", "seed") if c in part.columns]
        trial_cols = list(dict.fromkeys([*by, *keep, *extra, view.x]))
        trials = part.select(*trial_cols, pl.col(value).cast(pl.Float64).alias("y")).with_columns(
            pl.lit("trial").alias("kind"),
            pl.col(view.x).alias("x"),
            pl.lit(metric.title).alias("metric"),
        )
        parts += [means, trials]
    if not parts:
        raise ChartSkipped(f"{view.name}: no trials with {view.metrics[0].column}")
    data = pl.concat(parts, how="diagonal_relaxed")
    if view.x_scale in ("log", "log2"):
        data = data.filter(pl.col("x") > 0)
    data = data.with_columns(_as_level(f) for f in filters)
    for column in (view.color, view.dash, view.column):
        if column and data.schema[column] == pl.Utf8:
            data = data.with_columns(pl.col(column).fill_null("unknown"))
    if view.mark == "line":
        data = _line_labels(data, [g for g in groups if g != view.group_x and g not in view.covers])
    return data


def _line_labels(data: pl.DataFrame, series: list[str]) -> pl.DataFrame:
    """On lines, n is printed at a series' last point, or at every point where it varies."""
    means = data.filter(pl.col("kind") == "mean")
    over = series or ["kind"]
    varies = means.group_by(over).agg(
        pl.col("n").n_unique().alias("_k"), pl.col("x").max().alias("_last")
    )
    data = data.join(varies, on=over, how="left", nulls_equal=True)
    show = (pl.col("kind") == "mean") & ((pl.col("_k") > 1) | (pl.col("x") == pl.col("_last")))
    return data.with_columns(
        pl.when(show).then(pl.col("n_label")).otherwise(None).alias("n_label")
    ).drop("_k", "_last")


def draw(view: View, frame: pl.DataFrame, *, select: bool = True) -> Drawn:
    """The panel `view` of `frame`; `select`: clicking a legend entry highlights its series."""
    rows = result_rows(frame) if "status" in frame.columns else frame
    if view.derive is not None:
        rows = view.derive(rows)
    for column, levels in view.where:
        rows = rows.filter(pl.col(column).is_in(list(levels)))
    main = view.metrics[0].column
    if main in rows.columns:
        rows = rows.filter(pl.col(main).is_not_null())
    if rows.is_empty():
        raise ChartSkipped(f"{view.name}: no ok/diverged trials with {main}")
    for axis in view.needs:
        if axis not in rows.columns or rows[axis].n_unique() < 2:
            values = ", ".join(map(str, rows[axis].unique().to_list())) if axis in rows else "-"
            raise ChartSkipped(f"{view.name}: {axis} does not vary in this sweep (only {values})")
    encoded = view.encoded()
    row = "sweep" if "sweep" in rows.columns and rows["sweep"].n_unique() > 1 else None
    if row:
        encoded.append(row)
    filters = filter_axes(rows, [*encoded, *view.covers])
    # the fields a derived encoding stands for ride along where they are constant within its
    # groups (series = activation, prune), never splitting a point (strength 0 = prune none
    # or prune_ratio 0)
    covered = [
        c for c in view.covers
        if c in rows.columns and c not in encoded
        and rows.group_by(encoded).agg(pl.col(c).n_unique().alias("_k"))["_k"].max() == 1
    ]  # fmt: skip
    groups = [*encoded, *covered, *filters]
    data = _data(
        view,
        rows,
        [g for g in groups if g != "metric"] + (["metric"] if len(view.metrics) > 1 else []),
        filters,
    )
    data, trial_note = _cap_trials(view, data)
    defaults = _default_levels(rows, filters, view.group_x)
    params = {
        axis: alt.param(
            name=_param_name(axis),
            value=defaults[axis],
            bind=alt.binding_select(options=_levels(rows, axis), name=f"{_title(axis)} "),
        )
        for axis in filters
    }
    options = {axis: _levels(rows, axis) for axis in filters}
    reference, datasets = named_data(data)
    layer = _layers(view, rows, data, params, select, reference)
    chart: alt.TopLevelMixin = layer
    facets = {}
    if view.column or len(view.metrics) > 1:
        col = "metric" if len(view.metrics) > 1 else view.column
        facets["column"] = alt.Column(
            f"{col}:{_kind(data, col)}", title=None if col == "metric" else _title(col)
        )
    if row:
        facets["row"] = alt.Row("sweep:N", title="sweep")
    if facets:
        chart = layer.facet(**facets)
        if len(view.metrics) > 1:
            chart = chart.resolve_scale(y="independent")
    n = data.filter(pl.col("kind") == "mean")["n"]
    lines = [
        "mean and 95% t-interval over seeds; small hollow marks: the individual trials; "
        f"n = trials per point ({n.min()}-{n.max()}); hollow mean: one trial, no interval"
    ]
    if view.subtitle:
        lines.append(view.subtitle)
    if view.where:
        lines.append("rows: " + "; ".join(f"{c} = {', '.join(map(str, v))}" for c, v in view.where))
    if trial_note:
        lines.append(trial_note)
    return Drawn(chart, params, options, lines, datasets, defaults, view.color)


def _cap_trials(view: View, data: pl.DataFrame) -> tuple[pl.DataFrame, str]:
    trials = data.filter(pl.col("kind") == "trial")
    if view.trials != "line" or trials.height <= MAX_TRIAL_CURVE_ROWS or "seed" not in data:
        return data, ""
    seeds = sorted(trials["seed"].unique().to_list())
    per_seed = trials.height / max(len(seeds), 1)
    keep = seeds[: max(1, int(MAX_TRIAL_CURVE_ROWS // per_seed))]
    data = data.filter((pl.col("kind") == "mean") | pl.col("seed").is_in(keep))
    return data, f"thin lines: the trials of seeds {keep[0]}-{keep[-1]} only (of {len(seeds)})"


def _layers(
    view: View, rows: pl.DataFrame, data: pl.DataFrame, params: dict[str, alt.Parameter],
    select: bool, reference: alt.Data,
) -> alt.LayerChart:  # fmt: skip
    """Trials, intervals, means and n labels, every layer filtered by the page's dropdowns."""
    metric = view.metrics[0]
    y_scale = alt.Scale(type="log") if metric.log else alt.Scale(zero=False)
    y_title = metric.title if len(view.metrics) == 1 else None
    color_field = view.color or None
    encode: dict[str, Any] = {"x": _x_encoding(view, rows, data.filter(pl.col("kind") == "mean"))}
    if color_field:
        encode["color"] = alt.Color(
            f"{color_field}:{_kind(data, color_field)}", title=_title(color_field), sort="ascending"
        )
        if view.mark == "dot" and color_field != view.x:
            encode["xOffset"] = alt.XOffset(
                f"{color_field}:{_kind(data, color_field)}", sort="ascending"
            )
    if view.dash:
        encode["strokeDash"] = alt.StrokeDash(f"{view.dash}:N", title=_title(view.dash))
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

    def named(chart: alt.Chart) -> alt.Chart:
        return chart.properties(name=f"v{next(_VIEW_IDS)}layer")

    def fade(on: float, off: float) -> dict[str, Any]:
        return {"opacity": alt.condition(pick, alt.value(on), alt.value(off))} if pick else {}

    tooltip_fields = [
        c
        for c in data.columns
        if c in AXES or c in ("sweep", "arch", "series", "attacker", "metric", "strength")
    ]
    tooltip = [
        *(
            alt.Tooltip(f"{f}:{'Q' if data.schema[f].is_numeric() else 'N'}")
            for f in dict.fromkeys(tooltip_fields)
        ),
        alt.Tooltip("y:Q", title="mean", format=".3g"),
        alt.Tooltip("ci_low:Q", title="95% CI low", format=".3g"),
        alt.Tooltip("ci_high:Q", title="95% CI high", format=".3g"),
        alt.Tooltip("n:Q", title="trials (n)"),
        *(
            alt.Tooltip(f"{c}:Q", title=f"mean {_title(c)}", format=".3g")
            for c in view.tooltip_means
            if c in data.columns
        ),
    ]
    trial_tip = [
        alt.Tooltip("trial_key:N"),
        alt.Tooltip("seed:Q"),
        alt.Tooltip("y:Q", title="value", format=".3g"),
    ]
    if view.trials == "line":
        trials = (
            base("trial")
            .mark_line(strokeWidth=0.6, opacity=TRIAL_OPACITY)
            .encode(y=alt.Y("y:Q", title=y_title, scale=y_scale), detail="trial_key:N")
        )
    else:
        trials = (
            base("trial")
            .mark_point(size=24, opacity=TRIAL_OPACITY, strokeWidth=1)
            .encode(y=alt.Y("y:Q", title=y_title, scale=y_scale), tooltip=trial_tip)
        )
    has_ci = "datum.ci_low != null"
    if view.mark == "line":
        interval = (
            base("mean", has_ci)
            .mark_area(opacity=BAND_OPACITY)
            .encode(
                y=alt.Y("ci_low:Q", title=y_title, scale=y_scale),
                y2="ci_high:Q",
                **({"detail": alt.Detail(f"{view.dash}:N")} if view.dash else {}),
                **fade(BAND_OPACITY, 0.04),
            )
        )
        line = base("mean").mark_line(strokeWidth=2).encode(y="y:Q", **fade(1.0, 0.15))
        extra_layers = [named(line)]
    else:
        interval = (
            base("mean", has_ci)
            .mark_rule(strokeWidth=2)
            .encode(
                y=alt.Y("ci_low:Q", title=y_title, scale=y_scale), y2="ci_high:Q", **fade(1.0, 0.15)
            )
        )
        extra_layers = []
    fill = (
        alt.condition(
            "datum.n >= 2",
            alt.Color(f"{color_field}:{_kind(data, color_field)}", sort="ascending", legend=None),
            alt.value("white"),
        )
        if color_field
        else alt.condition("datum.n >= 2", alt.value("#4c78a8"), alt.value("white"))
    )
    points = (
        base("mean")
        .mark_point(size=60 if view.mark == "dot" else 40, filled=False, strokeWidth=1.5)
        .encode(y="y:Q", fill=fill, tooltip=tooltip, **fade(1.0, 0.15))
    )
    if pick is not None:
        points = points.add_params(pick)
    labels = (
        base("mean", "datum.n_label != null")
        .mark_text(
            fontSize=8,
            baseline="top" if view.mark == "dot" else "bottom",
            dy=4 if view.mark == "dot" else -6,
        )
        .encode(y="label_y:Q" if view.mark == "dot" else "y:Q", text="n_label:N", **fade(1.0, 0.15))
    )
    return alt.layer(
        named(trials),
        named(interval),
        *extra_layers,
        named(points),
        named(labels),
        data=reference,
    )


def finish(panels: list[Drawn], title: str, how: str = "single") -> alt.TopLevelMixin:
    """Top-level chart: panels concatenated (`vconcat`/`hconcat`), dropdowns merged, titled."""
    options: dict[str, list[str]] = {}
    subtitle: list[str] = []
    datasets: dict[str, list[dict[str, Any]]] = {}
    defaults: dict[str, str] = {}
    for panel in panels:
        datasets.update(panel.datasets)
        for axis in panel.params:
            options[axis] = list(dict.fromkeys([*options.get(axis, []), *panel.options[axis]]))
            defaults.setdefault(axis, panel.defaults[axis])
        subtitle += [line for line in panel.subtitle if line not in subtitle]
    if defaults:  # the PNG shows the page as it opens: name each dropdown and its level
        shown = ", ".join(f"{_title(a)} = {v}" for a, v in defaults.items())
        subtitle.append(f"set in the page: {', '.join(map(_title, defaults))} (shown: {shown})")
    merged = [
        alt.param(
            name=_param_name(axis), value=value,
            bind=alt.binding_select(options=options[axis], name=f"{_title(axis)} "),
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


# -- the charts, as data ----------------------------------------------------------------------

VIEWS: dict[str, View] = {
    view.name: view
    for view in (
        View("psnr_by_init", "PSNR by init method, activation and pruning", "init_method",
             x_title="init method", color="series", column="model", needs=("init_method",),
             derive=with_series, covers=("activation", "prune")),
        View("model_by_init", "McMahan CNN vs ResNet-18 by init method", "init_method",
             x_title="init method", color="model", column="activation", needs=("model",)),
        View("psnr_vs_batch", "PSNR vs batch size", "batch_size", x_scale="log2",
             x_title="batch size", color="init_method", dash="activation", column="model",
             mark="line", needs=("batch_size",)),
        View("label_strategy", "Reconstruction by label strategy", "label_strategy",
             x_title="label strategy", color="batch_size",
             metrics=(PSNR, LABEL_ACCURACY), needs=("label_strategy",)),
        View("bn_mode", "BatchNorm: train vs eval mode", "activation", color="bn_mode",
             column="arch", needs=("bn_mode",), derive=with_arch, covers=("model", "norm")),
        View("init_scale", "PSNR vs init scale, per init family and activation", "init_scale",
             x_scale="log", x_title="init scale (weights x this after the init method)",
             color="init_method", column="activation", mark="line", needs=("init_scale",),
             tooltip_means=("init_weight_std",)),
        View("init_weight_std", "PSNR vs the first layer's weight std", "init_weight_std",
             x_scale="log", x_title="first-conv weight std as initialised (mean over trials)",
             x_group="init_scale", color="init_method", column="activation", mark="line",
             needs=("init_scale",)),
        View("pruning_aware", "Pruning against an unaware and an aware attacker", "strength",
             x_scale="linear", x_title="pruned share of each layer's gradient",
             color="activation", dash="attacker", column="model", mark="line",
             needs=("strength", "attacker"), derive=aware_rows,
             covers=("prune", "prune_ratio", "mask_pruned"),
             subtitle="aware: the attacker matches only the entries non-zero in the shared "
             "gradient; an attacker without unpruned trials of its own starts from the "
             "other's (prune none: the mask is a no-op); noise-free rows"),
        View("defense_prune", "gradient pruning", "strength", x_scale="linear",
             x_title="pruned share of each layer's gradient", color="activation",
             column="model", mark="line", derive=prune_rows, covers=("prune", "prune_ratio"),
             subtitle="pruning: noise-free rows"),
        View("defense_noise", "gradient noise", "strength", x_scale="symlog",
             x_title="noise scale", color="noise", column="model", mark="line",
             derive=noise_rows, covers=("noise", "noise_scale"),
             subtitle="noise: unpruned rows; noise-free rows are every curve's 0"),
        View("bn_zeros", "exactly-zero gradient entries", "arch", color="bn_mode",
             column="activation", metrics=(ZERO_SHARE,), needs=("bn_mode",), derive=with_arch,
             covers=("model", "norm")),
        View("curve_loss", "gradient loss", "iteration", x_scale="linear", color="series",
             column="model", metrics=(GRAD_LOSS,), mark="line", trials="line",
             covers=("init_method", "activation"),
             subtitle="loss: geometric mean, t-interval on log10"),
        View("curve_psnr", "PSNR", "iteration", x_scale="linear", color="series",
             column="model", metrics=(CURVE_PSNR,), mark="line", trials="line",
             covers=("init_method", "activation")),
    )
}  # fmt: skip


def render(name: str, frame: pl.DataFrame) -> alt.TopLevelMixin:
    """One view of `VIEWS` as a chart on its own."""
    view = VIEWS[name]
    return finish([draw(view, frame)], view.title)


def psnr_by_init(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """PSNR by init method x activation x prune, one panel per model (the seed's first figure)."""
    return render("psnr_by_init", frame)


def model_by_init(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """McMahan CNN vs ResNet by init method, one panel per activation."""
    return render("model_by_init", frame)


def psnr_vs_batch(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """PSNR vs batch size per init method x activation, one panel per model."""
    return render("psnr_vs_batch", frame)


def label_strategy(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """Reconstruction quality and label accuracy by label strategy and batch size."""
    return render("label_strategy", frame)


def bn_mode(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """PSNR with the client's model in train vs eval mode (BatchNorm), per architecture."""
    return render("bn_mode", frame)


def convergence(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """Gradient loss (log scale, geometric mean) and PSNR over iterations, per model."""
    points = curve_points(frame)
    if points.is_empty():
        raise ChartSkipped("convergence: no trial recorded a convergence curve")
    panels = [draw(VIEWS[n], points, select=False) for n in ("curve_loss", "curve_psnr")]
    return finish(panels, "Convergence: gradient loss and PSNR over iterations", "vconcat")


def defense_curves(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """Defense strength curves: PSNR vs prune ratio, and vs noise scale per noise type."""
    panels, missing = [], []
    for name, axis in (("defense_prune", "prune ratio"), ("defense_noise", "noise scale")):
        view = VIEWS[name]
        try:
            panels.append(draw(replace(view, needs=("strength",)), frame, select=False))
        except ChartSkipped:
            missing.append(axis)
    if not panels:
        raise ChartSkipped("defense_curves: neither prune ratio nor noise scale varies")
    for panel, name in zip(panels, [n for n in ("defense_prune", "defense_noise")]):
        panel.chart = panel.chart.properties(title=VIEWS[name].title)
    drawn = finish(panels, "Defense strength", "hconcat")
    if missing:
        drawn.title.subtitle = [*drawn.title.subtitle, f"not varied: {' and '.join(missing)}"]
    return drawn


def init_scale(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """PSNR vs init scale (log x) per init method x activation, and the same points against the
    first layer's weight std as initialised: if the families' curves meet on the second axis,
    leakage follows the scale of the weights, not the family (issue 11)."""
    if "init_weight_std" in frame.columns and frame["init_weight_std"].drop_nulls().len():
        panels = [draw(VIEWS[n], frame, select=False) for n in ("init_scale", "init_weight_std")]
        return finish(panels, VIEWS["init_scale"].title, "vconcat")
    return render("init_scale", frame)


def pruning_aware(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """The defense curve against the unaware attacker and one that masks the pruned entries."""
    return render("pruning_aware", frame)


def kernel_trials(frame: pl.DataFrame) -> pl.DataFrame:
    """One train/eval pair per (sweep, arch, activation): two trials equal in every config
    field but bn_mode (the lowest seed that has both), one row per (trial, kernel)."""
    rows = with_arch(result_rows(frame)).filter(pl.col("grad_kernel_norms").list.len() > 0)
    if rows.is_empty() or rows["bn_mode"].n_unique() < 2:
        return rows.clear()
    keys = [c for c in ("sweep", *AXES, "seed") if c in rows.columns and c != "bn_mode"]
    both = (
        rows.group_by(keys)
        .agg(pl.col("bn_mode").n_unique().alias("_modes"))
        .filter(pl.col("_modes") >= 2)
        .drop("_modes")
    )
    panel = [c for c in ("sweep", "arch", "activation") if c in rows.columns]
    first = (
        both.with_columns(with_arch(both)["arch"])
        .sort([*panel, "seed", *keys])
        .group_by(panel, maintain_order=True)
        .first()
    )
    picked = rows.join(first.select(keys), on=keys, nulls_equal=True)
    return (
        picked.select(*keys, "arch", "bn_mode", "trial_key", "grad_kernel_norms")
        .with_columns(pl.int_ranges(0, pl.col("grad_kernel_norms").list.len()).alias("kernel"))
        .explode(["grad_kernel_norms", "kernel"])
        .rename({"grad_kernel_norms": "kernel_norm"})
        .with_columns(
            (
                pl.col("arch")
                + " / "
                + pl.col("activation")
                + " / seed "
                + pl.col("seed").cast(pl.Utf8)
            ).alias("trial")
        )
    )


def bn_gradients(frame: pl.DataFrame) -> alt.TopLevelMixin:
    """The seed's BN figure, per activation: the share of exactly-zero gradient entries (mean
    over trials) and the first conv's gradient norm per kernel, from one trial and its twin in
    the other mode (same weights, images, seed): kernel k is one filter, never an average of
    different filters."""
    zeros = draw(VIEWS["bn_zeros"], frame, select=False)
    zeros.chart = zeros.chart.properties(title=VIEWS["bn_zeros"].title)
    panels = [zeros]
    kernels = kernel_trials(frame)
    if not kernels.is_empty():
        facet = {"facet": alt.Facet("trial:N", title="one trial pair (train, eval)"), "columns": 2}
        if "sweep" in kernels.columns and kernels["sweep"].n_unique() > 1:
            kernels = kernels.with_columns(
                (pl.col("sweep") + ": " + pl.col("trial")).alias("trial")
            )
        label = (
            kernels.group_by("trial", "bn_mode")
            .agg(pl.col("kernel").max(), pl.col("kernel_norm").last())
            .with_columns(pl.lit("n=1 trial").alias("n_label"))
        )
        base = alt.Chart().encode(
            x=alt.X("kernel:Q", title="first-conv kernel (filter index)"),
            color=alt.Color("bn_mode:N", title="bn mode"),
        )
        line = base.mark_line(point=alt.OverlayMarkDef(size=12)).encode(
            y=alt.Y(
                "kernel_norm:Q", title="gradient norm of the kernel", scale=alt.Scale(type="log")
            ),
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
                kernels.with_columns(pl.lit("kernel").alias("kind")),
                label.with_columns(pl.lit("label").alias("kind")),
            ],
            how="diagonal_relaxed",
        )
        reference, kernel_data = named_data(data)
        text = (
            base.mark_text(align="right", dx=-2, dy=-6, fontSize=8)
            .encode(y="kernel_norm:Q", text="n_label:N")
            .transform_filter(alt.datum.kind == "label")
        )
        chart = (
            alt.layer(
                line.transform_filter(alt.datum.kind == "kernel").properties(
                    name=f"v{next(_VIEW_IDS)}layer"
                ),
                text.properties(name=f"v{next(_VIEW_IDS)}layer"),
                data=reference,
            )
            .properties(width=260, height=160)
            .facet(**facet)
        )
        panels.append(
            Drawn(
                chart.properties(title="gradient norm per first-conv kernel"),
                subtitle=[
                    "kernels: one trial per mode, the lowest seed with both modes; not averaged"
                ],
                datasets=kernel_data,
                color="bn_mode",
            )
        )
    return finish(
        panels, "BatchNorm train vs eval: gradient sparsity and per-kernel magnitude", "hconcat"
    )


@dataclass(frozen=True)
class ChartSpec:
    name: str
    title: str
    build: Callable[[pl.DataFrame], alt.TopLevelMixin]


# The report draws these, in this order; a notebook can call any function directly.
CHARTS: dict[str, ChartSpec] = {
    spec.name: spec
    for spec in (
        ChartSpec("psnr_by_init", "PSNR by init method x activation x prune", psnr_by_init),
        ChartSpec("model_by_init", "McMahan CNN vs ResNet by init", model_by_init),
        ChartSpec("psnr_vs_batch", "PSNR vs batch size", psnr_vs_batch),
        ChartSpec("label_strategy", "Reconstruction by label strategy", label_strategy),
        ChartSpec("bn_mode", "BatchNorm train vs eval", bn_mode),
        ChartSpec("convergence", "Convergence curves", convergence),
        ChartSpec("defense_curves", "Defense strength curves", defense_curves),
        ChartSpec("bn_gradients", "BN figure: zero gradients and kernel magnitudes", bn_gradients),
        ChartSpec("init_scale", "PSNR vs init scale (family x activation)", init_scale),
        ChartSpec("pruning_aware", "Pruning vs an aware attacker", pruning_aware),
    )
}


def compact(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with null fields left out of its datasets' rows (a missing field reads as null
    in every test these charts make): a third smaller pages for large sweeps."""
    datasets = spec.get("datasets", {})
    spec["datasets"] = {
        name: [{k: v for k, v in row.items() if v is not None} for row in rows]
        for name, rows in datasets.items()
    }
    return spec


def build(name: str, frame: pl.DataFrame) -> alt.TopLevelMixin:
    """The chart `name` from `frame` (raises ChartSkipped if the frame lacks its data)."""
    if name not in CHARTS:
        raise KeyError(f"unknown chart {name!r}; known charts: {', '.join(CHARTS)}")
    return CHARTS[name].build(frame)
