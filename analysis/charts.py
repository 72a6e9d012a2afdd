"""The study's charts: each a function of a trials frame returning an Altair chart.

Every chart plots the mean over the trials at a point with its 95% Student-t interval
(`analysis.stats.summarize`: over seeds and any grid axis the chart does not show) and carries
`n`, the number of trials the point rests on, in its tooltip. Only rows with status `ok` or
`diverged` are plotted; `error` rows carry no metrics and are counted by the report instead.
A chart whose axis does not vary in the frame (no `bn_mode` variation, a single model, ...)
raises `ChartSkipped` with the reason, so a report of a partial or narrow sweep still builds.

Figures of the seed study (Li 2024, "Attacking gradients"): PSNR by init x activation x prune,
McMahan CNN vs ResNet by init, PSNR vs batch size, label strategy, BN train vs eval and the
BN gradient figure; plus convergence curves and defense-strength curves.

    >>> chart = charts.psnr_vs_batch(load.trials("results/demo"))
    >>> chart.save("psnr_vs_batch.html")
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import altair as alt
import polars as pl

from analysis.load import result_rows
from analysis.stats import summarize

PSNR = alt.Title("PSNR (dB)")
INTERVAL_NOTE = "mean and 95% t-interval over trials (seeds); n = trials per point"
# explicit view names: altair cannot name the layers of facets inside a concat by itself
_VIEW_IDS = itertools.count()


class ChartSkipped(Exception):
    """The frame holds no data for this chart (the axis it studies does not vary)."""


def _stat_tooltip(*fields: str, value: str = "PSNR") -> list[alt.Tooltip]:
    return [
        *(alt.Tooltip(f) for f in fields),
        alt.Tooltip("mean:Q", title=f"{value} mean", format=".3g"),
        alt.Tooltip("ci_low:Q", title="95% CI low", format=".3g"),
        alt.Tooltip("ci_high:Q", title="95% CI high", format=".3g"),
        alt.Tooltip("n:Q", title="trials (n)"),
    ]


def _rows(frame: pl.DataFrame, value: str, chart: str) -> pl.DataFrame:
    rows = result_rows(frame)
    if value in rows.columns:
        rows = rows.filter(pl.col(value).is_not_null())
    if rows.is_empty():
        raise ChartSkipped(f"{chart}: no ok/diverged trials with {value}")
    return rows


def _need_variation(rows: pl.DataFrame, column: str, chart: str, least: int = 2) -> None:
    distinct = rows[column].n_unique()
    if distinct < least:
        values = ", ".join(str(v) for v in rows[column].unique().to_list())
        raise ChartSkipped(f"{chart}: {column} does not vary in this sweep (only {values})")


def _arch(rows: pl.DataFrame) -> pl.DataFrame:
    """`arch`: the model, with +BN when the McMahan CNN carries BatchNorm."""
    return rows.with_columns(
        pl.when(pl.col("norm") == "batch")
        .then(pl.col("model") + pl.lit("+bn"))
        .otherwise(pl.col("model"))
        .alias("arch")
    )


def _dot_interval(
    data: pl.DataFrame,
    x: str,
    offset: str,
    color: str,
    tooltip: list[alt.Tooltip],
    y_title: str,
    select: bool = True,
) -> alt.LayerChart:
    """Points at the mean, rules for the interval, legend-click highlights one series."""
    pick = alt.selection_point(name=f"pick{next(_VIEW_IDS)}legend", fields=[color], bind="legend")
    encode = {
        "x": alt.X(f"{x}:N", title=x.replace("_", " ")),
        "xOffset": alt.XOffset(f"{offset}:N"),
        "color": alt.Color(f"{color}:N", title=color.replace("_", " ")),
    }
    if select:
        encode["opacity"] = alt.condition(pick, alt.value(1.0), alt.value(0.15))
    base = alt.Chart().encode(**encode)
    rules = (
        base.mark_rule(strokeWidth=2)
        .encode(y=alt.Y("ci_low:Q", title=y_title, scale=alt.Scale(zero=False)), y2="ci_high:Q")
        .properties(name=f"v{next(_VIEW_IDS)}layer")
    )
    points = (
        base.mark_point(filled=True, size=70)
        .encode(y="mean:Q", tooltip=tooltip)
        .properties(name=f"v{next(_VIEW_IDS)}layer")
    )
    return alt.layer(rules, points.add_params(pick) if select else points, data=data)


def psnr_by_init(frame: pl.DataFrame) -> alt.FacetChart:
    """PSNR by init method x activation x prune, one panel per model (the seed's first figure)."""
    rows = _rows(frame, "psnr_mean", "psnr_by_init")
    _need_variation(rows, "init_method", "psnr_by_init")
    by = ["model", "init_method", "activation", "prune"]
    data = summarize(rows, by).with_columns(
        (pl.col("activation") + pl.lit(", prune ") + pl.col("prune")).alias("series")
    )
    layer = _dot_interval(data, "init_method", "series", "series", _stat_tooltip(*by), "PSNR (dB)")
    return layer.facet(column=alt.Column("model:N", title="model")).properties(
        title=alt.Title("PSNR by init method, activation and pruning", subtitle=INTERVAL_NOTE)
    )


def model_by_init(frame: pl.DataFrame) -> alt.FacetChart:
    """McMahan CNN vs ResNet by init method, one panel per activation."""
    rows = _rows(frame, "psnr_mean", "model_by_init")
    _need_variation(rows, "model", "model_by_init")
    by = ["activation", "init_method", "model"]
    data = summarize(rows, by)
    layer = _dot_interval(data, "init_method", "model", "model", _stat_tooltip(*by), "PSNR (dB)")
    return layer.facet(column=alt.Column("activation:N", title="activation")).properties(
        title=alt.Title("McMahan CNN vs ResNet-18 by init method", subtitle=INTERVAL_NOTE)
    )


def _lines(
    data: pl.DataFrame,
    x: alt.X,
    color: str,
    dash: str | None,
    tooltip: list[alt.Tooltip],
    y: alt.Y,
    band: bool = False,
    select: bool = True,
) -> alt.LayerChart:
    """Mean lines with interval rules (or bands); legend-click highlights one color."""
    pick = alt.selection_point(name=f"pick{next(_VIEW_IDS)}legend", fields=[color], bind="legend")
    encode = {
        "x": x,
        "color": alt.Color(f"{color}:N", title=color.replace("_", " ")),
    }
    if select:
        encode["opacity"] = alt.condition(pick, alt.value(1.0), alt.value(0.12))
    if dash:
        encode["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=dash.replace("_", " "))
    detail = [alt.Detail(f"{dash}:N")] if dash else []
    base = alt.Chart().encode(**encode)
    interval = (
        (base.mark_area(opacity=0.15) if band else base.mark_rule())
        .encode(y=y, y2="ci_high:Q", detail=detail)
        .properties(name=f"v{next(_VIEW_IDS)}layer")
    )
    line = base.mark_line().encode(y=alt.Y("mean:Q")).properties(name=f"v{next(_VIEW_IDS)}layer")
    points = (
        base.mark_point(filled=True, size=40)
        .encode(y="mean:Q", tooltip=tooltip)
        .properties(name=f"v{next(_VIEW_IDS)}layer")
    )
    return alt.layer(interval, line, points.add_params(pick) if select else points, data=data)


def psnr_vs_batch(frame: pl.DataFrame) -> alt.FacetChart:
    """PSNR vs batch size per init method x activation, one panel per model."""
    rows = _rows(frame, "psnr_mean", "psnr_vs_batch")
    _need_variation(rows, "batch_size", "psnr_vs_batch")
    by = ["model", "init_method", "activation", "batch_size"]
    data = summarize(rows, by)
    layer = _lines(
        data,
        alt.X(
            "batch_size:Q",
            title="batch size",
            scale=alt.Scale(type="log", base=2),
            axis=alt.Axis(values=sorted(data["batch_size"].unique().to_list())),
        ),
        "init_method",
        "activation",
        _stat_tooltip(*by),
        alt.Y("ci_low:Q", title="PSNR (dB)", scale=alt.Scale(zero=False)),
    )
    return layer.facet(column=alt.Column("model:N", title="model")).properties(
        title=alt.Title("PSNR vs batch size", subtitle=INTERVAL_NOTE)
    )


def label_strategy(frame: pl.DataFrame) -> alt.FacetChart:
    """Reconstruction quality and label accuracy by label strategy and batch size."""
    rows = _rows(frame, "psnr_mean", "label_strategy")
    _need_variation(rows, "label_strategy", "label_strategy")
    by = ["label_strategy", "batch_size"]
    data = pl.concat(
        summarize(rows, by, value).with_columns(pl.lit(title).alias("metric"))
        for value, title in (("psnr_mean", "PSNR (dB)"), ("label_accuracy", "label accuracy"))
    ).with_columns(pl.col("batch_size").cast(pl.Utf8))
    layer = _dot_interval(
        data, "label_strategy", "batch_size", "batch_size",
        _stat_tooltip("metric", *by, value="metric"), "mean",
    )  # fmt: skip
    return (
        layer.facet(column=alt.Column("metric:N", title=None))
        .resolve_scale(y="independent")
        .properties(title=alt.Title("Reconstruction by label strategy", subtitle=INTERVAL_NOTE))
    )


def bn_mode(frame: pl.DataFrame) -> alt.FacetChart:
    """PSNR with the client's model in train vs eval mode (BatchNorm), per architecture."""
    rows = _rows(frame, "psnr_mean", "bn_mode")
    _need_variation(rows, "bn_mode", "bn_mode")
    by = ["arch", "activation", "bn_mode"]
    data = summarize(_arch(rows), by)
    layer = _dot_interval(data, "activation", "bn_mode", "bn_mode", _stat_tooltip(*by), "PSNR (dB)")
    return layer.facet(column=alt.Column("arch:N", title="model")).properties(
        title=alt.Title("BatchNorm: train vs eval mode", subtitle=INTERVAL_NOTE)
    )


def curve_points(frame: pl.DataFrame) -> pl.DataFrame:
    """The convergence curves, one row per (trial, sampled iteration)."""
    rows = result_rows(frame).filter(pl.col("curve_iteration").list.len() > 0)
    columns = ["curve_iteration", "curve_grad_loss", "curve_psnr"]
    rows = rows.filter(
        (pl.col("curve_grad_loss").list.len() == pl.col("curve_iteration").list.len())
        & (pl.col("curve_psnr").list.len() == pl.col("curve_iteration").list.len())
    )
    keep = ["trial_key", "model", "init_method", "activation", "seed", *columns]
    return (
        rows.select(keep)
        .explode(columns)
        .rename(
            {"curve_iteration": "iteration", "curve_grad_loss": "grad_loss", "curve_psnr": "psnr"}
        )
    )


def convergence(frame: pl.DataFrame) -> alt.VConcatChart:
    """Gradient loss (log scale, geometric mean) and PSNR over iterations, per model."""
    points = curve_points(frame)
    if points.is_empty():
        raise ChartSkipped("convergence: no trial recorded a convergence curve")
    points = points.with_columns(
        (pl.col("init_method") + pl.lit(" / ") + pl.col("activation")).alias("series")
    )
    by = ["model", "series", "iteration"]
    loss = summarize(points, by, "grad_loss", log=True)
    psnr = summarize(points, by, "psnr")
    x = alt.X("iteration:Q", title="iteration")
    loss_chart = _lines(
        loss, x, "series", None,
        _stat_tooltip(*by, value="gradient loss (geometric)"),
        alt.Y("ci_low:Q", title="gradient loss", scale=alt.Scale(type="log")),
        band=True,
    ).facet(column=alt.Column("model:N", title="model"))  # fmt: skip
    psnr_chart = _lines(
        psnr, x, "series", None, _stat_tooltip(*by),
        alt.Y("ci_low:Q", title="PSNR (dB)", scale=alt.Scale(zero=False)), band=True,
    ).facet(column=alt.Column("model:N", title="model"))  # fmt: skip
    return alt.vconcat(loss_chart, psnr_chart).properties(
        title=alt.Title(
            "Convergence: gradient loss and PSNR over iterations",
            subtitle="loss: geometric mean, t-interval in log10; PSNR: mean, 95% t-interval; "
            "n = trials per point",
        )
    )


def defense_points(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(pruning points, noise points): PSNR against defense strength.

    Pruning strength is `prune_ratio` (0 when prune is none), taken over rows without noise
    (noise none or scale 0). Noise strength is `noise_scale` (0 when noise is none), taken over
    rows without pruning, one curve per noise type; noise-free rows are every curve's 0 point.
    """
    rows = _rows(frame, "psnr_mean", "defense_curves").with_columns(
        pl.when(pl.col("prune") == "none").then(0.0).otherwise(pl.col("prune_ratio"))
        .alias("prune_strength"),
        pl.when(pl.col("noise") == "none").then(0.0).otherwise(pl.col("noise_scale"))
        .alias("noise_strength"),
    )  # fmt: skip
    prune = rows.filter(pl.col("noise_strength") == 0).rename({"prune_strength": "strength"})
    plain = rows.filter(pl.col("prune_strength") == 0)
    kinds = sorted(k for k in plain["noise"].unique().to_list() if k != "none")
    noisy = plain.filter(pl.col("noise") != "none")
    clean = plain.filter(pl.col("noise") == "none")
    noise = pl.concat(
        [noisy, *(clean.with_columns(pl.lit(k).alias("noise")) for k in kinds)]
    ).rename({"noise_strength": "strength"})
    return (
        summarize(prune, ["model", "activation", "strength"]),
        summarize(noise, ["model", "noise", "strength"]),
    )


def defense_curves(frame: pl.DataFrame) -> alt.HConcatChart:
    """Defense strength curves: PSNR vs prune ratio, and vs noise scale per noise type."""
    prune, noise = defense_points(frame)
    panels, missing = [], []
    y = alt.Y("ci_low:Q", title="PSNR (dB)", scale=alt.Scale(zero=False))
    if prune["strength"].n_unique() >= 2:
        panels.append(
            _lines(
                prune.with_columns(
                    (pl.col("model") + pl.lit(" / ") + pl.col("activation")).alias("series")
                ),
                alt.X("strength:Q", title="pruned share of each layer's gradient"),
                "series", None, _stat_tooltip("model", "activation", "strength"), y,
                select=False,  # altair mis-lifts legend selections of layers inside a concat
            ).properties(title="gradient pruning")
        )  # fmt: skip
    else:
        missing.append("prune ratio")
    if noise["strength"].n_unique() >= 2:
        smallest = noise.filter(pl.col("strength") > 0)["strength"].min()
        panels.append(
            _lines(
                noise,
                alt.X(
                    "strength:Q", title="noise scale",
                    scale=alt.Scale(type="symlog", constant=float(smallest or 1.0)),
                ),
                "noise", "model", _stat_tooltip("model", "noise", "strength"), y, select=False,
            ).properties(title="gradient noise")
        )  # fmt: skip
    else:
        missing.append("noise scale")
    if not panels:
        raise ChartSkipped("defense_curves: neither prune ratio nor noise scale varies")
    subtitle = INTERVAL_NOTE + (f" ({' and '.join(missing)} not varied)" if missing else "")
    return alt.hconcat(*panels).properties(title=alt.Title("Defense strength", subtitle=subtitle))


def kernel_points(frame: pl.DataFrame) -> pl.DataFrame:
    """Per-kernel gradient magnitude of the first conv layer, one row per (trial, kernel)."""
    rows = _arch(result_rows(frame)).filter(pl.col("grad_kernel_norms").list.len() > 0)
    return (
        rows.select("arch", "bn_mode", "seed", "trial_key", "grad_kernel_norms")
        .with_columns(pl.int_ranges(0, pl.col("grad_kernel_norms").list.len()).alias("kernel"))
        .explode(["grad_kernel_norms", "kernel"])
        .rename({"grad_kernel_norms": "kernel_norm"})
    )


def bn_gradients(frame: pl.DataFrame) -> alt.HConcatChart:
    """The seed's BN figure: zero-gradient share and per-kernel gradient norm, train vs eval."""
    rows = _rows(frame, "grad_zero_fraction", "bn_gradients")
    _need_variation(rows, "bn_mode", "bn_gradients")
    by = ["arch", "bn_mode"]
    zeros = summarize(_arch(rows), by, "grad_zero_fraction")
    zero_chart = _dot_interval(
        zeros, "arch", "bn_mode", "bn_mode", _stat_tooltip(*by, value="zero share"),
        "share of exactly-zero gradient entries", select=False,
    ).properties(title="exactly-zero gradient entries")  # fmt: skip
    kernels = kernel_points(rows)
    panels = [zero_chart]
    if not kernels.is_empty():
        norms = summarize(kernels, ["arch", "bn_mode", "kernel"], "kernel_norm", log=True)
        panels.append(
            _lines(
                norms, alt.X("kernel:Q", title="first-conv kernel"), "bn_mode", None,
                _stat_tooltip("arch", "bn_mode", "kernel", value="gradient norm (geometric)"),
                alt.Y("ci_low:Q", title="gradient norm", scale=alt.Scale(type="log")),
                band=True, select=False,
            ).facet(row=alt.Row("arch:N", title="model"))
        )  # fmt: skip
    return alt.hconcat(*panels).properties(
        title=alt.Title(
            "BatchNorm train vs eval: gradient sparsity and per-kernel magnitude",
            subtitle=INTERVAL_NOTE + "; norms: geometric mean over trials",
        )
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
    )
}


def build(name: str, frame: pl.DataFrame) -> alt.TopLevelMixin:
    """The chart `name` from `frame` (raises ChartSkipped if the frame lacks its data)."""
    if name not in CHARTS:
        raise KeyError(f"unknown chart {name!r}; known charts: {', '.join(CHARTS)}")
    return CHARTS[name].build(frame)
