"""Calibration of the frontier findings' verdicts, measured on synthetic searches of known truth.

For each case the bench draws `--reps` search sweeps of the spec docs/specs/noise-frontier-cpu.yaml
(8 cells: Xavier/Kaiming normal x ReLU/Sigmoid x Gaussian/Laplacian noise, McMahan CNN; a log
search of noise_scale over [1e-4, 1] on a lattice of 1/8 decade, target auto), with its seeds
set to 3 or 6. Each seed of each cell has its own true threshold t (log10 of the noise scale):
the cell's true threshold plus Normal seed-to-seed spread (sd 0.15 decade, drawn per cell and
seed). A trial at strength x scores a sigmoid in log-strength that crosses the target at t,

    psnr = 10 + 20 / (1 + exp((x - c) / 0.25)),   c such that psnr(t) = target (14.7 dB)

(30 dB where the attack succeeds, 10 dB where it fails, about 14 dB per decade at the target)
plus Normal trial noise (sd 1.5 dB). The search (`store.replay.SearchState`) is
driven to its end over that response in memory (what `analysis.synthetic.synthetic_search`
does, without building sink rows), and its per-seed thresholds (`analysis.frontier.
seed_thresholds`) go through the same `frontier_findings` the report uses. The bench prints the
share of each verdict beside what it should be:

- no true effect: false `supported` at most the nominal 2.5% (one side of a 5% test);
- true effects of 1, 2 and 4 lattice steps (Sigmoid above ReLU in every stratum): the share
  supported is the power; `contradicted` (the wrong sign) at most 2.5%;
- no true effect but Sigmoid's response twice / half as steep as ReLU's: the crossing is
  interpolated across the gaps the search left, so a shape difference could move it;
- opposite signs in the two strata (Xavier +, Kaiming -): no main effect, so `supported` and
  `contradicted` are errors; `mixed` is the power to see the disagreement;
- censoring: a cell whose seeds are partly beyond the range (not defeated at the strongest
  noise): those seeds enter as bounds (sign tests), never imputed, never left out; what the
  verdicts do then;
- issue 22's shapes (the `shape` column): equal mean thresholds with one side's seeds more
  spread near either end of the range (6: `supported` and `contradicted` are errors), and
  Xavier-ReLU defeated at the weakest noise with Sigmoid needing more under Xavier and less
  under Kaiming (7: `mixed` is right, `supported` and `contradicted` errors).

Alongside, per case, how well the per-seed thresholds recover the truth: the share censored
and of the uncensored ones, against each seed's true threshold: their bias and RMSE (decades)
and the share off by more than two lattice steps.

    python bench/bench_frontier_findings.py                 # 100 sweeps per case (8-20 min
                                                            # on 2 shared cores)
    python bench/bench_frontier_findings.py --reps 40 --check   # reduced; exit 1 if a case's
                                                               # false decisive share > 10% or a
                                                               # row > 3.5 MC errors off
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import frontier  # noqa: E402
from store.replay import CellSearch, SearchState  # noqa: E402
from store.spec import SweepSpec, parse_spec  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_findings import CHECK_SIGMAS, judge_counts, mc_error, summary  # noqa: E402  (the same table, the same judge)

SPEC = ROOT / "docs/specs/noise-frontier-cpu.yaml"
VERDICTS = ("supported", "contradicted", "mixed", "inconclusive", "not enough data")
SIGMOID, KAIMING = "frontier_sigmoid_vs_relu", "frontier_kaiming_vs_xavier"

HIGH, LOW = 30.0, 10.0  # dB: the attack succeeds / fails (below the 12.7 dB CIFAR-10 floor)
WIDTH = 0.25  # decades: the sigmoid's scale in log10(noise_scale)
SEED_SD = 0.15  # decades: seed-to-seed spread of a cell's threshold
TRIAL_SD = 1.5  # dB: one trial's own noise
BASE = -2.0  # log10 of the noise scale: ReLU's true threshold (mid-range of [1e-4, 1])
STEP = 0.125  # decades: the spec's lattice step


@dataclass
class Case:
    name: str
    seeds: int
    threshold: Callable[[dict], float]  # the cell's true threshold (decades) from its point
    should: dict[str, list[tuple[str, str, float]]]  # claim -> (verdict, op, share)
    width: Callable[[dict], float] = lambda _: WIDTH
    seed_sd: Callable[[dict], float] = lambda _: SEED_SD  # decades, per cell
    false_supported: tuple[str, ...] = ()  # claims whose truth does not carry them
    false_contradicted: tuple[str, ...] = ()  # ... nor their opposite
    shape: str = ""  # issue 22's shape this case is an instance of
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[float] = field(default_factory=list)  # estimated - true, uncensored seeds
    censored: int = 0
    thresholds: int = 0


def _sigmoid(point: dict) -> bool:
    return point["activation"] == "sigmoid"


def _kaiming(point: dict) -> bool:
    return point["init_method"].startswith("kaiming")


def _edge(point: dict) -> bool:
    """The cell put near the range's strongest end: Xavier, Gaussian noise."""
    return not _kaiming(point) and point["noise"] == "gaussian"


