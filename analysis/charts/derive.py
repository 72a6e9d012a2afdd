"""Deriving: the rows a chart draws, as polars frames (no Altair here).

Derived columns (`arch`, `series`, defense `strength`, the attacker), derived rows (convergence
curve points, the BN kernel pairs), variants read as sweeps, the axes left to dropdowns, and the
long frame a panel draws: per point the mean, its interval and n (kind=mean), and the trials
themselves (kind=trial), the thin per-trial curves sampled when they would swamp the page.
"""

from __future__ import annotations

import polars as pl

from analysis.charts.panel import Panel
from analysis.stats import summarize
from store.load import result_rows
from store.schema import CONFIG_COLUMNS

# Axes that may be pooled: every config field but the seed (the interval is over seeds), and
# the sweep when several sweeps share a frame.
AXES = [name for name, _ in CONFIG_COLUMNS if name != "seed"]
# levels a filter's first view prefers when two combinations hold as many trials
PREFERRED = {"none", "eval", "idlg", "false", "0.0", "1.0", "unaware"}
# Thin per-trial curves: about this many curve points a panel at most (a paper sweep: one trial
# per curve), never fewer than MIN_TRIAL_CURVES trials per curve; a curve of two trials keeps
# both (they are its bar, n < 3).
MAX_TRIAL_CURVE_ROWS = 8_000
MIN_TRIAL_CURVES = 1
# below this many trials a point's bar is the range of its trials, not a t-interval
MIN_T_INTERVAL = 3


class ChartSkipped(Exception):
    """The frame holds no data for this chart (the axis it studies does not vary)."""


# -- variants and derived columns ---------------------------------------------------------------


def with_parts(frame: pl.DataFrame) -> pl.DataFrame:
    """Variants read as sweeps: the rows of variant `v` of sweep `s` get the sweep label `s/v`
    (a facet row, a findings column), rows without a variant keep their sweep's name."""
    if "variant" not in frame.columns or frame["variant"].null_count() == frame.height:
        return frame
    sweep = pl.col("sweep") if "sweep" in frame.columns else pl.lit("sweep")
    return frame.with_columns(
        pl.when(pl.col("variant").is_null())
        .then(sweep)
        .otherwise(sweep + pl.lit("/") + pl.col("variant"))
        .alias("sweep")
    )


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
    rows = result_rows(frame) if "status" in frame.columns else frame
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


def kernel_trials(frame: pl.DataFrame) -> pl.DataFrame:
    """One train/eval pair per (sweep, arch, activation): two trials equal in every config
    field but bn_mode (the lowest seed that has both), one row per (trial, kernel)."""
    rows = result_rows(frame) if "status" in frame.columns else frame
    if "grad_kernel_norms" not in rows.columns or "bn_mode" not in rows.columns:
        return rows.clear()
    rows = with_arch(rows).filter(pl.col("grad_kernel_norms").list.len() > 0)
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
    kernels = (
        picked.select(*keys, "arch", "bn_mode", "trial_key", "grad_kernel_norms")
        .with_columns(pl.int_ranges(0, pl.col("grad_kernel_norms").list.len()).alias("kernel"))
        .explode(["grad_kernel_norms", "kernel"])
        .rename({"grad_kernel_norms": "kernel_norm"})
        .with_columns(
            (
                pl.col("arch") + " / " + pl.col("activation") + " / seed "
                + pl.col("seed").cast(pl.Utf8)
            ).alias("trial")
        )
    )  # fmt: skip
    if "sweep" in kernels.columns and kernels["sweep"].n_unique() > 1:
        kernels = kernels.with_columns((pl.col("sweep") + ": " + pl.col("trial")).alias("trial"))
    return kernels


# -- what a panel draws -------------------------------------------------------------------------


