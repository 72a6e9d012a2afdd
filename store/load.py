"""Load trial rows from a results tree into polars frames: load once, then chart or query.

A results path is a local folder, an NFS mount or an object-store URI (`s3://`, `gs://`,
`file://`; options in the query string: `s3://b/r?endpoint_override=host:9000&scheme=http`),
read through pyarrow's filesystems. It is either a whole results tree holding many sweeps
(`<results>/<sweep>/trials/*.parquet`) or a single sweep folder (`<results>/<sweep>`).

Under `trials/` sit row files (`<trial_key>.parquet`, one row) and part files (`part-*.parquet`,
many finished rows; see store.sweep_store): all Parquet files of one schema, read together. A
trial is one row: where a row shows up twice (a compaction that died before deleting its inputs)
the finished one, then the latest, is kept. Only the columns asked for are read; image bytes
are left out unless asked for, so a 10^5-row frame stays small. A temp file, an empty or
half-copied file or a stray non-Parquet file is skipped and listed in `Trials.skipped`.

    >>> from analysis import load, charts
    >>> frame = load.trials("results/demo")          # every row of one sweep (or of all sweeps)
    >>> lazy = load.scan("results")["trials"]         # polars LazyFrame: reads what a query needs
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from store.rows import TRIALS as TRIALS_DIR
from store.rows import dedupe, file_kind, read_files
from store.schema import IMAGE_COLUMNS, SCHEMA
from store.uri import open_fs

# statuses whose metrics are results (diverged keeps its best iterate); `error` rows are counted
RESULT_STATUSES = ("ok", "diverged")
_RANK = ["trial_key", "status", "finished_at"]  # what picking one row per trial needs


@dataclass
class Trials:
    """Every readable row under a results path, plus what could not be read."""

    frame: pl.DataFrame
    files: dict[str, list[str]] = field(default_factory=dict)  # sweep -> data files read
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    def sweeps(self) -> dict[str, pl.DataFrame]:
        """One frame per sweep name (the `sweep` column)."""
        if self.frame.is_empty():
            return {name: self.frame.clear() for name in self.files}
        return {
            str(key[0]): part
            for key, part in self.frame.partition_by(
                "sweep", as_dict=True, maintain_order=True
            ).items()
        }


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it (the sink's rule), no trailing slash."""
    filesystem, inner = open_fs(str(path))
    return filesystem, inner.rstrip("/") or inner


def find_row_files(
    path: str,
) -> tuple[pafs.FileSystem, dict[str, list[str]], list[tuple[str, str]]]:
    """sweep folder name -> its data files (row files and parts), and the files skipped.

    `path` is a sweep folder (it holds `trials/`) or a results folder holding sweep folders.
    """
    filesystem, root = resolve(path)
    info = filesystem.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no results at {path}")
    if info.type != pafs.FileType.Directory:
        raise NotADirectoryError(f"{path} is not a results folder")
    trials_dir = posixpath.join(root, TRIALS_DIR)
    if filesystem.get_file_info(trials_dir).type == pafs.FileType.Directory:
        sweep_dirs = {posixpath.basename(root): trials_dir}
    else:
        children = filesystem.get_file_info(pafs.FileSelector(root, allow_not_found=True))
        sweep_dirs = {}
        for child in sorted(children, key=lambda item: item.path):
            if child.type != pafs.FileType.Directory or child.base_name.startswith("."):
                continue
            candidate = posixpath.join(child.path, TRIALS_DIR)
            if filesystem.get_file_info(candidate).type == pafs.FileType.Directory:
                sweep_dirs[child.base_name] = candidate
    files: dict[str, list[str]] = {}
    skipped: list[tuple[str, str]] = []
    for sweep, directory in sweep_dirs.items():
        entries = filesystem.get_file_info(pafs.FileSelector(directory, allow_not_found=True))
        keep = []
        for entry in sorted(entries, key=lambda item: item.path):
            if entry.type != pafs.FileType.File:
                continue
            if file_kind(entry.base_name) is None:
                skipped.append((entry.path, "not a finished row file (temp or foreign name)"))
            elif not entry.size:
                skipped.append((entry.path, "empty file"))
            else:
                keep.append(entry.path)
        files[sweep] = keep
    return filesystem, files, skipped


def load(path: str, *, images: bool = False, columns: list[str] | None = None) -> Trials:
    """Every row under `path` (a results tree or one sweep), image bytes only if `images`."""
    filesystem, files, skipped = find_row_files(path)
    wanted = _columns(images, columns)
    internal = list(dict.fromkeys([*_RANK, *wanted]))
    tables, readable = [], {}
    for sweep, paths in files.items():
        table, bad = read_files(filesystem, paths, internal)
        skipped.extend(bad)
        unreadable = {p for p, _ in bad}
        readable[sweep] = [p for p in paths if p not in unreadable]
        if table.num_rows:
            tables.append(_fill_sweep(dedupe(table).select(wanted), sweep))
    schema = pa.schema([SCHEMA.field(name) for name in wanted])
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return Trials(frame=frame, files=readable, skipped=skipped)


