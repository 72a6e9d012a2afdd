"""A path a command must write that cannot take the output: one line naming the option, exit 2,
before any work and with nothing written (issue 23: `run --tune-storage FILE` was pyarrow's
NotADirectoryError from inside Ray, `attack --out FILE` a FileExistsError after the attack).

Every option that names a local output (`dlgsweep.cli.OUTPUTS`) and `--tune-storage` is tried
with a file where a folder goes, a folder where a file goes, and a path under a file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest

from dlgsweep.cli import OUTPUTS, build_parser, main


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# id -> (argv, words the one line must hold); {file} is an existing file, {tmp} the temp folder
CASES = {
    "run-tune-storage-is-a-file": (
        ["run", "{spec}", "--results", "{tmp}/r", "--tune-storage", "{file}"],
        ["--tune-storage", "is a file", "expected a folder"],
    ),
    "run-tune-storage-under-a-file": (
        ["run", "{spec}", "--results", "{tmp}/r", "--tune-storage", "{file}/tune"],
        ["--tune-storage", "cannot create", "{file}/tune"],
    ),
    "attack-out-is-a-file": (
        ["attack", "--iterations", "1", "--out", "{file}"],
        ["--out", "is a file", "expected a folder"],
    ),
    "attack-out-under-a-file": (
        ["attack", "--iterations", "1", "--out", "{file}/deeper/out"],
        ["--out", "sits under", "a file"],
    ),
    "report-out-is-a-file": (
        ["report", "{tmp}/nowhere", "--out", "{file}"],
        ["--out", "is a file", "expected a folder"],
    ),
    "query-out-is-a-folder": (
        ["query", "{tmp}", "SELECT 1", "--out", "{tmp}"],
        ["--out", "is a folder", "expected a file"],
    ),
    "query-out-under-a-file": (
        ["query", "{tmp}", "SELECT 1", "--out", "{file}/x.csv"],
        ["--out", "sits under", "a file"],
    ),
    "run-results-is-a-file": (
        ["run", "{spec}", "--results", "{file}"],
        ["--results", "cannot create", "{file}"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_output_path_that_cannot_be_written_exits_2_naming_the_option(
    case, tiny_spec, tmp_path, capsys, monkeypatch
):
    _, spec = tiny_spec("bad")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    argv, expected = CASES[case]
    fill = {"spec": str(spec), "tmp": str(tmp_path), "file": str(blocker)}
    before = _files(tmp_path)
    started = time.monotonic()
    assert main([a.format(**fill) for a in argv]) == 2
    assert time.monotonic() - started < 30  # refused before any attack or Ray start
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in expected:
        assert word.format(**fill) in err, err
    assert _files(tmp_path) == before  # nothing written, nothing lost


def test_every_out_option_is_checked():
    """A command that grows an `--out` is in OUTPUTS, so the check covers the whole class."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    outs = {
        (name, action.dest)
        for name, command in sub.choices.items()
        for action in command._actions
        if action.dest == "out"
    }
    assert outs and outs <= set(OUTPUTS), outs - set(OUTPUTS)
