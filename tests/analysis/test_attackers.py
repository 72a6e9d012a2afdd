"""Attackers compared per cell (`analysis.findings.attackers`), on synthetic sweeps of known
truth: two recipes over the seed's init x activation cells, IG's advantage set per cell."""

from __future__ import annotations

import polars as pl
import pytest

from analysis.findings.attackers import ATTACK_COLUMNS, comparisons
from analysis.synthetic import synthetic_frame
from workloads.recipes import recipe_fields

CELLS = {"init_method": ["xavier_normal", "kaiming_normal"], "activation": ["relu", "sigmoid"]}
BASE = {"seed-study": 15.0, "inverting-gradients": 15.0}


def sweep(gain, seeds=range(6), noise_sd=0.7, **grid) -> pl.DataFrame:
    """Rows of both recipes with their own attack fields; IG scores `gain(config)` more."""

    def truth(config: dict) -> float:
        extra = gain(config) if config["recipe"] == "inverting-gradients" else 0.0
        return BASE[config["recipe"]] + (3.0 if config["activation"] == "sigmoid" else 0) + extra

    return synthetic_frame(
        {"recipe": list(BASE), **CELLS, **grid}, truth, seeds=seeds, noise_sd=noise_sd,
        extra=lambda config: recipe_fields(config["recipe"]),
    )  # fmt: skip


def verdicts(table: pl.DataFrame) -> dict[str, str]:
    return dict(zip(table["cell"], table["verdict"]))


def test_a_large_gain_everywhere_is_supported_in_every_cell():
    table = comparisons(sweep(lambda c: 8.0))
    got = verdicts(table)
    assert len(got) == 5 and set(got.values()) == {"supported"}
    cells = table.filter(pl.col("cell") != "all")
    assert (cells["holm"] == "survives").all()
    assert cells["estimate"].is_between(7.0, 9.0).all()


def test_a_gain_under_relu_only_is_mixed_and_names_the_cells():
    table = comparisons(sweep(lambda c: 8.0 if c["activation"] == "relu" else 0.0))
    got = verdicts(table)
    for cell, verdict in got.items():
        if cell == "all":
            assert verdict == "mixed"
        else:
            assert verdict == ("supported" if "relu" in cell else "contradicted"), cell
    overall = table.filter(pl.col("cell") == "all").row(0, named=True)
    assert "relu" in overall["holds_for"] and "sigmoid" in overall["contradicted_for"]


def test_a_gain_at_the_margin_is_never_supported():
    table = comparisons(sweep(lambda c: 2.0, noise_sd=1.0))
    assert "supported" not in set(verdicts(table).values())


def test_pairs_differ_only_in_the_attack():
    """A field other than the attacker's that differs between the two recipes' rows leaves no
    pair: IG rows at batch 4 have no seed-study twin at batch 1."""
    frame = sweep(lambda c: 8.0)
    frame = frame.with_columns(
        pl.when(pl.col("recipe") == "inverting-gradients").then(4).otherwise(1).alias("batch_size")
    )
    table = comparisons(frame)
    assert set(verdicts(table).values()) == {"not enough data"}
    assert {"iterations", "restarts", "signed", "lr", "label_strategy"} <= set(ATTACK_COLUMNS)


def test_one_recipe_alone_is_no_comparison():
    frame = sweep(lambda c: 8.0).filter(pl.col("recipe") == "seed-study")
    assert comparisons(frame) is None
    assert comparisons(frame.drop("recipe")) is None


@pytest.mark.parametrize("extra_axis", [{"batch_size": [1, 4]}])
def test_every_varying_field_names_a_cell(extra_axis):
    table = comparisons(sweep(lambda c: 8.0, **extra_axis))
    cells = [c for c in table["cell"] if c != "all"]
    assert len(cells) == 8 and all("batch_size=" in c for c in cells)


def test_the_attackers_are_described_from_the_rows_fields():
    from analysis.findings.attackers import describe

    frame = sweep(lambda c: 8.0)
    lines = describe(frame)
    assert len(lines) == 2
    ig = next(line for line in lines if line.startswith("inverting-gradients:"))
    assert "cosine distance" in ig and "signed steps" in ig and "step schedule" in ig
    assert "boxed" in ig and "TV 0.1" in ig and "24000 iterations x 8 restarts" in ig
    old = frame.drop("recipe", "signed").with_columns(pl.lit(None).alias("loss"))
    assert describe(old) == ["unknown recipe (rows written before recipes): attack fields "
                             "not recorded"]  # fmt: skip
