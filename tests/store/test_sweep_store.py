"""The Parquet sink: one row per trial, atomic, one schema, unreadable files never counted."""

from __future__ import annotations

import os
import threading

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from store import sweep_store as sink
from store.schema import SCHEMA, make_row, row_table
from store.sweep_store import SweepStore
from store.uri import join_uri, open_fs, parent_uri
from workloads.config import TrialConfig
from workloads.result import TrialResult


def _row(seed: int = 0, status: str = "ok", psnr: float = 20.0, sweep: str = "s") -> dict:
    config = TrialConfig(seed=seed, iterations=5)
    image = np.zeros((1, 32, 32, 3), dtype=np.uint8)
    result = TrialResult(
        status=status, psnr_mean=psnr, started_at=1.0, finished_at=2.0, wall_seconds=1.0,
        reconstruction=image, ground_truth=image, curve_iteration=[0, 4], curve_grad_loss=[1, 0.1],
        error=None if status != "error" else "boom",
    )  # fmt: skip
    return make_row(config, result, sweep=sweep, node_id="n1", attempt=1)


def test_row_lands_at_trial_key_in_the_schema(tmp_path):
    store = SweepStore.of(str(tmp_path), "s")
    row = _row()
    path = store.write_row(row)
    assert path == str(tmp_path / "s" / "trials" / f"{row['trial_key']}.parquet")
    table = pq.read_table(path)
    assert table.schema.equals(SCHEMA) and table.num_rows == 1
    rows = store.read_rows()
    assert rows.skipped == [] and rows.table.num_rows == 1
    assert rows.table.column("psnr_mean")[0].as_py() == 20.0
    some = store.read_rows(columns=["status", "psnr_mean"]).table
    assert some.column_names == ["status", "psnr_mean"] and some.num_rows == 1
    assert rows.table.column("reconstruction_png")[0].as_py()[:4] == b"\x89PNG"
    assert list((tmp_path / "s" / ".staging").iterdir()) == []  # nothing left behind


def test_rewriting_a_trial_replaces_its_row(tmp_path):
    store = SweepStore.of(str(tmp_path), "s")
    store.write_row(_row(status="error"))
    store.write_row(_row(status="error", psnr=1.0))  # an error row is replaced by the next try
    assert store.read_rows().table.column("psnr_mean").to_pylist() == [1.0]
    store.write_row(_row(psnr=31.0))
    assert len(store.trial_files()) == 1
    assert list(store.statuses().values()) == ["ok"]
    assert store.read_rows().table.column("psnr_mean").to_pylist() == [31.0]


@pytest.mark.parametrize("finished", ["ok", "diverged"])
@pytest.mark.parametrize("later", ["error", "ok", "diverged"])
def test_a_finished_row_is_never_replaced(tmp_path, finished, later):
    store = SweepStore.of(str(tmp_path), "s")
    path = store.write_row(_row(status=finished, psnr=20.0))
    before = open(path, "rb").read(), os.stat(path).st_mtime_ns
    assert store.write_row(_row(status=later, psnr=5.0)) is None  # looked, and kept the row
    assert (open(path, "rb").read(), os.stat(path).st_mtime_ns) == before
    assert store.finished_status(_row()["trial_key"]) == finished
    # repairs only: guard=False replaces it
    store.write_row(_row(status=later, psnr=5.0), guard=False)
    assert pq.read_table(path).column("psnr_mean").to_pylist() == [5.0]


def test_every_status_shares_one_schema(tmp_path):
    store = SweepStore.of(str(tmp_path), "s")
    for seed, status in enumerate(("ok", "diverged", "error")):
        store.write_row(_row(seed=seed, status=status))
    frame = pl.read_parquet(str(tmp_path / "s" / "trials" / "*.parquet"))
    assert sorted(frame["status"].to_list()) == ["diverged", "error", "ok"]
    assert frame.columns == SCHEMA.names


