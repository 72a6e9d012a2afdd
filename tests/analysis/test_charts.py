"""The charts: specs checked with `chart.to_dict()` on small frames, rendered by vl-convert.

Fast tests build synthetic frames (the sink's columns) to pin each convention: n printed in
the rendered chart, interval bands translucent, no axis pooled silently (a dropdown or a facet),
individual trials under the means, numeric sort, bounded intervals, the per-kernel picture from
one trial. The slow tests take a real small sweep and recompute every plotted mean and interval
with a plain polars group-by and scipy's t quantile, independently of `analysis.stats`.
"""

from __future__ import annotations

import json
import math
import re

import polars as pl
import pytest
import vl_convert as vlc
from scipy import stats

from analysis import charts
from analysis.synthetic import synthetic_frame


def walk(spec: dict | list):
    """Every dict inside a Vega-Lite spec."""
    if isinstance(spec, dict):
        yield spec
        for value in spec.values():
            yield from walk(value)
    elif isinstance(spec, list):
        for value in spec:
            yield from walk(value)


def marks(spec: dict) -> list[dict]:
    return [d for d in walk(spec) if "mark" in d]


def mark_type(unit: dict) -> str:
    return unit["mark"]["type"] if isinstance(unit["mark"], dict) else unit["mark"]


def mean_rows(spec: dict) -> list[dict]:
    return [r for rows in spec["datasets"].values() for r in rows if r.get("kind") == "mean"]


def param_axes(spec: dict) -> list[str]:
    return [p["name"].removeprefix("pick_") for p in spec.get("params", [])
            if isinstance(p.get("bind"), dict) and p["bind"].get("input") == "select"]  # fmt: skip


# A frame on which every chart has data: the paper's axes plus BN, labels, noise, curves, kernels.
def rich_frame(seeds=(0, 1, 2)) -> pl.DataFrame:
    grid = {
        "model": ["mcmahan_cnn", "resnet18"],
        "batch_size": [1, 2, 4, 8, 16],
        "init_method": ["xavier_normal", "kaiming_normal"],
        "activation": ["relu", "sigmoid"],
        "prune": ["none", "small"],
    }

    def psnr(c: dict) -> float:
        return 25 - 2 * math.log2(c["batch_size"]) - (8 if c["activation"] == "relu" else 0)

    base = synthetic_frame(grid, psnr, seeds=seeds, extra=curves_and_kernels)
    accuracy = lambda c: {"label_accuracy": 0.8 + 0.05 * (c["seed"] % 3)}  # noqa: E731
    weight_std = lambda c: {"init_weight_std": 0.05 * c["init_scale"]}  # noqa: E731
    extras = [
        synthetic_frame({"norm": ["batch"], "bn_mode": ["eval", "train"],
                         "activation": ["relu", "sigmoid"]}, lambda c: 20, seeds,
                        extra=curves_and_kernels),
        synthetic_frame({"label_strategy": ["oracle", "optimize"], "batch_size": [1, 2, 4, 8, 16]},
                        lambda c: 20, seeds, extra=accuracy),
        synthetic_frame({"noise": ["gaussian"], "noise_scale": [0.01, 0.1]}, lambda c: 10, seeds),
        synthetic_frame({"init_scale": [0.25, 0.5, 2.0, 4.0], "activation": ["relu"],
                         "init_method": ["xavier_normal", "kaiming_normal"]}, lambda c: 15, seeds,
                        extra=weight_std),
        synthetic_frame({"prune": ["small"], "prune_ratio": [0.0, 0.1, 0.5],
                         "mask_pruned": [False, True]}, lambda c: 20 - 10 * c["prune_ratio"],
                        seeds),
    ]  # fmt: skip
    return pl.concat([base, *extras], how="diagonal_relaxed")


def curves_and_kernels(c: dict) -> dict:
    scale = 1.0 if c.get("bn_mode") == "eval" else 10.0
    return {
        "curve_iteration": [0, 10, 20],
        "curve_psnr": [5.0, 10.0 + c["seed"], 15.0 + c["seed"]],
        "curve_grad_loss": [1.0, 0.1, 0.01 * (1 + c["seed"])],
        "grad_kernel_norms": [scale * (k + 1 + c["seed"]) for k in range(8)],
    }


@pytest.fixture(scope="module")
def rich() -> pl.DataFrame:
    return rich_frame()


