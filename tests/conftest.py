"""The suite's fixtures: tiny specs, Ray set up the same way everywhere, a small real sweep,
a headless browser, and the /proc readers the fault tests use. Tests import none of each other.

Markers say what a test needs beyond Python and the package (pyproject.toml lists them):
`ray` (a local Ray or a Ray Tune sweep), `browser` (headless chromium), `s3` (a loopback S3
server), `cluster` (Ray's autoscaler or several `ray start` nodes). A test that takes a fixture
needing one of them gets its marker here; `make check` runs the tests needing none, with
`ray.init` disabled (DLGSWEEP_TEST_NO_RAY=1), so an unmarked test that starts Ray fails there.

Every Ray this suite starts gets explicit CPUs/GPUs, no dashboard, token auth off (the same on
every node) and is shut down by the test that started it; `ray stop` is never used.

`make test` and `make check` run the suite on two pytest-xdist workers, a test file to a worker
(`--dist loadfile`: a module-scoped fixture is built once). Each worker is a process with its
own Ray temp root and one torch thread; the small real sweep is built once per run, by the
first worker that needs it. The `cluster` tests' fixed ports are disjoint per file.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from store.spec import SweepSpec, load_spec

# The same on the driver and on every node the tests start (Ray reads them at start).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_AIR_NEW_OUTPUT": "0", "RAY_DEDUP_LOGS": "0"}
for _name, _value in RAY_ENV.items():
    os.environ.setdefault(_name, _value)


def _no_ray_start(*_: Any, **__: Any) -> None:
    raise RuntimeError("Ray is not started under `make check`: mark the test `ray`")


if os.environ.get("DLGSWEEP_TEST_NO_RAY") == "1":
    # `make check`: Ray may be imported (the sweep extra's checks look for it) but never started,
    # so a test that starts one and lacks the marker fails there instead of passing slowly
    import ray
    import ray._private.worker

    ray.init = ray._private.worker.init = _no_ray_start

# fixtures whose use means the test needs what the marker names
NEEDS = {
    "ray": {"local_ray", "small_sweep", "small_frame", "small_report"},
    "browser": {"headless", "browser"},
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in NEEDS.items():
            if used & fixtures:
                item.add_marker(getattr(pytest.mark, marker))


# Every Ray the suite starts (in-process, `ray start` subprocesses, driver subprocesses: they
# inherit the environment) keeps its session folders under one temp root that the suite removes
# at the end, instead of leaving /tmp/ray/session_* behind. A short path: Ray's sockets live in
# it and AF_UNIX paths are limited to ~107 bytes.
# Under pytest-xdist each worker is a process of its own with a Ray of its own: each gets its
# own root (a root inherited from the controller is not reused: `ray.init()` joins the cluster
# a root's ray_current_cluster names, which would be the other worker's).
_RAY_TMPDIR = None
if (
    "RAY_TMPDIR" not in os.environ
    or os.environ.get("DLGSWEEP_TEST_RAY_TMPDIR") == os.environ["RAY_TMPDIR"]
):
    _RAY_TMPDIR = os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="dlgray-", dir="/tmp")
    os.environ["DLGSWEEP_TEST_RAY_TMPDIR"] = _RAY_TMPDIR

# Two workers on two cores: one torch thread each (set before torch is imported; Ray's workers
# inherit it), instead of two each contending for the same cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():  # the shared local Ray (local_ray)
        ray.shutdown()
    if _RAY_TMPDIR is not None:
        shutil.rmtree(_RAY_TMPDIR, ignore_errors=True)


TINY_ATTACK = {"iterations": 5, "curve_points": 5}


def write_spec(folder: Path, name: str, **sections: Any) -> Path:
    """A sweep YAML under `folder`: mcmahan_cnn on cifar10, 5 iterations, 2 CPUs a trial,
    unless overridden."""
    raw: dict[str, Any] = {
        "name": name,
        "grid": {"seed": [0, 1]},
        "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn"},
        "attack": dict(TINY_ATTACK),
        # one trial at a time on the suite's 2-CPU Rays: Tune reuses one trial actor for them
        # all, where one per CPU would each start a worker and import torch (about 4 CPU
        # seconds each: half of a tiny sweep's cost); a test of packing asks for its own
        "resources": {"cpu": 2, "gpu": 0},
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


def _shared_ray() -> Any:
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="WARNING")
    return ray


@pytest.fixture(autouse=True)
def _no_stray_ray(request: pytest.FixtureRequest) -> None:
    """A test that does not ask for the shared Ray does not find one up: its `run`, `plan
    --address` or cluster must behave as in a fresh process (connect() joins any Ray already
    initialised in the process). Consecutive tests asking for `local_ray` keep sharing it."""
    ray = sys.modules.get("ray")
    if "local_ray" not in request.fixturenames and ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def local_ray():
    """The suite's one local Ray (2 CPUs, no GPU, no dashboard): started by the first test that
    asks, kept for the next ones (a sweep run in-process joins it instead of starting and
    stopping a Ray of its own), shut down at the end of the session. A test that needs a Ray
    of another shape (several nodes, other environment) shuts it down first; the next test
    asking for it starts it again."""
    return _shared_ray()


@pytest.fixture
def run_bench():
    """run_bench(script, *args, **run_options) -> CompletedProcess: `bench/<script>` run as a
    user runs it (this Python, from the repository root, output captured as text). The one
    place the tests know where bench/ is."""
    root = Path(__file__).resolve().parents[1]

    def run(script: str, *args: str, **options: Any) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(root / "bench" / script), *args],
            capture_output=True, text=True, cwd=root, **options,
        )  # fmt: skip

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """cli(*args) -> CompletedProcess: `dlgsweep ARGS` through main() in this process, as the
    console script calls it (a subprocess spends seconds importing torch again; the console
    script itself is run in tests/cli), stdout and stderr captured; argparse's own refusals
    (SystemExit) give their exit code. An exception main() lets out fails the test."""
    from dlgsweep.cli import main

    def run(*args: str) -> subprocess.CompletedProcess:
        try:
            code = main(list(args))
        except SystemExit as refused:
            code = refused.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


@pytest.fixture
def ray_env() -> dict[str, str]:
    """The environment a subprocess that starts or joins Ray gets on top of os.environ."""
    return dict(RAY_ENV)


@pytest.fixture
def trial_files():
    """trial_files(sweep_dir) -> the sweep's data files under trials/, sorted."""
    return _trial_files


