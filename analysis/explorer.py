"""The explorer page: every trial of the report's sweeps, sortable, filterable, clickable.

`write_explorer(sweeps, out)` writes `out/explorer.html` and the trials' images under
`out/explorer/` (ground truth and reconstruction PNGs, one pair per trial), so the folder opens
from disk with no network and no server. The page holds

- a table, one row per trial (error rows too, with their message): the config axes that vary,
  the seed, status and scores; click a header to sort, pick levels in the dropdowns to filter;
- parallel coordinates of those axes against PSNR, one line per trial shown by the filters,
  colored by PSNR; click a line (or a table row) to select the trial;
- the selected trial: its ground truth beside its reconstruction, its convergence curve (PSNR
  and log10 gradient loss over iterations), every config field and score.

`explorer.html#trial=<trial_key>` opens with that trial selected. The page's script is
`analysis/templates/explorer.js` (plain JavaScript, no library).
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from store import load
from store.schema import CONFIG_COLUMNS

CONFIG_FIELDS = [name for name, _ in CONFIG_COLUMNS]
SCORES = ["psnr_mean", "psnr_min", "psnr_max", "psnr_raw_mean", "ssim_mean", "label_accuracy",
          "grad_loss_final", "grad_zero_fraction", "grad_cosine", "grad_rel_error",
          "init_weight_std", "iterations_run", "wall_seconds"]  # fmt: skip
TABLE_SCORES = ["psnr_mean", "ssim_mean", "label_accuracy", "grad_loss_final"]
CURVES = ["curve_iteration", "curve_psnr", "curve_grad_loss"]
IMAGE_DIR = "explorer"
SUFFIXES = ("truth", "reconstruction")
PAGE_DIGITS = 5  # significant digits of the numbers the page carries (it shows at most 4)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "sweep"


def _clean(value: Any) -> Any:
    """JSON-safe and short: NaN/inf as null, floats to PAGE_DIGITS significant digits, lists
    cleaned element-wise."""
    if isinstance(value, float):
        return float(f"{value:.{PAGE_DIGITS}g}") if math.isfinite(value) else None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def varying_axes(frame: pl.DataFrame) -> list[str]:
    """Config axes whose value differs between rows (the seed included, last)."""
    axes = [
        c for c in CONFIG_FIELDS
        if c in frame.columns and c != "seed" and frame[c].n_unique() > 1
    ]  # fmt: skip
    if "variant" in frame.columns and frame["variant"].null_count() < frame.height:
        axes.insert(0, "variant")  # a sweep's variants, as sweeps are: a filter and an axis
    if "sweep" in frame.columns and frame["sweep"].n_unique() > 1:
        axes.insert(0, "sweep")
    return [*axes, "seed"] if "seed" in frame.columns else axes


def image_files(sweep: str, trial_key: str) -> list[str]:
    """[ground truth, reconstruction] of a trial, relative to the report folder (the gallery
    links the same files)."""
    return [f"{IMAGE_DIR}/{_slug(sweep)}/{_slug(trial_key)}-{s}.png" for s in SUFFIXES]


def write_images(sweep_path: str, frame: pl.DataFrame, folder: Path) -> dict[str, list[str]]:
    """The PNGs of every ok/diverged trial as files; trial_key -> [truth, reconstruction]
    (paths relative to the report folder)."""
    keys = load.result_rows(frame)["trial_key"].to_list() if frame.height else []
    if not keys:
        return {}
    sweep = str(frame["sweep"][0]) if "sweep" in frame.columns else "sweep"
    target = folder / _slug(sweep)
    target.mkdir(parents=True, exist_ok=True)
    out = {}
    images = load.images(sweep_path, keys)
    for key, recon, truth in images.select(
        "trial_key", "reconstruction_png", "ground_truth_png"
    ).iter_rows():
        names = []
        for name, data in zip(image_files(sweep, key), (truth, recon)):
            if data:
                (folder.parent / name).write_bytes(data)
            names.append(name if data else "")
        out[key] = names
    return out


def explorer_data(frame: pl.DataFrame, images: dict[str, list[str]]) -> dict[str, Any]:
    """What the page's script reads: the axes, the table's columns and one record per trial."""
    axes = varying_axes(frame)
    config = [c for c in CONFIG_FIELDS if c in frame.columns]
    scores = [c for c in SCORES if c in frame.columns]
    curves = [c for c in CURVES if c in frame.columns]
    keep = ["sweep", "variant", "trial_key", "status", "error", *config, *scores, *curves]
    keep = list(dict.fromkeys(keep))
    keep = [c for c in keep if c in frame.columns]
    rows = []
    for record in frame.select(keep).iter_rows(named=True):
        record = {k: _clean(v) for k, v in record.items()}
        record["images"] = images.get(record["trial_key"], ["", ""])
        rows.append(record)
    numeric = [c for c in axes if c in frame.columns and frame.schema[c].is_numeric()]
    return {
        "axes": axes,
        "numeric": numeric,
        "scores": [c for c in TABLE_SCORES if c in frame.columns],
        "config": config,
        "details": scores,
        "rows": rows,
    }


def write_explorer(
    sweeps: list[tuple[str, pl.DataFrame]], out: Path, title: str = "Explorer"
) -> int:
    """Write explorer.html and its images for every (sweep path, frame); returns the rows."""
    folder = out / IMAGE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    images: dict[str, list[str]] = {}
    frames = []
    for path, frame in sweeps:
        if frame.height:
            images.update(write_images(path, frame, folder))
            frames.append(frame)
    frame = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
    data = explorer_data(frame, images) if frame.height else {
        "axes": [], "numeric": [], "scores": [], "config": [], "details": [], "rows": [],
    }  # fmt: skip
    (out / "explorer.html").write_text(page(title, data))
    return len(data["rows"])


def _template(name: str) -> str:
    return resources.files("analysis").joinpath("templates", name).read_text()


def page(title: str, data: dict[str, Any]) -> str:
    payload = json.dumps(data, default=str).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_template("explorer.css")}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="note">Every trial of the report, one row each. Filter with the dropdowns, sort by a
header, click a row or a line of the parallel coordinates to see the trial's ground truth,
reconstruction and convergence curve. <a href="index.html">Back to the report</a>.</p>
<div id="filters"></div>
<div id="count" class="note"></div>
<div id="top"><svg id="parallel" role="img" aria-label="parallel coordinates"></svg>
<div id="detail"><p class="note">Click a trial.</p></div></div>
<div id="table-wrap"><table id="trials"><thead></thead><tbody></tbody></table></div>
<script type="application/json" id="explorer-data">{payload}</script>
<script>{_template("explorer.js")}</script>
</body></html>
"""
