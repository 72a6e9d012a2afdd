"""Fixtures for the analysis tests: a small real sweep, its report, and a headless browser.

The sweep is real: every row comes from `workloads.trial.run_trial` (a real attack, few
iterations) through `orchestrator.schema.make_row`, written as one Parquet file per trial in the
results layout (`<results>/<sweep>/trials/<trial_key>.parquet`, `spec.yaml` beside it). It spans
what each chart studies: two seeds, two inits, ReLU/sigmoid, batch 1/2, pruning, two models, BN
train/eval, two label strategies, Gaussian noise, and one genuinely failing trial (an empty image
folder), so every chart and every finding has data. Built once per session (about a minute).

Import the fixtures into a test module: `from tests.analysis_fixtures import small_sweep`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator.schema import make_row, row_table
from workloads.config import TrialConfig
from workloads.trial import run_trial

SWEEP = "mini"
BASE = {"dataset": "cifar10", "iterations": 6, "curve_points": 4, "init_gain": "seed"}


def small_sweep_configs(empty_folder: Path) -> list[dict]:
    """The trials of the test sweep (45 configs, each a few seconds at most on a laptop)."""
    configs = [
        {"seed": s, "init_method": i, "activation": a, "batch_size": b, "prune": p}
        for s, i, a, b, p in itertools.product(
            (0, 1), ("xavier_normal", "kaiming_normal"), ("relu", "sigmoid"), (1, 2),
            ("none", "small"),
        )
    ]  # fmt: skip
    configs += [  # ResNet-18 is slow on CPU: two iterations are enough for a row
        {"seed": s, "model": "resnet18", "init_method": i, "activation": "relu", "iterations": 2}
        for s, i in itertools.product((0, 1), ("xavier_normal", "kaiming_normal"))
    ]
    configs += [
        {"seed": s, "norm": "batch", "bn_mode": m}
        for s, m in itertools.product((0, 1), ("eval", "train"))
    ]
    configs += [{"seed": s, "label_strategy": "oracle"} for s in (0, 1)]
    configs += [{"seed": s, "noise": "gaussian", "noise_scale": 0.1} for s in (0, 1)]
    configs += [{"seed": 0, "dataset": f"imagefolder:{empty_folder}"}]  # fails: an error row
    return [{**BASE, **c} for c in configs]


def spec_yaml(sweep: str) -> str:
    """A spec naming part of the grid; the report counts expected vs present trials from it."""
    return (
        f"name: {sweep}\n"
        "grid:\n  seed: [0, 1]\n  init_method: [xavier_normal, kaiming_normal]\n"
        "  activation: [relu, sigmoid]\n  batch_size: [1, 2]\n  prune: [none, small]\n"
        "fixed: {dataset: cifar10, model: mcmahan_cnn, init_gain: seed, curve_points: 4}\n"
        "attack: {iterations: 6}\n"
    )


def write_row(results: Path, sweep: str, config: TrialConfig, result) -> Path:
    """Write one row the way the sink does: temp file, then rename."""
    trials = results / sweep / "trials"
    trials.mkdir(parents=True, exist_ok=True)
    path = trials / f"{config.trial_key}.parquet"
    temp = trials / f".{config.trial_key}.parquet.tmp"
    pq.write_table(row_table(make_row(config, result, sweep=sweep)), temp)
    os.replace(temp, path)
    return path


def build_small_sweep(results: Path, sweep: str = SWEEP) -> Path:
    """Run the test sweep's trials for real and write their rows; returns the sweep folder."""
    empty = results / "empty_image_folder"
    empty.mkdir(parents=True, exist_ok=True)
    for raw in small_sweep_configs(empty):
        config = TrialConfig.from_dict(raw)
        write_row(results, sweep, config, run_trial(config, device="cpu"))
    (results / sweep / "spec.yaml").write_text(spec_yaml(sweep))
    return results / sweep


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<results>/mini`: a real small sweep (45 trials, one of them an error row)."""
    cached = os.environ.get("DLGSWEEP_TEST_SWEEP")  # local iteration only: reuse a built sweep
    if cached and (Path(cached) / "trials").is_dir():
        target = tmp_path_factory.mktemp("results") / SWEEP
        shutil.copytree(cached, target)
        return target
    return build_small_sweep(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="session")
def small_frame(small_sweep: Path):
    from analysis import load

    return load.trials(str(small_sweep))


@pytest.fixture(scope="session")
def small_report(small_sweep: Path, tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    return build_report(str(small_sweep), tmp_path_factory.mktemp("report"))


def chromium() -> str:
    """The headless browser (Debian: `apt-get install -y chromium`)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium on PATH: apt-get update && apt-get install -y chromium")


def headless(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless chromium on `url` with console messages logged to stderr."""
    profile = tempfile.mkdtemp(prefix="dlgsweep-chromium-")
    try:
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000",
            *args, url,
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