@pytest.fixture(scope="module")
def specs(rich: pl.DataFrame) -> dict[str, dict]:
    return {name: charts.build(name, rich).to_dict() for name in charts.CHARTS}


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_n_is_printed_in_the_rendered_chart(name: str, specs: dict) -> None:
    svg = vlc.vegalite_to_svg(specs[name])
    labels = re.findall(r"n=(\d+)", svg)
    assert labels, f"{name}: no n= label in the rendered SVG"
    if name != "bn_gradients":  # (its kernel panel says "n=1 trial": one trial, by design)
        assert {int(n) for n in labels} <= {r["n"] for r in mean_rows(specs[name])}


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_bands_are_translucent(name: str, specs: dict) -> None:
    for unit in marks(specs[name]):
        if mark_type(unit) != "area":
            continue
        assert unit["mark"]["opacity"] < 0.5
        opacity = unit.get("encoding", {}).get("opacity")
        if opacity:  # a legend selection fades the band further, never makes it opaque
            values = [
                opacity.get("value"),
                *(c.get("value") for c in [opacity.get("condition", {})]),
            ]
            assert all(v < 0.5 for v in values if v is not None), opacity


@pytest.mark.parametrize("name", list(charts.CHARTS))
def test_individual_trials_drawn_under_the_means(name: str, specs: dict) -> None:
    spec = specs[name]
    if name == "bn_gradients":  # the zero-share panel has them; the kernel panel is one trial
        spec = spec["hconcat"][0]
        spec["datasets"] = specs[name]["datasets"]
    layers = [
        u for u in marks(spec) if {"filter": "(datum.kind === 'trial')"} in u.get("transform", [])
    ]
    assert layers, f"{name}: no layer of individual trials"
    trials = [
        r for rows in specs[name]["datasets"].values() for r in rows if r.get("kind") == "trial"
    ]
    assert trials and all("trial_key" in r and r["y"] is not None for r in trials)


def test_an_unencoded_axis_is_a_dropdown_never_pooled(rich: pl.DataFrame) -> None:
    grid = rich.filter((pl.col("norm") == "none") & (pl.col("label_strategy") == "idlg")
                       & (pl.col("noise") == "none") & (pl.col("init_scale") == 1.0)
                       & (pl.col("prune_ratio") == 0.2) & ~pl.col("mask_pruned"))  # fmt: skip
    spec = charts.psnr_by_init(grid).to_dict()
    assert param_axes(spec) == ["batch_size"]  # the paper's by-init chart pooled 5 batch sizes
    param = spec["params"][-1]
    assert param["bind"]["options"] == ["1", "2", "4", "8", "16"]
    for unit in marks(spec):  # every layer shows one batch size at a time
        assert {"filter": "(datum['batch_size'] === pick_batch_size)"} in unit["transform"]
    assert (
        "batch size" in spec["title"]["subtitle"][-1]
        and "shown: batch size =" in spec["title"]["subtitle"][-1]
    )
    points = mean_rows(spec)
    assert {p["batch_size"] for p in points} == {"1", "2", "4", "8", "16"}
    assert all(p["n"] == 3 for p in points)  # per point: the 3 seeds only
    # an axis that is a function of the encoded ones pools nothing and is no dropdown
    one_batch_per_model = grid.filter(
        ((pl.col("model") == "mcmahan_cnn") & (pl.col("batch_size") == 1))
        | ((pl.col("model") == "resnet18") & (pl.col("batch_size") == 4))
    )
    assert param_axes(charts.psnr_by_init(one_batch_per_model).to_dict()) == []


def test_several_sweeps_are_facet_rows(rich: pl.DataFrame) -> None:
    both = pl.concat([rich, rich.with_columns(pl.lit("other").alias("sweep"))])
    spec = charts.psnr_vs_batch(both).to_dict()
    assert spec["facet"]["row"]["field"] == "sweep"
    assert "sweep" not in param_axes(spec)
    assert {p["sweep"] for p in mean_rows(spec)} == {"synthetic", "other"}


