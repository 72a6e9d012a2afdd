"""SIGTERM as Ctrl-C: how `ray job stop`, `kill`, Slurm's `scancel` and Kubernetes stop a driver.

`ray job stop` sends SIGTERM to the job's entrypoint and its children, waits
RAY_JOB_STOP_WAIT_TIME_S (default 3 s), then sends SIGKILL. `ray.init` installs a handler that
calls `sys.exit(15)`; ours raises `Terminated` instead, a KeyboardInterrupt, so a stopped run
unwinds exactly as an interrupted one: finished rows kept, the lease released, the resume hint
printed. The CLI exits 143 (128 + SIGTERM), as a shell reports a process ended by SIGTERM.

Ray's core worker turns an exception raised by a signal handler during `ray.get`/`ray.wait` into
a plain KeyboardInterrupt, so what ended a run is told by `terminated()` (a flag the handler
sets), not by the exception's type alone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM received; unwound as Ctrl-C is, exit code 143."""

    exit_code = 143


_RECEIVED = threading.Event()


def terminated(stop: BaseException | None = None) -> bool:
    """Whether SIGTERM (rather than Ctrl-C) ended the run."""
    return isinstance(stop, Terminated) or _RECEIVED.is_set()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _RECEIVED.set()
    # once: a second SIGTERM while unwinding would cut the lease's release short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def arm() -> None:
    """(Re)install the handler; `ray.init` replaces it, so the sweep calls this after connecting.
    Signal handlers live in the main thread only: elsewhere this does nothing."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises Terminated inside the block; the previous handler is back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    _RECEIVED.clear()
    arm()
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
