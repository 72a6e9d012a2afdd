"""The one results schema: every trial is one row of this, whatever happened to it.

Column names here are a public contract (docs/reference/contract.md): scripts and notebooks
outside the package read them. Add columns; never rename or drop one.

The row is declared once, in three dataclasses, and everything else derives from them (optuna
builds `trials_dataframe` from `FrozenTrial`): the run's bookkeeping (`RowHead`: sweep,
trial_key, variant), the trial's config (`workloads.config.TrialConfig`, one column per field),
what it produced (`workloads.result.TrialResult`, one column per field, see its docstring), and
where and with what it ran (`Provenance`). `SCHEMA` (Arrow), `make_row` (the sink's writer),
`CONFIG_COLUMNS` and `RESULT_COLUMNS` (readers, bench_gpu) are all computed from those.
Readers match columns by name (polars, pyarrow, duckdb with union_by_name), so a column's place
is not part of the contract; `sweep, trial_key, status, error` lead, for short ranged reads.
"""

from __future__ import annotations

import io
import platform
import socket
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from workloads.config import ENGINE_VERSION, TrialConfig
from workloads.result import TrialResult

# a dataclass field's annotation (string: `from __future__ import annotations`) -> Arrow
_ARROW_OF = {
    "int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_(),
    "list[int]": pa.list_(pa.int64()), "list[float]": pa.list_(pa.float64()),
}  # fmt: skip
_STORED_AS = {"timestamp": pa.timestamp("us", tz="UTC"), "png": pa.binary()}


@dataclass(frozen=True)
class RowHead:
    """Which sweep a row belongs to, and which trial it is."""

    sweep: str
    trial_key: str
    variant: str | None  # the spec's variant the trial belongs to; null without variants


@dataclass(frozen=True)
class Provenance:
    """Where and with what a trial ran."""

    host: str | None
    node_id: str | None  # the Ray node (null outside Ray: `dlgsweep attack`)
    attempt: int
    engine_version: int  # workloads.config.ENGINE_VERSION, part of trial_key
    dlgsweep_version: str
    torch_version: str
    ray_version: str
    python_version: str


def _column(name: str, annotation: Any, stored_as: str = "value") -> tuple[str, pa.DataType]:
    if stored_as != "value":
        return (f"{name}_png" if stored_as == "png" else name), _STORED_AS[stored_as]
    text = annotation if isinstance(annotation, str) else annotation.__name__
    return name, _ARROW_OF[text.replace(" | None", "")]


def _columns(cls: type) -> list[tuple[str, pa.DataType]]:
    return [_column(f.name, f.type) for f in fields(cls)]


# TrialResult's fields as stored, with how: "value" (as itself), "timestamp" or "png"; a field
# whose metadata says `column: None` (`frames`) stays out of the row
_RESULT_FIELDS = [
    (f, f.metadata.get("column", "value"))
    for f in fields(TrialResult)
    if f.metadata.get("column", "value") is not None
]
CONFIG_COLUMNS: list[tuple[str, pa.DataType]] = _columns(TrialConfig)
RESULT_COLUMNS: list[tuple[str, pa.DataType]] = [
    _column(f.name, f.type, kind) for f, kind in _RESULT_FIELDS
]
IMAGE_COLUMNS = tuple(f"{f.name}_png" for f, kind in _RESULT_FIELDS if kind == "png")
_LEAD = ("status", "error")  # lead the row after its head: a status read is one short range

SCHEMA = pa.schema(
    [
        *_columns(RowHead),
        *[c for c in RESULT_COLUMNS if c[0] in _LEAD],
        *CONFIG_COLUMNS,
        *[c for c in RESULT_COLUMNS if c[0] not in _LEAD and c[0] not in IMAGE_COLUMNS],
        *_columns(Provenance),
        *[c for c in RESULT_COLUMNS if c[0] in IMAGE_COLUMNS],
    ]
)


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
    row: dict[str, Any] = asdict(RowHead(sweep, config.trial_key, variant))
    row.update(config.to_dict())
    for f, kind in _RESULT_FIELDS:
        value = getattr(result, f.name)
        if kind == "timestamp":
            row[f.name] = _timestamp(value)
        elif kind == "png":
            if with_images:
                row[f"{f.name}_png"] = batch_png(value)
        else:
            row[f.name] = value
    provenance = Provenance(
        host=host or socket.gethostname(),
        node_id=node_id,
        attempt=attempt,
        engine_version=ENGINE_VERSION,
        **versions(),  # type: ignore[arg-type]
    )
    row.update(asdict(provenance))
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
