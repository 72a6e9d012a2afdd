"""The GPU path, checked on CPU: precision/deterministic fields from spec to row, the runtime
flags a trial runs under (and that a reused worker gets back), the memory cap's arithmetic,
and bench/bench_gpu.py's smoke run (the same code paths as the one-call GPU benchmark)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

import workloads.trial
from store.schema import make_row
from store.spec import parse_spec
from store.sweep_store import SweepStore
from workloads.config import TrialConfig
from workloads.device import (
    CONTEXT_RESERVE_BYTES,
    limit_gpu_memory,
    memory_fraction,
    peak_memory_bytes,
    trial_runtime,
)
from workloads.errors import ConfigError
from workloads.trial import run_trial

QUICK = dict(iterations=6, curve_points=3, batch_size=2)


def flags() -> tuple:
    return (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    )


@pytest.fixture
def default_flags():
    """PyTorch's defaults before and after (a failing test must not leak its flags)."""
    before = flags()
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
    torch.backends.cudnn.deterministic = torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(False)
    yield flags()
    (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    ) = before[:4]
    torch.use_deterministic_algorithms(before[4])


@pytest.mark.parametrize(
    "precision, deterministic, inside",
    [
        ("fp32", False, (False, False, False, False, False)),  # cuDNN's TF32 (on by default) off
        ("tf32", False, (True, True, False, False, False)),
        ("fp32", True, (False, False, True, False, True)),
    ],
)
def test_trial_runtime_sets_the_fields_flags_and_gives_the_worker_its_own_back(
    default_flags, precision, deterministic, inside
):
    with trial_runtime("cpu", precision, deterministic) as runtime:
        assert flags() == inside
    assert flags() == default_flags
    assert runtime.peak_memory_bytes is None  # CPU: nothing to measure
    with pytest.raises(RuntimeError), trial_runtime("cpu", precision, deterministic):
        raise RuntimeError("a failing trial")
    assert flags() == default_flags


def test_run_trial_runs_under_its_fields(default_flags, monkeypatch):
    """The attack itself (not just the trial around it) sees the trial's flags."""
    seen = []
    real = workloads.trial.reconstruct

    def spy(*args, **kwargs):
        seen.append((torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.allow_tf32))
        return real(*args, **kwargs)

    monkeypatch.setattr(workloads.trial, "reconstruct", spy)
    run_trial(TrialConfig(deterministic=True, precision="fp32", iterations=2))
    run_trial(TrialConfig(deterministic=False, precision="tf32", iterations=2))
    assert seen == [(True, False), (False, True)]
    assert flags() == default_flags


def test_deterministic_runs_are_identical():
    config = TrialConfig(deterministic=True, **QUICK)
    a, b = run_trial(config), run_trial(config)
    assert a.status == b.status == "ok"
    assert a.psnr_mean == b.psnr_mean and a.ssim_mean == b.ssim_mean
    assert a.curve_grad_loss == b.curve_grad_loss and a.curve_psnr == b.curve_psnr
    assert np.array_equal(a.reconstruction, b.reconstruction)


def test_tf32_on_cpu_changes_nothing_but_is_recorded(tmp_path):
    """TF32 is a CUDA mode: on CPU the numbers are fp32's, and the row says what was asked."""
    fp32 = run_trial(TrialConfig(**QUICK))
    tf32_config = TrialConfig(precision="tf32", deterministic=True, **QUICK)
    tf32 = run_trial(tf32_config)
    assert tf32.psnr_mean == fp32.psnr_mean
    assert np.array_equal(tf32.reconstruction, fp32.reconstruction)

    store = SweepStore(str(tmp_path / "sweep"))
    store.write_row(make_row(tf32_config, tf32, sweep="sweep"))
    columns = ["trial_key", "precision", "deterministic", "device", "gpu_memory_peak_bytes"]
    (row,) = store.read_rows(columns=columns).table.to_pylist()
    assert row["precision"] == "tf32" and row["deterministic"] is True
    assert row["device"] == "cpu" and row["gpu_memory_peak_bytes"] is None
    assert row["trial_key"] != TrialConfig(**QUICK).trial_key


def test_spec_fields_are_checked_and_become_grid_axes():
    base = {"name": "x", "fixed": {"dataset": "cifar10"}, "attack": {"iterations": 2}}
    spec = parse_spec({**base, "grid": {"deterministic": [True, False], "precision": ["tf32"]}})
    assert [(t.deterministic, t.precision) for t in spec.trials()] == [
        (True, "tf32"),
        (False, "tf32"),
    ]
    with pytest.raises(ConfigError, match="precision") as error:
        parse_spec({**base, "grid": {"seed": [0]}, "fixed": {"precision": "fp16"}})
    assert "fp32" in str(error.value) and "tf32" in str(error.value)
    with pytest.raises(ConfigError, match="deterministic"):
        parse_spec({**base, "grid": {"deterministic": ["sometimes"]}})


def test_memory_cap_is_the_share_less_the_context():
    gib = 2**30
    assert memory_fraction(0.25, 80 * gib) == pytest.approx(
        0.25 - CONTEXT_RESERVE_BYTES / (80 * gib)
    )
    assert memory_fraction(0.125, 1 * gib) == 0.0625  # a small card: never below half the share
    assert memory_fraction(1.0, 80 * gib) is None and memory_fraction(0.0, 80 * gib) is None
    assert memory_fraction(2.0, 80 * gib) is None
    # what 8 packed trials hold together stays inside the card
    assert 8 * (memory_fraction(0.125, 80 * gib) * 80 * gib + CONTEXT_RESERVE_BYTES) <= 80 * gib
    assert limit_gpu_memory("cpu", 0.25) is None and peak_memory_bytes("cpu") is None


def test_projection_to_the_paper_grid(run_bench):
    """bench_gpu's projection on rows of known timing: its --self-check asserts the figures
    (occupancy, steady time, the paper grid's seconds, the recommended packing)."""
    done = run_bench("bench_gpu.py", "--self-check", timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.strip().endswith("self-check ok")


@pytest.mark.ray  # bench_gpu --smoke runs its trials through Ray
def test_bench_gpu_smoke_runs_every_phase_on_cpu(tmp_path, run_bench):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = run_bench("bench_gpu.py", "--smoke", "--out", str(out), timeout=600, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu.json").read_text())
    assert report["smoke"] and report["device"]["device"] == "cpu"
    assert {r["model"] for r in report["attack"]} == {"mcmahan_cnn", "lenet_zhu"}
    for row in report["attack"]:
        assert row["plain_its"] > 0 and row["ours_its"] > 0
        assert (row["det_its"] is not None) == (row["precision"] == "fp32")
    packing = report["packing_rows"]
    assert [p["trials_per_gpu"] for p in packing] == [1, 2, 4]
    for level in packing:
        assert level["errors"] == 0 and level["trials"] == report["packing"]["trials"] >= 2
        assert level["projected_paper_s"] > 0
    assert report["recommendation"]["trials_per_gpu"] in (1, 2, 4)
    markdown = (out / "gpu.md").read_text()
    assert "| model | batch | precision |" in markdown and "projected paper" in markdown
    assert "Smoke run on CPU" in markdown
