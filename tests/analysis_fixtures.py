"""Fixtures for the analysis tests: a small real sweep, its report, and a headless browser.

The sweep is real. Its grid (the seed's axes in miniature: 2 seeds x 2 inits x ReLU/sigmoid x
batch 1/2 x pruning = 32 McMahan-CNN trials, 6 iterations) runs through `dlgsweep run`'s engine,
`orchestrator.sweep.run_sweep`, on a local Ray (2 CPUs); 11 extra trials (ResNet-18, BN
train/eval, oracle labels, Gaussian noise, and one genuinely failing trial: an empty image
folder) run through `run_trial` and the same sink into the same sweep folder, so every chart and
every finding has data. Built once per session (one to two minutes on 2 cores).

Import the fixtures into a test module: `from tests.analysis_fixtures import small_sweep`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from workloads.config import TrialConfig
from workloads.trial import run_trial

SWEEP = "mini"
BASE = {"dataset": "cifar10", "iterations": 6, "curve_points": 4, "init_gain": "seed"}


GRID = {
    "seed": [0, 1],
    "init_method": ["xavier_normal", "kaiming_normal"],
    "activation": ["relu", "sigmoid"],
    "batch_size": [1, 2],
    "prune": ["none", "small"],
}


def spec_yaml(sweep: str) -> str:
    """The sweep's spec: the seed's grid in miniature (32 trials of the McMahan CNN)."""
    grid = "".join(f"  {axis}: [{', '.join(map(str, values))}]\n" for axis, values in GRID.items())
    return (
        f"name: {sweep}\ngrid:\n{grid}"
        "fixed: {dataset: cifar10, model: mcmahan_cnn, init_gain: seed, curve_points: 4}\n"
        "attack: {iterations: 6}\nresources: {cpu: 1, gpu: 0}\nretries: 0\n"
    )


def extra_configs(empty_folder: Path) -> list[dict]:
    """Rows beyond the grid, for the charts the grid does not cover (11 trials)."""
    configs = [  # ResNet-18 is slow on CPU: two iterations are enough for a row
        {"seed": s, "model": "resnet18", "activation": "relu", "iterations": 2} for s in (0, 1)
    ]
    configs += [
        {"seed": s, "norm": "batch", "bn_mode": m}
        for s, m in itertools.product((0, 1), ("eval", "train"))
    ]
    configs += [{"seed": s, "label_strategy": "oracle"} for s in (0, 1)]
    configs += [{"seed": s, "noise": "gaussian", "noise_scale": 0.1} for s in (0, 1)]
    configs += [{"seed": 0, "dataset": f"imagefolder:{empty_folder}"}]  # fails: an error row
    return [{**BASE, **c} for c in configs]


def build_small_sweep(results: Path, sweep: str = SWEEP) -> Path:
    """Run the test sweep for real; returns the sweep folder `<results>/<sweep>`.

    The grid goes through `orchestrator.sweep.run_sweep` (a local Ray Tune sweep, 2 CPUs); the
    extra trials run through `run_trial` and the same sink (`SweepStore.write_row`).
    """
    from orchestrator.schema import make_row
    from orchestrator.sink import SweepStore
    from orchestrator.spec import parse_yaml
    from orchestrator.sweep import run_sweep

    spec = parse_yaml(spec_yaml(sweep))
    run_sweep(spec, str(results), num_cpus=2, num_gpus=0, say=lambda *_: None)
    store = SweepStore.of(str(results), sweep)
    empty = results.parent / f"{results.name}-empty-image-folder"
    empty.mkdir(parents=True, exist_ok=True)
    for raw in extra_configs(empty):
        config = TrialConfig.from_dict(raw)
        store.write_row(make_row(config, run_trial(config, device="cpu"), sweep=sweep))
    return results / sweep


# Each test module imports these fixtures, and pytest keeps one cache per importing module even
# for a session fixture: this dict makes the sweep and its report really once per session.
_SESSION: dict[str, object] = {}


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<results>/mini`: a real small sweep (43 trials, one of them an error row)."""
    if "sweep" not in _SESSION:
        cached = os.environ.get("DLGSWEEP_TEST_SWEEP")  # local iteration only: reuse a sweep
        if cached and (Path(cached) / "trials").is_dir():
            target = tmp_path_factory.mktemp("results") / SWEEP
            shutil.copytree(cached, target)
            _SESSION["sweep"] = target
        else:
            _SESSION["sweep"] = build_small_sweep(tmp_path_factory.mktemp("results"))
    return _SESSION["sweep"]  # type: ignore[return-value]


@pytest.fixture(scope="session")
def small_frame(small_sweep: Path):
    from analysis import load

    if "frame" not in _SESSION:
        _SESSION["frame"] = load.trials(str(small_sweep))
    return _SESSION["frame"]


@pytest.fixture(scope="session")
def small_report(small_sweep: Path, tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    if "report" not in _SESSION:
        _SESSION["report"] = build_report(str(small_sweep), tmp_path_factory.mktemp("report"))
    return _SESSION["report"]


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
