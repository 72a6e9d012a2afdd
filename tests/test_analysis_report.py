"""`dlgsweep report` on a real small sweep, and the result opened in headless Chromium.

The browser test loads index.html and one standalone chart page from disk (file://, no network),
waits for vega-embed, and reads back the DOM: every chart must have rendered (the page sets
`data-rendered` to the number of charts drawn) with no Vega error in the console. A screenshot
of the index is kept in the test's folder (and copied to $DLGSWEEP_SCREENSHOT_DIR if set).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

from analysis import charts
from analysis.report import build_report
from orchestrator.cli import main
from tests.analysis_fixtures import headless, small_report, small_sweep

__all__ = ["small_report", "small_sweep"]

pytestmark = pytest.mark.slow  # the session's sweep fixture runs real attacks on Ray


def test_report_files(small_report) -> None:
    out = small_report.out
    for chart in charts.CHARTS:
        page = (out / f"{chart}.html").read_text()
        assert "vegaEmbed(" in page and "<script src=" not in page  # JS inline: works offline
        assert (out / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (out / "index.html").read_text()
    assert index.count("data:image/png;base64,") == 2 * small_report.gallery_rows > 0
    assert "<b>1 error rows excluded</b>" in index
    assert "32 of 32 trials of the spec have a row (complete)" in index
    for finding in small_report.findings:
        assert html.escape(finding.claim) in index
    findings_csv = pl.read_csv(out / "findings.csv")
    assert findings_csv.height == 5
    counts = json.loads((out / "counts.json").read_text())
    assert counts["by_status"]["error"] == 1 and counts["excluded_error_rows"] == 1
    assert all(c["skipped"] is None and c["n_min"] >= 1 for c in counts["charts"].values())


def test_partial_sweep_and_skipped_charts(small_sweep: Path, tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "results" / "mini"
    shutil.copytree(small_sweep, sweep)
    frame = pl.read_parquet(sorted((sweep / "trials").glob("*.parquet")))
    # drop every row that is not in the grid, and 5 of the grid's: a partial, narrow sweep
    grid = frame.filter(
        (pl.col("norm") == "none") & (pl.col("model") == "mcmahan_cnn")
        & (pl.col("label_strategy") == "idlg") & (pl.col("noise") == "none")
        & (pl.col("status") == "ok")
    )  # fmt: skip
    keep = set(grid["trial_key"].to_list()[5:])
    for path in (sweep / "trials").glob("*.parquet"):
        if path.stem not in keep:
            path.unlink()
    out = tmp_path / "report"
    assert main(["report", str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "trials present: 27 of 32" in printed
    assert "skipped bn_mode: bn_mode: bn_mode does not vary" in printed
    index = (out / "index.html").read_text()
    assert "27 of 32 trials of the spec have a row (partial sweep)" in index
    for name in ("bn_mode", "bn_gradients", "model_by_init", "label_strategy"):
        assert re.search(rf"<section id='{name}'><h2>[^<]*</h2><p class='note'>Skipped", index)
        assert not (out / f"{name}.html").exists()
    assert (out / "psnr_vs_batch.png").exists()


def test_report_of_an_empty_sweep(tmp_path: Path) -> None:
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    report = build_report(str(tmp_path / "empty"), tmp_path / "out")
    assert all(c.skipped for c in report.charts)
    assert {f.verdict for f in report.findings} == {"not enough data"}
    assert "No ok/diverged trials" in (tmp_path / "out" / "index.html").read_text()


def test_report_command_errors(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no results at" in capsys.readouterr().err


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_index_renders_in_headless_chromium(small_report, tmp_path: Path) -> None:
    out = small_report.out
    drawn = [c for c in small_report.charts if not c.skipped]
    page = headless((out / "index.html").as_uri(), "--dump-dom")
    console = _console(page.stderr)
    assert not [line for line in console if "error" in line.lower()], console
    assert f'data-rendered="{len(drawn)}"' in page.stdout, page.stdout[-2000:]
    assert "data-error" not in page.stdout
    assert page.stdout.count("<svg") >= len(drawn)  # one SVG per chart, plus legends' symbols
    assert "ground truth" in page.stdout

    single = headless((out / "convergence.html").as_uri(), "--dump-dom")
    assert 'data-rendered="1"' in single.stdout
    assert not [line for line in _console(single.stderr) if "error" in line.lower()]

    shot = tmp_path / "index.png"
    done = headless(
        (out / "index.html").as_uri(), f"--screenshot={shot}", "--window-size=1400,4000",
        "--hide-scrollbars",
    )  # fmt: skip
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", done.stderr[-2000:]
    if os.environ.get("DLGSWEEP_SCREENSHOT_DIR"):
        target = Path(os.environ["DLGSWEEP_SCREENSHOT_DIR"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / "index.png")
