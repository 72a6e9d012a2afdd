"""One live run per sweep: a lease file `<results>/<sweep>/.lock` with a heartbeat.

`dlgsweep run` and `resume` take the lease before they plan and hold it until they return; a
second run of the same sweep is refused (exit 2) with the holder's host, pid, command and start
time. Taking it is a create-if-absent of the lease file, checked again after writing:

- local disk / NFS: the lease is written to a temp name, then `link(2)`ed to `.lock`, which
  fails if `.lock` exists (atomic on local filesystems and NFSv3+);
- S3 (and S3-compatible stores that implement it: MinIO, R2, moto): a PUT with
  `If-None-Match: *` through boto3, which fails with 412 if the object exists;
- any other pyarrow filesystem (gs://, ...): write if absent, wait SETTLE_S, read back; the
  last writer wins and the other one backs off.

The holder rewrites the lease every HEARTBEAT_S seconds and checks it still holds it. A lease
is stale, and taken over, when its holder is gone: on the same host, its pid is no longer that
process (pid and process start time); on another host, its heartbeat is older than
STALE_S (`DLGSWEEP_LEASE_STALE_S`, default 120 s; clocks must agree to well within that). So a
driver killed with SIGKILL blocks nobody on its own machine and others for at most STALE_S.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs

import pyarrow as pa

from dlgsweep.errors import UserError
from orchestrator import Say
from store.sweep_store import SweepStore
from store.uri import join, split_query

LEASE = ".lock"
HEARTBEAT_S = 15.0
STALE_S = 120.0
SETTLE_S = 2.0


class SweepBusy(UserError):
    """Another live run holds the sweep."""


@dataclass
class Holder:
    run: str
    host: str
    pid: int
    command: str
    started_at: str  # ISO 8601, UTC
    heartbeat: float  # time.time() of the last beat
    pid_start: str = ""  # the process's start time in clock ticks (Linux), against pid reuse

    def describe(self) -> str:
        age = max(0.0, time.time() - self.heartbeat)
        return (
            f"`{self.command}` on host {self.host}, pid {self.pid}, started {self.started_at} "
            f"(last heartbeat {age:.0f} s ago)"
        )


def _process_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _alive(pid: int, started: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return not started or not _process_start(pid) or _process_start(pid) == started


def stale_after() -> float:
    return float(os.environ.get("DLGSWEEP_LEASE_STALE_S", STALE_S))


def is_stale(holder: Holder) -> bool:
    """The holder is gone: its process (same host), or its heartbeat (another host)."""
    if holder.host == socket.gethostname():
        return not _alive(holder.pid, holder.pid_start)
    return time.time() - holder.heartbeat > stale_after()


class SweepLease:
    """`with SweepLease(store, "dlgsweep run demo"):` ... the run ... (released on exit)."""

    def __init__(self, store: SweepStore, command: str, warn: Say = print):
        self.store, self.command, self.warn = store, command, warn
        self.path = join(store.path, LEASE)
        self.me = Holder(
            run=f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}",
            host=socket.gethostname(),
            pid=os.getpid(),
            command=command,
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            heartbeat=time.time(),
            pid_start=_process_start(os.getpid()),
        )
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def run(self) -> str:
        return self.me.run

    def __enter__(self) -> SweepLease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # -- the protocol ---------------------------------------------------------------------------

    def acquire(self) -> None:
        self.store.fs.create_dir(self.store.path, recursive=True)
        for _ in range(3):  # a stale lease is broken at most a few times, then we give up
            holder = read_holder(self.store)
            if holder is not None and not is_stale(holder):
                raise self._busy(holder)
            if holder is not None:
                self.warn(f"[dlgsweep] taking over the stale lease of {holder.describe()}")
                self._break(holder)
            if self._create():
                break
            if read_holder(self.store) is None:  # there, but not a lease (a torn write): gone
                try:
                    self.store.fs.delete_file(self.path)
                except (OSError, pa.ArrowException):
                    pass
        else:
            raise self._busy(read_holder(self.store))
        self._verify_after(SETTLE_S if self._backend() == "generic" else 0.0)
        self._thread = threading.Thread(target=self._beat, name="dlgsweep-lease", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        holder = read_holder(self.store)
        if holder is not None and holder.run == self.me.run:
            try:
                self.store.fs.delete_file(self.path)
            except (OSError, pa.ArrowException):
                pass

    def _busy(self, holder: Holder | None) -> SweepBusy:
        who = holder.describe() if holder else "another run"
        return SweepBusy(
            f"sweep {self.store.name!r} is being run by {who}; wait for it to finish or stop "
            f"it (a killed run's lease is taken over: at once on its own host, after "
            f"{stale_after():.0f} s without heartbeat from another); lease: "
            f"{join(self.store.uri.split('?')[0], LEASE)}"
        )

    def _verify_after(self, settle: float) -> None:
        if settle:
            time.sleep(settle)
        holder = read_holder(self.store)
        if holder is None or holder.run != self.me.run:
            raise self._busy(holder)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                holder = read_holder(self.store)
                if holder is None or holder.run != self.me.run:
                    self.lost = True
                    self.warn(
                        "[dlgsweep] warning: this run lost its lease on the sweep to "
                        f"{holder.describe() if holder else 'nobody'}; finished rows stay "
                        "safe (workers never replace one)"
                    )
                    return
                self.me.heartbeat = time.time()
                self._write()
            except (OSError, pa.ArrowException) as exc:  # a storage hiccup: try next beat
                self.warn(f"[dlgsweep] lease heartbeat failed: {exc}")

    # -- storage backends ---------------------------------------------------------------------

    def _backend(self) -> str:
        if self.store.local:
            return "local"
        if type(self.store.fs).__name__ == "S3FileSystem" and _boto3() is not None:
            return "s3"
        return "generic"

    def _payload(self) -> bytes:
        return json.dumps(asdict(self.me)).encode()

    def _create(self) -> bool:
        """Create the lease if absent; False if someone holds it."""
        backend = self._backend()
        if backend == "local":
            temp = f"{self.path}.{self.me.run}.tmp"
            with open(temp, "wb") as handle:
                handle.write(self._payload())
            try:
                os.link(temp, self.path)
                return True
            except FileExistsError:
                return False
            except OSError:  # no hard links here (some FUSE/SMB mounts): O_EXCL instead
                return _create_exclusive(self.path, self._payload())
            finally:
                os.unlink(temp)
        if backend == "s3":
            created = _s3_put_if_absent(self.store, self.path, self._payload())
            if created is not None:
                return created
        if read_holder(self.store) is not None:
            return False
        self._write()
        return True

    def _write(self) -> None:
        if self.store.local:
            temp = f"{self.path}.{self.me.run}.tmp"
            with open(temp, "wb") as handle:
                handle.write(self._payload())
            os.replace(temp, self.path)
            return
        with self.store.fs.open_output_stream(self.path) as stream:
            stream.write(self._payload())

    def _break(self, stale: Holder) -> None:
        """Remove a stale lease, unless it changed since we read it."""
        if self.store.local:
            aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(self.path, aside)  # one taker wins the rename
            except FileNotFoundError:
                return
            moved = _parse(open(aside, "rb").read())
            if moved is not None and moved.run != stale.run:  # a live lease: put it back
                try:
                    os.link(aside, self.path)
                except FileExistsError:
                    pass
            os.unlink(aside)
            return
        current = read_holder(self.store)
        if current is not None and current.run == stale.run:
            try:
                self.store.fs.delete_file(self.path)
            except (OSError, pa.ArrowException):
                pass


def _create_exclusive(path: str, data: bytes) -> bool:
    try:
        handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    return True


def read_holder(store: SweepStore) -> Holder | None:
    """The live (or stale) run's lease, None when there is none."""
    path = join(store.path, LEASE)
    try:
        with store.fs.open_input_stream(path) as stream:
            return _parse(stream.read())
    except (OSError, pa.ArrowException):
        return None


