"""Every chart from the rows of a real small sweep: encodings, aggregated numbers, PNG export.

The aggregates each chart plots are recomputed here with a plain polars group-by and scipy's
t quantile, independently of `analysis.stats`, and compared point by point.
"""

from __future__ import annotations

import math

import polars as pl
import pytest
import vl_convert as vlc
from scipy import stats

from analysis import charts
from tests.analysis_fixtures import small_frame, small_sweep

__all__ = ["small_frame", "small_sweep"]

pytestmark = pytest.mark.slow  # the session's sweep fixture runs real attacks on Ray


def datasets(spec: dict) -> list[list[dict]]:
    return list(spec.get("datasets", {}).values())


def expected(rows: pl.DataFrame, by: list[str], value: str, log: bool = False) -> dict:
    """key -> (mean, low, high, n): the t-interval, computed without analysis.stats."""
    rows = rows.filter(pl.col(value).is_not_null() & pl.col(value).is_finite())
    if log:
        rows = rows.filter(pl.col(value) > 0).with_columns(pl.col(value).log10())
    out = {}
    for key, part in rows.group_by(by):
        values = part[value].to_list()
        n = len(values)
        mean = sum(values) / n
        if n > 1:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
            half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
            low, high = mean - half, mean + half
        else:
            low = high = None
        if log:
            mean, low, high = (None if v is None else 10**v for v in (mean, low, high))
        out[tuple(str(k) for k in key)] = (mean, low, high, n)
    return out


def check_points(points: list[dict], want: dict, by: list[str]) -> None:
    assert len(points) == len(want)
    for point in points:
        mean, low, high, n = want[tuple(str(point[c]) for c in by)]
        assert point["n"] == n
        assert point["mean"] == pytest.approx(mean, rel=1e-9)
        if low is None:
            assert point["ci_low"] is None and point["ci_high"] is None
        else:
            assert point["ci_low"] == pytest.approx(low, rel=1e-9)
            assert point["ci_high"] == pytest.approx(high, rel=1e-9)


def result_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("status").is_in(["ok", "diverged"]))


def test_error_rows_never_reach_a_chart(small_frame: pl.DataFrame) -> None:
    spec = charts.psnr_by_init(small_frame).to_dict()
    total = sum(p["n"] for p in datasets(spec)[0])
    assert total == result_rows(small_frame).height
    assert small_frame.height - total == 1  # the error row


def test_psnr_by_init(small_frame: pl.DataFrame) -> None:
    spec = charts.psnr_by_init(small_frame).to_dict()
    assert spec["facet"]["column"]["field"] == "model"
    rules, points = spec["spec"]["layer"]
    assert points["mark"]["type"] == "point"
    assert points["encoding"]["x"]["field"] == "init_method"
    assert points["encoding"]["y"]["field"] == "mean"
    assert rules["encoding"]["y"]["field"] == "ci_low"
    assert rules["encoding"]["y2"]["field"] == "ci_high"
    tooltip = {t["field"] for t in points["encoding"]["tooltip"]}
    assert {"n", "mean", "ci_low", "ci_high", "prune", "activation"} <= tooltip
    assert spec["params"][0]["bind"] == "legend"
    by = ["model", "init_method", "activation", "prune"]
    check_points(datasets(spec)[0], expected(result_rows(small_frame), by, "psnr_mean"), by)


def test_model_by_init(small_frame: pl.DataFrame) -> None:
    spec = charts.model_by_init(small_frame).to_dict()
    assert spec["facet"]["column"]["field"] == "activation"
    assert spec["spec"]["layer"][1]["encoding"]["xOffset"]["field"] == "model"
    points = datasets(spec)[0]
    assert {p["model"] for p in points} == {"mcmahan_cnn", "resnet18"}
    by = ["activation", "init_method", "model"]
    check_points(points, expected(result_rows(small_frame), by, "psnr_mean"), by)


def test_psnr_vs_batch(small_frame: pl.DataFrame) -> None:
    spec = charts.psnr_vs_batch(small_frame).to_dict()
    layers = spec["spec"]["layer"]
    assert layers[1]["mark"]["type"] == "line"
    x = layers[0]["encoding"]["x"]
    assert x["field"] == "batch_size" and x["scale"]["type"] == "log"
    assert layers[0]["encoding"]["strokeDash"]["field"] == "activation"
    by = ["model", "init_method", "activation", "batch_size"]
    check_points(datasets(spec)[0], expected(result_rows(small_frame), by, "psnr_mean"), by)


def test_label_strategy(small_frame: pl.DataFrame) -> None:
    spec = charts.label_strategy(small_frame).to_dict()
    assert spec["facet"]["column"]["field"] == "metric"
    assert spec["resolve"]["scale"]["y"] == "independent"
    points = datasets(spec)[0]
    rows = result_rows(small_frame)
    by = ["label_strategy", "batch_size"]
    for metric, value in (("PSNR (dB)", "psnr_mean"), ("label accuracy", "label_accuracy")):
        check_points([p for p in points if p["metric"] == metric], expected(rows, by, value), by)


