"""Benchmark: load a 10,000-trial results dataset and render its report; prints a timing table.

The dataset is synthesised from real rows: a few real attacks (`run_trial`, or the rows of an
existing sweep given with --source) are replicated over the paper's grid (2 models x 5 batch
sizes x 4 inits x 2 activations x 2 prune settings, seeds 0..N) with their metrics shifted by
plausible effects and noise; each row is its own Parquet file, as the sink writes them, image
bytes included. Then: list + load the frame, each chart (build, Vega-Lite JSON, PNG), the
findings, the whole `build_report`, and a `dlgsweep query`-style SQL aggregate.

    python bench/bench_report.py                  # 10,000 rows in a temp folder
    python bench/bench_report.py --rows 2000 --source results/demo --keep /tmp/bench
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import charts, findings  # noqa: E402
from analysis.query import query  # noqa: E402
from analysis.report import build_report  # noqa: E402
from store import load  # noqa: E402
from store.schema import CONFIG_COLUMNS, row_table  # noqa: E402
from workloads.config import TrialConfig  # noqa: E402

GRID = {
    "model": ["mcmahan_cnn", "resnet18"],
    "batch_size": [1, 2, 4, 8, 16],
    "init_method": ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"],
    "activation": ["relu", "sigmoid"],
    "prune": ["small", "none"],
}
CONFIG_FIELDS = [name for name, _ in CONFIG_COLUMNS]


CURVE_POINTS = 50  # the paper's rows: 500 iterations, a curve of 50 sampled points
ITERATIONS = 500


def real_rows(source: str | None) -> list[dict]:
    """Rows of real trials: from an existing sweep, or quick attacks run here, one per
    activation x batch size of the grid (so the images are as large as the paper's)."""
    if source:
        frame = load.trials(source, images=True).filter(pl.col("status") == "ok")
        return frame.to_dicts()
    from store.schema import make_row
    from workloads.trial import run_trial

    rows = []
    for activation, batch in itertools.product(("relu", "sigmoid"), GRID["batch_size"]):
        config = TrialConfig(activation=activation, batch_size=batch, iterations=4, curve_points=4)
        rows.append(make_row(config, run_trial(config, device="cpu"), sweep="bench"))
    return rows


def paper_curve(base: list[float], rng: random.Random, log: bool) -> list[float]:
    """The base row's curve stretched to CURVE_POINTS points (the paper's length), with noise."""
    values = [v for v in base if v is not None and (v > 0 or not log)] or [1.0]
    out = []
    for k in range(CURVE_POINTS):
        at = k * (len(values) - 1) / (CURVE_POINTS - 1)
        low, frac = int(at), at - int(at)
        high = min(low + 1, len(values) - 1)
        if log:
            value = math.exp((1 - frac) * math.log(values[low]) + frac * math.log(values[high]))
            out.append(value * math.exp(rng.gauss(0, 0.05)))
        else:
            out.append((1 - frac) * values[low] + frac * values[high] + rng.gauss(0, 0.2))
    return out


def synthesise(rows: list[dict], n: int, folder: Path, sweep: str = "bench") -> Path:
    """`n` row files under folder/sweep/trials, the paper grid over as many seeds as needed."""
    trials = folder / sweep / "trials"
    trials.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    points = list(itertools.product(*GRID.values()))
    for i in range(n):
        seed, index = divmod(i, len(points))
        change = dict(zip(GRID, points[index]), seed=seed, norm="none")
        alike = [r for r in rows if r["batch_size"] == change["batch_size"]] or rows
        base = alike[i % len(alike)]
        config = TrialConfig.from_dict(
            {**{k: base[k] for k in CONFIG_FIELDS}, **change, "pool_size": 1000,
             "iterations": ITERATIONS, "curve_points": CURVE_POINTS}
        )  # fmt: skip
        shift = (
            -1.5 * math.log2(config.batch_size) + (2.0 if config.activation == "sigmoid" else 0)
            - (1.0 if config.prune == "small" and config.init_method.startswith("xavier") else 0)
            + (1.0 if config.model == "resnet18" else 0) + rng.gauss(0, 1.5)
        )  # fmt: skip
        row = {**base, **config.to_dict(), "trial_key": config.trial_key, "sweep": sweep}
        for name in ("psnr_mean", "psnr_min", "psnr_max"):
            row[name] = (base[name] or 10.0) + shift
        row["curve_iteration"] = [k * ITERATIONS // CURVE_POINTS for k in range(CURVE_POINTS)]
        row["curve_psnr"] = [v + shift for v in paper_curve(base["curve_psnr"], rng, log=False)]
        row["curve_grad_loss"] = paper_curve(base["curve_grad_loss"], rng, log=True)
        row["grad_zero_fraction"] = min(
            1.0, max(0.0, (base["grad_zero_fraction"] or 0) + rng.gauss(0, 0.05))
        )  # noqa: E501
        row["status"] = "error" if rng.random() < 0.02 else "ok"
        pq.write_table(row_table(row), trials / f"{config.trial_key}.parquet")
    return folder / sweep


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def chart_mb(page: str) -> dict[str, float]:
    """MB of each chart's spec inside index.html (its `const specs = {...}`)."""
    import json
    import re

    found = re.search(r"const specs = (\{.*?\});\n", page)
    specs = json.loads(found.group(1)) if found else {}
    return {name: len(json.dumps(spec)) / 2**20 for name, spec in specs.items()}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return name
    raise RuntimeError("no chromium on PATH: apt-get update && apt-get install -y chromium")


class _Page:
    """Headless chromium over the DevTools protocol (aiohttp's websocket client, which Ray
    installs): just what `open_seconds` needs, send a command and read its result."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ids = itertools.count(1)

    def __enter__(self) -> _Page:
        import asyncio

        self.profile = tempfile.mkdtemp(prefix="dlgsweep-bench-cdp-")
        self.process = subprocess.Popen(
            [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={self.profile}",
             "--remote-debugging-port=0", "--window-size=1400,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.__exit__()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        self.port = int(port_file.read_text().splitlines()[0])
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(self._connect())
        return self

    async def _connect(self) -> None:
        import aiohttp

        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
            targets = json.loads(await response.text())
        page = next(t for t in targets if t["type"] == "page")
        self.ws = await self.http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self._send("Page.enable")

    async def _send(self, method: str, **params) -> dict:
        import asyncio

        ident = next(self.ids)
        await self.ws.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), self.timeout)
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def call(self, method: str, **params) -> dict:
        return self.loop.run_until_complete(self._send(method, **params))

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"still falsy after {self.timeout}s: {expression}")
            time.sleep(0.2)

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


def open_seconds(page: Path, runs: int = 3) -> list[float]:
    """Seconds from navigation start until every chart of the page is drawn (the page sets
    `data-rendered`), in headless chromium driven over the DevTools protocol as the browser
    tests drive it; the moment is taken in the page (performance.now()), once per run."""
    watch = (
        "new MutationObserver(() => { if (!window.drawnAt && document.body &&"
        " (document.body.dataset.rendered || document.body.dataset.error))"
        " window.drawnAt = performance.now(); }).observe(document, {attributes: true,"
        " subtree: true, attributeFilter: ['data-rendered', 'data-error']});"
    )
    times = []
    with _Page(timeout=180) as browser:
        browser.call("Page.addScriptToEvaluateOnNewDocument", source=watch)
        for _ in range(runs):
            browser.call("Page.navigate", url="about:blank")
            browser.wait_for("document.readyState === 'complete'")
            browser.call("Page.navigate", url=page.as_uri())
            browser.wait_for("window.drawnAt")
            error = browser.evaluate("document.body.dataset.error")
            if error:
                raise RuntimeError(f"{page}: {error}")
            times.append(browser.evaluate("window.drawnAt") / 1000)
    return times


def timed(table: list[tuple[str, float, str]], label: str, func, note=lambda _: ""):
    start = time.perf_counter()
    value = func()
    table.append((label, time.perf_counter() - start, note(value)))
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--source", help="a sweep folder whose ok rows seed the synthesis")
    parser.add_argument("--keep", help="write the dataset and report here (kept)")
    args = parser.parse_args()

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dlgsweep-bench-"))
    table: list[tuple[str, float, str]] = []
    try:
        seeds = timed(table, "run real trials (seed rows)", lambda: real_rows(args.source),
                      lambda r: f"{len(r)} rows")  # fmt: skip
        sweep = timed(table, f"write {args.rows} row files", lambda: synthesise(
            seeds, args.rows, work / "results"), lambda p: str(p))  # fmt: skip
        timed(table, "list row files", lambda: load.find_row_files(str(sweep)),
              lambda r: f"{sum(len(v) for v in r[1].values())} files")  # fmt: skip
        frame = timed(table, "load frame (no images)", lambda: load.trials(str(sweep)),
                      lambda f: f"{f.height} rows, {f.estimated_size('mb'):.1f} MB")  # fmt: skip
        timed(table, "load frame (with images)", lambda: load.trials(str(sweep), images=True),
              lambda f: f"{f.estimated_size('mb'):.1f} MB")  # fmt: skip
        import vl_convert as vlc

        for name in charts.CHARTS:
            try:
                spec = timed(table, f"chart {name}: build + to_dict",
                             lambda name=name: charts.build(name, frame).to_dict(),
                             lambda s: f"{sum(len(v) for v in s.get('datasets', {}).values())} points")  # fmt: skip # noqa: E501
            except charts.ChartSkipped as skipped:  # the paper grid has no such axis
                table.append((f"chart {name}", 0.0, f"skipped: {skipped}"))
                continue
            timed(table, f"chart {name}: PNG (vl-convert)",
                  lambda spec=spec: vlc.vegalite_to_png(spec, scale=1.5),
                  lambda png: f"{len(png) // 1024} KiB")  # fmt: skip
        timed(table, "findings", lambda: findings.findings(frame),
              lambda f: ", ".join(x.verdict for x in f))  # fmt: skip
        timed(table, "query: GROUP BY model, activation", lambda: query(
            str(work / "results"), "SELECT model, activation, avg(psnr_mean) FROM trials "
            "GROUP BY ALL"), lambda f: f"{f.height} rows")  # fmt: skip
        timed(table, "build_report (load + all charts + PNGs + gallery + index)",
              lambda: build_report(str(sweep), work / "report"),
              lambda r: f"{sum(1 for c in r.charts if not c.skipped)} charts, "
              f"{r.gallery_rows} gallery rows")  # fmt: skip
        report = work / "report"
        index = report / "index.html"
        page = index.read_text()
        table.append(("index.html", 0.0, f"{index.stat().st_size / 2**20:.1f} MB"))
        for name, mb in sorted(chart_mb(page).items(), key=lambda kv: -kv[1]):
            table.append((f"  chart {name} in index.html", 0.0, f"{mb:.2f} MB"))
        explorer = report / "explorer.html"
        table.append(("explorer.html", 0.0, f"{explorer.stat().st_size / 2**20:.1f} MB"))
        table.append(("report folder", 0.0, f"{folder_mb(report):.1f} MB"))
        runs = open_seconds(index)
        table.append(("open index.html in headless chromium (median of 3)",
                      sorted(runs)[1], ", ".join(f"{t:.2f}" for t in runs)))  # fmt: skip
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    width = max(len(label) for label, _, _ in table)
    print(f"{'step':<{width}}  {'seconds':>8}  note")
    print(f"{'-' * width}  {'-' * 8}  ----")
    for label, seconds, note in table:
        print(f"{label:<{width}}  {seconds:>8.2f}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
