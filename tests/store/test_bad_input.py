"""Bad results paths and cluster addresses: exit code 2, one line naming the flag and what is
allowed, nothing written, and no wait (a dead --address is answered in seconds, not minutes)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from dlgsweep.cli import main


def _dead_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


CASES = {
    "run-unknown-scheme": (["run", "{spec}", "--results", "foo://x"], ["--results", "'foo'", "s3://"]),
    "run-cannot-create": (["run", "{spec}", "--results", "/dev/null/x"],
                          ["--results", "cannot create", "/dev/null/x"]),
    "run-dead-address": (["run", "{spec}", "--results", "{tmp}/r", "--address", "127.0.0.1:{port}"],
                         ["--address", "nothing answers", "127.0.0.1:{port}", "'auto'"]),
    "plan-dead-address": (["plan", "{spec}", "--address", "127.0.0.1:{port}"],
                          ["--address", "nothing answers", "HOST:PORT"]),
    "plan-dead-ray-address": (["plan", "{spec}", "--address", "ray://127.0.0.1:{port}"],
                              ["--address", "nothing answers"]),
    "status-unknown-scheme": (["status", "foo://x/s"], ["DIR", "'foo'", "gs://"]),
    "resume-unknown-scheme": (["resume", "foo://x/s"], ["DIR", "'foo'"]),
    "resume-cannot-read": (["resume", "/dev/null/x"], ["DIR", "does not exist"]),
    "query-unknown-scheme": (["query", "foo://x", "SELECT 1"], ["results", "'foo'", "s3://"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_store_input_exits_2_naming_the_flag(case, tiny_spec, tmp_path, capsys, monkeypatch):
    _, spec = tiny_spec("bad")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    port = _dead_port()
    argv, expected = CASES[case]
    fill = {"spec": str(spec), "tmp": str(tmp_path), "port": str(port)}
    before = _files(tmp_path)
    started = time.monotonic()
    assert main([a.format(**fill) for a in argv]) == 2
    assert time.monotonic() - started < 30  # no hang on a dead address
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for word in expected:
        assert word.format(**fill) in err, err
    assert _files(tmp_path) == before  # nothing written
