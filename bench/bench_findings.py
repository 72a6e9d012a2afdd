"""Calibration of the findings' verdicts, measured on synthetic sweeps of known truth.

For each case (a claim, a true effect, a design, a noise level) the bench draws `--reps` sweeps
(`analysis.synthetic`: PSNR = truth + Normal noise per trial), runs the claim through the same
code `dlgsweep report` uses (`analysis.findings.check`) and prints the share of each verdict
beside what it should be:

- false `supported` at most the nominal rate: 2.5% for directional and margin claims at their
  boundary (one side of a 5% two-sided test), 5% for equivalence at its margin (TOST at 5%);
- `mixed` where strata (or the levels of an averaged axis) really carry opposite effects, and
  rarely where they do not;
- power about 80% where the truth sits at the detectable effect the report prints;
- missing cells and unequal noise never decide a claim.

    python bench/bench_findings.py              # 200 sweeps per case (about 10 min on 2 cores)
    python bench/bench_findings.py --reps 40 --check   # reduced; exit 1 if a case's false
                                                         # `supported` share exceeds 10%
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis import findings  # noqa: E402
from analysis.stats import detectable_shift, tost_margin  # noqa: E402
from analysis.synthetic import synthetic_frame  # noqa: E402

VERDICTS = ("supported", "contradicted", "mixed", "inconclusive", "not enough data")
SHORT = {"supported": "sup", "contradicted": "con", "mixed": "mix", "inconclusive": "inc",
         "not enough data": "n/a"}  # fmt: skip

INITS = {"init_method": ["xavier_normal", "kaiming_normal"], "activation": ["relu", "sigmoid"]}
FAMILY = {"xavier_normal": "xavier", "kaiming_normal": "kaiming", "xavier_uniform": "xavier",
          "kaiming_uniform": "kaiming"}  # fmt: skip


@dataclass
class Case:
    name: str
    key: str  # the claim
    grid: dict[str, list]
    truth: Callable[[dict], float]
    should: list[tuple[str, str, float]]  # (verdict, "<=" | ">=" | "~", share)
    noise: float | Callable[[dict], float] = 2.0
    seeds: int = 6
    drop: Callable[[pl.DataFrame, np.random.Generator], pl.DataFrame] | None = None
    false_supported: bool = False  # the truth does not carry the claim: `supported` is an error
    counts: dict[str, int] = field(default_factory=dict)


def _sign(cond: bool) -> int:
    return 1 if cond else -1


def cases() -> list[Case]:
    sd = 2.0
    n = 6
    # relu_vs_sigmoid: 2 strata (family) of one pair each: per-seed sd of the headline = sd
    relu_detect = detectable_shift(n, sd)
    # pruning_defends on one stratum (sigmoid): the pair difference has sd * sqrt(2)
    prune_detect = detectable_shift(n, sd * math.sqrt(2))
    # uniform_vs_normal on one stratum (xavier), two activations: per-seed sd = sd; the noise
    # at which the narrowest provable margin is the claim's 2 dB
    equiv_sd = findings.MARGIN_DB / tost_margin(n, 1.0)
    relu = lambda c, d: 20 + (d if c["activation"] == "relu" else 0)  # noqa: E731
    pruned = lambda c, d: 25 - (d(c) if c["prune"] == "small" else 0)  # noqa: E731
    uniform = lambda c, d: 20 + (d(c) if c["init_method"].endswith("uniform") else 0)  # noqa: E731
    prune_grid = {"init_method": ["xavier_normal"], "activation": ["relu", "sigmoid"],
                  "prune": ["none", "small"]}  # fmt: skip
    equiv_grid = {
        "init_method": ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"],
        "activation": ["relu", "sigmoid"],
    }

    def errored(share: float):
        def drop(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
            lost = pl.Series(rng.random(frame.height) < share)
            return frame.with_columns(pl.when(lost).then(pl.lit("error")).otherwise("status")
                                      .alias("status"))  # fmt: skip

        return drop

    def pruned_sigmoid_lost(frame: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
        lost = (
            (pl.col("activation") == "sigmoid")
            & (pl.col("prune") == "small")
            & (pl.col("seed") > 0)
        )
        return frame.with_columns(pl.when(lost).then(pl.lit("error")).otherwise("status")
                                  .alias("status"))  # fmt: skip

    cells = {("xavier", "relu"): 14.0, ("kaiming", "relu"): 20.0, ("kaiming", "sigmoid"): 24.0,
             ("xavier", "sigmoid"): 30.0}  # fmt: skip
    cell = lambda c: cells[(FAMILY[c["init_method"]], c["activation"])]  # noqa: E731
    spread_grid = {**INITS, "batch_size": [1, 8]}

    def order(step2: float) -> Callable[[dict], float]:
        values = {("xavier", "relu"): 10, ("kaiming", "relu"): 14}
        values |= {("kaiming", "sigmoid"): 14 + step2, ("xavier", "sigmoid"): 18 + step2}
        return lambda c: values[(FAMILY[c["init_method"]], c["activation"])]

    return [
        # directional: ReLU - Sigmoid < 0
        Case("no effect", "relu_vs_sigmoid", INITS, lambda c: relu(c, 0.0),
             [("supported", "<=", 0.025)], false_supported=True),
        Case("clear effect (-6 dB)", "relu_vs_sigmoid", INITS, lambda c: relu(c, -6.0),
             [("supported", ">=", 0.95)]),
        Case(f"at the detectable effect ({-relu_detect:.2f} dB)", "relu_vs_sigmoid", INITS,
             lambda c: relu(c, -relu_detect), [("supported", "~", 0.80)]),
        Case("opposite strata (-8 Xavier / +8 Kaiming)", "relu_vs_sigmoid", INITS,
             lambda c: relu(c, 8.0 * _sign(c["init_method"].startswith("kaiming"))),
             [("mixed", ">=", 0.80), ("supported", "<=", 0.025)], false_supported=True),
        Case("opposite over an averaged axis (B 1: -6, B 4: +6)", "relu_vs_sigmoid",
             {**INITS, "batch_size": [1, 4]}, lambda c: relu(c, 6.0 * _sign(c["batch_size"] == 4)),
             [("mixed", ">=", 0.80), ("supported", "<=", 0.025)], false_supported=True),
        Case("same effect in every stratum (-3 dB)", "relu_vs_sigmoid",
             {**INITS, "batch_size": [1, 4]}, lambda c: relu(c, -3.0), [("mixed", "<=", 0.05)]),
        # equivalence: |uniform - normal| < 2 dB (TOST)
        Case("at the margin (+2 dB)", "uniform_vs_normal", equiv_grid,
             lambda c: uniform(c, lambda _: 2.0), [("supported", "<=", 0.05)],
             false_supported=True),
        Case("at the margin in one stratum only", "uniform_vs_normal", equiv_grid,
             lambda c: uniform(c, lambda c: 2.0 if FAMILY[c["init_method"]] == "xavier" else 0.0),
             [("supported", "<=", 0.05)], noise=1.0, false_supported=True),
        Case("opposite strata (+6 Xavier / -6 Kaiming)", "uniform_vs_normal", equiv_grid,
             lambda c: uniform(c, lambda c: 6.0 * _sign(FAMILY[c["init_method"]] == "xavier")),
             [("contradicted", ">=", 0.95), ("supported", "<=", 0.05)], false_supported=True),
        Case(f"no effect, noise at the provable margin (sd {equiv_sd:.2f})", "uniform_vs_normal",
             {**equiv_grid, "init_method": ["xavier_normal", "xavier_uniform"]},
             lambda c: uniform(c, lambda _: 0.0), [("supported", "~", 0.80)], noise=equiv_sd),
        # margin: unpruned - pruned 20% > 2 dB
        Case("at the margin (2 dB)", "pruning_defends", prune_grid,
             lambda c: pruned(c, lambda _: 2.0), [("supported", "<=", 0.025)],
             false_supported=True),
        Case(f"at the detectable effect (2 + {prune_detect:.2f} dB)", "pruning_defends",
             {**prune_grid, "activation": ["sigmoid"]},
             lambda c: pruned(c, lambda _: 2 + prune_detect),
             [("supported", "~", 0.80)]),
        Case("one stratum defended (Sigmoid 5, ReLU 0)", "pruning_defends", prune_grid,
             lambda c: pruned(c, lambda c: 5.0 if c["activation"] == "sigmoid" else 0.0),
             [("mixed", ">=", 0.80), ("supported", "<=", 0.025)], noise=0.7,
             false_supported=True),
        Case("pruned Sigmoid lost in 5 of 6 seeds", "pruning_defends", prune_grid,
             lambda c: pruned(c, lambda c: 5.5 if c["activation"] == "sigmoid" else 0.5),
             [("not enough data", ">=", 0.95)], noise=0.3, drop=pruned_sigmoid_lost,
             false_supported=True),
        Case("clear effect, 15% of trials lost at random", "pruning_defends", prune_grid,
             lambda c: pruned(c, lambda _: 8.0), [("supported", ">=", 0.50),
                                                  ("contradicted", "<=", 0.0)],
             seeds=10, drop=errored(0.15)),  # fmt: skip
        # low effect under Kaiming: one stratum big (3.2), one none
        Case("Kaiming: Sigmoid 3.2, ReLU 0", "pruning_kaiming",
             {**prune_grid, "init_method": ["kaiming_normal"]},
             lambda c: pruned(c, lambda c: 3.2 if c["activation"] == "sigmoid" else 0.0),
             [("mixed", ">=", 0.80), ("supported", "<=", 0.05)], noise=0.5,
             false_supported=True),
        # the spread between cells at B 1 vs B 8
        Case("equal spreads, noise 6 at B 1 / 0.5 at B 8", "batch_shrink", spread_grid, cell,
             [("supported", "<=", 0.025), ("contradicted", "<=", 0.025)], seeds=10,
             noise=lambda c: 6.0 if c["batch_size"] == 1 else 0.5, false_supported=True),
        Case("equal spreads, noise 0.5 at B 1 / 6 at B 8", "batch_shrink", spread_grid, cell,
             [("supported", "<=", 0.025), ("contradicted", "<=", 0.025)], seeds=10,
             noise=lambda c: 0.5 if c["batch_size"] == 1 else 6.0, false_supported=True),
        Case("equal spreads, equal noise 2", "batch_shrink", spread_grid, cell,
             [("supported", "<=", 0.025)], seeds=10, false_supported=True),
        Case("spread 6.6 dB at B 1, 1.3 at B 8", "batch_shrink", spread_grid,
             lambda c: 22 + (cell(c) - 22) * (1.0 if c["batch_size"] == 1 else 0.2),
             [("supported", ">=", 0.80)], seeds=10),
        # the order: three steps, each > 0
        Case("every step +4 dB", "order", INITS, order(4.0), [("supported", ">=", 0.80)],
             noise=1.0),
        Case("middle step 0 dB", "order", INITS, order(0.0), [("supported", "<=", 0.025)],
             noise=1.0, false_supported=True),
    ]  # fmt: skip


def run(case: Case, reps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    claim = findings.CLAIMS[case.key]
    case.counts = {v: 0 for v in VERDICTS}
    for _ in range(reps):
        frame = synthetic_frame(case.grid, case.truth, range(case.seeds), case.noise, rng=rng)
        if case.drop:
            frame = case.drop(frame, rng)
        verdict = findings.check(claim, findings.prepare(frame)).verdict
        case.counts[verdict] += 1


def judge(case: Case, reps: int) -> tuple[str, bool]:
    return judge_counts(case.counts, case.should, reps)


def judge_counts(
    counts: dict[str, int], should: list[tuple[str, str, float]], reps: int
) -> tuple[str, bool]:
    """Each (verdict, op, share) of `should` against the verdicts counted over `reps` sweeps,
    within twice the Monte Carlo error: the table's `should` text and whether all hold."""
    parts, ok = [], True
    for verdict, op, share in should:
        got = counts[verdict] / reps
        slack = 2 * math.sqrt(max(share * (1 - share), 0.01) / reps)  # Monte Carlo error
        good = {"<=": got <= share + slack, ">=": got >= share - slack,
                "~": abs(got - share) <= max(slack, 0.05)}[op]  # fmt: skip
        ok &= good
        parts.append(f"{SHORT[verdict]} {op} {share:.3g}")
    return ", ".join(parts), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200, help="sweeps per case (200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a false `supported` share exceeds 10%%")  # fmt: skip
    args = parser.parse_args(argv)
    print(f"findings calibration: {args.reps} synthetic sweeps per case; shares of each verdict "
          "(sup, con, mix, inc, n/a = not enough data)\n")  # fmt: skip
    head = "| claim | truth | seeds | sup | con | mix | inc | n/a | should | ok |"
    print(head)
    print("|" + "---|" * 10)
    worst, failed = 0.0, 0
    started = time.time()
    for i, case in enumerate(cases()):
        run(case, args.reps, args.seed + i)
        should, ok = judge(case, args.reps)
        failed += not ok
        shares = " | ".join(f"{case.counts[v] / args.reps:.1%}" for v in VERDICTS)
        print(f"| {case.key} | {case.name} | {case.seeds} | {shares} | {should} | "
              f"{'yes' if ok else 'NO'} |", flush=True)  # fmt: skip
        if case.false_supported:
            worst = max(worst, case.counts["supported"] / args.reps)
    return summary(f"{failed} case(s)", worst, started, args.check)


def summary(off: str, worst: float, started: float, check: bool) -> int:
    """The table's last line; with --check, exit 1 when a false-supported share passes 10%."""
    print(f"\n{off} off target; largest false-supported share {worst:.1%}; "
          f"{time.time() - started:.0f} s")  # fmt: skip
    if check and worst > 0.10:
        print("FAIL: a false-supported share exceeds 10%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
