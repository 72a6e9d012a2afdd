"""Shared fixtures for the orchestrator tests: tiny specs, and Ray set up the same way everywhere.

Every Ray this suite starts gets explicit CPUs/GPUs, no dashboard, token auth off (the same on
every node) and is shut down by the test that started it; `ray stop` is never used.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from store.spec import SweepSpec, load_spec

# The same on the driver and on every node the tests start (Ray reads them at start).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0", "RAY_DEDUP_LOGS": "0"}
for _name, _value in RAY_ENV.items():
    os.environ.setdefault(_name, _value)

# Every Ray the suite starts (in-process, `ray start` subprocesses, driver subprocesses: they
# inherit the environment) keeps its session folders under one temp root that the suite removes
# at the end, instead of leaving /tmp/ray/session_* behind. A short path: Ray's sockets live in
# it and AF_UNIX paths are limited to ~107 bytes.
_RAY_TMPDIR = None
if "RAY_TMPDIR" not in os.environ:
    _RAY_TMPDIR = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="dlgray-", dir="/tmp")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _RAY_TMPDIR is not None:
        shutil.rmtree(_RAY_TMPDIR, ignore_errors=True)


TINY_ATTACK = {"iterations": 5, "curve_points": 5}


def write_spec(folder: Path, name: str, **sections: Any) -> Path:
    """A sweep YAML under `folder`: mcmahan_cnn on cifar10, 5 iterations, unless overridden."""
    raw: dict[str, Any] = {
        "name": name,
        "grid": {"seed": [0, 1]},
        "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn"},
        "attack": dict(TINY_ATTACK),
        "resources": {"cpu": 1, "gpu": 0},
        "retries": 1,
    }
    raw.update(sections)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture
def tiny_spec(tmp_path: Path):
    """Factory: tiny_spec(name, grid=..., attack=..., ...) -> (SweepSpec, path)."""

    def make(name: str = "tiny", **sections: Any) -> tuple[SweepSpec, Path]:
        path = write_spec(tmp_path, name, **sections)
        return load_spec(str(path)), path

    return make


@pytest.fixture
def results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray per test module: 2 CPUs, no GPU, no dashboard."""
    import ray

    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def trial_files(sweep_dir: Path) -> list[Path]:
    return sorted((sweep_dir / "trials").glob("*.parquet"))


def file_states(sweep_dir: Path) -> dict[str, tuple[int, bytes]]:
    """name -> (mtime_ns, bytes) of every trial file: proof that a rerun left a row alone."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in trial_files(sweep_dir)}


def session_pids(session_id: int) -> list[int]:
    """Processes in a session (a driver we started with start_new_session=True), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == session_id:  # field 6 of stat: session id
            pids.append(int(entry.name))
    return pids


def kill_session(session_id: int) -> None:
    """SIGKILL every process of a session we started, one pid at a time."""
    for pid in session_pids(session_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
