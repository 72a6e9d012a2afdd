"""`dlgsweep report` on a real small sweep, and on two; the pages opened in headless Chromium.

The browser tests load the pages from disk (file://, no network). index.html must render every
chart (the page sets `data-rendered` to the number drawn) with no error in the console; the
explorer is driven over the DevTools protocol with real mouse clicks: a click on a table row and
one on a line of the parallel coordinates each select a trial, whose ground truth and
reconstruction images must load and whose convergence curve must be drawn.
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

from analysis import charts, findings
from analysis.report import build_report
from dlgsweep.cli import main
from store import load
from store.sweep_store import SweepStore

pytestmark = pytest.mark.ray  # the session's sweep fixture runs real attacks on Ray
NOT_ON_MINI = ("init_scale", "pruning_aware")  # the mini sweep varies neither


def test_report_files(small_report) -> None:
    out = small_report.out
    for chart in charts.CHARTS:
        if chart in NOT_ON_MINI:
            assert not (out / f"{chart}.html").exists()
            continue
        page = (out / f"{chart}.html").read_text()
        assert "vegaEmbed(" in page and "<script src=" not in page  # JS inline: works offline
        assert (out / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (out / "index.html").read_text()
    assert "data:image/png;base64," not in index  # the gallery links the explorer's files
    images = re.findall(r"<img alt='[^']*' src='(explorer/[^']+)'>", index)
    assert len(images) == 2 * small_report.gallery_rows > 0
    assert all((out / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for image in images)
    assert "<b>1 error rows excluded</b>" in index
    assert "32 of 32 trials of the spec have a row (complete)" in index
    _, _, untested = index.partition("not tested by this sweep: ")
    untested = untested.split("</p>", 1)[0]
    for finding in small_report.findings:  # a row of the table, or named as untestable
        shown = html.escape(finding.claim) in index
        assert shown != (f"{finding.key} (" in untested), finding.key
        assert finding.verdict in findings.VERDICTS
    assert "iterations: 2, 6 here (deck: 500 iterations)" in index  # the protocol section
    findings_csv = pl.read_csv(out / "findings.csv")
    assert findings_csv.height == len(findings.CLAIMS)
    assert set(findings_csv["sweep"]) == {"mini"}
    counts = json.loads((out / "counts.json").read_text())
    assert counts["by_status"]["error"] == 1 and counts["excluded_error_rows"] == 1
    drawn = {k: c for k, c in counts["charts"].items() if k not in NOT_ON_MINI}
    assert all(c["skipped"] is None and c["n_min"] >= 1 for c in drawn.values())


def test_gallery_covers_every_group(small_report, small_frame_from_report) -> None:
    rows = small_frame_from_report.filter(pl.col("status") == "ok")
    axes = [c for c in charts.AXES if rows[c].n_unique() > 1]
    groups = rows.select(axes).unique().height
    assert small_report.gallery_groups == small_report.gallery_rows == groups
    index = (small_report.out / "index.html").read_text()
    assert "groups are left out" not in index  # all shown; the page would say what is not


@pytest.fixture
def small_frame_from_report(small_sweep: Path) -> pl.DataFrame:
    return load.trials(str(small_sweep))


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
    for name in ("bn_mode", "bn_gradients", "model_by_init", "label_strategy", *NOT_ON_MINI):
        assert re.search(rf"<section id='{name}'><h2>[^<]*</h2><p class='note'>Skipped", index)
        assert not (out / f"{name}.html").exists()
    assert (out / "psnr_vs_batch.png").exists()


def test_report_of_an_empty_sweep(tmp_path: Path) -> None:
    (tmp_path / "empty" / "trials").mkdir(parents=True)
    report = build_report(str(tmp_path / "empty"), tmp_path / "out")
    assert all(c.skipped for c in report.charts)
    assert {f.verdict for f in report.findings} == {"not enough data"}
    assert "No ok/diverged trials" in (tmp_path / "out" / "index.html").read_text()
    assert report.explorer_rows == 0 and (tmp_path / "out" / "explorer.html").exists()


def test_report_command_errors(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "no results at" in capsys.readouterr().err


def _console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line and "error" in line.lower()]


def test_index_renders_in_headless_chromium(small_report, tmp_path: Path, headless) -> None:
    out = small_report.out
    drawn = [c for c in small_report.charts if not c.skipped]
    page = headless((out / "index.html").as_uri(), "--dump-dom")
    assert not _console_errors(page.stderr), page.stderr[-2000:]
    assert f'data-rendered="{len(drawn)}"' in page.stdout, page.stdout[-2000:]
    assert "data-error" not in page.stdout
    assert page.stdout.count("<svg") >= len(drawn)  # one SVG per chart, plus legends' symbols
    assert "<select" in page.stdout  # the dropdowns of the axes a chart does not show
    single = headless((out / "convergence.html").as_uri(), "--dump-dom")
    assert 'data-rendered="1"' in single.stdout
    assert not _console_errors(single.stderr)
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


# -- two sweeps side by side, and the explorer clicked ------------------------------------------


def second_sweep(small_sweep: Path, results: Path) -> Path:
    """`mini-b`: the grid's rows of the mini sweep, seed 0 dropped, written through the sink."""
    rows = load.trials(str(small_sweep), images=True).filter(
        (pl.col("seed") == 1) | (pl.col("status") == "error")
    )
    store = SweepStore.of(str(results), "mini-b")
    for row in rows.with_columns(pl.lit("mini-b").alias("sweep")).to_dicts():
        store.write_row(row)
    return results / "mini-b"


