"""`dlgsweep run SPEC --results DIR|URI`: the sweep on Ray Tune, with progress.

Trials that already have an `ok` (or `diverged`) row under `<results>/<sweep>` are skipped;
failed trials are retried `retries` times, then kept as `error` rows. Exit code 0 when every
trial has a finished row, 1 when some failed (`dlgsweep resume` reruns them), 2 on bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from dlgsweep.errors import UserError
from dlgsweep.extras import require_sweep
from orchestrator import sweep, trackers
from store.spec import load_spec, preset_names


def _count(minimum: int, allowed: str):
    """An argparse type: an integer >= minimum; argparse's error names the flag, this the rule."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            # argparse prefixes "argument --flag: "
            raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected {allowed}")
        return value

    return parse


def _tracker(text: str) -> tuple[str, str | None]:
    """An argparse type for --log (argparse's error names the flag, this the rule)."""
    try:
        return trackers.parse(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cluster_args(parser: argparse.ArgumentParser) -> None:
    """The flags that say which Ray cluster runs the trials (shared by run, resume, plan)."""
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--address",
        help="connect to a running Ray cluster: 'auto' or HOST:PORT (default: $RAY_ADDRESS, "
        "else start a local Ray on this machine)",
    )
    group.add_argument(
        "--num-cpus",
        type=_count(1, "an integer >= 1"),
        help="local cluster only: CPUs to offer",
    )
    group.add_argument(
        "--num-gpus",
        type=_count(0, "an integer >= 0"),
        help="local cluster only: GPUs to offer",
    )
    group.add_argument(
        "--max-concurrent",
        type=_count(1, "an integer >= 1"),
        help="run at most N trials at once (default: what fits)",
    )
    group.add_argument(
        "--require-gpu",
        action="store_true",
        help="keep the spec's GPU request even if no node has a GPU yet (an autoscaling "
        "cluster); by default such a sweep runs on CPU and says so",
    )


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """The flags of a run that are not about the cluster (shared by run and resume)."""
    parser.add_argument(
        "--tune-storage",
        metavar="DIR|URI",
        help="keep Ray Tune's experiment state and per-trial result files there (a folder or "
        "s3:// gs:// URI); by default they stay on the driver's disk, and no dlgsweep command "
        "reads them",
    )
    parser.add_argument(
        "--log",
        action="append",
        type=_tracker,
        metavar="TRACKER",
        help=f"send each trial's config and curve to a tracker, one run per trial: "
        f"{trackers.ALLOWED} (repeatable; W&B reads WANDB_MODE=offline)",
    )
    parser.add_argument(
        "--report-every",
        metavar="N",
        type=_count(1, "an integer >= 1"),
        help="each trial reports its iteration, gradient loss and PSNR so far to Tune every N "
        "attack iterations (default: the spec's report_every, else about 20 reports a trial)",
    )


def sweep_options(args: argparse.Namespace, **more: Any) -> sweep.SweepOptions:
    """The cluster flags (add_cluster_args) as the run's options, plus `more` of its fields."""
    return sweep.SweepOptions(
        address=args.address,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        max_concurrent=args.max_concurrent,
        require_gpu=args.require_gpu,
        tune_storage=getattr(args, "tune_storage", None),
        report_every=getattr(args, "report_every", None),
        log=tuple(getattr(args, "log", None) or ()),
        **more,
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a sweep (a preset or a YAML spec) on Ray Tune",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "spec", help=f"a preset ({', '.join(preset_names())}) or the path of a sweep YAML"
    )
    parser.add_argument(
        "--results",
        default="results",
        help="results root: a folder or an s3:// gs:// URI every node reaches (default: results)",
    )
    add_cluster_args(parser)
    add_run_args(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    require_sweep("run")
    spec = load_spec(args.spec)  # every trial validated before Ray starts
    return sweep.run_sweep(spec, args.results, sweep_options(args)).exit_code