def test_bn_mode(small_frame: pl.DataFrame) -> None:
    spec = charts.bn_mode(small_frame).to_dict()
    points = datasets(spec)[0]
    assert {p["bn_mode"] for p in points} == {"eval", "train"}
    assert "mcmahan_cnn+bn" in {p["arch"] for p in points}
    rows = result_rows(small_frame).with_columns(
        pl.when(pl.col("norm") == "batch")
        .then(pl.col("model") + "+bn")
        .otherwise(pl.col("model"))
        .alias("arch")
    )
    by = ["arch", "activation", "bn_mode"]
    check_points(points, expected(rows, by, "psnr_mean"), by)


def test_convergence(small_frame: pl.DataFrame) -> None:
    spec = charts.convergence(small_frame).to_dict()
    loss_panel, psnr_panel = spec["vconcat"]
    assert loss_panel["spec"]["layer"][0]["encoding"]["y"]["scale"]["type"] == "log"
    loss_data, psnr_data = (spec["datasets"][p["data"]["name"]] for p in (loss_panel, psnr_panel))
    curves = (
        result_rows(small_frame)
        .select(
            "model", "init_method", "activation", "curve_iteration", "curve_grad_loss", "curve_psnr"
        )  # fmt: skip
        .explode(["curve_iteration", "curve_grad_loss", "curve_psnr"])
        .with_columns((pl.col("init_method") + " / " + pl.col("activation")).alias("series"))
    )
    by = ["model", "series", "iteration"]
    curves = curves.rename({"curve_iteration": "iteration"})
    check_points(psnr_data, expected(curves, by, "curve_psnr"), by)
    check_points(loss_data, expected(curves, by, "curve_grad_loss", log=True), by)
    # each curve point rests on every trial of its series (all sampled at the same iterations)
    assert max(p["n"] for p in psnr_data) >= 8


def test_defense_curves(small_frame: pl.DataFrame) -> None:
    spec = charts.defense_curves(small_frame).to_dict()
    prune_panel, noise_panel = spec["hconcat"]
    assert prune_panel["title"] == "gradient pruning" and noise_panel["title"] == "gradient noise"
    prune_data = spec["datasets"][prune_panel["data"]["name"]]
    noise_data = spec["datasets"][noise_panel["data"]["name"]]
    rows = result_rows(small_frame)
    strength = rows.filter(pl.col("noise") == "none").with_columns(
        pl.when(pl.col("prune") == "none").then(0.0).otherwise(pl.col("prune_ratio"))
        .alias("strength")
    )  # fmt: skip
    by = ["model", "activation", "strength"]
    check_points(prune_data, expected(strength, by, "psnr_mean"), by)
    # the noise curve: gaussian rows at 0.1, and the undefended rows as its 0 point
    clean = rows.filter((pl.col("prune") == "none") & (pl.col("noise") == "none"))
    noisy = rows.filter((pl.col("prune") == "none") & (pl.col("noise") == "gaussian"))
    both = pl.concat([clean.with_columns(pl.lit("gaussian").alias("noise")), noisy])
    both = both.with_columns(pl.col("noise_scale").alias("strength"))
    by = ["model", "noise", "strength"]
    check_points(noise_data, expected(both, by, "psnr_mean"), by)


def test_bn_gradients(small_frame: pl.DataFrame) -> None:
    spec = charts.bn_gradients(small_frame).to_dict()
    zero_panel, kernel_panel = spec["hconcat"]
    zeros = spec["datasets"][zero_panel["data"]["name"]]
    kernels = spec["datasets"][kernel_panel["data"]["name"]]
    rows = result_rows(small_frame).with_columns(
        pl.when(pl.col("norm") == "batch")
        .then(pl.col("model") + "+bn")
        .otherwise(pl.col("model"))
        .alias("arch")
    )
    check_points(zeros, expected(rows, ["arch", "bn_mode"], "grad_zero_fraction"),
                 ["arch", "bn_mode"])  # fmt: skip
    per_kernel = (
        rows.select("arch", "bn_mode", "grad_kernel_norms")
        .with_columns(pl.int_ranges(0, pl.col("grad_kernel_norms").list.len()).alias("kernel"))
        .explode(["grad_kernel_norms", "kernel"])
    )
    by = ["arch", "bn_mode", "kernel"]
    check_points(kernels, expected(per_kernel, by, "grad_kernel_norms", log=True), by)
    assert {k["arch"] for k in kernels} >= {"mcmahan_cnn", "mcmahan_cnn+bn", "resnet18"}


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_png_export(name: str, small_frame: pl.DataFrame) -> None:
    png = vlc.vegalite_to_png(charts.build(name, small_frame).to_dict(), scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_chart_without_its_axis_is_skipped(small_frame: pl.DataFrame) -> None:
    grid_only = small_frame.filter(
        (pl.col("norm") == "none") & (pl.col("model") == "mcmahan_cnn")
        & (pl.col("label_strategy") == "idlg") & (pl.col("noise") == "none")
    )  # fmt: skip
    for name in ("bn_mode", "bn_gradients", "model_by_init", "label_strategy"):
        with pytest.raises(charts.ChartSkipped, match="does not vary"):
            charts.build(name, grid_only)
    assert charts.defense_curves(grid_only).to_dict()["hconcat"][0]["title"] == "gradient pruning"
    with pytest.raises(charts.ChartSkipped):
        charts.psnr_by_init(small_frame.filter(pl.col("status") == "error"))