def test_batch_sizes_sort_as_numbers_and_accuracy_stays_in_0_1(specs: dict) -> None:
    spec = specs["label_strategy"]
    color = next(u["encoding"]["color"] for u in marks(spec) if "color" in u.get("encoding", {}))
    assert color["field"] == "batch_size" and color["type"] == "ordinal"
    points = mean_rows(spec)
    assert all(isinstance(p["batch_size"], int) for p in points)
    svg = vlc.vegalite_to_svg(spec)
    legend = svg[svg.index("role-legend-label") :]
    labels = re.findall(r"<text[^>]*>(1|2|4|8|16)</text>", legend)
    assert labels[:5] == ["1", "2", "4", "8", "16"], labels
    accuracy = [p for p in points if p["metric"] == "label accuracy"]
    assert accuracy and all(0 <= p["ci_low"] and p["ci_high"] <= 1 for p in accuracy)
    assert any(p["ci_high"] == 1.0 for p in accuracy)  # clipped: the raw interval passes 1


def test_single_trial_points_are_hollow(rich: pl.DataFrame) -> None:
    spec = charts.bn_mode(
        rich.filter((pl.col("seed") == 0) & (pl.col("norm") == "batch"))
    ).to_dict()
    assert all(p["n"] == 1 and p["ci_low"] is None for p in mean_rows(spec))
    fills = [u["encoding"]["fill"] for u in marks(spec) if "fill" in u.get("encoding", {})]
    assert (
        fills and fills[0]["condition"]["test"] == "datum.n >= 2" and fills[0]["value"] == "white"
    )
    assert "n=1" in vlc.vegalite_to_svg(spec)


def test_kernel_picture_is_one_trial_not_an_average(specs: dict, rich: pl.DataFrame) -> None:
    spec = specs["bn_gradients"]
    zero_panel, kernel_panel = spec["hconcat"]
    assert zero_panel["facet"]["column"]["field"] == "activation"  # the BN figure per activation
    rows = [r for rows in spec["datasets"].values() for r in rows if r.get("kind") == "kernel"]
    for trial_key in {r["trial_key"] for r in rows}:
        mine = sorted((r for r in rows if r["trial_key"] == trial_key), key=lambda r: r["kernel"])
        plotted = [r["kernel_norm"] for r in mine]
        stored = rich.filter(pl.col("trial_key") == trial_key)["grad_kernel_norms"][0].to_list()
        assert plotted == stored  # kernel k is one filter of one trial
    pairs = {(r["trial"], r["bn_mode"]) for r in rows}
    assert len(pairs) == 2 * len({r["trial"] for r in rows})  # train and eval of each pair
    assert all(r["seed"] == 0 for r in rows)  # the lowest seed that has both modes


def test_init_scale_chart(specs: dict) -> None:
    spec = specs["init_scale"]
    top, bottom = spec["vconcat"]
    xs = [u["encoding"]["x"] for u in marks(top) if "x" in u.get("encoding", {})]
    assert xs[0]["scale"]["type"] == "log" and "init scale" in xs[0]["title"]
    tooltips = [
        t.get("field") for u in marks(top) for t in u.get("encoding", {}).get("tooltip", [])
    ]
    assert "init_weight_std" in tooltips
    xb = [u["encoding"]["x"] for u in marks(bottom) if "x" in u.get("encoding", {})][0]
    assert "weight std" in xb["title"]
    means = [r for r in mean_rows(spec) if "init_weight_std" in r and r["init_weight_std"]]
    assert all(
        r["x"] == pytest.approx(r["init_weight_std"])
        for r in means
        if r["x"] != r.get("init_scale")
    )


def test_pruning_aware_chart(specs: dict) -> None:
    spec = specs["pruning_aware"]
    dashes = {
        u["encoding"]["strokeDash"]["field"]
        for u in marks(spec)
        if "field" in u.get("encoding", {}).get("strokeDash", {})  # (range bars: a fixed dash)
    }
    assert dashes == {"attacker"}
    points = mean_rows(spec)
    assert {p["attacker"] for p in points} == {"unaware", "aware (masks pruned)"}
    # the unpruned trials are the start of both curves
    assert {p["attacker"] for p in points if p["x"] == 0} == {"unaware", "aware (masks pruned)"}


def test_chart_without_its_axis_is_skipped(rich: pl.DataFrame) -> None:
    plain = rich.filter(
        (pl.col("norm") == "none") & (pl.col("label_strategy") == "idlg")
        & (pl.col("init_scale") == 1.0) & (pl.col("model") == "mcmahan_cnn")
    )  # fmt: skip
    for name in ("bn_mode", "bn_gradients", "model_by_init", "label_strategy", "init_scale"):
        with pytest.raises(charts.ChartSkipped, match="does not vary"):
            charts.build(name, plain)
    with pytest.raises(charts.ChartSkipped):
        charts.psnr_by_init(rich.with_columns(pl.lit("error").alias("status")))


