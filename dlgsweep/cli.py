"""`dlgsweep`: the one console script. Each subcommand lives in its own module.

A command module exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Bad input raises `UserError`; it is printed as one line, exit code 2.
Command modules import neither torch nor Ray at import time (`dlgsweep plan` and the readers
stay instant, and work in the base install without `dlgsweep[sweep]`); what needs them imports
it inside the function that runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from dlgsweep.commands import attack, plan, query, report, resume, run, status
from dlgsweep.errors import UserError
from orchestrator.signals import Terminated, terminated

COMMANDS = {
    "attack": attack,
    "plan": plan,
    "run": run,
    "resume": resume,
    "status": status,
    "query": query,
    "report": report,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """Bad flags: one line naming the flag and what it takes, exit code 2 (as argparse)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlgsweep", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMANDS.values():
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(
            f"dlgsweep: error: expected a command: {', '.join(COMMANDS)} (see dlgsweep -h)",
            file=sys.stderr,
        )
        return 2
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"dlgsweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        if terminated(stop):
            print("stopped (SIGTERM)", file=sys.stderr)
            # the lease is released and the hint printed: exit now. Ray's atexit disconnect
            # takes seconds, longer than `ray job stop` waits before its SIGKILL
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(Terminated.exit_code)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