def _parse(data: bytes) -> Holder | None:
    try:
        return Holder(**json.loads(data.decode()))
    except (ValueError, TypeError):
        return None  # half a lease (a writer killed mid-write on a generic store): stale


def _boto3():  # noqa: ANN202
    try:
        import boto3
    except ImportError:
        return None
    return boto3


def s3_client_options(uri: str) -> dict[str, str]:
    """boto3 client options from an s3:// URI's query (endpoint_override, scheme, region)."""
    query = parse_qs(split_query(uri)[1])
    first = {key: values[0] for key, values in query.items()}
    options = {}
    if "endpoint_override" in first:
        endpoint = first["endpoint_override"]
        if "://" not in endpoint:
            endpoint = f"{first.get('scheme', 'https')}://{endpoint}"
        options["endpoint_url"] = endpoint
    if "region" in first:
        options["region_name"] = first["region"]
    if "access_key" in first and "secret_key" in first:
        options["aws_access_key_id"] = first["access_key"]
        options["aws_secret_access_key"] = first["secret_key"]
    return options


def _s3_put_if_absent(store: SweepStore, path: str, data: bytes) -> bool | None:
    """True: created; False: it exists; None: the store does not do conditional PUTs."""
    from botocore.exceptions import ClientError

    bucket, key = path.split("/", 1)
    client = _boto3().client("s3", **s3_client_options(store.uri))
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
        return True
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
            return False
        if code == "NotImplemented" or status == 501:
            return None
        raise


def describe_live(store: SweepStore) -> str | None:
    """'run by ...' for `status`, when a live run holds the sweep."""
    holder = read_holder(store)
    if holder is None:
        return None
    return ("stale lease of " if is_stale(holder) else "live run: ") + holder.describe()
