"""What live reports cost: McMahan CNN trials at B=1 on CIFAR-10, with and without them.

Live reports are points of the convergence curve the attack computes anyway, passed to Tune as
they come (orchestrator.trainable.LiveReporter), so their price is the `tune.report` calls:
about 20 a trial by default. Both sides run through a local Ray Tune sweep, one trial at a
time on one thread, trials of the two sides interleaved (A, B, A, B, ...) so that drift in the
machine's load falls on both; each trial's attack time is its row's
`seconds_per_iteration x iterations_run`, measured inside the worker around the attack loop,
where the reports happen. A plain loop (no Ray: the `live` hook a no-op) is printed alongside.
Target: under 2% of a trial. Printed, never asserted.

    python bench/bench_live_reports.py                     # 3 pairs x 500 iterations
    python bench/bench_live_reports.py --pairs 5 --iterations 300
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from ray import tune  # noqa: E402 (after the environment Ray reads)


def spec_of(name: str, seed: int, iterations: int, report_every: int | None):
    from store.spec import parse_spec

    raw = {
        "name": name,
        "grid": {"seed": [seed]},
        "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn", "batch_size": 1},
        "attack": {"iterations": iterations},
        "resources": {"cpu": 1, "gpu": 0},
    }
    if report_every:
        raw["report_every"] = report_every
    return parse_spec(raw)


def attack_seconds(results: str, name: str) -> float:
    from store.sweep_store import SweepStore

    rows = SweepStore.of(results, name).read_rows().table.to_pylist()
    (row,) = rows
    assert row["status"] == "ok", row["error"]
    return row["seconds_per_iteration"] * row["iterations_run"]


class Finals(tune.Callback):
    """The final Tune report of every trial (it carries `live_report_seconds`)."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        if "trial_status" in result:
            self.seen.append(dict(result))


def plain(iterations: int, pairs: int) -> tuple[float, float]:
    import torch

    from workloads.config import TrialConfig
    from workloads.trial import run_trial

    torch.set_num_threads(1)
    quiet, hooked = [], []
    for seed in range(pairs):
        config = TrialConfig(
            dataset="cifar10", model="mcmahan_cnn", batch_size=1, iterations=iterations, seed=seed
        )
        for times, live in ((quiet, None), (hooked, lambda *point: None)):
            started = time.perf_counter()
            run_trial(config, device="cpu", live=live)
            times.append(time.perf_counter() - started)
    return statistics.median(quiet), statistics.median(hooked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=500)
    args = parser.parse_args()

    import ray

    from orchestrator.sweep import run_sweep

    off, on, in_reports = [], [], []
    every_default = None  # about 20 reports a trial
    never = 10 * args.iterations  # no report before the final one
    with tempfile.TemporaryDirectory() as results:
        ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="ERROR")
        try:
            for seed in range(args.pairs):
                sides = ((off, never, "off"), (on, every_default, "on"))
                for times, every, label in sides if seed % 2 == 0 else sides[::-1]:  # ABBA
                    name = f"live-{label}-{seed}"
                    spec = spec_of(name, seed, args.iterations, every)
                    finals = Finals()
                    outcome = run_sweep(spec, results, callbacks=[finals], say=lambda line: None)
                    assert outcome.exit_code == 0, outcome
                    times.append(attack_seconds(results, name))
                    if label == "on":
                        in_reports.append(finals.seen[-1]["live_report_seconds"] / times[-1])
        finally:
            ray.shutdown()
    plain_off, plain_on = plain(args.iterations, args.pairs)

    tune_off, tune_on = statistics.median(off), statistics.median(on)
    print(f"McMahan CNN, CIFAR-10, B=1, {args.iterations} iterations, {args.pairs} trials each")
    print(f"{'':<28}{'no reports':>12}{'live reports':>14}{'ratio':>8}")
    rows = (
        ("Ray Tune (attack s/trial)", tune_off, tune_on),
        ("plain loop (s/trial)", plain_off, plain_on),
    )
    for label, a, b in rows:
        print(f"{label:<28}{a:>12.2f}{b:>14.2f}{b / a:>8.3f}")
    print("per pair (Tune): " + ", ".join(f"{b / a:.3f}" for a, b in zip(off, on)))
    share = statistics.median(in_reports)
    print(f"measured: time inside the live tune.report calls = {100 * share:.2f}% of the attack")


if __name__ == "__main__":
    main()
