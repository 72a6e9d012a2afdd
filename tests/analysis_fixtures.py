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
from typing import Any

import pytest

from analysis.synthetic import synthetic_frame  # noqa: F401  (re-exported for the tests)
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
    from orchestrator.sweep import run_sweep
    from store.schema import make_row
    from store.spec import parse_yaml
    from store.sweep_store import SweepStore

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
    from store import load

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


# -- synthetic frames for the fast tests ---------------------------------------------------------
