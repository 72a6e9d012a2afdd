"""The Parquet sink: one row per trial, atomic, one schema, unreadable files never counted."""

from __future__ import annotations

import threading

import numpy as np
import polars as pl
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from orchestrator import sink
from orchestrator.schema import SCHEMA, make_row
from orchestrator.sink import SweepStore, open_fs
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
    store.write_row(_row(psnr=31.0))
    assert len(store.trial_files()) == 1
    assert list(store.statuses().values()) == ["ok"]
    assert store.read_rows().table.column("psnr_mean").to_pylist() == [31.0]


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

    def die(table, stream, **kwargs):
        stream.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(sink.pq, "write_table", die)
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
