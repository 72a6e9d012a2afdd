"""The one results schema: every trial is one row of this, whatever happened to it.

Column names here are a public contract (DESIGN.md, "Names other tools rely on"): scripts and
notebooks outside the package read them. Add columns; never rename or drop one.
"""

from __future__ import annotations

import io
import platform
import socket
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from workloads.config import ENGINE_VERSION, TrialConfig
from workloads.result import TrialResult

_ARROW_OF = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}

CONFIG_COLUMNS: list[tuple[str, pa.DataType]] = [
    (f.name, _ARROW_OF[f.type if isinstance(f.type, str) else f.type.__name__])
    for f in fields(TrialConfig)
]

SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_key", pa.string()),
        ("variant", pa.string()),  # the spec's variant the trial belongs to; null without variants
        ("status", pa.string()),
        ("error", pa.string()),
        *CONFIG_COLUMNS,
        ("label_strategy_used", pa.string()),
        ("psnr_mean", pa.float64()),
        ("psnr_min", pa.float64()),
        ("psnr_max", pa.float64()),
        ("psnr_raw_mean", pa.float64()),  # the seed's score: unclamped, unmatched dummy
        ("ssim_mean", pa.float64()),
        ("label_accuracy", pa.float64()),
        ("grad_loss_final", pa.float64()),
        ("iterations_run", pa.int64()),
        ("best_iteration", pa.int64()),
        ("wall_seconds", pa.float64()),
        ("seconds_per_iteration", pa.float64()),
        ("device", pa.string()),
        ("gpu_memory_peak_bytes", pa.int64()),
        ("host", pa.string()),
        ("node_id", pa.string()),
        ("attempt", pa.int64()),
        ("engine_version", pa.int64()),  # workloads.config.ENGINE_VERSION, part of trial_key
        ("dlgsweep_version", pa.string()),
        ("torch_version", pa.string()),
        ("ray_version", pa.string()),
        ("python_version", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("finished_at", pa.timestamp("us", tz="UTC")),
        ("true_labels", pa.list_(pa.int64())),
        ("predicted_labels", pa.list_(pa.int64())),
        ("grad_zero_fraction", pa.float64()),
        ("init_weight_std", pa.float64()),  # std of the first conv's weights as initialised
        ("grad_kernel_norms", pa.list_(pa.float64())),
        ("curve_iteration", pa.list_(pa.int64())),
        ("curve_grad_loss", pa.list_(pa.float64())),
        ("curve_psnr", pa.list_(pa.float64())),
        ("reconstruction_png", pa.binary()),
        ("ground_truth_png", pa.binary()),
    ]
)

IMAGE_COLUMNS = ("reconstruction_png", "ground_truth_png")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python_version": platform.python_version()}
    for column, package in (
        ("dlgsweep_version", "dlgsweep"),
        ("torch_version", "torch"),
        ("ray_version", "ray"),
    ):
        try:
            out[column] = version(package)
        except PackageNotFoundError:
            out[column] = "unknown"
    return out


def make_row(
    config: TrialConfig,
    result: TrialResult,
    *,
    sweep: str = "",
    variant: str | None = None,
    host: str | None = None,
    node_id: str | None = None,
    attempt: int = 1,
    with_images: bool = True,
) -> dict[str, Any]:
    """One row of SCHEMA from a config and its result (image bytes only if `with_images`)."""
    row: dict[str, Any] = {"sweep": sweep, "trial_key": config.trial_key, "variant": variant}
    row.update(config.to_dict())
    for name in (
        "status",
        "error",
        "label_strategy_used",
        "psnr_mean",
        "psnr_min",
        "psnr_max",
        "psnr_raw_mean",
        "ssim_mean",
        "label_accuracy",
        "grad_loss_final",
        "iterations_run",
        "best_iteration",
        "wall_seconds",
        "seconds_per_iteration",
        "device",
        "gpu_memory_peak_bytes",
        "true_labels",
        "predicted_labels",
        "grad_zero_fraction",
        "init_weight_std",
        "grad_kernel_norms",
        "curve_iteration",
        "curve_grad_loss",
        "curve_psnr",
    ):
        row[name] = getattr(result, name)
    row["host"] = host or socket.gethostname()
    row["node_id"] = node_id
    row["attempt"] = attempt
    row["engine_version"] = ENGINE_VERSION
    row.update(versions())
    row["started_at"] = _timestamp(result.started_at)
    row["finished_at"] = _timestamp(result.finished_at)
    if with_images:
        row["reconstruction_png"] = batch_png(result.reconstruction)
        row["ground_truth_png"] = batch_png(result.ground_truth)
    else:
        for column in IMAGE_COLUMNS:
            row.pop(column, None)
    return row


def row_table(row: dict[str, Any]) -> pa.Table:
    """A one-row Arrow table in exactly SCHEMA (missing columns are null)."""
    return pa.Table.from_pylist([{name: row.get(name) for name in SCHEMA.names}], schema=SCHEMA)


def json_row(row: dict[str, Any]) -> dict[str, Any]:
    """The row with JSON-friendly values (timestamps as ISO strings), image bytes dropped."""
    out = {}
    for name, value in row.items():
        if name in IMAGE_COLUMNS:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def batch_png(images: np.ndarray | None) -> bytes | None:
    """A (B, H, W, C) uint8 batch as one PNG: the images side by side in a row."""
    if images is None or len(images) == 0:
        return None
    from PIL import Image

    strip = np.concatenate(list(images), axis=1)  # (H, B*W, C)
    if strip.shape[-1] == 1:
        strip = strip[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(strip).save(buffer, format="PNG")
    return buffer.getvalue()


def _timestamp(seconds: float) -> datetime | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=timezone.utc)