def scan(path: str, *, images: bool = False) -> dict[str, pl.LazyFrame]:
    """sweep name -> a LazyFrame of its rows; a query on it reads only the columns it uses.

    The folders are listed now; the rows are read when the frame is collected, in one pass
    over the sweep's files: the projected columns plus trial_key/status/finished_at (one row
    per trial), through the same reader as `load` (a polars IO source)."""
    from polars.io.plugins import register_io_source

    filesystem, files, _ = find_row_files(path)
    names = _columns(images, None)
    schema = _polars_schema(names)
    out = {}
    for sweep, paths in files.items():

        def source(with_columns, predicate, n_rows, batch_size, paths=paths, sweep=sweep):  # noqa: ANN001
            wanted = list(with_columns or names)
            table, _ = read_files(filesystem, paths, list(dict.fromkeys([*_RANK, *wanted])))
            frame = pl.from_arrow(_fill_sweep(dedupe(table).select(wanted), sweep))
            assert isinstance(frame, pl.DataFrame)
            if predicate is not None:
                frame = frame.filter(predicate)
            yield frame if n_rows is None else frame.head(n_rows)

        out[sweep] = register_io_source(source, schema=schema)
    return out


def trials(path: str, *, images: bool = False, columns: list[str] | None = None) -> pl.DataFrame:
    """The frame of every row under `path` (notebook shorthand for `load(path).frame`)."""
    return load(path, images=images, columns=columns).frame


def sweeps(path: str, *, images: bool = False) -> dict[str, pl.DataFrame]:
    """One frame per sweep under `path`."""
    return load(path, images=images).sweeps()


def images(sweep_path: str, trial_keys: list[str]) -> pl.DataFrame:
    """`trial_key`, `reconstruction_png`, `ground_truth_png` for a few trials of one sweep.

    Reads the named row files and, in parts, only the row groups whose trial_key range can
    hold a named trial (parts are sorted by trial_key), so a gallery costs a dozen reads."""
    filesystem, root = resolve(sweep_path)
    wanted = set(trial_keys)
    listing = filesystem.get_file_info(
        pafs.FileSelector(posixpath.join(root, TRIALS_DIR), allow_not_found=True)
    )
    rows, parts = [], []
    for entry in listing:
        kind = file_kind(entry.base_name)
        if kind == "row" and entry.base_name[: -len(".parquet")] in wanted:
            rows.append(entry.path)
        elif kind == "part":
            parts.append(entry.path)
    columns = [*_RANK, *IMAGE_COLUMNS]
    tables = [read_files(filesystem, rows, columns)[0].drop(["_file"])]
    if parts and wanted:
        dataset = ds.dataset(parts, schema=SCHEMA, format="parquet", filesystem=filesystem)
        found = dataset.to_table(
            columns=columns, filter=ds.field("trial_key").isin(pa.array(sorted(wanted)))
        )
        tables.append(found)
    table = dedupe(pa.concat_tables(tables)).select(["trial_key", *IMAGE_COLUMNS])
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def result_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """The rows whose metrics are results: status ok or diverged (error rows excluded)."""
    return frame.filter(pl.col("status").is_in(RESULT_STATUSES))


def _columns(images: bool, columns: list[str] | None) -> list[str]:
    names = list(columns) if columns else [n for n in SCHEMA.names if n not in IMAGE_COLUMNS]
    if images:
        names += [n for n in IMAGE_COLUMNS if n not in names]
    unknown = [n for n in names if n not in SCHEMA.names]
    if unknown:
        raise KeyError(f"unknown columns {unknown}; the schema has {SCHEMA.names}")
    for needed in ("sweep", "trial_key", "status"):
        if needed not in names:
            names.insert(0, needed)
    return names


def _fill_sweep(table: pa.Table, sweep: str) -> pa.Table:
    """A row written without a sweep name belongs to the folder it sits in."""
    if "sweep" not in table.column_names:
        return table
    folder = pa.array([sweep] * table.num_rows, pa.string())
    named = pc.if_else(pc.equal(table["sweep"], ""), None, table["sweep"])
    return table.set_column(table.column_names.index("sweep"), "sweep", pc.coalesce(named, folder))


def scan_schema(names: list[str]) -> pl.LazyFrame:
    """An empty LazyFrame with these SCHEMA columns (a results tree with no sweep yet)."""
    return pl.LazyFrame(schema=_polars_schema(names))


def _polars_schema(names: list[str]) -> pl.Schema:
    full = pl.from_arrow(SCHEMA.empty_table()).schema
    return pl.Schema({name: full[name] for name in names})