def test_corrupt_half_written_and_temp_files_are_never_counted(tmp_path):
    store = SweepStore.of(str(tmp_path), "s")
    good = store.write_row(_row(seed=0))
    trials = tmp_path / "s" / "trials"
    half = trials / f"{TrialConfig(seed=1, iterations=5).trial_key}.parquet"
    half.write_bytes(open(good, "rb").read()[:300])  # a writer that died mid-file
    (trials / f"{TrialConfig(seed=2, iterations=5).trial_key}.parquet").write_bytes(b"garbage")
    (trials / ".hidden.parquet").write_bytes(open(good, "rb").read())
    (trials / "x.parquet.tmp").write_bytes(b"partial")
    (trials / "deadbeefdeadbeef.parquet").write_bytes(open(good, "rb").read())  # wrong name
    rows = store.read_rows()
    assert rows.table.num_rows == 1
    assert len(rows.skipped) == 3
    assert any("does not match" in s for s in rows.skipped)
    assert store.statuses() == {_row(seed=0)["trial_key"]: "ok"}


def test_a_failed_write_leaves_no_file_in_the_tree(tmp_path, monkeypatch):
    store = SweepStore.of(str(tmp_path), "s")

    def die(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(sink.os, "replace", die)  # the staged file is complete, the move fails
    with pytest.raises(OSError, match="disk full"):
        store.write_row(_row())
    assert store.trial_files() == []
    assert list((tmp_path / "s" / ".staging").iterdir()) == []


def test_concurrent_reader_never_sees_a_partial_file(tmp_path):
    """A polars reader globbing trials/*.parquet while rows are rewritten in a loop."""
    store = SweepStore.of(str(tmp_path), "s")
    for seed in range(4):
        store.write_row(_row(seed=seed))
    rows = [_row(seed=seed % 4, psnr=float(seed)) for seed in range(80)]
    stop, failures, reads = threading.Event(), [], [0]

    def read() -> None:
        while not stop.is_set():
            try:
                frame = pl.read_parquet(str(tmp_path / "s" / "trials" / "*.parquet"))
                assert frame.height == 4
                reads[0] += 1
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                failures.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for row in rows:
            store.write_row(row)
    finally:
        stop.set()
        reader.join()
    assert failures == [] and reads[0] > 0


def test_generic_pyarrow_filesystem_moves_into_place(tmp_path):
    """Any pyarrow filesystem (here a SubTreeFileSystem, not the local fast path) works."""
    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    store = SweepStore("results/s", filesystem=subtree)
    assert not store.local
    store.write_row(_row())
    store.save_spec("name: s\n")
    assert store.read_spec() == "name: s\n"
    assert store.read_rows().table.num_rows == 1
    assert (tmp_path / "results" / "s" / "trials").is_dir()


def test_uris_and_paths_open_pyarrow_filesystems(tmp_path):
    fs, path = open_fs(f"file://{tmp_path}/r")
    assert isinstance(fs, pafs.LocalFileSystem) and path == f"{tmp_path}/r"
    fs, path = open_fs("relative/dir")
    assert path.endswith("/relative/dir") and path.startswith("/")
    store = SweepStore.of(f"file://{tmp_path}", "s")
    store.write_row(_row())
    assert len(SweepStore(str(tmp_path / "s")).trial_files()) == 1


def test_spec_is_saved_beside_the_trials(tmp_path):
    store = SweepStore.of(str(tmp_path), "s")
    assert store.read_spec() is None
    store.save_spec("name: s\n")
    assert (tmp_path / "s" / "spec.yaml").read_text() == "name: s\n"


# -- the compacted layout ---------------------------------------------------------------------


def _sweep_of(tmp_path, n: int, errors: int = 0) -> SweepStore:
    store = SweepStore.of(str(tmp_path), "s")
    for seed in range(n):
        status = "error" if seed < errors else ("diverged" if seed % 5 == 4 else "ok")
        store.write_row(_row(seed=seed, status=status, psnr=float(seed)))
    return store


def test_compaction_merges_finished_rows_and_keeps_one_row_per_trial(tmp_path):
    store = _sweep_of(tmp_path, 12, errors=2)
    protected = _row(seed=5)["trial_key"]  # a trial Tune may still retry: its file stays
    before = store.read_rows().table.sort_by("trial_key")
    assert store.compact(min_rows=20).parts_written == []  # below the threshold: nothing
    done = store.compact(protect={protected}, min_rows=5)
    assert done.merged_rows == 9 and len(done.parts_written) == 1 and done.files_removed == 9
    listing = store.listing()
    assert len(listing.parts) == 1 and len(listing.rows) == 3  # 2 error rows + the protected
    part = pq.read_table(listing.parts[0])
    assert part.num_rows == 9 and part.schema.equals(SCHEMA)
    assert part.column("trial_key").to_pylist() == sorted(part.column("trial_key").to_pylist())
    assert set(part.column("status").to_pylist()) <= {"ok", "diverged"}
    after = store.read_rows().table.sort_by("trial_key")
    assert after.equals(before)  # same rows, images included, nothing lost or doubled
    # every reader sees the same 12 rows through a plain glob: polars, pyarrow, duckdb
    trials = str(tmp_path / "s" / "trials")
    assert pl.read_parquet(f"{trials}/*.parquet")["trial_key"].n_unique() == 12
    assert pl.read_parquet(f"{trials}/*.parquet").height == 12
    assert pq.read_table(trials).num_rows == 12
    duckdb = pytest.importorskip("duckdb")
    counted = duckdb.sql(f"SELECT count(*), count(DISTINCT trial_key) FROM '{trials}/*.parquet'")
    assert counted.fetchall() == [(12, 12)]


def test_a_crash_between_part_and_deletes_leaves_copies_that_count_once(tmp_path):
    store = _sweep_of(tmp_path, 6)
    copies = {p: open(p, "rb").read() for p in store.listing().rows}
    store.compact(min_rows=1)
    for path, data in list(copies.items())[:3]:  # the row files a killed compactor left
        open(path, "wb").write(data)
    rows = store.read_rows(columns=["trial_key", "status"])
    assert rows.table.num_rows == 6 and rows.skipped == []
    done = store.compact(min_rows=100)  # below threshold, yet the copies go
    assert done.files_removed == 3 and done.parts_written == []
    assert store.listing().rows == [] and len(store.listing().parts) == 1


def test_a_finished_row_outranks_an_error_row_of_the_same_trial(tmp_path):
    store = _sweep_of(tmp_path, 3)
    store.compact(min_rows=1)
    key = _row(seed=0)["trial_key"]
    # an error row beside a finished part row (a run that ignored the lease, say)
    store.write_row(_row(seed=0, status="error"))
    assert store.statuses()[key] == "ok"
    assert store.read_rows().table.num_rows == 3


def test_small_parts_are_merged_when_they_pile_up(tmp_path, monkeypatch):
    monkeypatch.setattr(sink, "MERGE_SMALL_PARTS", 3)
    store = SweepStore.of(str(tmp_path), "s")
    for batch in range(3):
        for seed in range(batch * 4, batch * 4 + 4):
            store.write_row(_row(seed=seed))
        store.compact(min_rows=4)
    parts = store.listing().parts
    assert len(parts) == 1 and pq.read_metadata(parts[0]).num_rows == 12
    assert parts[0].rsplit("/", 1)[-1].startswith("part-000012-")
    assert len(store.statuses()) == 12


def test_old_one_file_per_row_folders_and_parts_read_together(tmp_path):
    """A row file of the old layout (before psnr_raw_mean, engine_version, init_weight_std
    existed) beside a part: one table in today's schema, old columns null."""
    store = _sweep_of(tmp_path, 4)
    store.compact(min_rows=1)
    old = _row(seed=9)
    table = row_table(old).drop(["psnr_raw_mean", "engine_version", "init_weight_std"])
    pq.write_table(table, store.trial_path(old["trial_key"]))
    rows = store.read_rows()
    assert rows.table.num_rows == 5 and rows.skipped == []
    got = {r["trial_key"]: r for r in rows.table.to_pylist()}
    assert got[old["trial_key"]]["engine_version"] is None
    assert got[_row(seed=1)["trial_key"]]["engine_version"] is not None


def test_attempts_count_per_run_and_are_cleared(tmp_path):
    store = SweepStore.of(str(tmp_path), "s")
    assert [store.next_attempt("run-a", "k1") for _ in range(3)] == [1, 2, 3]
    assert store.next_attempt("run-a", "k2") == 1
    assert store.next_attempt("run-b", "k1") == 1  # a new run counts afresh
    store.clear_attempts(keep="run-b")
    assert sorted(p.name for p in (tmp_path / "s" / ".attempts").iterdir()) == ["run-b"]


@pytest.mark.parametrize(
    "results, sweep, joined, parent",
    [
        ("/r", "s", "/r/s", "/r"),
        ("s3://b/r/", "s", "s3://b/r/s", "s3://b/r"),
        (
            "s3://b/r?endpoint_override=127.0.0.1:9000&scheme=http",
            "demo",
            "s3://b/r/demo?endpoint_override=127.0.0.1:9000&scheme=http",
            "s3://b/r?endpoint_override=127.0.0.1:9000&scheme=http",
        ),
        ("gs://b?x=1", "s", "gs://b/s?x=1", "gs://b?x=1"),
    ],
)
def test_uris_keep_their_options_at_the_end(results, sweep, joined, parent):
    assert join_uri(results, sweep) == joined
    assert parent_uri(joined) == parent


def test_the_row_is_declared_once_and_every_field_is_a_column():
    """SCHEMA and make_row derive from RowHead + TrialConfig + TrialResult + Provenance: a
    field added to TrialResult is a column with no other edit (`frames` stays out)."""
    from dataclasses import fields

    from store.schema import IMAGE_COLUMNS, Provenance, RowHead

    declared = [f.name for cls in (RowHead, TrialConfig, Provenance) for f in fields(cls)]
    for f in fields(TrialResult):
        kind = f.metadata.get("column", "value")
        if kind is not None:
            declared.append(f"{f.name}_png" if kind == "png" else f.name)
    assert sorted(declared) == sorted(SCHEMA.names)
    assert "frames" not in SCHEMA.names and IMAGE_COLUMNS == (
        "reconstruction_png",
        "ground_truth_png",
    )
    assert SCHEMA.names[:5] == ["sweep", "trial_key", "variant", "status", "error"]
    images = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    result = TrialResult(status="ok", reconstruction=images, ground_truth=images, started_at=1.0)
    row = make_row(TrialConfig(), result, sweep="s")
    assert sorted(row) == sorted(SCHEMA.names)  # every column written, nothing else
    assert row["started_at"].timestamp() == 1.0 and row["reconstruction_png"][:4] == b"\x89PNG"
    assert not set(IMAGE_COLUMNS) & set(make_row(TrialConfig(), result, with_images=False))


def test_the_store_answers_for_the_saved_spec(tmp_path):
    """trial_keys / saved_spec / find_sweeps: the spec's trials without parsing it elsewhere."""
    from dlgsweep.errors import UserError
    from store.spec import parse_yaml

    spec = parse_yaml("name: s\ngrid: {seed: [0, 1, 2]}\nattack: {iterations: 5}\n")
    store = SweepStore.of(str(tmp_path), "s")
    store.check_writable()
    assert store.trial_keys() is None  # no spec.yaml yet
    store.save_spec(spec.to_yaml())
    assert list(store.trial_keys()) == [t.trial_key for t in spec.trials()]
    assert store.saved_spec().grid == spec.grid
    assert [s.name for s in sink.find_sweeps(str(tmp_path))] == ["s"]
    assert [s.name for s in sink.find_sweeps(store.uri)] == ["s"]
    other = SweepStore.of(str(tmp_path), "renamed")
    other.check_writable()
    other.save_spec(spec.to_yaml())
    with pytest.raises(UserError, match="spec.yaml says 's' but the folder is 'renamed'"):
        other.trial_keys()
    with pytest.raises(UserError, match="does not exist"):
        sink.find_sweeps(str(tmp_path / "nowhere"))
