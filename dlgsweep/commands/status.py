"""`dlgsweep status <results>/<sweep> [--json]`: finished / failed / missing, errors grouped.

Counts are over the trials of the saved spec.yaml; files that cannot be read as trial rows
(half-written, corrupt, foreign) are never counted, only listed. Reads four columns (trial_key,
status, error and finished_at, which picks one row per trial) of the sweep's row and part files.
"""

from __future__ import annotations

import argparse
import json
import shlex

from store.status import STATUS_ORDER, sweep_status
from store.sweep_store import SweepStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="counts by status, missing trials, errors grouped", description=__doc__
    )
    parser.add_argument("sweep_dir", metavar="DIR", help="<results>/<sweep> (a folder or URI)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"ok", "diverged", "error", "missing", "total"} as JSON',
    )
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from orchestrator.lease import describe_live

    store = SweepStore(args.sweep_dir, flag="DIR")
    status = sweep_status(store)
    if args.json:
        print(json.dumps(status.as_json()))
        return 0
    print(f"sweep {store.name} at {store.uri}: {status.total} trials")
    live = describe_live(store)
    if live:
        print(f"  ({live})")
    if not status.spec_found:
        print("  (no spec.yaml: counting the rows present; nothing can be called missing)")
    for name in STATUS_ORDER:
        print(f"  {name:<9}{status.counts.get(name, 0):>6}")
    print(f"  {'missing':<9}{len(status.missing):>6}")
    if status.errors:
        print(f"errors ({sum(n for _, n in status.errors)}), grouped by message:")
        for message, count in status.errors:
            print(f"  {count:>4} x  {message}")
    if status.extra:
        print(f"{status.extra} rows belong to trials no longer in spec.yaml (not counted)")
    if status.skipped:
        print(f"{len(status.skipped)} files under trials/ are not readable rows (not counted):")
        for line in status.skipped[:10]:
            print(f"  {line}")
    if status.missing or status.errors:
        print(f"finish with: dlgsweep resume {shlex.quote(store.uri)}")
    return 0
