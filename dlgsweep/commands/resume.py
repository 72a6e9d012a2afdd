"""`dlgsweep resume <results>/<sweep>`: rerun the errored and never-finished trials, nothing else.

The trials come from the saved `spec.yaml` (`SweepStore.saved_spec`); finished rows (`ok`,
`diverged`) are left as they are, byte for byte, and only the trials to run are built as
configs. Tune's own experiment state is not needed: rows are keyed by `trial_key`. A sweep
another live run holds is refused (exit 2, naming that run); see orchestrator.lease.
"""

from __future__ import annotations

import argparse

from dlgsweep.commands.run import add_cluster_args, add_run_args, sweep_options
from dlgsweep.extras import require_sweep
from orchestrator import sweep
from store.sweep_store import SweepStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resume",
        help="finish a sweep: rerun its errored and missing trials",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("sweep_dir", metavar="DIR", help="<results>/<sweep> (a folder or URI)")
    add_cluster_args(parser)
    add_run_args(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    store = SweepStore(args.sweep_dir, flag="DIR")
    spec = store.saved_spec()  # before the extra: a wrong folder is the first thing to say
    require_sweep("resume")
    options = sweep_options(args, save_spec=False, flag="DIR")
    return sweep.run_sweep(spec, store.results_uri, options).exit_code
