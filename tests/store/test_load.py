"""store.load on a real small sweep: every row once, images off by default, bad files skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from store import load
from store.schema import IMAGE_COLUMNS, SCHEMA

pytestmark = pytest.mark.ray  # the session's sweep fixture runs real attacks on Ray


def expected_rows(mini) -> int:
    grid = 1
    for values in mini.grid.values():
        grid *= len(values)
    return grid + len(mini.extra_configs(Path("/nonexistent")))


def test_every_row_once_without_images(small_sweep: Path, small_frame: pl.DataFrame, mini) -> None:
    files = sorted((small_sweep / "trials").glob("*.parquet"))
    assert small_frame.height == len(files) == expected_rows(mini)
    assert small_frame["trial_key"].n_unique() == small_frame.height
    assert set(small_frame["sweep"].unique()) == {mini.name}
    assert not set(IMAGE_COLUMNS) & set(small_frame.columns)
    assert small_frame.columns == [n for n in SCHEMA.names if n not in IMAGE_COLUMNS]
    assert small_frame.filter(pl.col("status") == "error").height == 1
    assert small_frame.schema["curve_psnr"] == pl.List(pl.Float64)


def test_images_on_request(small_sweep: Path) -> None:
    frame = load.trials(str(small_sweep), images=True)
    ok = frame.filter(pl.col("status") == "ok")
    assert ok["reconstruction_png"].null_count() == 0
    assert ok["ground_truth_png"][0][:8] == b"\x89PNG\r\n\x1a\n"
    picked = load.images(str(small_sweep), ok["trial_key"].head(3).to_list())
    assert picked.height == 3 and picked["ground_truth_png"].null_count() == 0


def test_results_root_uri_and_many_sweeps(small_sweep: Path, tmp_path: Path, mini) -> None:
    root = tmp_path / "results"
    shutil.copytree(small_sweep, root / "a")
    shutil.copytree(small_sweep / "trials", root / "b" / "trials")
    (root / "not-a-sweep").mkdir()
    trials = load.load(f"file://{root}")
    # rows carry their sweep name ("mini"), so both copies land under it; folders are listed
    assert set(trials.files) == {"a", "b"}
    assert trials.frame.height == 2 * expected_rows(mini)
    assert len(load.sweeps(str(root / "a"))) == 1


def test_unreadable_and_temp_files_are_skipped(small_sweep: Path, tmp_path: Path, mini) -> None:
    sweep = tmp_path / "copy"
    shutil.copytree(small_sweep, sweep)
    trials_dir = sweep / "trials"
    good = sorted(trials_dir.glob("*.parquet"))[0].read_bytes()
    (trials_dir / "half.parquet").write_bytes(good[: len(good) // 2])  # a half-written copy
    (trials_dir / "empty.parquet").write_bytes(b"")
    (trials_dir / ".hidden.parquet").write_bytes(good)  # a temp name
    (trials_dir / "x.parquet.tmp").write_bytes(good)
    (trials_dir / "notes.txt").write_text("hello")
    trials = load.load(str(sweep))
    assert trials.frame.height == expected_rows(mini)
    skipped = {Path(path).name for path, _ in trials.skipped}
    assert skipped == {"half.parquet", "empty.parquet", ".hidden.parquet", "x.parquet.tmp",
                       "notes.txt"}  # fmt: skip


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load.load(str(tmp_path / "nowhere"))


def test_a_file_missing_newer_columns_loads_with_nulls(
    small_sweep: Path, tmp_path: Path, mini
) -> None:
    """Columns are only ever added to the schema: an older row file lacks some, not a failure."""
    sweep = tmp_path / "old"
    shutil.copytree(small_sweep, sweep)
    path = sorted((sweep / "trials").glob("*.parquet"))[0]
    pl.read_parquet(path).drop("grad_kernel_norms", "node_id").write_parquet(path)
    frame = load.trials(str(sweep))
    assert frame.height == expected_rows(mini)
    old = frame.filter(pl.col("trial_key") == path.stem)
    assert old["grad_kernel_norms"][0] is None and old["node_id"][0] is None
    assert frame.schema["grad_kernel_norms"] == pl.List(pl.Float64)
