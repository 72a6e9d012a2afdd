"""`dlgsweep resume <results>/<sweep>`: rerun the errored and never-finished trials, nothing else.

The trials come from the saved `spec.yaml`; finished rows (`ok`, `diverged`) are left as they
are, byte for byte. Tune's own experiment state is not needed: rows are keyed by `trial_key`.
A sweep another live run holds is refused (exit 2, naming that run); see orchestrator.lease.
"""

from __future__ import annotations

import argparse

from orchestrator.commands.run import add_cluster_args, cluster_kwargs
from orchestrator.sink import SweepStore
from orchestrator.spec import SweepSpec, parse_yaml
from workloads.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resume",
        help="finish a sweep: rerun its errored and missing trials",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("sweep_dir", metavar="DIR", help="<results>/<sweep> (a folder or URI)")
    add_cluster_args(parser)
    parser.set_defaults(func=main)


def saved_spec(store: SweepStore) -> SweepSpec:
    """The sweep's resolved spec.yaml, checked against the folder it lives in."""
    if not store.exists():
        raise UserError(f"DIR {store.uri!r} does not exist; expected <results>/<sweep>")
    text = store.read_spec()
    if text is None:
        raise UserError(f"DIR {store.uri!r} holds no spec.yaml; is it <results>/<sweep>?")
    spec = parse_yaml(text, f"{store.uri}/spec.yaml")
    if spec.name != store.name:
        raise UserError(
            f"name: spec.yaml says {spec.name!r} but the folder is {store.name!r}; "
            "rows go to <results>/<name>, so the two must match"
        )
    return spec


def main(args: argparse.Namespace) -> int:
    from orchestrator.sweep import run_sweep

    store = SweepStore(args.sweep_dir, flag="DIR")
    spec = saved_spec(store)
    results = store.results_uri
    return run_sweep(spec, results, save_spec=False, flag="DIR", **cluster_kwargs(args)).exit_code