@pytest.fixture(scope="module")
def two_sweep_report(small_sweep: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("two")
    other = second_sweep(small_sweep, base / "results")
    out = base / "report"
    assert main(["report", str(small_sweep), str(other), "--out", str(out)]) == 0
    return out


def test_two_sweeps_side_by_side(two_sweep_report: Path) -> None:
    out = two_sweep_report
    index = (out / "index.html").read_text()
    header = re.search(r"<table class='findings'><tr>(.*?)</tr>", index).group(1)
    assert header.endswith("<th>mini</th><th>mini-b</th>")  # one verdict column per sweep
    table = pl.read_csv(out / "findings.csv")
    assert table.height == 2 * len(findings.CLAIMS)
    one_seed = table.filter(pl.col("sweep") == "mini-b")
    assert set(one_seed["verdict"]) == {"not enough data"}  # one seed: no interval
    spec = json.loads(re.search(r"const specs = (\{.*?\});\n", index).group(1))
    assert spec["psnr_vs_batch"]["facet"]["row"]["field"] == "sweep"
    counts = json.loads((out / "counts.json").read_text())
    assert set(counts["sweeps"]) == {"mini", "mini-b"}


def test_explorer_click_shows_images_and_curve(
    two_sweep_report: Path, tmp_path: Path, browser
) -> None:
    out = two_sweep_report
    assert (out / "explorer").is_dir() and list((out / "explorer").rglob("*-truth.png"))
    with browser() as browser:
        browser.open((out / "index.html").as_uri())
        drawn = browser.wait_for("document.body.dataset.rendered || document.body.dataset.error")
        assert drawn.isdigit() and int(drawn) >= 6, drawn

        browser.open((out / "explorer.html").as_uri())
        rows = int(browser.wait_for("document.body.dataset.ready"))
        assert rows == 43 + 22  # every trial of both sweeps, error rows included
        assert browser.evaluate("document.body.dataset.selected") is None
        # a real click on the first ok row of the table (sorted by PSNR, best first)
        browser.click_element("document.querySelector('#trials tbody tr.status-ok')")
        key = browser.wait_for("document.body.dataset.selected")
        assert browser.wait_for("document.body.dataset.imagesLoaded === '2'")
        sizes = browser.evaluate(
            "[...document.querySelectorAll('#images img')]"
            ".map(i => [i.dataset.role, i.naturalWidth])"
        )
        assert [role for role, _ in sizes] == ["ground-truth", "reconstruction"]
        assert all(width >= 32 for _, width in sizes)
        assert browser.evaluate("document.querySelectorAll('#curves polyline.curve').length") == 2
        assert browser.evaluate("document.querySelector('#detail h3').textContent").startswith(
            f"trial {key}"
        )
        # filter to one sweep, then click a line of the parallel coordinates
        browser.evaluate(
            "(() => { const s = document.querySelector(\"select[data-axis='sweep']\");"
            " s.value = 'mini-b'; s.dispatchEvent(new Event('change')); })()"
        )
        shown = browser.evaluate("document.querySelectorAll('#trials tbody tr').length")
        assert shown == 22
        # the middle of a line's last segment, mapped to the page by the line's own screen
        # transform (the svg's border and any scaling included; its bounding box is not the
        # origin of its user coordinates)
        x, y, line_key = browser.evaluate(
            "(() => { const l = [...document.querySelectorAll('polyline.pc-line')]"
            ".find(p => p.dataset.key !== document.body.dataset.selected);"
            " const n = l.points.numberOfItems;"
            " const a = l.points.getItem(n - 2), b = l.points.getItem(n - 1);"
            " const p = l.ownerSVGElement.createSVGPoint();"
            " p.x = (a.x + b.x) / 2; p.y = (a.y + b.y) / 2;"
            " const s = p.matrixTransform(l.getScreenCTM());"
            " return [s.x, s.y, l.dataset.key]; })()"
        )
        browser.click(x, y)
        picked = browser.wait_for(
            f"document.body.dataset.selected !== '{key}' && document.body.dataset.selected"
        )
        assert picked != key
        mini_b = set(load.trials(str(out.parent / "results" / "mini-b"))["trial_key"].to_list())
        assert picked in mini_b  # a line of the filtered sweep
        browser.wait_for("document.body.dataset.imagesLoaded === '2'")
        browser.screenshot(tmp_path / "explorer.png")
        errors = [line for line in browser.console if line.startswith("error")]
        assert not errors, errors
    assert (tmp_path / "explorer.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DLGSWEEP_SCREENSHOT_DIR"):
        shutil.copy(tmp_path / "explorer.png", Path(os.environ["DLGSWEEP_SCREENSHOT_DIR"]))


def test_gallery_says_which_groups_are_left_out() -> None:
    import io

    from PIL import Image

    from analysis.report import gallery_html, gallery_png

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "gray").save(buffer, format="PNG")
    png = buffer.getvalue()
    every = pl.DataFrame(
        {
            "sweep": ["s"] * 5, "model": ["m"] * 5, "seed": [0] * 5, "batch_size": list(range(5)),
            "trial_key": [f"k{i}" for i in range(5)], "psnr_mean": [10.0] * 5,
            "ssim_mean": [0.5] * 5, "label_accuracy": [1.0] * 5, "group_axes": ["batch_size"] * 5,
            "group_trials": [3] * 5, "ground_truth_png": [png] * 5,
            "reconstruction_png": [png] * 5,
        }
    )  # fmt: skip
    page = gallery_html(every.head(3), every)
    assert "2 of 5 groups are left out" in page and page.count("<tr>") == 4
    assert "groups are left out" not in gallery_html(every, every)
    assert "batch_size=4, seed 0 (1 of 3)" in gallery_html(every, every)
    assert gallery_png(every.head(2), groups=5)[:8] == b"\x89PNG\r\n\x1a\n"