def panel_rows(panel: Panel, rows: pl.DataFrame) -> pl.DataFrame:
    """The rows `panel` draws (derived, filtered), or ChartSkipped with the reason."""
    if panel.derive is not None:
        rows = panel.derive(rows)
    for column, levels in panel.where:
        rows = rows.filter(pl.col(column).is_in(list(levels)))
    main = panel.metrics[0].column
    if main in rows.columns:
        rows = rows.filter(pl.col(main).is_not_null())
    if rows.is_empty():
        raise ChartSkipped(f"{panel.name}: no ok/diverged trials with {main}")
    for axis in panel.needs:
        if axis not in rows.columns or rows[axis].n_unique() < 2:
            values = ", ".join(map(str, rows[axis].unique().to_list())) if axis in rows else "-"
            raise ChartSkipped(f"{panel.name}: {axis} does not vary in this sweep (only {values})")
    if panel.x not in rows.columns or rows[panel.x].null_count() == rows.height:
        raise ChartSkipped(f"{panel.name}: no trial has {panel.x}")
    return rows


def several_sweeps(rows: pl.DataFrame) -> bool:
    return "sweep" in rows.columns and rows["sweep"].n_unique() > 1


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


def covered(panel: Panel, rows: pl.DataFrame, encoded: list[str]) -> list[str]:
    """The fields a derived encoding stands for (series = activation, prune) ride along where
    they are constant within its groups, never splitting a point (strength 0 = prune none or
    prune_ratio 0)."""
    return [
        c for c in panel.covers
        if c in rows.columns and c not in encoded
        and rows.group_by(encoded).agg(pl.col(c).n_unique().alias("_k"))["_k"].max() == 1
    ]  # fmt: skip


def as_level(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Utf8).fill_null("unknown").alias(column)


def levels(rows: pl.DataFrame, axis: str) -> list[str]:
    values = rows[axis].unique().to_list()
    numeric = rows.schema[axis].is_numeric() or rows.schema[axis] == pl.Boolean
    known = sorted((v for v in values if v is not None), key=lambda v: v if numeric else str(v))
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in known] + (
        ["unknown"] if None in values else []
    )


