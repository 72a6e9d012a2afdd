"""Polars SQL over the trial rows, read-only (`dlgsweep query <results> "SQL"`).

Tables: `trials` holds every trial row under the results path (all its sweeps); each sweep is
also a table of its own under its folder's name (quote names that are not identifiers:
`"bn-mode"`; a copy with `_` for other characters is registered too, e.g. `bn_mode`). Image
bytes are left out unless `--images`. Output as a table (default), CSV, JSON (an array of row
objects) or Parquet, on stdout or into `--out FILE`. A SQL error is reported as polars words
it, exit code 2.

The results are only read, and only the columns the query names (polars' lazy frames over the
Parquet files; see store.load.scan). The query is parsed (sqlglot) before it runs, and only
one read statement is accepted: a SELECT (WITH, UNION, ... included), SHOW TABLES, or EXPLAIN of
a SELECT. Anything
else is refused whatever comments or EXPLAIN come first (CREATE, DROP, INSERT, DELETE, ...), as
are table functions that would read other files (`read_csv`, `read_parquet`, ...).
"""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import polars as pl

from dlgsweep.errors import UserError

FORMATS = ("table", "csv", "json", "parquet")
READ_ONLY = (
    "query is read-only: give one SELECT (WITH, UNION ... included), SHOW TABLES or EXPLAIN SELECT"
)
# Expression nesting a query may have. polars plans an expression tree recursively on its
# threads' stacks: 20,000 chained terms (`a + a + ...`) overflow them and kill the process
# (SIGSEGV), and a few thousand already take minutes to plan; sqlglot's parser recurses in
# Python on parentheses. Deeper queries are refused with one line instead.
MAX_DEPTH = 1000
TOO_DEEP = (
    f"the query nests expressions too deeply (at most {MAX_DEPTH} levels: each chained "
    "+, AND, OR or parenthesis is one); use IN (...) for long OR chains, or several queries"
)


def tables(results: str, *, images: bool = False) -> dict[str, pl.LazyFrame]:
    """SQL table name -> LazyFrame: `trials` (every row) and one per sweep folder. Lazy, so a
    query reads only the columns it names (the ranking columns that keep one row per trial
    are read once up front)."""
    from store import load

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
    from store import load
    from store.schema import IMAGE_COLUMNS, SCHEMA

    names = [n for n in SCHEMA.names if images or n not in IMAGE_COLUMNS]
    return load.scan_schema(names)


def query(results: str, sql: str, *, images: bool = False) -> pl.DataFrame:
    """Run `sql` over the rows under `results`; polars' own error text on a bad query."""
    check_read_only(sql, images=images)
    context = pl.SQLContext(tables(results, images=images), eager=False)
    try:
        return context.execute(sql).collect()
    except pl.exceptions.PolarsError as exc:
        raise UserError(f"{type(exc).__name__}: {exc}") from None


def check_read_only(sql: str, *, images: bool = False) -> None:
    """Refuse anything but one read statement over our tables, judged on the parsed SQL."""
    import sqlglot
    from sqlglot import exp

    from store.schema import IMAGE_COLUMNS

    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # EXPLAIN parses as a Command
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"SQL syntax error: {first}") from None
    except RecursionError:  # sqlglot recurses per parenthesis
        raise UserError(TOO_DEEP) from None
    for statement in statements:
        if depth(statement) > MAX_DEPTH:
            raise UserError(f"{TOO_DEEP}; this one has {depth(statement)}")
    if len(statements) != 1:
        raise UserError(f"{READ_ONLY} ({len(statements)} statements given)")
    statement = statements[0]
    if isinstance(statement, exp.Command) and statement.name.upper() == "EXPLAIN":
        rest = statement.expression
        rest = rest.name if isinstance(rest, exp.Literal) else (rest.sql() if rest else "")
        check_read_only(rest, images=images)  # EXPLAIN of a read only
        return
    reading = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Subquery)
    is_show_tables = isinstance(statement, exp.Show) and statement.name.upper() == "TABLES"
    if not (isinstance(statement, reading) or is_show_tables):
        kind = statement.key.upper() if not isinstance(statement, exp.Command) else statement.name
        raise UserError(f"{READ_ONLY}; got {kind}")
    for node in statement.walk():
        if isinstance(node, exp.Func):
            name = node.sql(dialect="duckdb").split("(", 1)[0]
            if name.lower().replace("_", "").startswith(("read", "scan")):
                raise UserError(
                    f"{name}: table functions that read files are refused; "
                    "query the tables of the results path (`trials`, one per sweep)"
                )
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Literal):
            raise UserError(f"FROM {node.this.sql()}: only the results' tables can be read")
        if not images and isinstance(node, exp.Column) and node.name in IMAGE_COLUMNS:
            raise UserError(f"{node.name} holds the PNG bytes: add --images to select it")


def depth(tree: Any) -> int:
    """Levels of a parsed statement's expression tree, counted without recursion."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.iter_expressions())
    return deepest


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