# -- the real small sweep: every plotted number recomputed -------------------------------------


def expected(rows: pl.DataFrame, by: list[str], value: str, log: bool = False) -> dict:
    """key -> (mean, low, high, n): the t-interval (n >= 3) or the range of two trials,
    computed without analysis.stats; a PSNR interval stops at 0 dB (clamped images: MSE <= 1)."""
    rows = rows.filter(pl.col(value).is_not_null() & pl.col(value).is_finite())
    if log:
        rows = rows.filter(pl.col(value) > 0).with_columns(pl.col(value).log10())
    out = {}
    for key, part in rows.group_by(by):
        values = part[value].to_list()
        n = len(values)
        mean = sum(values) / n
        if n > 2:
            sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
            half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
            low, high = mean - half, mean + half
        elif n == 2:  # two trials: the bar is their range, not a t-interval on 1 df
            low, high = min(values), max(values)
        else:
            low = high = None
        if log:
            mean, low, high = (None if v is None else 10**v for v in (mean, low, high))
        if "psnr" in value and low is not None and n > 2:
            low, high = max(low, 0.0), max(high, 0.0)
        out[tuple(str(k).lower() if k is not None else "unknown" for k in key)] = (
            mean,
            low,
            high,
            n,
        )
    return out


def check_points(points: list[dict], want: dict, by: list[str]) -> None:
    assert len(points) == len(want)
    for point in points:
        mean, low, high, n = want[tuple(str(point[c]).lower() for c in by)]
        assert point["n"] == n
        assert point["mean"] == pytest.approx(mean, rel=1e-9)
        if low is None:
            assert point["ci_low"] is None and point["ci_high"] is None
        else:
            assert point["ci_low"] == pytest.approx(low, rel=1e-9)
            assert point["ci_high"] == pytest.approx(high, rel=1e-9)


def result_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("status").is_in(["ok", "diverged"]))


