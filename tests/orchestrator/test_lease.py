"""The sweep lease: one live run per sweep, a second refused naming the first, stale leases of
killed drivers taken over (same host: the pid is gone; another host: the heartbeat is old)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time

import pyarrow.fs as pafs
import pytest

from dlgsweep.cli import main
from orchestrator import lease as lease_module
from orchestrator.lease import SweepBusy, SweepLease, read_holder
from store.sweep_store import SweepStore


def _holder(**changes) -> dict:
    holder = {
        "run": "old-run", "host": socket.gethostname(), "pid": os.getpid(),
        "command": "dlgsweep run demo", "started_at": "2026-01-01T00:00:00+00:00",
        "heartbeat": time.time(), "pid_start": "",
    }  # fmt: skip
    holder.update(changes)
    return holder


def _plant(tmp_path, **changes) -> SweepStore:
    store = SweepStore(str(tmp_path / "s"))
    (tmp_path / "s").mkdir(exist_ok=True)
    (tmp_path / "s" / ".lock").write_text(json.dumps(_holder(**changes)))
    return store


def test_a_second_run_is_refused_naming_the_first(tmp_path):
    store = SweepStore(str(tmp_path / "s"))
    with SweepLease(store, "dlgsweep run demo") as first:
        holder = read_holder(store)
        assert holder is not None and holder.run == first.run and holder.pid == os.getpid()
        with pytest.raises(SweepBusy) as busy:
            SweepLease(store, "dlgsweep resume s").acquire()
        message = str(busy.value)
        assert socket.gethostname() in message and f"pid {os.getpid()}" in message
        assert holder.started_at in message and "dlgsweep run demo" in message
    assert read_holder(store) is None  # released
    with SweepLease(store, "again"):
        pass


def _race(store: SweepStore, racers: int) -> list[SweepLease]:
    """`racers` runs try to take the lease at the same instant; the ones that got it."""
    start = threading.Barrier(racers)
    won: list[SweepLease] = []
    errors: list[BaseException] = []

    def race(i: int) -> None:
        lease = SweepLease(store, f"racer {i}", warn=lambda *_: None)
        start.wait()
        try:
            lease.acquire()
            won.append(lease)
        except SweepBusy:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return won


def test_runs_released_at_the_same_instant_never_both_hold_the_lease(tmp_path):
    """The create-if-absent step, raced: 4 acquirers released together, 200 times, exactly one
    holds the lease each time and it is the one in .lock. A check-then-write (read the holder,
    then write the lease) in place of the atomic create lets two through (checked: it fails)."""
    doubles = []
    for round_ in range(200):
        store = SweepStore(str(tmp_path / f"s{round_}"))
        won = _race(store, racers=4)
        try:
            if len(won) != 1:
                doubles.append((round_, len(won)))
            holder = read_holder(store)
            assert holder is not None and holder.run in {lease.run for lease in won}
        finally:
            for lease in won:
                lease.release()
    assert doubles == [], f"rounds with other than one holder: {doubles}"


def test_a_dead_drivers_lease_on_this_host_is_taken_over_at_once(tmp_path):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its pid is free now
    store = _plant(tmp_path, pid=gone.pid, heartbeat=time.time())
    warnings: list[str] = []
    with SweepLease(store, "resume", warn=warnings.append) as taken:
        assert read_holder(store).run == taken.run
    assert any("stale lease" in w and f"pid {gone.pid}" in w for w in warnings)


def test_a_reused_pid_is_not_the_driver(tmp_path):
    """Same pid, other process start time: the driver is gone (pid reuse)."""
    store = _plant(tmp_path, pid=os.getpid(), pid_start="1")
    with SweepLease(store, "resume", warn=lambda _: None) as taken:
        assert read_holder(store).run == taken.run


def test_another_hosts_lease_is_stale_only_without_heartbeat(tmp_path, monkeypatch):
    store = _plant(tmp_path, host="gpu-head-7", pid=1, heartbeat=time.time() - 5)
    with pytest.raises(SweepBusy, match="gpu-head-7"):
        SweepLease(store, "resume").acquire()
    monkeypatch.setenv("DLGSWEEP_LEASE_STALE_S", "3")
    with SweepLease(store, "resume", warn=lambda _: None) as taken:
        assert read_holder(store).run == taken.run


def test_the_holder_beats_and_notices_losing_the_lease(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_module, "HEARTBEAT_S", 0.05)
    store = SweepStore(str(tmp_path / "s"))
    warnings: list[str] = []
    held = SweepLease(store, "run", warn=warnings.append)
    held.acquire()
    try:
        first = read_holder(store).heartbeat
        time.sleep(0.4)
        assert read_holder(store).heartbeat > first
        (tmp_path / "s" / ".lock").write_text(json.dumps(_holder(run="intruder", host="x")))
        for _ in range(100):
            if held.lost:
                break
            time.sleep(0.05)
        assert held.lost and any("lost its lease" in w for w in warnings)
    finally:
        held.release()
    assert read_holder(store).run == "intruder"  # not ours: left alone


def test_generic_filesystems_write_then_verify(tmp_path, monkeypatch):
    """No create-if-absent (a SubTreeFileSystem stands for gs:// and the like)."""
    monkeypatch.setattr(lease_module, "SETTLE_S", 0.05)
    subtree = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    store = SweepStore("results/s", filesystem=subtree)
    with SweepLease(store, "run"):
        with pytest.raises(SweepBusy):
            SweepLease(SweepStore("results/s", filesystem=subtree), "resume").acquire()
    assert read_holder(store) is None


@pytest.mark.parametrize("command", ["run", "resume"])
def test_cli_refuses_a_held_sweep_and_writes_nothing(tmp_path, tiny_spec, command, capsys):
    spec, path = tiny_spec("held")
    results = tmp_path / "results"
    store = SweepStore.of(str(results), "held")
    if command == "resume":
        store.check_writable()
        store.save_spec(spec.to_yaml())
    argv = {"run": ["run", str(path), "--results", str(results)],
            "resume": ["resume", str(results / "held")]}[command]  # fmt: skip
    with SweepLease(store, "dlgsweep run held"):
        before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
        assert main([*argv, "--num-cpus", "1"]) == 2
        err = capsys.readouterr().err
        assert "is being run by" in err and f"pid {os.getpid()}" in err
        assert {p: p.read_bytes() for p in results.rglob("*") if p.is_file()} == before


def test_a_torn_lease_file_blocks_nobody(tmp_path):
    store = SweepStore(str(tmp_path / "s"))
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / ".lock").write_bytes(b'{"run": "half')  # a writer killed mid-write
    with SweepLease(store, "run") as taken:
        assert read_holder(store).run == taken.run
