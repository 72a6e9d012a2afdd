"""The seed's claims tested on frames built to decide them, and on a real small sweep.

The synthetic frames have the sink's columns (every config field) and a PSNR built from the
claim's effect plus per-trial noise; the verdicts must follow the effect: supported when the
data carry the claim, contradicted when they carry the opposite, inconclusive when the seeds are
too few to tell, never contradicted on a demo-like frame whose every stratum agrees with the
claim.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats as scipy_stats

from analysis import findings, stats
from analysis.findings import CONTRADICTED, INCONCLUSIVE, NOT_ENOUGH, SUPPORTED
from tests.analysis_fixtures import small_frame, small_sweep, synthetic_frame

__all__ = ["small_frame", "small_sweep"]

# The deck's order, in dB: Xavier-ReLU < Kaiming-ReLU < Kaiming-Sigmoid < Xavier-Sigmoid.
DECK_CELLS = {("xavier", "relu"): 16, ("kaiming", "relu"): 25, ("kaiming", "sigmoid"): 29,
              ("xavier", "sigmoid"): 32}  # fmt: skip
DEMO_GRID = {
    "batch_size": [1, 2],
    "init_method": ["xavier_normal", "kaiming_normal"],
    "activation": ["relu", "sigmoid"],
    "prune": ["none", "small"],
}


def deck_psnr(config: dict) -> float:
    """The deck's world: its order, pruning hurts Sigmoid under Xavier (30 -> 9 dB, as on the
    demo) and little under Kaiming, PSNR falls with the batch, ResNet above the McMahan CNN."""
    family = config["init_method"].split("_")[0]
    psnr = DECK_CELLS[(family, config["activation"])]
    if config["prune"] == "small":
        psnr -= 21 if (family, config["activation"]) == ("xavier", "sigmoid") else (
            6 if family == "xavier" else 0.3)  # fmt: skip
    psnr -= 2.0 * math.log2(config["batch_size"])
    return psnr + (3 if config["model"] == "resnet18" else 0)


def by_key(frame: pl.DataFrame) -> dict[str, findings.Finding]:
    return {f.key: f for f in findings.findings(frame)}


def test_demo_like_frame_never_reads_contradicted() -> None:
    # 2 seeds, every stratum agrees with the deck, noise wide enough that intervals are wide
    frame = synthetic_frame(DEMO_GRID, deck_psnr, seeds=(0, 1), noise_sd=3.0)
    items = findings.findings(frame)
    verdicts = {f.key: f.verdict for f in items}
    assert CONTRADICTED not in verdicts.values(), verdicts
    assert INCONCLUSIVE in verdicts.values()  # 2 seeds: some intervals straddle zero
    for item in items:
        if item.verdict == INCONCLUSIVE:  # says how far the data are from a decision
            assert item.seeds_needed and item.seeds_needed > 2
            assert "smallest detectable effect" in item.evidence


def test_pooling_over_pruning_does_not_flip_the_order() -> None:
    # pruning drops Xavier-Sigmoid by 21 dB: pooled over prune the order is wrong, at prune
    # none (where the deck speaks) it is right; the claim is tested there
    frame = synthetic_frame(DEMO_GRID, deck_psnr, seeds=range(6), noise_sd=0.5)
    pooled = frame.group_by("init_method", "activation").agg(pl.col("psnr_mean").mean())
    xs = pooled.filter(
        (pl.col("init_method") == "xavier_normal") & (pl.col("activation") == "sigmoid")
    )
    ks = pooled.filter(
        (pl.col("init_method") == "kaiming_normal") & (pl.col("activation") == "sigmoid")
    )
    assert xs["psnr_mean"][0] < ks["psnr_mean"][0]  # the pooled order is the wrong one
    order = by_key(frame)["order"]
    assert order.verdict == SUPPORTED, order.evidence
    assert "without pruning" in order.evidence


def test_constructed_contradictions() -> None:
    def opposite(config: dict) -> float:  # Sigmoid leaks less, PSNR grows with the batch
        return (20 - (8 if config["activation"] == "sigmoid" else 0)
                + 2.0 * math.log2(config["batch_size"]))  # fmt: skip

    grid = {**DEMO_GRID, "batch_size": [1, 2, 4]}
    items = by_key(synthetic_frame(grid, opposite, seeds=range(4), noise_sd=0.5))
    assert items["relu_vs_sigmoid"].verdict == CONTRADICTED
    assert items["batch_trend"].verdict == CONTRADICTED
    assert items["order"].verdict == CONTRADICTED  # Kaiming-Sigmoid below Kaiming-ReLU
    assert items["pruning_xavier"].verdict == CONTRADICTED  # no pruning effect at all
    assert items["pruning_kaiming"].verdict == SUPPORTED  # ... which is "low effect"


def test_supported_when_the_data_carry_the_claims() -> None:
    grid = {
        "model": ["mcmahan_cnn", "resnet18"],
        "batch_size": [1, 4, 16],
        "init_method": ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"],
        "activation": ["relu", "sigmoid"],
        "prune": ["none", "small"],
    }

    def shrinking(config: dict) -> float:  # the cells' spread shrinks with the batch
        family = config["init_method"].split("_")[0]
        base = DECK_CELLS[(family, config["activation"])]
        shrink = {1: 1.0, 4: 0.6, 16: 0.2}[config["batch_size"]]
        psnr = 24 + (base - 24) * shrink - 2.0 * math.log2(config["batch_size"])
        if config["prune"] == "small":
            psnr -= 6 if family == "xavier" else 0.2
        return psnr + (3 if config["model"] == "resnet18" else 0)

    items = by_key(synthetic_frame(grid, shrinking, seeds=range(6), noise_sd=0.4))
    for key in ("relu_vs_sigmoid", "order", "batch_trend", "batch_shrink", "uniform_vs_normal",
                "pruning_xavier", "pruning_kaiming", "pruning_defends", "model"):  # fmt: skip
        assert items[key].verdict == SUPPORTED, (key, items[key].evidence)
    # equivalence of uniform and normal: the interval inside +-2 dB, named as the test
    assert items["uniform_vs_normal"].test == "|uniform - normal| < 2 dB"
    # the claim was tested per stratum; the axes averaged over are named with their levels
    relu = items["relu_vs_sigmoid"]
    assert {s.label for s in relu.strata} == {
        f"network={n}, family={f}" for n in ("mcmahan", "resnet18") for f in ("kaiming", "xavier")
    }
    assert "batch_size (1, 4, 16)" in relu.evidence and "rows: no pruning" in relu.evidence


def test_equivalence_contradicted_by_a_big_difference() -> None:
    grid = {"init_method": ["xavier_normal", "xavier_uniform"], "activation": ["relu", "sigmoid"]}
    frame = synthetic_frame(
        grid, lambda c: 20 + (5 if c["init_method"].endswith("uniform") else 0), seeds=range(5)
    )
    item = by_key(frame)["uniform_vs_normal"]
    assert item.verdict == CONTRADICTED and item.estimate.low > findings.MARGIN_DB


def test_effect_is_averaged_per_seed_with_a_t_interval_over_seeds() -> None:
    grid = {"activation": ["relu", "sigmoid"], "batch_size": [1, 2, 4]}
    frame = synthetic_frame(
        grid, lambda c: 20 - (3 if c["activation"] == "relu" else 0), seeds=range(5), noise_sd=1.0
    )
    # by hand: pair relu with sigmoid per (seed, batch), average per seed, t over seeds
    wide = frame.pivot(on="activation", index=["seed", "batch_size"], values="psnr_mean")
    per_seed = (
        wide.with_columns((pl.col("relu") - pl.col("sigmoid")).alias("d"))
        .group_by("seed").agg(pl.col("d").mean()).sort("seed")["d"].to_numpy()
    )  # fmt: skip
    n = len(per_seed)
    half = scipy_stats.t.ppf(0.975, n - 1) * per_seed.std(ddof=1) / math.sqrt(n)
    item = by_key(frame)["relu_vs_sigmoid"]
    assert item.n == n == 5
    assert (item.estimate.mean, item.estimate.low, item.estimate.high) == pytest.approx(
        (per_seed.mean(), per_seed.mean() - half, per_seed.mean() + half)
    )
    power = scipy_stats.t.ppf(0.975, n - 1) + scipy_stats.t.ppf(0.8, n - 1)
    assert item.detectable == pytest.approx(power * per_seed.std(ddof=1) / math.sqrt(n))


def test_not_enough_data_with_one_seed_or_a_missing_level() -> None:
    frame = synthetic_frame(DEMO_GRID, deck_psnr, seeds=(0,))
    verdicts = {f.key: f.verdict for f in findings.findings(frame)}
    assert set(verdicts.values()) == {NOT_ENOUGH}, verdicts
    relu_only = synthetic_frame({**DEMO_GRID, "activation": ["relu"]}, deck_psnr)
    assert by_key(relu_only)["relu_vs_sigmoid"].evidence.startswith("no trials with activation")


def test_unknown_values_are_left_out_and_counted() -> None:
    grid = {"prune": ["none", "small"], "init_method": ["xavier_normal"]}
    frame = synthetic_frame(grid, lambda c: 20 - (5 if c["prune"] == "small" else 0), range(4))
    # rows written before mask_pruned existed: unknown, not "false"
    frame = frame.with_columns(
        pl.when(pl.col("seed") == 0)
        .then(None)
        .otherwise(pl.col("mask_pruned"))
        .alias("mask_pruned")
    )
    item = by_key(frame)["pruning_xavier"]
    assert item.n == 3  # seed 0 is unknown: left out
    assert "rows with unknown mask_pruned left out" in item.evidence
    notes = findings.protocol_notes(frame)
    assert any(n.startswith("mask_pruned: unknown in") for n in notes)


def test_protocol_notes_name_what_differs_from_the_deck() -> None:
    frame = synthetic_frame({"activation": ["relu"]}, lambda c: 10.0).with_columns(
        pl.lit(200).alias("iterations"), pl.lit("idlg").alias("label_strategy")
    )
    notes = findings.protocol_notes(frame)
    assert "iterations: 200 here (deck: 500 iterations)" in notes
    assert any(n.startswith("label_strategy: idlg here") for n in notes)
    assert not any(n.startswith("optimizer") for n in notes)  # Adam, as in the deck
    seed_protocol = frame.with_columns(
        pl.lit(500).alias("iterations"), pl.lit("oracle").alias("label_strategy"),
        pl.lit("first").alias("image_choice"), pl.lit("minmax").alias("image_norm"),
        pl.lit("tensors").alias("prune_mode"), pl.lit(True).alias("skip_zero_tensors"),
        pl.lit("last").alias("iterate"), pl.lit("seed").alias("init_gain"),
        pl.lit("mcmahan_cnn_seed").alias("model"),
    )  # fmt: skip
    left = findings.protocol_notes(seed_protocol)
    assert [n.split(":")[0] for n in left] == ["seeds", "score"]  # 3 seeds; the score note


# -- issue 11 --------------------------------------------------------------------------------

SCALES = [0.25, 0.5, 1.0, 2.0, 4.0]
BASE_STD = {"xavier": 0.048, "kaiming": 0.067}  # first conv, the seed's convention


def scale_frame(psnr_of: callable, seeds=range(4)) -> pl.DataFrame:
    grid = {
        "init_method": ["xavier_normal", "kaiming_normal"],
        "activation": ["relu", "sigmoid"],
        "init_scale": SCALES,
    }

    def std(config: dict) -> float:
        return BASE_STD[config["init_method"].split("_")[0]] * config["init_scale"]

    return synthetic_frame(
        grid, lambda c: psnr_of(c, std(c)), seeds=seeds, noise_sd=0.4,
        extra=lambda c: {"init_weight_std": std(c)},
    )  # fmt: skip


def test_relu_leakage_follows_the_scale() -> None:
    # PSNR a function of the weight std only: families meet on the std axis
    frame = scale_frame(lambda c, std: 10 - 4 * math.log2(std / 0.05))
    item = by_key(frame)["scale_not_family"]
    assert item.verdict == SUPPORTED, item.evidence
    # at equal init_scale the families do differ (Kaiming's std is 1.4x): named for reference
    assert "at equal init_scale Kaiming - Xavier" in item.evidence


def test_relu_leakage_follows_the_family() -> None:
    frame = scale_frame(
        lambda c, std: 10 - 4 * math.log2(std / 0.05) + (6 if c["init_method"][0] == "k" else 0)
    )
    assert by_key(frame)["scale_not_family"].verdict == CONTRADICTED


def test_relu_leakage_flat_in_scale_contradicts() -> None:
    frame = scale_frame(lambda c, std: 12.0)
    item = by_key(frame)["scale_not_family"]
    assert item.verdict == CONTRADICTED, item.evidence  # the slope is demonstrably ~0


def aware_frame(aware_drop: float) -> pl.DataFrame:
    grid = {
        "activation": ["relu", "sigmoid"],
        "prune": ["small"],
        "prune_ratio": [0.0, 0.1, 0.2, 0.4],
        "mask_pruned": [False, True],
    }

    def psnr(config: dict) -> float:
        drop = aware_drop if config["mask_pruned"] else 20.0
        return 30 - drop * (config["prune_ratio"] / 0.2 if config["prune_ratio"] <= 0.2 else 1)

    return synthetic_frame(grid, psnr, seeds=range(4), noise_sd=0.5)


def test_pruning_defends_only_the_unaware() -> None:
    items = by_key(aware_frame(aware_drop=0.1))
    assert items["pruning_defends"].verdict == SUPPORTED  # the deck's attacker: -20 dB
    assert items["pruning_aware"].verdict == CONTRADICTED  # the aware one loses 0.1 dB
    # prune small at prune_ratio 0 prunes nothing: those rows are the unpruned baseline of
    # every claim made "without pruning"
    assert (
        items["relu_vs_sigmoid"].n == 4 and "rows: no pruning" in items["relu_vs_sigmoid"].evidence
    )
    both = by_key(aware_frame(aware_drop=12.0))
    assert both["pruning_aware"].verdict == SUPPORTED


# -- the decision rules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "sign", "verdict"),
    [(-3, -1, -1, SUPPORTED), (1, 3, -1, CONTRADICTED), (-1, 1, -1, INCONCLUSIVE),
     (1, 3, 1, SUPPORTED), (-3, -1, 1, CONTRADICTED)],
)  # fmt: skip
def test_decide_sign(low: float, high: float, sign: int, verdict: str) -> None:
    estimate = stats.Estimate((low + high) / 2, low, high, 4, 1.0)
    assert stats.decide_sign(estimate, sign)[0] == verdict


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [(-1, 1, SUPPORTED), (2.5, 4, CONTRADICTED), (-4, -2.5, CONTRADICTED), (1, 3, INCONCLUSIVE)],
)
def test_decide_equivalent(low: float, high: float, verdict: str) -> None:
    estimate = stats.Estimate((low + high) / 2, low, high, 4, 1.0)
    assert stats.decide_equivalent(estimate, 2.0)[0] == verdict


def test_replicates_needed_shrink_as_the_effect_grows() -> None:
    estimate = stats.Estimate.of(np.array([1.0, 2.0, 0.5]))
    needs = [estimate.replicates_needed(gap) for gap in (0.2, 0.5, 1.0, 3.0)]
    assert needs == sorted(needs, reverse=True) and needs[-1] >= 2
    assert stats.Estimate.of([1.0]).enough is False  # one seed: no interval
    assert stats.decide_sign(stats.Estimate.of([1.0]), -1)[0] == NOT_ENOUGH


# -- the real small sweep --------------------------------------------------------------------


@pytest.mark.slow
def test_every_claim_has_a_verdict_on_a_real_sweep(small_frame: pl.DataFrame) -> None:
    items = findings.findings(small_frame)
    assert len(items) == len(findings.CLAIMS)
    for item in items:
        assert item.verdict in findings.VERDICTS
        if item.verdict != NOT_ENOUGH:
            assert item.n == 2 and "dB" in item.evidence  # the mini sweep's two seeds
    table = findings.table(small_frame)
    assert table.height == len(findings.CLAIMS)
    assert {"claim", "verdict", "estimate", "ci_low", "ci_high", "n", "evidence"} <= set(
        table.columns
    )
    # the mini sweep has no uniform init, no ResNet twin of a grid trial, no init scale grid
    verdicts = {f.key: f.verdict for f in items}
    assert verdicts["uniform_vs_normal"] == verdicts["scale_not_family"] == NOT_ENOUGH


def test_aware_attacker_borrows_the_unpruned_baseline_only_when_it_has_none() -> None:
    # the unpruned trials ran once (prune none, no mask: the mask is a no-op there)
    unpruned = synthetic_frame({"activation": ["relu", "sigmoid"]}, lambda c: 30.0, range(4))
    pruned = synthetic_frame(
        {"activation": ["relu", "sigmoid"], "prune": ["small"], "mask_pruned": [False, True]},
        lambda c: 29.5 if c["mask_pruned"] else 10.0, range(4),
    )  # fmt: skip
    item = by_key(pl.concat([unpruned, pruned], how="diagonal_relaxed"))["pruning_aware"]
    assert item.verdict == CONTRADICTED and item.n == 4
    assert "baseline (unpruned) taken from rows of any mask_pruned" in item.evidence
    # with its own prune_ratio-0 rows the aware attacker is compared with those, no borrowing
    own = by_key(aware_frame(aware_drop=0.1))["pruning_aware"]
    assert "baseline" not in own.evidence