def cases() -> list[Case]:
    out = []
    for n in (3, 6):
        both_null = {c: [("supported", "<=", 0.025)] for c in (SIGMOID, KAIMING)}
        out.append(Case("no effect (Sigmoid = ReLU, Kaiming = Xavier)", n, lambda p: BASE,
                        both_null, false_supported=(SIGMOID, KAIMING)))  # fmt: skip
        for steps in (1, 2, 4):
            d = steps * STEP
            out.append(Case(f"Sigmoid +{d:g} dec ({steps} step{'s' * (steps > 1)}) everywhere",
                            n, lambda p, d=d: BASE + d * _sigmoid(p),
                            {SIGMOID: [("contradicted", "<=", 0.025)],
                             KAIMING: [("supported", "<=", 0.025)]},
                            false_supported=(KAIMING,)))  # fmt: skip
        out.append(Case("opposite strata (Xavier +0.5, Kaiming -0.5 dec)", n,
                        lambda p: BASE + 0.5 * _sigmoid(p) * (-1 if _kaiming(p) else 1),
                        {SIGMOID: [("supported", "<=", 0.025), ("contradicted", "<=", 0.025)]},
                        false_supported=(SIGMOID,)))  # fmt: skip
        out.append(Case("no effect, Sigmoid's response twice as steep", n, lambda p: BASE,
                        {SIGMOID: [("supported", "<=", 0.025)]},
                        width=lambda p: WIDTH / 2 if _sigmoid(p) else WIDTH,
                        false_supported=(SIGMOID,)))  # fmt: skip
        out.append(Case("no effect, Sigmoid's response half as steep", n, lambda p: BASE,
                        {SIGMOID: [("supported", "<=", 0.025)]},
                        width=lambda p: WIDTH * 2 if _sigmoid(p) else WIDTH,
                        false_supported=(SIGMOID,)))  # fmt: skip
        out.append(Case("no effect, Xavier-Gaussian cells at -0.1 dec (~25% beyond range)", n,
                        lambda p: -0.1 if _edge(p) else BASE,
                        {SIGMOID: [("supported", "<=", 0.025)]},
                        false_supported=(SIGMOID,)))  # fmt: skip
        out.append(Case("Sigmoid +0.5 dec; its Xavier-Gaussian cell at -0.1 (~25% beyond)", n,
                        lambda p: (-0.6 + 0.5 * _sigmoid(p)) if _edge(p)
                        else BASE + 0.5 * _sigmoid(p),
                        {SIGMOID: [("contradicted", "<=", 0.025)]}))  # fmt: skip
    return out + audit_cases()


def _spread(sigmoid: float, relu: float) -> Callable[[dict], float]:
    return lambda p: sigmoid if _sigmoid(p) else relu


def audit_cases() -> list[Case]:
    """Issue 22's frontier shapes: thresholds censored at the range's ends (6), and a stratum
    whose arm is censored entirely (7, the README's real result)."""
    out = []
    both = [("supported", "<=", 0.025), ("contradicted", "<=", 0.025)]
    for n in (6, 10):
        # 6. equal mean thresholds, Sigmoid's seeds 4x as spread, near either end of the range
        for where, mean in (("weak", -3.5), ("strong", -0.5)):
            out.append(Case(f"equal means near the {where} end ({mean:g}), Sigmoid's seeds sd "
                            "0.5, ReLU's 0.1", n, lambda p, m=mean: m,
                            {SIGMOID: both, KAIMING: both}, seed_sd=_spread(0.5, 0.1),
                            false_supported=(SIGMOID, KAIMING),
                            false_contradicted=(SIGMOID, KAIMING), shape="6"))  # fmt: skip
    for n in (3, 6, 10):
        # 7. Xavier-ReLU defeated at the weakest; Sigmoid needs more under Xavier, less under
        # Kaiming: mixed is right, supported and contradicted are errors
        truth = {("xavier", "relu"): -4.6, ("xavier", "sigmoid"): -3.0,
                 ("kaiming", "relu"): -1.5, ("kaiming", "sigmoid"): -2.2}  # fmt: skip
        out.append(Case("Xavier-ReLU below the range; Sigmoid +1.6 under Xavier, -0.7 under "
                        "Kaiming", n,
                        lambda p, t=truth: t[("kaiming" if _kaiming(p) else "xavier",
                                              p["activation"])],
                        {SIGMOID: both}, false_supported=(SIGMOID,),
                        false_contradicted=(SIGMOID,), shape="7"))  # fmt: skip
    # 6, power: a real effect with censoring at the weak end (ReLU's seeds partly below)
    for n in (6, 10):
        out.append(Case("Sigmoid +0.75 dec, ReLU at -3.75 (part below the range)", n,
                        lambda p: -3.75 + 0.75 * _sigmoid(p),
                        {SIGMOID: [("contradicted", "<=", 0.025), ("supported", ">=", 0.5)]},
                        seed_sd=_spread(0.3, 0.3), shape="6"))  # fmt: skip
    return out


