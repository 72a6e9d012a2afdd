"""The one row reader: the data files under a sweep's `trials/`, read into one Arrow table.

Every file under `trials/` is a Parquet file of SCHEMA rows: row files (`<trial_key>.parquet`,
one row, written by a trial's worker) and parts (`part-*.parquet`, many finished rows, merged by
compaction; see store.sweep_store). `read_files` reads the named columns of any of them (a
column an older file lacks is null), skips an unreadable file with the reason, and drops a row
file that is not one row named by its trial_key; `dedupe` keeps one row per trial_key (a
finished row over an error row, then the latest `finished_at`). `SweepStore.read_rows`, the
compaction and store.load's polars frames all read through these two.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from store.schema import SCHEMA

TRIALS = "trials"
SUFFIX = ".parquet"
PART_PREFIX = "part-"
FINISHED = ("ok", "diverged")  # a row with one of these is final: never rerun, never replaced
READ_THREADS = 32  # object stores: files read at once


def file_kind(base_name: str) -> str | None:
    """'part' (many rows), 'row' (`<trial_key>.parquet`), or None (hidden, temporary, foreign)."""
    if not base_name.endswith(SUFFIX) or base_name.startswith((".", "_")):
        return None
    return "part" if base_name.startswith(PART_PREFIX) else "row"


def is_row_file(base_name: str) -> bool:
    """A finished data file's name (a row file or a part), never a hidden or temporary name."""
    return file_kind(base_name) is not None


# -- reading many files -----------------------------------------------------------------------


@dataclass
class Rows:
    """What `read_rows` found: the rows, and the files it had to skip."""

    table: pa.Table
    skipped: list[str] = field(default_factory=list)  # "path: reason"


def read_files(
    fs: pafs.FileSystem, paths: list[str], columns: list[str]
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """`columns` of every row in `paths` (SCHEMA types; a column an older file lacks is null),
    plus `_file`, the path each row came from; unreadable files are skipped, with the reason.

    Row files must hold one row whose trial_key is the file name. Local files go through
    polars' multi-file reader (one call for 10^5 files); object stores through READ_THREADS
    ranged reads at once. Only the named columns are read.
    """
    schema = pa.schema([SCHEMA.field(c) for c in columns] + [pa.field("_file", pa.string())])
    if not paths:
        return schema.empty_table(), []
    table, bad = None, []
    if isinstance(fs, pafs.LocalFileSystem):
        table = _read_local(paths, columns, schema)
    if table is None:  # object store, or a local file polars could not read: one by one
        workers = READ_THREADS if not isinstance(fs, pafs.LocalFileSystem) else 1
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(lambda p: _read_one(fs, p, columns, schema), paths))
        tables = [t for t, _ in results if t is not None]
        bad = [(p, why) for (t, why), p in zip(results, paths) if t is None]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
    return _valid_rows(table, bad)


def _read_local(paths: list[str], columns: list[str], schema: pa.Schema) -> pa.Table | None:
    import polars as pl

    try:
        frame = pl.scan_parquet(
            paths,
            schema=_POLARS_SCHEMA(),
            missing_columns="insert",
            extra_columns="ignore",
            include_file_paths="_file",
            glob=False,
        )
        return frame.select([*columns, "_file"]).collect().to_arrow().cast(schema)
    except (OSError, pa.ArrowException, pl.exceptions.PolarsError):
        return None


_POLARS_CACHE: dict[str, Any] = {}


def _POLARS_SCHEMA() -> Any:  # noqa: N802 - a cached constant
    import polars as pl

    if "schema" not in _POLARS_CACHE:
        _POLARS_CACHE["schema"] = pl.from_arrow(SCHEMA.empty_table()).schema
    return _POLARS_CACHE["schema"]


def _read_one(
    fs: pafs.FileSystem, path: str, columns: list[str], schema: pa.Schema
) -> tuple[pa.Table | None, str]:
    try:
        if file_kind(path.rsplit("/", 1)[-1]) == "row" and not isinstance(fs, pafs.LocalFileSystem):
            # a row file is small: fetched whole (2 requests) instead of footer, then columns
            with fs.open_input_stream(path) as stream:
                source: Any = pa.BufferReader(stream.read())
        else:
            source = fs.open_input_file(path)
        with source as handle:
            parquet = pq.ParquetFile(handle)
            present = set(parquet.schema_arrow.names)
            table = parquet.read(columns=[c for c in columns if c in present])
        for name in columns:  # an older file may lack a newer column: null
            if name not in table.column_names:
                column = pa.nulls(table.num_rows, SCHEMA.field(name).type)
                table = table.append_column(SCHEMA.field(name), column)
        table = table.select(columns)
        table = table.append_column("_file", pa.array([path] * table.num_rows, pa.string()))
        return table.cast(schema), ""
    except (OSError, pa.ArrowException, ValueError) as exc:
        return None, f"unreadable ({str(exc).splitlines()[0][:120] if str(exc) else exc!r})"


def _valid_rows(
    table: pa.Table, bad: list[tuple[str, str]]
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Drop row files that are not one row named by its trial_key (parts are taken whole)."""
    import polars as pl

    if not table.num_rows or "trial_key" not in table.column_names:
        return table, bad
    frame = pl.from_arrow(table.select(["trial_key", "_file"]))
    assert isinstance(frame, pl.DataFrame)
    name = pl.col("_file").str.split("/").list.last()
    is_row = ~name.str.starts_with(PART_PREFIX)
    reason = (
        pl.when(is_row & (pl.len().over("_file") != 1))
        .then(pl.lit("not one trial row"))
        .when(is_row & (pl.col("trial_key") != name.str.strip_suffix(SUFFIX)))
        .then(pl.lit("trial_key does not match the file name"))
        .otherwise(None)
    )
    reasons = frame.select(reason.alias("why"), "_file")
    if reasons["why"].null_count() == frame.height:
        return table, bad
    keep = reasons["why"].is_null().to_arrow()
    dropped = reasons.drop_nulls("why").unique("_file").sort("_file")
    return table.filter(keep), bad + list(zip(dropped["_file"], dropped["why"]))


def dedupe(table: pa.Table) -> pa.Table:
    """One row per trial_key: a finished row over an error row, then the latest finished_at.

    Needs `trial_key`, `status` and `finished_at`; the rows keep their order otherwise.
    """
    keys = table.column("trial_key")
    if len(pc.unique(keys)) == table.num_rows:
        return table
    finished = pc.is_in(table.column("status"), pa.array(FINISHED))
    ranked = pa.table(
        {
            "key": keys,
            "rank": pc.if_else(pc.fill_null(finished, False), 0, 1),
            "at": pc.fill_null(table.column("finished_at").cast(pa.int64()), -1),
            "index": pa.array(np.arange(table.num_rows)),
        }
    )
    order = pc.sort_indices(
        ranked,
        sort_keys=[("key", "ascending"), ("rank", "ascending"), ("at", "descending")],
    )
    ordered = ranked.take(order)
    sorted_keys = ordered.column("key").to_numpy(zero_copy_only=False)
    first = np.ones(len(sorted_keys), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    winners = np.sort(ordered.column("index").to_numpy()[first])
    return table.take(pa.array(winners))
