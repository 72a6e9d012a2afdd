"""Where a sweep's protocol departs from the seed study's (its slides and its code)."""

from __future__ import annotations

from typing import Any

import polars as pl

from analysis.findings.rows import levels_text as _levels_text
from store.load import result_rows

# The seed study's own protocol (its slides and its code; docs/reference/contract.md).
DECK_PROTOCOL: dict[str, tuple[Any, str]] = {
    "dataset": ("cifar10", "CIFAR-10"),
    "iterations": (500, "500 iterations"),
    "optimizer": ("adam", "Adam"),
    "lr": (0.1, "learning rate 0.1"),
    "loss": ("cosine", "cosine distance"),
    "stop": ("iterations", "a fixed iteration count"),
    "label_strategy": ("oracle", "true labels handed to the attacker (its code)"),
    "init_gain": ("seed", "Xavier gain 1, Kaiming a=sqrt(5)"),
    "init_scale": (1.0, "no extra weight scale"),
    "image_choice": ("first", "the first B test images, the same for every seed"),
    "image_norm": ("minmax", "per-image min-max normalisation"),
    "prune_mode": ("tensors", "pruning whole tensors by list position"),
    "skip_zero_tensors": (True, "a distance skipping all-zero tensors"),
    "dummy_init": ("randn", "a N(0, 1) dummy start"),
    "iterate": ("last", "the last iterate as the reconstruction"),
    "mask_pruned": (False, "an attacker unaware of pruning"),
    "tv_weight": (0.0, "no TV prior"),
    "image_size": (0, "native resolution"),
}


def protocol_notes(frame: pl.DataFrame) -> list[str]:
    """Where the rows' protocol differs from the deck's, one line each (unknown: said so)."""
    rows = result_rows(frame)
    if rows.is_empty():
        return []
    notes = []
    if "model" in rows.columns:
        models = set(rows["model"].drop_nulls().unique().to_list())
        if "mcmahan_cnn" in models:
            notes.append(
                "model: mcmahan_cnn is the FedAvg paper's McMahan CNN; the deck's code used its "
                "own variant (padding 1, BatchNorm, pool padding 1: mcmahan_cnn_seed)"
            )
    for column, (deck, words) in DECK_PROTOCOL.items():
        if column not in rows.columns:
            notes.append(f"{column}: not recorded (deck: {words})")
            continue
        values = rows[column].unique().to_list()
        unknown = rows.filter(pl.col(column).is_null()).height
        known = [v for v in values if v is not None]
        differ = [v for v in known if v != deck]
        if differ:
            notes.append(f"{column}: {_levels_text(known)} here (deck: {words})")
        if unknown:
            notes.append(f"{column}: unknown in {unknown} rows (written before the field existed)")
    if "seed" in rows.columns:
        seeds = rows["seed"].n_unique()
        if seeds < 6:
            notes.append(f"seeds: {seeds} here (deck: 6)")
    notes.append(
        "score: PSNR of the reconstruction clamped to [0, 1] and matched to the ground truth "
        "(psnr_mean); the deck's unclamped, unmatched score is psnr_raw_mean"
    )
    return notes