def spec_with(seeds: int) -> SweepSpec:
    raw = yaml.safe_load(SPEC.read_text())
    raw["grid"]["seed"] = list(range(seeds))
    return parse_spec(raw, str(SPEC))


def one_sweep(
    case: Case, base: SearchState, rng: np.random.Generator
) -> tuple[SearchState, dict[tuple, tuple[float, float, float]]]:
    """The search driven to its end over the case's response, with fresh draws; and per
    (cell, seed) the truth drawn: (threshold, the sigmoid's centre, its width)."""
    state = replace(base, ran=[], searches={
        cell: CellSearch(s.n, s.target, s.seeds) for cell, s in base.searches.items()
    })  # fmt: skip
    centre: dict[tuple, tuple[float, float, float]] = {}  # (cell, seed) -> (t, c, width)
    for cell in state.cells:
        point = dict(cell.point)
        target, width = state.searches[cell].target, case.width(point)
        for seed in state.keys[cell]:
            t = case.threshold(point) + rng.normal(0.0, case.seed_sd(point))
            c = t - width * math.log((HIGH - LOW) / (target - LOW) - 1.0)  # psnr(t) = target
            centre[(cell, seed)] = (t, c, width)
    while wanted := state.wanted():
        for key in wanted:
            cell, seed, index = state.where[key]
            _, c, width = centre[(cell, seed)]
            x = math.log10(state.strengths[index])
            psnr = LOW + (HIGH - LOW) / (1.0 + math.exp((x - c) / width))
            state.record(key, psnr + rng.normal(0.0, TRIAL_SD))
    return state, centre


def run(case: Case, reps: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    spec = spec_with(case.seeds)
    base = SearchState.of(spec)
    labels = {cell.label(): cell for cell in base.cells}
    case.counts = {claim: {v: 0 for v in VERDICTS} for claim in case.should}
    for _ in range(reps):
        state, truth = one_sweep(case, base, rng)
        thresholds = frontier.seed_thresholds(state)
        for found in frontier.frontier_findings(spec.search, thresholds):
            if found.key in case.counts:
                case.counts[found.key][found.verdict] += 1
        for label, seed, position in thresholds.select("cell", "seed", "position").iter_rows():
            case.thresholds += 1
            if position is None:
                case.censored += 1
            else:
                case.errors.append(position - truth[(labels[label], seed)][0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=100, help="sweeps per case (100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="", help="run only the cases whose name or shape "
                        "contains this (e.g. 'shape 7')")  # fmt: skip
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a row misses its target by more than 3.5 Monte Carlo "
                             "errors or a false decisive share exceeds 10%%")  # fmt: skip
    args = parser.parse_args(argv)
    print(f"frontier findings calibration: {args.reps} synthetic searches per case "
          f"({SPEC.name}: 8 cells, lattice {STEP:g} decade; seed sd {SEED_SD:g} decade, trial "
          f"noise {TRIAL_SD:g} dB); shares of each verdict (sup, con, mix, inc, n/a = not "
          "enough data); per-seed thresholds: share censored; of the others, against each "
          "seed's truth: bias, RMSE (decades), share off by more than 2 steps\n")  # fmt: skip
    print("| claim | case | shape | seeds | reps | sup | con | mix | inc | n/a | should | "
          "MC err | ok | censored | thr bias | thr RMSE | thr off > 2 steps |")  # fmt: skip
    print("|" + "---|" * 17)
    worst, failed, gated = 0.0, 0, 0
    started = time.time()
    for i, case in enumerate(cases()):
        if args.only and args.only not in f"shape {case.shape} {case.name}":
            continue
        run(case, args.reps, args.seed + i)
        errors = np.asarray(case.errors)
        bias = float(errors.mean()) if errors.size else math.nan
        rmse = float(np.sqrt((errors**2).mean())) if errors.size else math.nan
        far = float((np.abs(errors) > 2 * STEP).mean()) if errors.size else math.nan
        thr = (f"{case.censored / max(1, case.thresholds):.1%} | {bias:+.3f} | {rmse:.3f} | "
               f"{far:.1%}")  # fmt: skip
        for claim, should in case.should.items():
            counts = case.counts[claim]
            target, ok = judge_counts(counts, should, args.reps)
            failed += not ok
            gated += not judge_counts(counts, should, args.reps, CHECK_SIGMAS)[1]
            shares = " | ".join(f"{counts[v] / args.reps:.1%}" for v in VERDICTS)
            err = max(mc_error(share, args.reps) for _, _, share in should)
            print(f"| {claim.removeprefix('frontier_')} | {case.name} | {case.shape or '-'} | "
                  f"{case.seeds} | {args.reps} | {shares} | {target} | {err:.1%} | "
                  f"{'yes' if ok else 'NO'} | {thr} |", flush=True)  # fmt: skip
            if claim in case.false_supported:
                worst = max(worst, counts["supported"] / args.reps)
            if claim in case.false_contradicted:
                worst = max(worst, counts["contradicted"] / args.reps)
    return summary(f"{failed} row(s)", worst, started, args.check, gated)


if __name__ == "__main__":
    sys.exit(main())
