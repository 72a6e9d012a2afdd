"""The registry: every chart of the report as one row of `CHARTS`, a table of chart specs.

A chart is one or more panels laid out side by side or stacked; a panel says as data what is on
x, color, dash and facet, which metric(s), which rows count and which axes must vary. One
function draws every panel of kind "summary" (means, intervals, n, the trials under them); the
BN figure's per-kernel panel is kind "kernels". The report draws `CHARTS` in this order; a
notebook calls `charts.build(name, frame)`. The types (Metric, Panel, ChartSpec) are in
`panel`.
"""

from __future__ import annotations

from analysis.charts.derive import (
    aware_rows,
    curve_points,
    kernel_trials,
    noise_rows,
    prune_rows,
    with_arch,
    with_series,
)
from analysis.charts.panel import (
    CURVE_PSNR,
    GRAD_LOSS,
    KERNEL_NORM,
    LABEL_ACCURACY,
    PSNR,
    ZERO_SHARE,
    ChartSpec,
    Metric,
    Panel,
)


def _curve(name: str, metric: Metric, subtitle: str = "") -> Panel:
    return Panel(name, "iteration", x_scale="linear", color="series", column="model",
                 metrics=(metric,), mark="line", trials="line",
                 covers=("init_method", "activation"), subtitle=subtitle)  # fmt: skip


CHARTS: dict[str, ChartSpec] = {
    spec.name: spec
    for spec in (
        ChartSpec("psnr_by_init", "PSNR by init method x activation x prune",
                  "PSNR by init method, activation and pruning", (
            Panel("psnr_by_init", "init_method", x_title="init method", color="series",
                  column="model", needs=("init_method",), derive=with_series,
                  covers=("activation", "prune")),)),
        ChartSpec("model_by_init", "McMahan CNN vs ResNet by init",
                  "McMahan CNN vs ResNet-18 by init method", (
            Panel("model_by_init", "init_method", x_title="init method", color="model",
                  column="activation", needs=("model",)),)),
        ChartSpec("psnr_vs_batch", "PSNR vs batch size", "PSNR vs batch size", (
            Panel("psnr_vs_batch", "batch_size", x_scale="log2", x_title="batch size",
                  color="init_method", dash="activation", column="model", mark="line",
                  needs=("batch_size",)),)),
        ChartSpec("label_strategy", "Reconstruction by label strategy",
                  "Reconstruction by label strategy", (
            Panel("label_strategy", "label_strategy", x_title="label strategy",
                  color="batch_size", metrics=(PSNR, LABEL_ACCURACY),
                  needs=("label_strategy",)),)),
        ChartSpec("bn_mode", "BatchNorm train vs eval", "BatchNorm: train vs eval mode", (
            Panel("bn_mode", "activation", color="bn_mode", column="arch", needs=("bn_mode",),
                  derive=with_arch, covers=("model", "norm")),)),
        ChartSpec("convergence", "Convergence curves",
                  "Convergence: gradient loss and PSNR over iterations", (
            _curve("curve_loss", GRAD_LOSS, "loss: geometric mean, t-interval on log10"),
            _curve("curve_psnr", CURVE_PSNR)),
                  layout="vconcat", rows=curve_points,
                  skip="no trial recorded a convergence curve"),
        ChartSpec("defense_curves", "Defense strength curves", "Defense strength", (
            Panel("defense_prune", "strength", title="gradient pruning", x_scale="linear",
                  x_title="pruned share of each layer's gradient", color="activation",
                  column="model", mark="line", needs=("strength",), derive=prune_rows,
                  covers=("prune", "prune_ratio"), subtitle="pruning: noise-free rows",
                  optional=True, absent="prune ratio"),
            Panel("defense_noise", "strength", title="gradient noise", x_scale="symlog",
                  x_title="noise scale", color="noise", column="model", mark="line",
                  needs=("strength",), derive=noise_rows, covers=("noise", "noise_scale"),
                  subtitle="noise: unpruned rows; noise-free rows are every curve's 0",
                  optional=True, absent="noise scale")),
                  layout="hconcat", skip="neither prune ratio nor noise scale varies"),
        ChartSpec("bn_gradients", "BN figure: zero gradients and kernel magnitudes",
                  "BatchNorm train vs eval: gradient sparsity and per-kernel magnitude", (
            Panel("bn_zeros", "arch", title="exactly-zero gradient entries", color="bn_mode",
                  column="activation", metrics=(ZERO_SHARE,), needs=("bn_mode",),
                  derive=with_arch, covers=("model", "norm")),
            Panel("bn_kernels", "kernel", title="gradient norm per first-conv kernel",
                  x_scale="linear", x_title="first-conv kernel (filter index)",
                  color="bn_mode", column="trial", metrics=(KERNEL_NORM,), kind="kernels",
                  derive=kernel_trials, optional=True,
                  subtitle="kernels: one trial per mode, the lowest seed with both modes; "
                  "not averaged")),
                  layout="hconcat"),
        ChartSpec("init_scale", "PSNR vs init scale (family x activation)",
                  "PSNR vs init scale, per init family and activation", (
            Panel("init_scale", "init_scale", x_scale="log",
                  x_title="init scale (weights x this after the init method)",
                  color="init_method", column="activation", mark="line", needs=("init_scale",),
                  tooltip_means=("init_weight_std",)),
            # if the families' curves meet on this axis, leakage follows the scale of the
            # weights, not the family (issue 11)
            Panel("init_weight_std", "init_weight_std", x_scale="log",
                  x_title="first-conv weight std as initialised (mean over trials)",
                  x_group="init_scale", color="init_method", column="activation",
                  mark="line", needs=("init_scale",), optional=True)),
                  layout="vconcat"),
        ChartSpec("pruning_aware", "Pruning vs an aware attacker",
                  "Pruning against an unaware and an aware attacker", (
            Panel("pruning_aware", "strength", x_scale="linear",
                  x_title="pruned share of each layer's gradient", color="activation",
                  dash="attacker", column="model", mark="line", needs=("strength", "attacker"),
                  derive=aware_rows, covers=("prune", "prune_ratio", "mask_pruned"),
                  subtitle="aware: the attacker matches only the entries non-zero in the shared "
                  "gradient; an attacker without unpruned trials of its own starts from the "
                  "other's (prune none: the mask is a no-op); noise-free rows"),)),
    )
}  # fmt: skip