@pytest.fixture
def file_states():
    """file_states(sweep_dir) -> name -> (mtime_ns, bytes): proof a rerun left a row alone."""
    return _file_states


@pytest.fixture
def session_pids():
    """session_pids(session_id) -> the pids of a session we started, from /proc."""
    return _session_pids


@pytest.fixture
def kill_session():
    """kill_session(session_id): SIGKILL every process of a session we started, by pid."""
    return _kill_session


# -- a small real sweep, built once per session --------------------------------------------------

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
        "attack: {iterations: 6}\nresources: {cpu: 2, gpu: 0}\nretries: 0\n"  # one actor
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
    from orchestrator.sweep import run_sweep
    from store.schema import make_row
    from store.spec import parse_yaml
    from store.sweep_store import SweepStore
    from workloads.config import TrialConfig
    from workloads.trial import run_trial

    spec = parse_yaml(spec_yaml(sweep))
    _shared_ray()
    run_sweep(spec, str(results), say=lambda *_: None)
    store = SweepStore.of(str(results), sweep)
    empty = results.parent / f"{results.name}-empty-image-folder"
    empty.mkdir(parents=True, exist_ok=True)
    for raw in extra_configs(empty):
        config = TrialConfig.from_dict(raw)
        store.write_row(make_row(config, run_trial(config, device="cpu"), sweep=sweep))
    return results / sweep


