"""`dlgsweep plan SPEC`: what a sweep will cost before anything starts.

The argparse front of `orchestrator.plan.plan` (the trial count, the cost model and the ETA).
"""

from __future__ import annotations

import argparse

from dlgsweep.commands.run import add_cluster_args
from orchestrator.plan import plan
from store.spec import preset_names


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plan", help="trial count, resources, FLOPs and ETA of a sweep, before launch",
        description=__doc__.splitlines()[0],
    )  # fmt: skip
    parser.add_argument(
        "spec", help=f"a preset ({', '.join(preset_names())}) or the path of a sweep YAML"
    )
    parser.add_argument(
        "--results",
        metavar="DIR",
        help="a previous sweep's results (a results folder or one sweep's): its measured "
        "seconds per iteration replace the FLOP model for the same model, batch and device",
    )
    add_cluster_args(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    lines = plan(
        args.spec,
        results=args.results,
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        max_concurrent=args.max_concurrent,
    )
    for line in lines:
        print(line)
    return 0
