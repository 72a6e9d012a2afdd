"""`dlgsweep`: the one console script. Each subcommand lives in its own module.

A module in COMMANDS exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int`. Bad input raises `UserError`; it is printed as one line, exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from workloads.errors import UserError

# subcommand -> module that implements it (imported lazily: `dlgsweep plan` needs no torch)
COMMANDS: dict[str, str] = {
    "attack": "orchestrator.commands.attack",
    "plan": "orchestrator.commands.plan",
    "run": "orchestrator.commands.run",
    "resume": "orchestrator.commands.resume",
    "status": "orchestrator.commands.status",
    "query": "analysis.commands.query",
    "report": "analysis.commands.report",
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:
        """Bad flags: one line naming the flag and what it takes, exit code 2 (as argparse)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    parser = _Parser(prog="dlgsweep", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in names or list(COMMANDS):
        importlib.import_module(COMMANDS[name]).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(
            f"dlgsweep: error: expected a command: {', '.join(COMMANDS)} (see dlgsweep -h)",
            file=sys.stderr,
        )
        return 2
    # import only the module the user asked for, so a broken optional part can't break the rest
    wanted = [argv[0]] if argv and argv[0] in COMMANDS else None
    args = build_parser(wanted).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"dlgsweep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