@pytest.fixture(scope="session")
def mini() -> SimpleNamespace:
    """The small sweep's shape: its name, grid and extra trials (`extra_configs(folder)`)."""
    return SimpleNamespace(name=SWEEP, grid=GRID, extra_configs=extra_configs)


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<results>/mini`: a real small sweep (43 trials, one of them an error row)."""
    cached = os.environ.get("DLGSWEEP_TEST_SWEEP")  # local iteration only: reuse a sweep
    if cached and (Path(cached) / "trials").is_dir():
        target = tmp_path_factory.mktemp("results") / SWEEP
        shutil.copytree(cached, target)
        return target
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build_small_sweep(tmp_path_factory.mktemp("results"))
    # pytest-xdist (`make test`): the first worker to need it builds it in the run's shared
    # temp folder, under a lock; each worker reads its own copy
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # this run's, beside each worker's own
    with FileLock(str(shared / "small-sweep.lock")):
        if not (shared / "small-sweep" / SWEEP / "trials").is_dir():
            build_small_sweep(shared / "small-sweep")
    target = tmp_path_factory.mktemp("results") / SWEEP
    shutil.copytree(shared / "small-sweep" / SWEEP, target)
    return target


@pytest.fixture(scope="session")
def small_frame(small_sweep: Path):
    from store import load

    return load.trials(str(small_sweep))


@pytest.fixture(scope="session")
def small_report(small_sweep: Path, tmp_path_factory: pytest.TempPathFactory):
    from analysis.report import build_report

    return build_report(str(small_sweep), tmp_path_factory.mktemp("report"))


# -- headless chromium ----------------------------------------------------------------------------


def chromium() -> str:
    """The headless browser (Debian: `apt-get install -y chromium`)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("no chromium on PATH: apt-get update && apt-get install -y chromium")


def _headless(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
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


# -- a headless browser driven over the DevTools protocol: real clicks ---------------------------


class Browser:
    """Headless chromium under the DevTools protocol (aiohttp's websocket client, which Ray
    already installs): open a page, evaluate JavaScript, click at page coordinates with real
    mouse events (Input.dispatchMouseEvent, so hit-testing and handlers run as for a user).

        with Browser() as browser:
            browser.open(path.as_uri())
            x, y = browser.evaluate("...center of an element...")
            browser.click(x, y)
    """

    def __init__(self, width: int = 1400, height: int = 1000, timeout: float = 60) -> None:
        self.width, self.height, self.timeout = width, height, timeout
        self.console: list[str] = []
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        import asyncio
        import time

        self.profile = tempfile.mkdtemp(prefix="dlgsweep-cdp-")
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0", f"--window-size={self.width},{self.height}",
            "about:blank",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__(None, None, None)
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect())
        return self

    async def _connect(self) -> None:
        import json as _json

        import aiohttp

        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
            targets = _json.loads(await response.text())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self._send("Runtime.enable")
        await self._send("Page.enable")

    async def _send(self, method: str, **params: Any) -> dict:
        import asyncio

        ident = next(self._ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), self.timeout)
            if message.get("method") == "Runtime.consoleAPICalled":
                args = message["params"].get("args", [])
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                self.console.append(f"{message['params'].get('type')}: {text}")
            if message.get("method") == "Runtime.exceptionThrown":
                self.console.append("error: " + str(message["params"]["exceptionDetails"]))
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def call(self, method: str, **params: Any) -> dict:
        return self.loop.run_until_complete(self._send(method, **params))

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> Any:
        """Poll until the expression is truthy; returns its value."""
        import time

        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still falsy after {timeout or self.timeout}s: {expression}")
            time.sleep(0.2)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def click(self, x: float, y: float) -> None:
        """A left click at page coordinates (CSS pixels of the viewport)."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            extra = {"button": "left", "clickCount": 1} if kind != "mouseMoved" else {}
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def click_element(self, selector_js: str) -> None:
        """Scroll the element (a JS expression) into view and click its center."""
        x, y = self.evaluate(
            f"(() => {{ const e = {selector_js}; e.scrollIntoView({{block: 'center'}});"
            " const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2];"
            " })()"
        )
        self.click(x, y)

    def screenshot(self, path: Path) -> None:
        import base64 as _b64

        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(_b64.b64decode(data))

    def __exit__(self, *exc: object) -> None:
        loop = getattr(self, "loop", None)
        if loop is not None:

            async def close() -> None:
                if getattr(self, "ws", None) is not None:
                    await self.ws.close()
                await self.http.close()

            try:
                loop.run_until_complete(close())
            finally:
                loop.close()
        self.process.kill()  # our own chromium, by its process object
        self.process.wait(timeout=30)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture
def headless():
    """headless(url, *chromium_args) -> the finished chromium process (console on stderr)."""
    return _headless


@pytest.fixture
def browser():
    """The Browser class: `with browser() as page: page.open(url); page.click(x, y)`."""
    return Browser


# -- processes, from /proc -------------------------------------------------------------------------


def _trial_files(sweep_dir: Path) -> list[Path]:
    return sorted((sweep_dir / "trials").glob("*.parquet"))


def _file_states(sweep_dir: Path) -> dict[str, tuple[int, bytes]]:
    """name -> (mtime_ns, bytes) of every trial file: proof that a rerun left a row alone."""
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in _trial_files(sweep_dir)}


def _session_pids(session_id: int) -> list[int]:
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


def _kill_session(session_id: int) -> None:
    """SIGKILL every process of a session we started, one pid at a time."""
    for pid in _session_pids(session_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is parenthesised and may hold spaces; ppid follows its ")"
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _pids_with(*pairs: str) -> list[int]:
    """Our processes whose environment holds every NAME=value given."""
    wanted = dict(pair.split("=", 1) for pair in pairs)
    return [
        pid
        for pid in _pids()
        if pid != os.getpid() and all(_environ(pid).get(k) == v for k, v in wanted.items())
    ]


def _with_descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        parent = _ppid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    family, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in family:
            family.add(pid)
            todo.extend(children.get(pid, []))
    return family


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


@pytest.fixture
def procs() -> SimpleNamespace:
    """Readers of /proc: pids_with(*"NAME=value"), with_descendants(pids), cmdline(pid),
    cpu_ticks(pid), session_pids(session), kill_session(session)."""
    return SimpleNamespace(
        pids_with=_pids_with, with_descendants=_with_descendants, cmdline=_cmdline,
        cpu_ticks=_cpu_ticks, session_pids=_session_pids, kill_session=_kill_session,
    )  # fmt: skip


def _max_overlap(rows: list[dict]) -> int:
    """The most trials whose [started_at, finished_at] overlap at one instant."""
    events = sorted(
        [(r["started_at"], 1) for r in rows] + [(r["finished_at"], -1) for r in rows],
        key=lambda e: (e[0], e[1]),  # a finish before a start at the same instant
    )
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


@pytest.fixture
def max_overlap():
    """max_overlap(rows) -> the most trials running at once, from their start/finish times."""
    return _max_overlap
