"""The reader's install: `pip install dlgsweep` (no extra) reads results without torch or Ray.

A fresh venv (no system site-packages) gets this checkout's wheel and its base dependencies
from the package index, nothing else. There `status`, `query`, `report`, `plan` and
`analysis` in a notebook work on a sweep written here with the sink's own rows, while `run`,
`resume` and `attack` exit 2 with one line naming the `sweep` extra. About a minute, most of it
pip (the wheels come from the local index when there is one).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from store.schema import make_row
from store.spec import load_spec, parse_yaml
from store.sweep_store import SweepStore
from workloads.result import TrialResult

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.install  # a fresh venv and pip
SPEC = """\
name: readme
grid: {seed: [0, 1, 2], activation: [relu, sigmoid]}
fixed: {dataset: cifar10, model: mcmahan_cnn}
attack: {iterations: 5, curve_points: 5}
"""


@pytest.fixture(scope="module")
def reader(tmp_path_factory) -> Path:
    """A venv holding this checkout's wheel and only its base dependencies."""
    folder = tmp_path_factory.mktemp("reader")
    # from a clean copy, as scripts/build_dist.sh does: an in-tree build would reuse build/lib
    source = folder / "src"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(folder), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = folder.glob("dlgsweep-*.whl")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(folder / "venv")
    python = folder / "venv" / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-compile", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return folder / "venv" / "bin"


def _sweep(results: Path) -> Path:
    """A finished sweep of 6 trials (one an error row), as `run` leaves it."""
    spec = parse_yaml(SPEC)
    store = SweepStore.of(str(results), spec.name)
    store.check_writable()
    store.save_spec(spec.to_yaml())
    rng = np.random.default_rng(0)
    for i, config in enumerate(spec.trials()):
        images = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
        result = TrialResult(
            status="error" if i == 5 else "ok",
            error="RuntimeError: boom" if i == 5 else None,
            psnr_mean=10.0 + i, psnr_min=10.0 + i, psnr_max=10.0 + i, psnr_raw_mean=9.0 + i,
            ssim_mean=0.1, label_accuracy=1.0, grad_loss_final=0.5, iterations_run=5,
            wall_seconds=1.0, seconds_per_iteration=0.1, started_at=1.0, finished_at=2.0,
            curve_iteration=[0, 4], curve_grad_loss=[1.0, 0.5], curve_psnr=[8.0, 10.0 + i],
            reconstruction=images, ground_truth=images,
        )  # fmt: skip
        store.write_row(make_row(config, result, sweep=spec.name))
    return Path(store.path)


def _run(bin_dir: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [str(bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=600,
    )  # fmt: skip


def test_the_base_install_reads_results_without_torch_or_ray(reader, tmp_path):
    probe = "import importlib.util as u; print([m for m in SWEEP if u.find_spec(m)])"
    probe = probe.replace("SWEEP", repr(("torch", "ray", "torchvision", "skimage")))
    absent = _run(reader, "python", "-c", probe, cwd=tmp_path)
    assert absent.returncode == 0 and absent.stdout.strip() == "[]", absent

    sweep = _sweep(tmp_path / "results")
    status = _run(reader, "dlgsweep", "status", str(sweep), "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {
        "ok": 5, "diverged": 0, "error": 1, "missing": 0, "total": 6
    }  # fmt: skip

    sql = "SELECT activation, count(*) AS n FROM trials GROUP BY activation ORDER BY activation"
    query = _run(reader, "dlgsweep", "query", str(tmp_path / "results"), sql, "--format", "csv",
                 cwd=tmp_path)  # fmt: skip
    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == ["activation,n", "relu,3", "sigmoid,3"]

    notebook = _run(reader, "python", "-c", "from analysis import load; "
                    f"print(load.trials({str(sweep)!r}).height)", cwd=tmp_path)  # fmt: skip
    assert notebook.returncode == 0 and notebook.stdout.strip() == "6", notebook.stderr

    plan = _run(reader, "dlgsweep", "plan", "demo", "--results", str(sweep), cwd=tmp_path)
    demo = len(load_spec("demo").trial_keys())
    assert plan.returncode == 0 and f"trials: {demo}" in plan.stdout, plan.stderr

    report = _run(reader, "dlgsweep", "report", str(sweep), "--out", str(tmp_path / "report"),
                  cwd=tmp_path)  # fmt: skip
    assert report.returncode == 0, report.stderr[-3000:]
    _assert_report(tmp_path / "report")


def _assert_report(out: Path) -> None:
    """The report's own parts, each by name: every chart counts.json says was drawn has its
    HTML and PNG and is on the index page; findings.csv has a verdict per claim; the gallery
    and explorer are there. (The gallery's PNG alone once met a "some PNG" check.)"""
    counts = json.loads((out / "counts.json").read_text())
    drawn = [name for name, chart in counts["charts"].items() if chart["skipped"] is None]
    assert drawn, counts["charts"]
    index = (out / "index.html").read_text()
    for name in drawn:
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (out / f"{name}.html").stat().st_size > 0 and f"{name}.html" in index, name
    with open(out / "findings.csv", newline="") as handle:
        findings = list(csv.DictReader(handle))
    assert findings and {"key", "claim", "verdict", "n"} <= set(findings[0])
    verdicts = {row["verdict"] for row in findings}
    assert verdicts <= {"supported", "contradicted", "mixed", "inconclusive", "not enough data"}
    assert (out / "gallery.html").stat().st_size > 0 and (out / "explorer.html").stat().st_size > 0


@pytest.mark.parametrize(
    "argv",
    [["run", "demo", "--results", "out"], ["resume", "SWEEP"], ["attack", "--iterations", "2"]],
    ids=["run", "resume", "attack"],
)
def test_sweep_commands_name_the_extra_in_the_base_install(reader, tmp_path, argv):
    sweep = _sweep(tmp_path / "results")
    argv = [str(sweep) if a == "SWEEP" else a for a in argv]
    done = _run(reader, "dlgsweep", *argv, cwd=tmp_path)
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert "pip install 'dlgsweep[sweep]'" in lines[0] and f"dlgsweep {argv[0]}" in lines[0]
    assert not (tmp_path / "out").exists()
