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
from pathlib import Path

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

# local paths a command writes: (command, option dest) -> "folder" (written into, created if
# absent) or "file"; checked before the command runs, so a path that cannot take the output is
# one line naming the option (exit 2) instead of a traceback after the work is done
OUTPUTS = {("attack", "out"): "folder", ("report", "out"): "folder", ("query", "out"): "file"}


def check_output(flag: str, value: str, kind: str) -> None:
    """UserError naming `flag` when `value` cannot be the output `kind` ("folder" or "file")."""
    path = Path(value).expanduser()
    wanted = "a folder (created if absent)" if kind == "folder" else "a file path"
    if kind == "folder" and path.exists() and not path.is_dir():
        raise UserError(f"{flag}: {value!r} is a file; expected {wanted}")
    if kind == "file" and path.is_dir():
        raise UserError(f"{flag}: {value!r} is a folder; expected {wanted}")
    parent = path if kind == "folder" else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{flag}: {value!r} sits under {str(parent)!r}, a file; expected {wanted}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{flag}: {value!r}: {str(parent)!r} is not writable; expected {wanted}")


def _check_outputs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    sub = next(
        a
        for a in parser._actions
        if isinstance(a, argparse._SubParsersAction)  # noqa: SLF001
    ).choices[args.command]
    for (command, dest), kind in OUTPUTS.items():
        value = getattr(args, dest, None) if command == args.command else None
        if value:
            flag = next(a.option_strings[-1] for a in sub._actions if a.dest == dest)  # noqa: SLF001
            check_output(flag, value, kind)


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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _check_outputs(args, parser)
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
