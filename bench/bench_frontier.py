"""The frontier search against a grid of the same resolution, side by side in one run.

    python bench/bench_frontier.py [--spec docs/specs/noise-frontier-cpu.yaml]
                                   [--results /tmp/bench-frontier] [--num-cpus 2]

Runs the spec's search (`<results>/search`) and then the grid over the same lattice of
strengths (`<results>/grid`: every strength on every seed of every cell), each a real sweep on
local Ray, and prints per cell: the strength the search found, the grid's crossing (the
weakest lattice strength whose seeds' mean score is below the target, read from the grid's
rows alone), the distance in lattice steps, and the trials each used. Both sweeps are
resumable: rerun the command to finish an interrupted bench (rows already there are kept,
so a rerun's wall times count only what it ran).

Targets (issue 17): the searched strength within one grid step of the grid's crossing in at
least 90% of cells, with at least 3x fewer trials.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.sweep import run_sweep  # noqa: E402
from store.replay import SearchState  # noqa: E402
from store.search import search_space  # noqa: E402
from store.spec import load_spec  # noqa: E402
from store.sweep_store import SweepStore  # noqa: E402


def grid_crossing(state: SearchState, cell, scores: dict[str, float | None]) -> int | None:
    """The first lattice index whose seeds' mean score is below the cell's target."""
    target = state.searches[cell].target
    for index in range(len(state.strengths)):
        values = [scores.get(row[index]) for row in state.keys[cell].values()]
        values = [v for v in values if v is not None]
        if values and sum(values) / len(values) < target:
            return index
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "docs/specs/noise-frontier-cpu.yaml"))
    parser.add_argument("--results", default="/tmp/bench-frontier")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()

    spec = load_spec(args.spec)
    if spec.search is None:
        parser.error(f"{args.spec} has no search: section")
    grid_spec = replace(search_space(spec), name=f"{spec.name}-grid")
    seconds = {}
    for label, sweep in (("search", spec), ("grid", grid_spec)):
        started = time.monotonic()
        run_sweep(sweep, f"{args.results}/{label}", num_cpus=args.num_cpus)
        seconds[label] = time.monotonic() - started

    score = spec.search.score
    state = SweepStore(f"{args.results}/search/{spec.name}").search_state(spec)
    grid_scores = SweepStore(f"{args.results}/grid/{grid_spec.name}").scores(score)
    assert state.done(), "the search did not finish: rerun the bench to resume it"

    span = f"{state.strengths[0]:g}..{state.strengths[-1]:g}"
    print(f"\n{spec.name}: {len(state.cells)} cells, {len(state.strengths)} strengths of "
          f"{spec.search.axis} ({spec.search.scale}, {span}), "
          f"target {state.searches[state.cells[0]].target:.2f} dB ({score})\n")  # fmt: skip
    print("| cell | search: outcome | search: strength | grid: crossing | steps apart | "
          "search trials | grid trials |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    within = used = grid_used = 0
    for cell, frontier in zip(state.cells, state.frontiers()):
        first = grid_crossing(state, cell, grid_scores)
        if frontier["outcome"] == "not defeated in range":
            found = len(state.strengths)  # past the range, as the grid's None
        else:
            found = state.strengths.index(frontier["strength"])
        grid_at = len(state.strengths) if first is None else first
        apart = abs(found - grid_at)
        within += apart <= 1
        cell_grid = len(state.strengths) * len(state.keys[cell])
        used += frontier["trials"]
        grid_used += cell_grid
        shown = "-" if frontier["strength"] is None else f"{frontier['strength']:g}"
        crossing = "none in range" if first is None else f"{state.strengths[first]:g}"
        print(f"| {cell.label()} | {frontier['outcome']} | {shown} | {crossing} | {apart} | "
              f"{frontier['trials']} | {cell_grid} |")  # fmt: skip
    n = len(state.cells)
    print(f"\nwithin one grid step: {within} of {n} cells ({within / n:.0%}; target >= 90%)")
    print(f"trials: search {used}, grid {grid_used}: {grid_used / max(1, used):.1f}x fewer "
          f"(target >= 3x)")  # fmt: skip
    print(f"wall: search {seconds['search']:.0f} s, grid {seconds['grid']:.0f} s "
          f"(this run; rows already present were not rerun)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