def default_levels(rows: pl.DataFrame, axes: list[str], x: str) -> dict[str, str]:
    """The filter combination the page (and the PNG) opens on: the one covering the most x
    levels, then holding the most trials, then the protocol's usual levels (prune none, ...)."""
    if not axes:
        return {}
    counts = (
        rows.with_columns(as_level(a) for a in axes)
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


def points(panel: Panel, rows: pl.DataFrame, groups: list[str], filters: list[str]) -> pl.DataFrame:
    """Means (kind=mean) and trials (kind=trial) in one long frame: a facet needs one dataset.

    A mean's bar (`ci_low`, `ci_high`) is its 95% t-interval over the trials at the point,
    clipped to what the metric can take, when n >= 3; with n = 2 it is the range of the two
    trials (a t-interval on one degree of freedom is +-12.7 standard errors: it says little
    but that there were two); with n = 1 there is none.
    """
    parts = []
    for metric in panel.metrics:
        value = metric.column
        part = rows.filter(pl.col(value).is_not_null() & pl.col(value).cast(pl.Float64).is_finite())
        if metric.log:
            part = part.filter(pl.col(value) > 0)
        if part.is_empty():
            continue
        by = [g for g in groups if g != "metric"]
        means = summarize(part, by, value, log=metric.log, bounds=metric.bounds).drop("sd")
        spans = part.group_by(by).agg(
            pl.col(value).cast(pl.Float64).min().alias("_low"),
            pl.col(value).cast(pl.Float64).max().alias("_high"),
        )
        few = (pl.col("n") >= 2) & (pl.col("n") < MIN_T_INTERVAL)
        means = (
            means.join(spans, on=by, how="left", nulls_equal=True)
            .with_columns(
                pl.when(few).then(pl.col("_low")).otherwise(pl.col("ci_low")).alias("ci_low"),
                pl.when(few).then(pl.col("_high")).otherwise(pl.col("ci_high")).alias("ci_high"),
            )
            .drop("_low", "_high")
        )
        extra = [c for c in panel.tooltip_means if c in part.columns]
        if panel.x_group:
            extra = [panel.x, *[c for c in extra if c != panel.x]]
        if extra:
            means = means.join(
                part.group_by(by).agg(pl.col(c).cast(pl.Float64).mean() for c in extra),
                on=by, how="left", nulls_equal=True,
            )  # fmt: skip
        x_source = panel.x if panel.x_group else panel.group_x
        means = means.with_columns(
            pl.lit("mean").alias("kind"),
            pl.col(x_source).alias("x"),
            pl.col("mean").alias("y"),
            pl.lit(metric.title).alias("metric"),
            ("n=" + pl.col("n").cast(pl.Utf8)).alias("n_label"),
            pl.coalesce("ci_low", "mean").alias("label_y"),
        )
        keep = [c for c in ("trial_key", "seed") if c in part.columns]
        trial_cols = list(dict.fromkeys([*by, *keep, *extra, panel.x]))
        trials = part.select(*trial_cols, pl.col(value).cast(pl.Float64).alias("y")).with_columns(
            pl.lit("trial").alias("kind"),
            pl.col(panel.x).alias("x"),
            pl.lit(metric.title).alias("metric"),
        )
        parts += [means, trials]
    if not parts:
        raise ChartSkipped(f"{panel.name}: no trials with {panel.metrics[0].column}")
    data = pl.concat(parts, how="diagonal_relaxed")
    if panel.x_scale in ("log", "log2"):
        data = data.filter(pl.col("x") > 0)
    data = data.with_columns(as_level(f) for f in filters)
    for column in (panel.color, panel.dash, panel.column):
        if column and data.schema[column] == pl.Utf8:
            data = data.with_columns(pl.col(column).fill_null("unknown"))
    if panel.mark == "line":
        series = [g for g in groups if g != panel.group_x and g not in panel.covers]
        data = line_labels(data, series)
    return data


def line_labels(data: pl.DataFrame, series: list[str]) -> pl.DataFrame:
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


def sample_curves(panel: Panel, data: pl.DataFrame, groups: list[str]) -> tuple[pl.DataFrame, str]:
    """Thin per-trial curves, sampled when a panel would carry more than MAX_TRIAL_CURVE_ROWS
    of their points: the same number k of trials in every curve of means, the lowest seeds
    first; a curve of fewer than MIN_T_INTERVAL trials keeps them all (they are its bar). The
    means keep every trial; the note says how many curves are drawn."""
    trials = data.filter(pl.col("kind") == "trial")
    if panel.trials != "line" or trials.height <= MAX_TRIAL_CURVE_ROWS or "trial_key" not in data:
        return data, ""
    curve = [g for g in groups if g != panel.group_x and g in data.columns]
    per_trial = trials.group_by("trial_key").len()
    total, length = per_trial.height, float(per_trial["len"].mean())
    curves = trials.select(curve).unique().height if curve else 1
    k = max(MIN_TRIAL_CURVES, int(MAX_TRIAL_CURVE_ROWS // max(curves * length, 1)))
    order = [c for c in ("seed", "trial_key") if c in trials.columns]
    rank, size = pl.int_range(pl.len()), pl.len()
    ranked = (
        trials.select(*curve, *order).unique()
        .sort([*curve, *order], nulls_last=True)
        .with_columns(
            (rank.over(curve) if curve else rank).alias("_rank"),
            (size.over(curve) if curve else size).alias("_size"),
        )
    )  # fmt: skip
    kept = ranked.filter((pl.col("_rank") < k) | (pl.col("_size") < MIN_T_INTERVAL))
    keep = kept["trial_key"].unique()
    if keep.len() >= total:
        return data, ""
    data = data.filter((pl.col("kind") == "mean") | pl.col("trial_key").is_in(keep.implode()))
    per_curve = "one per curve, the lowest seed" if k == 1 else f"{k} per curve, the lowest seeds"
    note = (
        f"thin lines: {keep.len()} of {total} trials drawn ({per_curve}; a curve of 2 trials "
        f"keeps both); every mean and interval uses all {total}; the explorer has every curve"
    )
    return data, note
