"""The seed's claims checked against a real small sweep, and against frames built to decide them."""

from __future__ import annotations

import math

import polars as pl
import pytest
from scipy import stats

from analysis import findings
from tests.analysis_fixtures import small_frame, small_sweep

__all__ = ["small_frame", "small_sweep"]

VERDICTS = {findings.SUPPORTED, findings.NOT_SUPPORTED, findings.NOT_ENOUGH}


@pytest.mark.slow
def test_every_claim_has_numbers_and_a_verdict(small_frame: pl.DataFrame) -> None:
    items = findings.findings(small_frame)
    assert len(items) == 5
    for item in items:
        assert item.verdict in VERDICTS
        assert "dB" in item.evidence
        assert item.n > 0
    table = findings.table(small_frame)
    assert table.columns == ["claim", "evidence", "verdict", "n"] and table.height == 5


@pytest.mark.slow
def test_relu_vs_sigmoid_is_a_paired_t_interval(small_frame: pl.DataFrame) -> None:
    rows = small_frame.filter(pl.col("status").is_in(["ok", "diverged"]))
    keys = [c for c in findings.CONFIG_FIELDS if c != "activation"]
    pairs = (
        rows.filter(pl.col("activation") == "relu")
        .select(*keys, pl.col("psnr_mean").alias("relu"))
        .join(
            rows.filter(pl.col("activation") == "sigmoid").select(
                *keys, pl.col("psnr_mean").alias("sigmoid")
            ),
            on=keys,
        )
    )
    diffs = (pairs["relu"] - pairs["sigmoid"]).to_list()
    n = len(diffs)
    assert n == 16  # the grid's 32 McMahan trials pair up; nothing else has a sigmoid twin
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    d = findings.difference(rows, "activation", "relu", "sigmoid")
    assert d.paired and d.n == n
    assert (d.diff, d.low, d.high) == pytest.approx((mean, mean - half, mean + half))
    item = findings.relu_vs_sigmoid(rows)
    assert f"{mean:+.2f} dB" in item.evidence
    expected = findings.SUPPORTED if mean + half < 0 else findings.NOT_SUPPORTED
    assert item.verdict == expected


def synthetic(effects: dict[str, float], seeds: int = 6) -> pl.DataFrame:
    """Rows with PSNR = 20 + effects[activation] + effects[init] + effects[f'B{batch}'] + noise."""
    rows = []
    for seed in range(seeds):
        for init in ("xavier_normal", "kaiming_normal"):
            for activation in ("relu", "sigmoid"):
                for batch in (1, 4):
                    for model in ("mcmahan_cnn", "resnet18"):
                        for prune in ("none", "small"):
                            noise = ((seed * 7919 + batch * 31 + len(init)) % 13 - 6) / 20
                            psnr = (
                                20 + effects.get(activation, 0) + effects.get(init, 0)
                                + effects.get(f"B{batch}", 0) + effects.get(model, 0)
                                + effects.get(f"{init}/{activation}", 0)
                                + (effects.get(f"prune/{init}", 0) if prune == "small" else 0)
                                + noise
                            )  # fmt: skip
                            rows.append(
                                {"seed": seed, "init_method": init, "activation": activation,
                                 "batch_size": batch, "model": model, "prune": prune,
                                 "status": "ok", "psnr_mean": psnr}
                            )  # fmt: skip
    return pl.DataFrame(rows)


def test_claims_supported_when_the_data_says_so() -> None:
    frame = synthetic(
        {
            "relu": -3.0, "B4": -4.0, "mcmahan_cnn": -2.0,
            "xavier_normal/relu": -2.0, "xavier_normal/sigmoid": 3.0,
            "prune/xavier_normal": -3.0, "prune/kaiming_normal": -0.5,
        }
    )  # fmt: skip
    verdicts = {f.claim: f.verdict for f in findings.findings(frame)}
    assert set(verdicts.values()) == {findings.SUPPORTED}, verdicts


def test_claims_not_supported_when_the_data_says_otherwise() -> None:
    frame = synthetic({"sigmoid": -3.0, "B1": -4.0, "resnet18": -2.0, "prune/kaiming_normal": -3.0})
    verdicts = [f.verdict for f in findings.findings(frame)]
    assert verdicts == [findings.NOT_SUPPORTED] * 5


def test_not_enough_data() -> None:
    frame = synthetic({}, seeds=1).filter(
        (pl.col("activation") == "relu") & (pl.col("model") == "mcmahan_cnn")
        & (pl.col("batch_size") == 1) & (pl.col("prune") == "none")
    )  # fmt: skip
    verdicts = [f.verdict for f in findings.findings(frame)]
    assert verdicts == [findings.NOT_ENOUGH] * 5