def with_arch(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.with_columns(
        pl.when(pl.col("norm") == "batch").then(pl.col("model") + "+bn")
        .otherwise(pl.col("model")).alias("arch")
    )  # fmt: skip


REAL = [  # chart, the columns its points are grouped by (besides its dropdowns), rows, value
    ("psnr_by_init", ["model", "init_method", "activation", "prune"], None, "psnr_mean"),
    ("model_by_init", ["activation", "init_method", "model"], None, "psnr_mean"),
    ("psnr_vs_batch", ["model", "init_method", "activation", "batch_size"], None, "psnr_mean"),
    ("bn_mode", ["arch", "activation", "bn_mode"], with_arch, "psnr_mean"),
]


@pytest.mark.parametrize(("name", "by", "derive", "value"), REAL)
def test_points_on_a_real_sweep(name, by, derive, value, small_frame: pl.DataFrame) -> None:
    spec = charts.build(name, small_frame).to_dict()
    rows = result_rows(small_frame)
    rows = derive(rows) if derive else rows
    by = by + param_axes(spec)  # every dropdown axis splits the points too
    check_points(mean_rows(spec), expected(rows, by, value), by)
    trials = [r for rows_ in spec["datasets"].values() for r in rows_ if r.get("kind") == "trial"]
    assert len(trials) == rows.height  # every trial drawn, the error row never


def test_convergence_on_a_real_sweep(small_frame: pl.DataFrame) -> None:
    spec = charts.convergence(small_frame).to_dict()
    loss_panel, psnr_panel = spec["vconcat"]
    curves = (
        result_rows(small_frame)
        .with_columns((pl.col("init_method") + " / " + pl.col("activation")).alias("series"))
        .explode(["curve_iteration", "curve_grad_loss", "curve_psnr"])
        .rename({"curve_iteration": "iteration"})
    )
    by = ["model", "series", "iteration", *param_axes(spec)]
    loss = [r for r in mean_rows(spec) if r["metric"] == "gradient loss"]
    psnr = [r for r in mean_rows(spec) if r["metric"] == "PSNR (dB)"]
    check_points(psnr, expected(curves, by, "curve_psnr"), by)
    check_points(loss, expected(curves, by, "curve_grad_loss", log=True), by)
    y = [u["encoding"]["y"] for u in marks(loss_panel) if "y" in u.get("encoding", {})][0]
    assert y["scale"]["type"] == "log"


def test_png_export(small_frame: pl.DataFrame) -> None:
    for name in charts.CHARTS:
        try:
            spec = charts.build(name, small_frame).to_dict()
        except charts.ChartSkipped:
            assert name in ("init_scale", "pruning_aware")  # the mini sweep has neither
            continue
        png = vlc.vegalite_to_png(spec, scale=1)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_aware_curve_borrows_the_unpruned_point_only_when_it_has_none() -> None:
    unpruned = synthetic_frame({"activation": ["relu"]}, lambda c: 30.0)
    pruned = synthetic_frame(
        {"activation": ["relu"], "prune": ["small"], "mask_pruned": [False, True]},
        lambda c: 29.0 if c["mask_pruned"] else 10.0,
    )
    spec = charts.pruning_aware(pl.concat([unpruned, pruned], how="diagonal_relaxed")).to_dict()
    start = [p for p in mean_rows(spec) if p["x"] == 0]
    assert {p["attacker"] for p in start} == {"unaware", "aware (masks pruned)"}
    assert all(p["n"] == 3 for p in start)  # the 3 unpruned trials, once per curve


def test_lines_print_n_once_unless_it_varies(specs: dict) -> None:
    stat = {"x", "mean", "y", "ci_low", "ci_high", "n", "n_label", "label_y"}
    along = {"psnr_vs_batch": {"batch_size"}, "pruning_aware": {"strength", "prune_ratio"}}
    for name, fields in along.items():
        series: dict[tuple, list[dict]] = {}
        for p in mean_rows(specs[name]):
            key = tuple((k, v) for k, v in sorted(p.items()) if k not in stat | fields)
            series.setdefault(key, []).append(p)
        assert len(series) > 1
        for points in series.values():
            if len({p["n"] for p in points}) > 1:
                continue  # n varies along the line: every point says its own
            labelled = [p["x"] for p in points if p.get("n_label")]
            assert labelled == [max(p["x"] for p in points)], (name, points)


# -- the registry, two-trial points, variants, sampled curves ----------------------------------


def test_one_registry_names_every_chart_once() -> None:
    from analysis.charts import specs

    assert set(charts.CHARTS) == {s.name for s in specs.CHARTS.values()}
    for name, spec in charts.CHARTS.items():
        assert spec.panels and spec.layout in ("single", "hconcat", "vconcat")
        assert all(panel.kind in charts.draw.DRAWERS for panel in spec.panels)
        assert getattr(charts, name).args == (name,)  # charts.<name>(frame): from the table
    with pytest.raises(KeyError, match="known charts: psnr_by_init"):
        charts.build("nope", pl.DataFrame())
    with pytest.raises(AttributeError):
        charts.VIEWS  # noqa: B018 (the second table is gone)


def two_seed_frame(seeds=(0, 1)) -> pl.DataFrame:
    grid = {"batch_size": [1, 2, 4], "init_method": ["xavier_normal", "kaiming_normal"]}
    return synthetic_frame(grid, lambda c: 1.0 + c["batch_size"], seeds=seeds, noise_sd=3.0)


def test_two_trials_draw_their_range_not_a_t_interval() -> None:
    frame = two_seed_frame()
    spec = charts.build("psnr_vs_batch", frame).to_dict()
    points = mean_rows(spec)
    assert points and all(p["n"] == 2 for p in points)
    for p in points:
        values = frame.filter(
            (pl.col("batch_size") == p["batch_size"]) & (pl.col("init_method") == p["init_method"])
        )["psnr_mean"]
        assert (p["ci_low"], p["ci_high"]) == (values.min(), values.max())  # the two trials
    dashed = [u for u in marks(spec) if mark_type(u) == "rule" and u["mark"].get("strokeDash")]
    assert dashed and all("datum.n < 3" in str(u["transform"]) for u in dashed)
    bands = [u for u in marks(spec) if mark_type(u) == "area"]
    assert bands and all("datum.n >= 3" in str(u["transform"]) for u in bands)
    reading = spec["title"]["subtitle"][0]
    assert "range of the two trials, not an interval" in reading and "t-interval" not in reading
    svg = vlc.vegalite_to_svg(spec)
    assert 'stroke-dasharray="3,2"' in svg  # the range bars are drawn
    # three seeds: a t-interval, clipped at 0 dB however wide
    three = charts.build("psnr_vs_batch", two_seed_frame(seeds=(0, 1, 2))).to_dict()
    wide = mean_rows(three)
    assert all(p["n"] == 3 and p["ci_low"] >= 0 for p in wide)
    assert any(p["ci_low"] == 0 for p in wide)  # the raw interval reaches below 0 dB
    assert "95% t-interval over seeds (n >= 3)" in three["title"]["subtitle"][0]


def variant_frame() -> pl.DataFrame:
    """Two variants of one sweep, each changing a field (as `corrections` does)."""
    grid = {"batch_size": [1, 2], "activation": ["relu", "sigmoid"]}
    seed_protocol = synthetic_frame(grid, lambda c: 10.0).with_columns(
        pl.lit("seed-protocol").alias("variant"), pl.lit("oracle").alias("label_strategy")
    )
    labels = synthetic_frame(grid, lambda c: 14.0).with_columns(pl.lit("labels").alias("variant"))
    return pl.concat([seed_protocol, labels])


def test_variants_are_facet_rows_as_sweeps_are() -> None:
    spec = charts.build("psnr_vs_batch", variant_frame()).to_dict()
    row = spec["facet"]["row"]
    assert row["field"] == "sweep" and row["title"] == "sweep/variant"
    points = mean_rows(spec)
    assert {p["sweep"] for p in points} == {"synthetic/seed-protocol", "synthetic/labels"}
    assert all(p["n"] == 3 for p in points)  # never pooled over the variants
    assert "label_strategy" not in param_axes(spec)  # a function of the variant: no dropdown
    plain = variant_frame().with_columns(pl.lit(None, pl.Utf8).alias("variant"))
    plain = plain.filter(pl.col("label_strategy") != "oracle")  # a sweep without variants
    assert "row" not in charts.build("psnr_vs_batch", plain).to_dict()["facet"]


def test_thin_curves_are_sampled_and_the_chart_says_how_many(monkeypatch) -> None:
    from analysis.charts import derive

    frame = synthetic_frame(
        {"activation": ["relu", "sigmoid"]}, lambda c: 10.0, seeds=range(6),
        extra=curves_and_kernels,
    )  # fmt: skip
    monkeypatch.setattr(derive, "MAX_TRIAL_CURVE_ROWS", 10)
    spec = charts.build("convergence", frame).to_dict()
    rows = [r for rows in spec["datasets"].values() for r in rows]
    drawn = {r["trial_key"] for r in rows if r.get("kind") == "trial"}
    assert len(drawn) == 2 * 1  # 2 curves (relu, sigmoid) x k = 1 trial, the lowest seed
    assert {r["seed"] for r in rows if r.get("kind") == "trial"} == {0}
    assert all(r["n"] == 6 for r in rows if r.get("kind") == "mean")  # means use every trial
    note = [line for line in spec["title"]["subtitle"] if line.startswith("thin lines:")]
    assert note == [
        "thin lines: 2 of 12 trials drawn (one per curve, the lowest seed; a curve of 2 trials "
        "keeps both); every mean and interval uses all 12; the explorer has every curve"
    ]
    # a curve of two trials is drawn whole: they are its bar
    two = frame.filter((pl.col("activation") == "relu") | (pl.col("seed") < 2))
    spec = charts.build("convergence", two).to_dict()
    rows = [r for rows in spec["datasets"].values() for r in rows if r.get("kind") == "trial"]
    assert {r["seed"] for r in rows if r["series"].endswith("sigmoid")} == {0, 1}
    assert {r["seed"] for r in rows if r["series"].endswith("relu")} == {0}
    monkeypatch.setattr(derive, "MAX_TRIAL_CURVE_ROWS", 10_000)
    whole = charts.build("convergence", frame).to_dict()
    assert not any(line.startswith("thin lines:") for line in whole["title"]["subtitle"])


def test_pack_keeps_every_row(specs: dict) -> None:
    """What a page carries (`pack`) rebuilds the rows of the chart's own JSON (`unpack`; the
    browser test checks the page's JavaScript against it)."""
    for name, spec in specs.items():
        compact = charts.compact({**spec, "datasets": dict(spec["datasets"])})
        packed = charts.pack(compact)
        assert len(json.dumps(packed)) < len(json.dumps(compact))
        rebuilt = charts.unpack(packed)["datasets"]
        for key, rows in compact["datasets"].items():
            assert len(rebuilt[key]) == len(rows), name
            for got, want in zip(rebuilt[key], rows):
                assert got.keys() == want.keys()
                for k, v in want.items():
                    assert got[k] == (pytest.approx(v, rel=1e-3) if isinstance(v, float) else v)
