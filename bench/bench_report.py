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
import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis import charts, findings, load  # noqa: E402
from analysis.commands.query import query  # noqa: E402
from analysis.report import build_report  # noqa: E402
from orchestrator.schema import CONFIG_COLUMNS, row_table  # noqa: E402
from workloads.config import TrialConfig  # noqa: E402

GRID = {
    "model": ["mcmahan_cnn", "resnet18"],
    "batch_size": [1, 2, 4, 8, 16],
    "init_method": ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"],
    "activation": ["relu", "sigmoid"],
    "prune": ["small", "none"],
}
CONFIG_FIELDS = [name for name, _ in CONFIG_COLUMNS]


def real_rows(source: str | None) -> list[dict]:
    """Rows of real trials: from an existing sweep, or four quick attacks run here."""
    if source:
        frame = load.trials(source, images=True).filter(pl.col("status") == "ok")
        return frame.to_dicts()
    from orchestrator.schema import make_row
    from workloads.trial import run_trial

    rows = []
    for activation, batch in itertools.product(("relu", "sigmoid"), (1, 2)):
        config = TrialConfig(activation=activation, batch_size=batch, iterations=8, curve_points=8)
        rows.append(make_row(config, run_trial(config, device="cpu"), sweep="bench"))
    return rows


def synthesise(rows: list[dict], n: int, folder: Path, sweep: str = "bench") -> Path:
    """`n` row files under folder/sweep/trials, the paper grid over as many seeds as needed."""
    trials = folder / sweep / "trials"
    trials.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    points = list(itertools.product(*GRID.values()))
    for i in range(n):
        seed, index = divmod(i, len(points))
        change = dict(zip(GRID, points[index]), seed=seed, norm="none")
        base = rows[i % len(rows)]
        config = TrialConfig.from_dict(
            {**{k: base[k] for k in CONFIG_FIELDS}, **change, "pool_size": 1000}
        )
        shift = (
            -1.5 * math.log2(config.batch_size) + (2.0 if config.activation == "sigmoid" else 0)
            - (1.0 if config.prune == "small" and config.init_method.startswith("xavier") else 0)
            + (1.0 if config.model == "resnet18" else 0) + rng.gauss(0, 1.5)
        )  # fmt: skip
        row = {**base, **config.to_dict(), "trial_key": config.trial_key, "sweep": sweep}
        for name in ("psnr_mean", "psnr_min", "psnr_max"):
            row[name] = (base[name] or 10.0) + shift
        row["curve_psnr"] = [v + shift for v in base["curve_psnr"]]
        row["curve_grad_loss"] = [v * math.exp(rng.gauss(0, 0.3)) for v in base["curve_grad_loss"]]
        row["grad_zero_fraction"] = min(
            1.0, max(0.0, (base["grad_zero_fraction"] or 0) + rng.gauss(0, 0.05))
        )  # noqa: E501
        row["status"] = "error" if rng.random() < 0.02 else "ok"
        pq.write_table(row_table(row), trials / f"{config.trial_key}.parquet")
    return folder / sweep


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
