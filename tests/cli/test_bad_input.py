"""Bad input never reaches Ray: one line naming the key and what it takes, exit code 2, no files.

Each case goes through the CLI's own entry point (`dlgsweep.cli.main`, what the `dlgsweep`
console script calls) with `--results` pointing at a folder that must still not exist afterwards;
two cases also go through the installed console script in a subprocess. `run_sweep` is replaced
by a function that fails the test, so a case the validation lets through can't start a sweep.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dlgsweep import cli

BASE = """\
name: bad
grid: {seed: [0, 1]}
fixed: {dataset: cifar10, model: mcmahan_cnn, batch_size: 1}
attack: {iterations: 5}
"""

# id -> (spec file content, substrings the one-line message must hold: the key, what is allowed)
SPEC_CASES: dict[str, tuple[str | bytes, tuple[str, ...]]] = {
    "not-utf8": (
        b"name: bad\ngrid: {seed: [0]}\nfixed: {dataset: caf\xe9}\n",
        ("spec.yaml", "not UTF-8", "UTF-8 text"),
    ),
    "not-yaml": ("name: bad\ngrid: {seed: [0, 1}\n", ("not valid YAML", "line 2")),
    "yaml-list": ("- name: bad\n- grid: {}\n", ("expected a mapping with keys", "grid, fixed")),
    "grid-not-mapping": ("name: bad\ngrid: [seed, model]\n", ("grid:", "a mapping of trial")),
    "axis-not-list": ("name: bad\ngrid: {seed: 3}\n", ("grid.seed", "a list of values")),
    "cpu-nan": (BASE + "resources: {cpu: .nan}\n", ("resources.cpu", "a number > 0")),
    "cpu-zero": (BASE + "resources: {cpu: 0}\n", ("resources.cpu", "a number > 0")),
    "cpu-string": (BASE + "resources: {cpu: four}\n", ("resources.cpu", "a number > 0")),
    "gpu-inf": (BASE + "resources: {gpu: .inf}\n", ("resources.gpu", "a number >= 0")),
    "gpu-negative": (BASE + "resources: {gpu: -0.5}\n", ("resources.gpu", "a number >= 0")),
    "gpu-finer-than-ray": (
        BASE + "resources: {gpu: 0.00001}\n",
        ("resources.gpu", "steps of 0.0001", "Ray's resource unit"),
    ),
    "gpu-fractional-above-one": (
        BASE + "resources: {gpu: 1.5}\n",
        ("resources.gpu", "a fraction below 1 or a whole number"),
    ),
    "resources-unknown-key": (BASE + "resources: {memory: 4}\n", ("resources.memory", "cpu, gpu")),
    "lr-nan": ("name: bad\ngrid: {seed: [0]}\nattack: {lr: .nan}\n", ("attack.lr", "finite")),
    "lr-in-grid-inf": ("name: bad\ngrid: {lr: [0.1, .inf]}\n", ("grid.lr", "finite")),
    "retries-negative": (BASE + "retries: -1\n", ("retries", "an integer >= 0")),
    "retries-fraction": (BASE + "retries: 1.5\n", ("retries", "an integer >= 0")),
    "report-every-zero": (BASE + "report_every: 0\n", ("report_every", "an integer >= 1")),
    "same-field-two-spellings-fixed": (
        "name: bad\ngrid: {seed: [0]}\n"
        "fixed: {init_method: xavier_normal, model.init_method: kaiming_normal}\n",
        ("fixed.model.init_method", "each field once", "fixed.init_method"),
    ),
    "same-field-two-spellings-grid": (
        "name: bad\ngrid: {activation: [relu], model.activation: [sigmoid]}\n",
        ("grid.model.activation", "each field once", "grid.activation"),
    ),
    "same-key-twice": (
        "name: bad\ngrid: {seed: [0]}\nattack: {lr: 0.1, lr: 0.2}\n",
        ("lr", "given twice", "each key once"),
    ),
    "same-axis-twice-block-style": (
        "name: bad\ngrid:\n  seed: [0]\n  seed: [1]\n",
        ("seed", "lines 3, 4", "each key once"),
    ),
    "runaway-grid": (
        "name: bad\ngrid:\n"
        + "".join(f"  {axis}: [{', '.join(str(i) for i in range(40))}]\n" for axis in ("seed",))
        + "  lr: ["
        + ", ".join(f"0.{i + 1}" for i in range(9))
        + "]\n"
        + "  iterations: ["
        + ", ".join(str(i + 1) for i in range(3000))
        + "]\n",
        ("grid", "1,080,000 trials", "at most 1,000,000 trials"),
    ),
}

# issue 16: fields whose check was looser than what the trial accepts (each failed every trial
# at run time, or its row at write time), and a spec that exhausts the YAML parser's stack
SPEC_CASES.update(
    {
        "seed-negative": (
            "name: bad\ngrid: {seed: [-1, 0]}\n",
            ("grid.seed", "-1", "integer >= 0"),
        ),
        "seed-beyond-int64": (
            "name: bad\ngrid: {lr: [0.1]}\nfixed: {seed: 9223372036854775808}\n",
            ("seed", "9223372036854775808", "at most 9223372036854775807"),
        ),
        "iterations-beyond-int64": (
            "name: bad\ngrid: {seed: [0]}\nattack: {iterations: 100000000000000000000}\n",
            ("iterations", "at most 9223372036854775807", "int64"),
        ),
        "pool-size-beyond-the-split": (
            "name: bad\ngrid: {seed: [0]}\nfixed: {pool_size: 20000}\n",
            ("pool_size", "20000", "at most 10000 (cifar10 test)"),
        ),
        "resnet-bn-train-side-8": (
            "name: bad\ngrid: {seed: [0]}\n"
            "fixed: {model: resnet18, bn_mode: train, image_size: 8}\n",
            ("image_size", "at least 9 for resnet18 with bn_mode train at batch_size 1"),
        ),
        "name-longer-than-a-folder-name": (
            "name: " + "x" * 300 + "\ngrid: {seed: [0]}\n",
            ("name", "1-100 letters"),
        ),
        "yaml-nested-too-deeply": (
            "name: bad\ngrid: {seed: " + "[" * 5000 + "]" * 5000 + "}\n",
            ("nested too deeply", "a mapping of sections"),
        ),
    }
)

# id -> (argv after the spec/dir, substrings)
FLAG_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "num-cpus-negative": (["--num-cpus", "-4"], ("--num-cpus", "'-4'", "an integer >= 1")),
    "num-cpus-zero": (["--num-cpus", "0"], ("--num-cpus", "an integer >= 1")),
    "num-gpus-negative": (["--num-gpus", "-1"], ("--num-gpus", "an integer >= 0")),
    "num-gpus-word": (["--num-gpus", "two"], ("--num-gpus", "an integer >= 0")),
    "max-concurrent-negative": (["--max-concurrent", "-1"], ("--max-concurrent", ">= 1")),
    "max-concurrent-zero": (["--max-concurrent", "0"], ("--max-concurrent", ">= 1")),
}
# flags of run and resume only
RUN_FLAG_CASES = {
    "report-every-zero": (["--report-every", "0"], ("--report-every", "an integer >= 1")),
    "report-every-word": (["--report-every", "often"], ("--report-every", "an integer >= 1")),
    "log-unknown": (["--log", "neptune"], ("--log", "'neptune'", "tensorboard, wandb, mlflow=URI")),
    "log-mlflow-no-uri": (["--log", "mlflow"], ("--log", "needs a tracking URI", "mlflow=URI")),
    "log-wandb-value": (["--log", "wandb=x"], ("--log", "takes no value", "expected wandb")),
}


@pytest.fixture(autouse=True)
def _no_sweep(monkeypatch):
    """Validation must stop every case; a case that gets through fails here, not in Ray."""
    import orchestrator.sweep

    def refuse(*args, **kwargs):
        raise AssertionError("bad input reached run_sweep")

    monkeypatch.setattr(orchestrator.sweep, "run_sweep", refuse)


def _assert_refused(rc: int, err: str, results: Path, expected: tuple[str, ...]) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, no traceback
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert not results.exists(), sorted(results.rglob("*"))


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_bad_spec_is_refused_before_ray(case, tmp_path, capsys):
    content, expected = SPEC_CASES[case]
    spec = tmp_path / "spec.yaml"
    if isinstance(content, bytes):
        spec.write_bytes(content)
    else:
        spec.write_text(content)
    results = tmp_path / "results"
    rc = cli.main(["run", str(spec), "--results", str(results)])
    _assert_refused(rc, capsys.readouterr().err, results, expected)


@pytest.mark.parametrize(
    ("command", "case"),
    [(c, k) for c in ("run", "resume", "plan") for k in FLAG_CASES]
    + [(c, k) for c in ("run", "resume") for k in RUN_FLAG_CASES],
)
def test_bad_cluster_flag_is_refused(case, command, tmp_path, capsys):
    flags, expected = {**FLAG_CASES, **RUN_FLAG_CASES}[case]
    results = tmp_path / "results"
    target = {"run": "demo", "plan": "demo", "resume": str(results / "demo")}[command]
    extra = ["--results", str(results)] if command == "run" else []
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, target, *extra, *flags])
    _assert_refused(exit_info.value.code, capsys.readouterr().err, results, expected)


def test_good_values_next_to_the_bad_ones_pass(tmp_path):
    """The rules are not over-strict: what Ray accepts, the spec accepts."""
    from store.spec import parse_yaml

    spec = parse_yaml(BASE + "resources: {cpu: 0.5, gpu: 0.0001}\nretries: 0\n")
    assert (spec.resources.cpu, spec.resources.gpu, spec.retries) == (0.5, 0.0001, 0)
    assert parse_yaml(BASE + "resources: {cpu: 2, gpu: 2}\n").resources.gpu == 2.0
    assert parse_yaml(BASE + "resources: {gpu: 0.25}\n").resources.gpu == 0.25
    # a YAML merge key (`<<: *anchor`) may be overridden on purpose: that is not "given twice"
    import yaml

    from store.spec import _UniqueKeyLoader

    merged = yaml.load("a: &x {k: 1, j: 0}\nb: {<<: *x, k: 2}\n", Loader=_UniqueKeyLoader)
    assert merged["b"] == {"k": 2, "j": 0}


@pytest.mark.parametrize(
    "argv, content, expected",
    [
        (["run"], b"name: x\nfixed: {dataset: \xff}\n", ("not UTF-8",)),
        (["run", "--num-cpus", "-4"], None, ("--num-cpus", "an integer >= 1")),
    ],
    ids=["not-utf8", "num-cpus-negative"],
)
def test_console_script_exits_2(argv, content, expected, tmp_path):
    """The installed `dlgsweep` script itself: exit status 2 and one line on stderr."""
    script = Path(sys.executable).with_name("dlgsweep")
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content if content is not None else BASE.encode())
    results = tmp_path / "results"
    command, *flags = argv
    proc = subprocess.run(
        [str(script), command, str(spec), "--results", str(results), *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    _assert_refused(proc.returncode, proc.stderr, results, expected)


def test_query_nested_too_deeply_exits_2_not_sigsegv(tmp_path):
    """20,000 chained terms used to overflow polars' planner stack (SIGSEGV, exit 139)."""
    results = _one_row_sweep(tmp_path)
    for sql in (
        "SELECT " + "+".join(["seed"] * 20_000) + " AS s FROM trials",  # 100 KB: one argv word
        "SELECT " + "(" * 3000 + "seed" + ")" * 3000 + " FROM trials",  # sqlglot's recursion
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "dlgsweep.cli", "query", str(results), sql],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-500:])
        (line,) = proc.stderr.strip().splitlines()
        assert "nests expressions too deeply" in line and "at most 1000 levels" in line
    # a long but shallow query still runs
    sql = "SELECT count(*) AS n FROM trials WHERE seed IN (" + ", ".join(map(str, range(5000)))
    proc = subprocess.run(
        [sys.executable, "-m", "dlgsweep.cli", "query", str(results), sql + ")",
         "--format", "csv"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.split() == ["n", "1"], proc.stderr


def test_report_on_a_folder_without_a_sweep_exits_2(tmp_path, capsys):
    empty = tmp_path / "nothing-here"
    (empty / "notes").mkdir(parents=True)
    rc = cli.main(["report", str(empty), "--out", str(tmp_path / "report")])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "holds no sweep" in line and "<results>/<sweep>" in line
    assert not (tmp_path / "report" / "index.html").exists()


def _one_row_sweep(tmp_path: Path) -> Path:
    from store.schema import make_row
    from store.sweep_store import SweepStore
    from workloads.config import TrialConfig
    from workloads.result import TrialResult

    store = SweepStore(str(tmp_path / "results" / "one"))
    row = make_row(TrialConfig(), TrialResult(status="ok", psnr_mean=12.0), sweep="one")
    store.write_row(row)
    return tmp_path / "results"


def test_a_tracker_without_its_package_names_the_extra(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    results = tmp_path / "results"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "demo", "--results", str(results), "--log", "mlflow=http://127.0.0.1:9"])
    expected = ("--log", "mlflow package is not installed", "pip install 'dlgsweep[mlflow]'")
    _assert_refused(exit_info.value.code, capsys.readouterr().err, results, expected)
