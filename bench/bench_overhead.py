"""Orchestration overhead: N trials through a local Ray Tune sweep vs the same `run_trial`
calls in a plain loop in one process, and the wall time of the `demo` preset.

Both sides run one trial at a time on one thread (the sweep with --max-concurrent 1 and
1 CPU per trial; Ray gives each worker OMP_NUM_THREADS=1), so the ratio is the price of Ray:
starting it, one worker importing torch, scheduling, the row's Parquet write, Tune's
bookkeeping. The target is < 10% overhead for trials of 20 s or more.

    python bench/bench_overhead.py                         # 4 trials x 300 iterations + demo
    python bench/bench_overhead.py --trials 8 --iterations 20 --no-demo
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


def plain_loop(configs: list) -> float:
    import torch

    from workloads.trial import run_trial

    torch.set_num_threads(1)
    run_trial(configs[0].replace(iterations=1), device="cpu")  # warm: lazy imports, data pool
    started = time.perf_counter()
    for config in configs:
        assert run_trial(config, device="cpu").status == "ok"
    return time.perf_counter() - started


def ray_sweep(spec, results: str, max_concurrent: int | None, num_cpus: int) -> dict:
    """Wall time, plus from the rows: startup (until the first trial began) and steady state."""
    from orchestrator.sweep import run_sweep
    from store.sweep_store import SweepStore

    began = time.time()
    outcome = run_sweep(
        spec, results, num_cpus=num_cpus, max_concurrent=max_concurrent, say=lambda s: None
    )
    wall = time.time() - began
    assert outcome.exit_code == 0, outcome
    rows = (
        SweepStore.of(results, spec.name)
        .read_rows(columns=["started_at", "finished_at", "wall_seconds"])
        .table.to_pylist()
    )
    first = min(r["started_at"] for r in rows).timestamp()
    last = max(r["finished_at"] for r in rows).timestamp()
    return {
        "wall": wall,
        "startup": first - began,  # Ray start, a worker importing torch, scheduling
        "steady": last - first,  # first trial start to last trial end
        "in_trials": sum(r["wall_seconds"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--no-demo", action="store_true", help="skip the demo sweep's timing")
    args = parser.parse_args()

    from store.spec import load_spec, parse_spec

    spec = parse_spec(
        {
            "name": "bench",
            "grid": {"seed": list(range(args.trials))},
            "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn", "batch_size": 1},
            "attack": {"iterations": args.iterations},
            "resources": {"cpu": 1, "gpu": 0},
        }
    )
    configs = spec.trials()
    with tempfile.TemporaryDirectory() as results:
        loop = plain_loop(configs)
        sweep = ray_sweep(spec, results, max_concurrent=1, num_cpus=1)
        rows = []
        demo_trials = len(load_spec("demo").trials())
        if not args.no_demo:
            demo = ray_sweep(load_spec("demo"), results, max_concurrent=None, num_cpus=2)
            rows.append(demo)

    n = len(configs)
    per = loop / n
    between = (sweep["steady"] - sweep["in_trials"]) / max(1, n - 1)
    print(f"\n{n} trials x {args.iterations} iterations, mcmahan_cnn batch 1, one at a time, "
          f"1 thread ({os.cpu_count()} cores here)")  # fmt: skip
    print(f"| {'mode':<44} | {'wall s':>8} | {'s/trial':>8} | {'vs loop':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    table = [
        ("plain loop, one process", loop),
        ("Ray Tune sweep, total (incl. Ray start)", sweep["wall"]),
        ("Ray Tune sweep, steady state (1st..last)", sweep["steady"]),
    ]
    for name, seconds in table:
        print(f"| {name:<44} | {seconds:8.1f} | {seconds / n:8.2f} | {seconds / loop:8.2f} |")
    print(
        f"fixed startup {sweep['startup']:.1f} s (Ray + one worker importing torch); "
        f"{between:.2f} s between trials (row write, Tune bookkeeping); steady-state overhead "
        f"{100 * (sweep['steady'] / loop - 1):+.0f}% for {per:.1f} s trials"
    )
    if rows:
        wall = rows[0]["wall"]
        print(f"demo preset ({demo_trials} trials, 2 CPUs, incl. Ray start): {wall:.0f} s wall")


if __name__ == "__main__":
    main()
