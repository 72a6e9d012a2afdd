"""The results store of one sweep: rows land one file per trial, then compact into part files.

```
<results>/<sweep>/spec.yaml                                   the resolved spec
<results>/<sweep>/trials/<trial_key>.parquet                  one row, written by its worker
<results>/<sweep>/trials/part-<rows>-<stamp>-<id>.parquet     finished rows, merged by the driver
<results>/<sweep>/.lock                                       the live run (orchestrator.lease)
<results>/<sweep>/.attempts/<run>/<trial_key>                 a live run's attempt counters
<results>/<sweep>/.staging/                                   half-written files; never read
<results>/<sweep>/tune/                                       Tune's state (local results only)
```

Writing. A worker writes its trial's row as `trials/<trial_key>.parquet`, atomically: on a local
disk or NFS through `.staging/` and `rename(2)`; on an object store as one PUT (an object appears
whole or not at all; a bigger file goes through `.staging/` and a server-side move). A finished
row (`ok`, `diverged`) is final: `write_row` never replaces one (it looks before it writes).

Compaction. The run's driver (the only writer of parts: it holds the sweep's lease) merges
finished row files of trials Tune is done with into part files of up to PART_ROWS rows, sorted
by trial_key, and then deletes the merged row files. Small parts are merged again when
MERGE_SMALL_PARTS of them pile up. A sweep below COMPACT_MIN_ROWS finished rows keeps today's
one-file-per-row layout. Error rows stay row files until their trial finishes.

Reading. Every file under `trials/` is a Parquet file of SCHEMA rows, so `trials/*.parquet` is
the table for polars, pyarrow and duckdb. A crash between writing a part and deleting its row
files can leave a row twice (identical bytes); `read_rows` (and store.load) keep one row per
trial_key: a finished row over an error row, then the latest `finished_at`. Readers take only
the columns they need; `sweep, trial_key, status, error` lead the schema, so the status of a
whole part is one short ranged read.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dlgsweep.errors import UserError
from store.replay import SearchState, scores_of
from store.rows import (
    FINISHED,
    PART_PREFIX,
    SUFFIX,
    TRIALS,
    Rows,
    dedupe,
    file_kind,
    read_files,
)
from store.schema import SCHEMA, row_table
from store.spec import SweepSpec, parse_yaml
from store.uri import URI_HINT, StoreError, join, join_uri, open_fs, parent_uri, split_query

STAGING = ".staging"
ATTEMPTS = ".attempts"
SPEC = "spec.yaml"

COMPACT_MIN_ROWS = 256  # finished row files before a compaction writes a part (bench_store.py)
PART_ROWS = 10_000  # rows per part at most
ROW_GROUP_ROWS = 2_048  # rows per Parquet row group in a part
MERGE_SMALL_PARTS = 8  # this many parts under PART_ROWS are merged into bigger ones
DIRECT_PUT_BYTES = 4 << 20  # object stores: a file this small is one PUT, bigger ones staged


# -- one sweep --------------------------------------------------------------------------------


@dataclass
class Listing:
    """The data files under trials/: row files, parts, and names that are neither."""

    rows: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return sorted(self.parts + self.rows)


@dataclass
class Compaction:
    """What one `compact` did."""

    merged_rows: int = 0
    parts_written: list[str] = field(default_factory=list)
    files_removed: int = 0


class SweepStore:
    """One sweep's folder: `<results>/<sweep>` (a local path or a URI with its options)."""

    def __init__(
        self,
        sweep_dir: str,
        filesystem: pafs.FileSystem | None = None,
        *,
        flag: str = "results",
    ) -> None:
        self.flag = flag
        base, query = split_query(sweep_dir)
        self.uri = f"{base.rstrip('/')}?{query}" if query else base.rstrip("/")
        if filesystem is None:
            self.fs, self.path = open_fs(self.uri, flag)
            self.path = self.path.rstrip("/")
            if "://" not in self.uri:
                # absolute: Ray Tune runs each trial in a working dir of its own, where a
                # relative `--results results` would land rows out of sight
                self.uri = self.path
        else:  # a path inside a filesystem the caller built (credentials, a subtree, ...)
            self.fs, self.path = filesystem, self.uri
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        # objects appear whole on these: a small file is written in place in one PUT
        self.atomic_put = type(self.fs).__name__ in ("S3FileSystem", "GcsFileSystem")

    @classmethod
    def of(cls, results: str, sweep: str, *, flag: str = "results") -> SweepStore:
        return cls(join_uri(results.rstrip("/"), sweep), flag=flag)

    def __repr__(self) -> str:
        return f"SweepStore({self.uri!r})"

    # -- paths --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def results_uri(self) -> str:
        """`<results>`: the folder (or URI, options kept) holding this sweep."""
        return parent_uri(self.uri)

    def trial_path(self, trial_key: str) -> str:
        return join(self.path, TRIALS, trial_key + SUFFIX)

    @property
    def spec_path(self) -> str:
        return join(self.path, SPEC)

    @property
    def tune_path(self) -> str:
        """Ray Tune's `storage_path` for a local results folder (sweep.tune_storage)."""
        return join(self.path, "tune")

    # -- writing ------------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Create the sweep folder now, so a path that can't hold results fails before Ray."""
        if self.fs.get_file_info(self.path).type == pafs.FileType.File:
            raise StoreError(f"{self.flag}: {self.uri!r} is a file; expected {URI_HINT}")
        try:
            self.fs.create_dir(join(self.path, TRIALS), recursive=True)
        except (OSError, pa.ArrowException) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreError(
                f"{self.flag}: cannot create {self.uri!r} ({reason}); expected {URI_HINT} "
                "this process can write"
            ) from None

    def write_row(self, row: dict[str, Any], *, guard: bool = True) -> str | None:
        """Write one trial's row atomically; the final path, or None if a finished row was
        there already (kept: `guard=False` replaces it, for tests and repairs only)."""
        return self.write_table(row_table(row), guard=guard)

    def write_table(self, table: pa.Table, *, guard: bool = True) -> str | None:
        if table.num_rows != 1 or not table.schema.equals(SCHEMA):
            raise ValueError("a trial file holds exactly one row of store.schema.SCHEMA")
        trial_key = table.column("trial_key")[0].as_py()
        if guard and self.finished_status(trial_key) is not None:
            return None
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        final = self.trial_path(trial_key)
        self._put(final, buffer.getvalue().to_pybytes())
        return final

    def write_text(self, relative: str, text: str) -> None:
        """Write a small text file (spec.yaml) atomically."""
        self._put(join(self.path, relative), text.encode())

    def save_spec(self, text: str) -> None:
        self.write_text(SPEC, text)

    def _put(self, final: str, data: bytes) -> None:
        """`data` at `final`, all or nothing, for readers and for a writer killed midway."""
        parent = final.rsplit("/", 1)[0]
        if self.atomic_put and len(data) <= DIRECT_PUT_BYTES:
            # buffered until close(): killed before it, the upload never completes (invisible)
            with self.fs.open_output_stream(final) as stream:
                stream.write(data)
            return
        staging = join(self.path, STAGING)
        self.fs.create_dir(staging, recursive=True)
        self.fs.create_dir(parent, recursive=True)
        staged = join(staging, f"{final.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open_output_stream(staged) as stream:
                stream.write(data)
            if self.local:
                os.replace(staged, final)  # rename(2): readers see the old file or the new one
            else:
                self.fs.move(staged, final)
        except BaseException:
            _quietly_delete(self.fs, staged)
            raise

    # -- attempts: a few bytes per attempt instead of a Tune checkpoint -----------------------

    def next_attempt(self, run: str, trial_key: str) -> int:
        """1 on a trial's first start in run `run`, n+1 on its n-th retry (a worker that died
        counts): a counter file per trial under `.attempts/<run>/`, read then rewritten."""
        path = join(self.path, ATTEMPTS, run, trial_key)
        try:
            with self.fs.open_input_stream(path) as stream:
                attempt = int(stream.read().decode().strip() or 0) + 1
        except (OSError, pa.ArrowException, ValueError):
            attempt = 1
        self._put(path, str(attempt).encode())
        return attempt

    def clear_attempts(self, keep: str | None = None) -> None:
        """Remove the attempt counters of every run but `keep` (only the lease holder calls it)."""
        folder = join(self.path, ATTEMPTS)
        selector = pafs.FileSelector(folder, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if info.type == pafs.FileType.Directory and info.base_name != keep:
                _quietly(lambda p=info.path: self.fs.delete_dir(p))

    def clear_staging(self) -> None:
        """Remove half-written files of dead writers (only the lease holder, before its run)."""
        _quietly(lambda: self.fs.delete_dir_contents(join(self.path, STAGING), missing_dir_ok=True))

    # -- reading ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type == pafs.FileType.Directory

    def read_spec(self) -> str | None:
        """spec.yaml's text, or None when the folder has none."""
        if self.fs.get_file_info(self.spec_path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(self.spec_path) as stream:
            return stream.read().decode()

    def saved_spec(self) -> SweepSpec:
        """The sweep's resolved spec.yaml, checked against the folder it lives in (UserError
        naming the flag otherwise). Its trials are not built here: `run` validated them when it
        saved the spec; `trial_keys` counts them and a resume builds the ones it runs."""
        if not self.exists():
            raise UserError(f"{self.flag} {self.uri!r} does not exist; expected <results>/<sweep>")
        text = self.read_spec()
        if text is None:
            raise UserError(
                f"{self.flag} {self.uri!r} holds no spec.yaml; is it <results>/<sweep>?"
            )
        return self._parse_spec(text)

    def spec_if_saved(self) -> SweepSpec | None:
        """The saved spec (as `saved_spec`), or None when the folder has no spec.yaml."""
        text = self.read_spec()
        return None if text is None else self._parse_spec(text)

    def _parse_spec(self, text: str) -> SweepSpec:
        spec = parse_yaml(text, f"{self.uri}/{SPEC}", check_trials=False)
        if spec.name != self.name:
            raise UserError(
                f"name: spec.yaml says {spec.name!r} but the folder is {self.name!r}; "
                "rows go to <results>/<name>, so the two must match"
            )
        return spec

    def trial_keys(self) -> dict[str, str] | None:
        """trial_key -> variant ("" without variants) of every trial the saved spec asks for,
        in the spec's order; None when the folder has no spec.yaml. `status`, `resume`, `plan
        --results` and `report` count trials through this, never by parsing spec.yaml."""
        spec = self.spec_if_saved()
        if spec is None:
            return None
        return expected_keys(spec, self.search_state(spec) if spec.search else None)

    def scores(self, score: str) -> dict[str, float | None]:
        """trial_key -> `score` of every finished (ok/diverged) row: what a search replays."""
        return scores_of(self.read_rows(["trial_key", "status", score]).table, score)

    def search_state(self, spec: SweepSpec, rows: pa.Table | None = None) -> SearchState:
        """A search spec's search replayed from this sweep's rows (store.search): the
        one replay `run`, `resume`, `status` and the report's counts all make. `rows`: the
        rows already read (trial_key, status and the search's score), instead of a read."""
        assert spec.search is not None
        score = spec.search.score
        return SearchState.of(spec, self.scores(score) if rows is None else scores_of(rows, score))

    def listing(self) -> Listing:
        """One listing of trials/: row files, parts, other names."""
        selector = pafs.FileSelector(join(self.path, TRIALS), allow_not_found=True)
        out = Listing()
        for info in sorted(self.fs.get_file_info(selector), key=lambda i: i.path):
            if info.type != pafs.FileType.File:
                continue
            kind = file_kind(info.base_name)
            {"row": out.rows, "part": out.parts, None: out.foreign}[kind].append(info.path)
        return out

    def trial_files(self) -> list[str]:
        """Every data file under trials/ (row files and parts; hidden and temp names excluded)."""
        return self.listing().files

    def read_rows(self, columns: list[str] | None = None) -> Rows:
        """One row per trial (in SCHEMA, or just `columns`); unreadable files are skipped."""
        wanted = SCHEMA.names if columns is None else list(columns)
        internal = list(dict.fromkeys(["trial_key", "status", "finished_at", *wanted]))
        table, bad = read_files(self.fs, self.listing().files, internal)
        table = dedupe(table).select(wanted)
        if columns is None:
            table = table.cast(SCHEMA)
        return Rows(table, [f"{path}: {why}" for path, why in bad])

    def statuses(self) -> dict[str, str]:
        """trial_key -> status of every readable row."""
        table = self.read_rows(columns=["trial_key", "status"]).table
        return dict(zip(table.column("trial_key").to_pylist(), table.column("status").to_pylist()))

    def finished_status(self, trial_key: str) -> str | None:
        """The status of the trial's row file if it is finished (ok/diverged), else None.

        Looks at the row file only: a trial whose row sits in a part is never run again (the
        plan skips it, and compaction never takes a trial Tune may still retry)."""
        path = self.trial_path(trial_key)
        try:
            with self.fs.open_input_file(path) as handle:
                table = pq.ParquetFile(handle).read(columns=["trial_key", "status"])
        except (OSError, pa.ArrowException):
            return None  # absent, or not a readable row: nothing final to protect
        if table.num_rows != 1 or table.column("trial_key")[0].as_py() != trial_key:
            return None
        status = table.column("status")[0].as_py()
        return status if status in FINISHED else None

    # -- compaction (the lease holder only) ---------------------------------------------------

    def compact(self, protect: Iterable[str] = (), *, min_rows: int | None = None) -> Compaction:
        """Merge finished row files (but those of `protect`: trials Tune may still retry) into
        parts, once there are `min_rows` (default COMPACT_MIN_ROWS) of them; merge small parts
        when MERGE_SMALL_PARTS pile up. New parts appear (atomically) before inputs go."""
        min_rows = COMPACT_MIN_ROWS if min_rows is None else min_rows
        protected = set(protect)
        listing = self.listing()
        index, _ = read_files(self.fs, listing.files, ["trial_key", "status"])
        in_parts, loose = set(), []
        for key, status, path in zip(*(index.column(c).to_pylist() for c in index.column_names)):
            if file_kind(path.rsplit("/", 1)[-1]) == "part":
                in_parts.add(key)
            elif status in FINISHED and key not in protected:
                loose.append((key, path))
        # a crash after a part was written left its row files behind: they are copies
        leftovers = [path for key, path in loose if key in in_parts]
        loose = [path for key, path in loose if key not in in_parts]
        done = Compaction()
        small = [p for p in listing.parts if _part_rows(p) < PART_ROWS]
        new_part = 1 if len(loose) >= min_rows else 0  # the part this call would write
        take_parts = small if len(small) + new_part >= MERGE_SMALL_PARTS else []
        if len(loose) >= min_rows or take_parts:
            inputs = loose + take_parts
            table, bad = read_files(self.fs, inputs, SCHEMA.names)
            unreadable = {path for path, _ in bad}
            table = dedupe(table.drop(["_file"]))
            table = table.take(pc.sort_indices(table, sort_keys=[("trial_key", "ascending")]))
            for start in range(0, table.num_rows, PART_ROWS):
                done.parts_written.append(self._write_part(table.slice(start, PART_ROWS)))
            done.merged_rows = table.num_rows
            leftovers += [p for p in inputs if p not in unreadable]
            _test_hold(done.parts_written)
        for path in leftovers:
            _quietly_delete(self.fs, path)
        done.files_removed = len(leftovers)
        return done

    def _write_part(self, table: pa.Table) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"{PART_PREFIX}{table.num_rows:06d}-{stamp}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        buffer = pa.BufferOutputStream()
        pq.write_table(table.cast(SCHEMA), buffer, row_group_size=ROW_GROUP_ROWS)
        final = join(self.path, TRIALS, name)
        data = buffer.getvalue().to_pybytes()
        if self.atomic_put:  # a big part could be cut short mid-upload: always staged
            staged = join(self.path, STAGING, f"{name}.{uuid.uuid4().hex}.tmp")
            self.fs.create_dir(join(self.path, STAGING), recursive=True)
            try:
                with self.fs.open_output_stream(staged) as stream:
                    stream.write(data)
                self.fs.move(staged, final)
            except BaseException:
                _quietly_delete(self.fs, staged)
                raise
        else:
            self._put(final, data)
        return final


def expected_keys(spec: SweepSpec, state: SearchState | None) -> dict[str, str]:
    """trial_key -> variant ("" without variants) of every trial `spec` asks for, in its order;
    for a search, the trials it has asked for so far (`state`: its replay from the rows)."""
    if state is not None:
        return {key: state.where[key][0].variant for key in state.planned()}
    return {key: variant for variant, key in spec.trial_keys()}


def find_sweeps(results: str, *, flag: str = "results") -> list[SweepStore]:
    """The sweeps under `results`: the folder itself when it holds trials/ (one sweep), else
    each folder below it that does. UserError naming `flag` when `results` is no folder."""
    fs, path = open_fs(results, flag)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        what = "does not exist" if info.type == pafs.FileType.NotFound else "is not a folder"
        raise StoreError(f"{flag} {results!r} {what}; expected <results> or <results>/<sweep>")
    if fs.get_file_info(join(path, TRIALS)).type == pafs.FileType.Directory:
        return [SweepStore(results, flag=flag)]
    children = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return [
        SweepStore(join_uri(results.rstrip("/"), child.base_name), flag=flag)
        for child in sorted(children, key=lambda c: c.base_name)
        if child.type == pafs.FileType.Directory
        and not child.base_name.startswith(".")
        and fs.get_file_info(join(child.path, TRIALS)).type == pafs.FileType.Directory
    ]


# Test hook, for scripts/local_cluster_e2e.sh only: with $DLGSWEEP_TEST_HOLD_COMPACTION set to a
# local file path, `compact` writes the new parts' paths there and then waits
# $DLGSWEEP_TEST_HOLD_COMPACTION_S seconds (default 60) between writing its parts and deleting
# the row files they merged: the window in which a crash leaves a row twice. The e2e kills the
# driver's node inside that window. Unset (always, outside that script), it costs one lookup.
HOLD_ENV = "DLGSWEEP_TEST_HOLD_COMPACTION"


def _test_hold(parts: list[str]) -> None:
    marker = os.environ.get(HOLD_ENV)
    if not marker:
        return
    with open(marker, "w") as handle:
        handle.write("".join(f"{part}\n" for part in parts))
    time.sleep(float(os.environ.get(HOLD_ENV + "_S") or 60))


def _part_rows(path: str) -> int:
    """The row count a part's name carries: `part-<rows>-...`."""
    try:
        return int(path.rsplit("/", 1)[-1][len(PART_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return PART_ROWS  # a foreign part name: never merged again


def _quietly_delete(fs: pafs.FileSystem, path: str) -> None:
    _quietly(lambda: fs.delete_file(path))


def _quietly(action: Any) -> None:
    try:
        action()
    except (OSError, pa.ArrowException):
        pass
