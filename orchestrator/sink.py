"""The results sink: one Parquet file per trial, written atomically, on any pyarrow filesystem.

```
<results>/<sweep>/spec.yaml                   the resolved spec
<results>/<sweep>/trials/<trial_key>.parquet  one row of orchestrator.schema.SCHEMA
<results>/<sweep>/.staging/                   half-written files; never read
<results>/<sweep>/tune/                       Ray Tune's experiment state
```

A row is written to `.staging/` (outside the `trials/` tree, under a name that does not end in
`.parquet`) and then moved into place: `os.replace` on a local disk (atomic rename), `fs.move`
elsewhere (S3/GCS objects appear whole). A reader globbing `trials/*.parquet` never sees a
half-written file; `read_rows` also skips anything it cannot parse, and says so.
Rewriting a trial replaces its file, so a sweep never holds two rows for one trial.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from orchestrator.schema import SCHEMA, row_table

TRIALS = "trials"
STAGING = ".staging"
SPEC = "spec.yaml"
SUFFIX = ".parquet"


def open_fs(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it, for a local path or an s3:// gs:// URI."""
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))


def is_row_file(base_name: str) -> bool:
    """A finished row's file name: `<trial_key>.parquet`, never a hidden or temporary name."""
    return base_name.endswith(SUFFIX) and not base_name.startswith((".", "_"))


def join(*parts: str) -> str:
    """Join path parts the way pyarrow filesystems (and URIs) spell them: with '/'."""
    return "/".join(p.rstrip("/") for p in parts[:-1]) + "/" + parts[-1].lstrip("/")


@dataclass
class Rows:
    """What `read_rows` found: the rows, and the files it had to skip."""

    table: pa.Table
    skipped: list[str] = field(default_factory=list)  # path: reason


class SweepStore:
    """One sweep's folder: `<results>/<sweep>` (a local path or a URI)."""

    def __init__(self, sweep_dir: str, filesystem: pafs.FileSystem | None = None) -> None:
        self.uri = sweep_dir.rstrip("/")
        if filesystem is None:
            self.fs, self.path = open_fs(self.uri)
            if "://" not in self.uri:
                # absolute: Ray Tune runs each trial in a working dir of its own, where a
                # relative `--results results` would land rows out of sight
                self.uri = self.path
        else:  # a path inside a filesystem the caller built (credentials, a subtree, ...)
            self.fs, self.path = filesystem, self.uri
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def of(cls, results: str, sweep: str) -> SweepStore:
        return cls(join(results.rstrip("/"), sweep))

    def __repr__(self) -> str:
        return f"SweepStore({self.uri!r})"

    # -- paths --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def trial_path(self, trial_key: str) -> str:
        return join(self.path, TRIALS, trial_key + SUFFIX)

    @property
    def spec_path(self) -> str:
        return join(self.path, SPEC)

    @property
    def tune_uri(self) -> str:
        """Where Ray Tune keeps its experiment state (its `storage_path`)."""
        if self.local:
            return join(self.path, "tune")
        return join(self.uri, "tune")

    # -- writing ------------------------------------------------------------------------------

    def write_row(self, row: dict[str, Any]) -> str:
        """Write one trial's row atomically; returns the final path."""
        return self.write_table(row_table(row))

    def write_table(self, table: pa.Table) -> str:
        if table.num_rows != 1 or not table.schema.equals(SCHEMA):
            raise ValueError("a trial file holds exactly one row of orchestrator.schema.SCHEMA")
        trial_key = table.column("trial_key")[0].as_py()
        final = self.trial_path(trial_key)
        staging_dir = join(self.path, STAGING)
        self.fs.create_dir(staging_dir, recursive=True)
        self.fs.create_dir(join(self.path, TRIALS), recursive=True)
        staged = join(staging_dir, f"{trial_key}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open_output_stream(staged) as stream:
                pq.write_table(table, stream)
            if self.local:
                os.replace(staged, final)  # rename(2): readers see the old file or the new one
            else:
                self.fs.move(staged, final)
        except BaseException:
            _quietly_delete(self.fs, staged)
            raise
        return final

    def write_text(self, relative: str, text: str) -> None:
        """Write a small text file (spec.yaml) atomically, through the same staging."""
        staging_dir = join(self.path, STAGING)
        self.fs.create_dir(staging_dir, recursive=True)
        staged = join(staging_dir, f"{relative}.{uuid.uuid4().hex}.tmp")
        with self.fs.open_output_stream(staged) as stream:
            stream.write(text.encode())
        final = join(self.path, relative)
        if self.local:
            os.replace(staged, final)
        else:
            self.fs.move(staged, final)

    def save_spec(self, text: str) -> None:
        self.write_text(SPEC, text)

    # -- reading ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def read_spec(self) -> str | None:
        if self.fs.get_file_info(self.spec_path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.spec_path) as stream:
            return stream.read().decode()

    def trial_files(self) -> list[str]:
        """Every `<trial_key>.parquet` under trials/ (hidden and temporary names excluded)."""
        selector = pafs.FileSelector(join(self.path, TRIALS), allow_not_found=True)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File and is_row_file(info.base_name)
        )

    def read_rows(self, columns: list[str] | None = None) -> Rows:
        """Every readable trial row, in SCHEMA; unreadable or foreign files are skipped."""
        tables, skipped = [], []
        wanted = None if columns is None else list(dict.fromkeys(["trial_key", *columns]))
        for path in self.trial_files():
            try:
                table = pq.read_table(path, filesystem=self.fs, columns=wanted)
            except (pa.ArrowException, OSError) as exc:
                skipped.append(f"{path}: unreadable ({str(exc).splitlines()[0][:120]})")
                continue
            stem = path.rsplit("/", 1)[-1][: -len(SUFFIX)]
            if table.num_rows != 1 or "trial_key" not in table.column_names:
                skipped.append(f"{path}: not one trial row")
                continue
            if table.column("trial_key")[0].as_py() != stem:
                skipped.append(f"{path}: trial_key does not match the file name")
                continue
            tables.append(table if columns is None else table.select(columns))
        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        if not tables:
            return Rows(schema.empty_table(), skipped)
        return Rows(pa.concat_tables(tables, promote_options="permissive"), skipped)

    def statuses(self) -> dict[str, str]:
        """trial_key -> status of every readable row."""
        table = self.read_rows(columns=["trial_key", "status"]).table
        return dict(zip(table.column("trial_key").to_pylist(), table.column("status").to_pylist()))


def _quietly_delete(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (OSError, pa.ArrowException):
        pass
