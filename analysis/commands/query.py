"""`dlgsweep query <results> "SQL"`: polars SQL over the trial rows, read-only.

Tables: `trials` holds every trial row under the results path (all its sweeps); each sweep is
also a table of its own under its folder's name (quote names that are not identifiers:
`"bn-mode"`; a copy with `_` for other characters is registered too, e.g. `bn_mode`). Image
bytes are left out unless `--images`. Output as a table (default), CSV, JSON (an array of row
objects) or Parquet, on stdout or into `--out FILE`. A SQL error is reported as polars words
it, exit code 2.

The results are only read, and only the columns the query names (polars' lazy frames over the
Parquet files; see analysis.load.scan); statements that would write (CREATE, DROP, INSERT,
DELETE, ...) are refused.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path

import polars as pl

from workloads.errors import UserError

FORMATS = ("table", "csv", "json", "parquet")
# statements that would change a table: refused, so a query can never look like it wrote
_WRITES = re.compile(
    r"^\s*(create|drop|truncate|insert|update|delete|alter|copy|attach|merge)\b", re.I
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "query",
        help="SQL over the trial rows (polars)",
        description=__doc__.splitlines()[0],
        epilog='example: dlgsweep query results "SELECT model, activation, avg(psnr_mean) '
        "FROM trials WHERE status = 'ok' GROUP BY ALL ORDER BY 3 DESC\"",
    )
    parser.add_argument("results", help="results folder or URI (s3://, gs://), or one sweep folder")
    parser.add_argument("sql", help="the query; table `trials` = all rows, one table per sweep")
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument("--out", help="write here instead of stdout")
    parser.add_argument("--images", action="store_true", help="include the PNG byte columns")
    parser.set_defaults(func=run)


def tables(results: str, *, images: bool = False) -> dict[str, pl.LazyFrame]:
    """SQL table name -> LazyFrame: `trials` (every row) and one per sweep folder. Lazy, so a
    query reads only the columns it names (the ranking columns that keep one row per trial
    are read once up front)."""
    from analysis import load

    try:
        per_sweep = load.scan(results, images=images)
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise UserError(f"results: {exc}") from None
    frames = list(per_sweep.values())
    everything = pl.concat(frames, how="vertical") if frames else _empty(images)
    out = {"trials": everything}
    for name, frame in per_sweep.items():
        for alias in (name, re.sub(r"\W", "_", name)):
            out.setdefault(alias, frame)  # a sweep named "trials" stays reachable via `trials`
    return out


def _empty(images: bool) -> pl.LazyFrame:
    from analysis import load
    from orchestrator.schema import IMAGE_COLUMNS, SCHEMA

    names = [n for n in SCHEMA.names if images or n not in IMAGE_COLUMNS]
    return load.scan_schema(names)


def query(results: str, sql: str, *, images: bool = False) -> pl.DataFrame:
    """Run `sql` over the rows under `results`; polars' own error text on a bad query."""
    if _WRITES.match(sql):
        raise UserError("query is read-only: give a SELECT (or WITH / SHOW / EXPLAIN) statement")
    context = pl.SQLContext(tables(results, images=images), eager=False)
    try:
        return context.execute(sql).collect()
    except pl.exceptions.PolarsError as exc:
        raise UserError(f"{type(exc).__name__}: {exc}") from None


def flat(frame: pl.DataFrame) -> pl.DataFrame:
    """Lists as JSON text and bytes as base64, for CSV (which holds neither)."""
    columns = []
    for name, dtype in frame.schema.items():
        if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
            columns.append(pl.col(name).map_elements(_json, return_dtype=pl.Utf8))
        elif dtype == pl.Binary:
            columns.append(pl.col(name).bin.encode("base64"))
    return frame.with_columns(columns) if columns else frame


def _json(value: object) -> str:
    import json

    return json.dumps(value.to_list() if isinstance(value, pl.Series) else value)


def render(frame: pl.DataFrame, fmt: str) -> bytes:
    if fmt == "table":
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=80):
            return (str(frame) + "\n").encode()
    buffer = io.BytesIO()
    if fmt == "csv":
        flat(frame).write_csv(buffer)
    elif fmt == "json":
        binary = [n for n, t in frame.schema.items() if t == pl.Binary]
        frame.with_columns(pl.col(binary).bin.encode("base64")).write_json(buffer)
        buffer.write(b"\n")
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    frame = query(args.results, args.sql, images=args.images)
    data = render(frame, args.format)
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        if args.format == "parquet" and sys.stdout.isatty():
            raise UserError("--format parquet is binary: give --out FILE or redirect stdout")
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0
