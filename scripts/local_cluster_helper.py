"""Helpers for scripts/local_cluster_e2e.sh: ports, config rendering, tagged-process cleanup.

Subcommands:
  ports   pick a free port slot on this host; prints `export NAME=value` lines (--list: the
          ports of every slot, as JSON)
  render  turn orchestrator/cluster/local.yaml into the config the e2e brings up on loopback
  kill    end every process carrying DLGSWEEP_E2E_TAG=<tag> in its environment (plus the given
          pids and their descendants), TERM then KILL; never this process or its ancestors
  wait    poll the dashboard's state API until exactly the given node IPs are alive
  authcheck  the job API refuses a request without the token (401) and with a wrong one (403),
          and answers one with the token (200)
  probe   (run inside a Ray job) one task pinned to each alive node imports the package there:
          from the node's venv (the shipped wheel), with token auth on
  check   assert on `dlgsweep status --json` output and the trial rows of one sweep; with
          --kill-record, also what the node's loss cost (trials rerun, attack seconds lost)
  nodekill  a spot reclaim of one node: SIGKILL every process of that node (the tagged processes
          whose HOME is the node's home, and their descendants), by pid, once a trial is
          mid-attack there (or once a marker file appears: the test hook in store/sweep_store.py
          that holds a compaction)
  midcompact  the sweep folder as a crash mid-compaction leaves it: a part file written, the row
          files it merged still there (rows twice)

Every process the e2e cluster starts descends from an SSH session of the e2e's own sshd, whose
`SetEnv` puts DLGSWEEP_E2E_TAG into the environment, so the tag finds exactly those processes
(Ray daemonises, so the process tree alone does not).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sys
import time
from pathlib import Path

import yaml

# Port plan, from the ranges this project's helpers agreed on: GCS 6500-6549, dashboard
# 8500-8549, object/node manager and other Ray ports 6550-6599, worker ports 21000-21999.
SLOTS = 3
MISC_PER_SLOT = 15
WORKER_PORTS_PER_SLOT = 330


def slot_ports(slot: int) -> dict[str, int]:
    """All ports one e2e cluster uses when it runs in `slot`."""
    misc = 6550 + MISC_PER_SLOT * slot
    workers = 21000 + WORKER_PORTS_PER_SLOT * slot
    half = WORKER_PORTS_PER_SLOT // 2
    return {
        "SSH_PORT": 2222 + slot,
        "GCS_PORT": 6500 + slot,
        "DASHBOARD_PORT": 8500 + slot,
        "HEAD_OBJECT_MANAGER_PORT": misc,
        "HEAD_NODE_MANAGER_PORT": misc + 1,
        "HEAD_CLIENT_SERVER_PORT": misc + 2,
        "HEAD_AGENT_LISTEN_PORT": misc + 3,
        "HEAD_AGENT_GRPC_PORT": misc + 4,
        "HEAD_RUNTIME_ENV_PORT": misc + 5,
        "HEAD_METRICS_PORT": misc + 6,
        "WORKER_OBJECT_MANAGER_PORT": misc + 7,
        "WORKER_NODE_MANAGER_PORT": misc + 8,
        "WORKER_AGENT_LISTEN_PORT": misc + 9,
        "WORKER_AGENT_GRPC_PORT": misc + 10,
        "WORKER_RUNTIME_ENV_PORT": misc + 11,
        "WORKER_METRICS_PORT": misc + 12,
        "HEAD_MIN_WORKER_PORT": workers,
        "HEAD_MAX_WORKER_PORT": workers + half - 1,
        "WORKER_MIN_WORKER_PORT": workers + half,
        "WORKER_MAX_WORKER_PORT": workers + WORKER_PORTS_PER_SLOT - 1,
    }


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as Ray's servers do: a port whose last connections sit in TIME_WAIT is free to reuse
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def cmd_ports(args: argparse.Namespace) -> int:
    if args.list:  # the port plan itself, every slot (tests/orchestrator/test_cluster_config.py)
        print(json.dumps([slot_ports(slot) for slot in range(SLOTS)]))
        return 0
    for slot in range(SLOTS):
        ports = slot_ports(slot)
        lo, hi = ports["HEAD_MIN_WORKER_PORT"], ports["WORKER_MAX_WORKER_PORT"]
        singles = [v for k, v in ports.items() if "MIN_WORKER" not in k and "MAX_WORKER" not in k]
        if all(_port_free(p) for p in singles) and all(_port_free(p) for p in range(lo, hi + 1)):
            print(f"export SLOT={slot}")
            for name, value in ports.items():
                print(f"export {name}={value}")
            return 0
    print(f"no free port slot among {SLOTS}: is another e2e cluster running?", file=sys.stderr)
    return 1


def _sub(command: str, pattern: str, replacement: str) -> str:
    """Replace `pattern` exactly once, so a change to local.yaml can't silently skip a port."""
    new, count = re.subn(pattern, replacement, command)
    if count != 1:
        raise SystemExit(f"render: expected one match of {pattern!r} in {command!r}, got {count}")
    return new


def _start_command(commands: list[str], role: str) -> str:
    """The one `ray start` command of a start-command list, with `ray stop` lines dropped."""
    kept = [c for c in commands if c.strip() != "ray stop"]
    if len(kept) != 1 or "ray start" not in kept[0]:
        raise SystemExit(f"render: expected one `ray start` command for the {role}, got {kept}")
    return kept[0]


def render(
    template: dict,
    ports: dict[str, int],
    *,
    key: str,
    user: str,
    tmp: str,
    tag: str,
    num_cpus: int,
    object_store_bytes: int,
    head_ip: str,
    worker_ip: str,
) -> dict:
    """The e2e config: local.yaml with both nodes on loopback addresses, sshd on SSH_PORT."""
    config = dict(template)
    config["cluster_name"] = f"dlgsweep-e2e-{tag}"
    config["provider"] = {"type": "local", "head_ip": head_ip, "worker_ips": [worker_ip]}
    # Ray has no SSH port option and drops ssh_proxy_command from the head's copy of the config,
    # so the port (and key) come from the `ssh` wrapper in <tmp>/bin, first on PATH everywhere.
    config["auth"] = {"ssh_user": user, "ssh_private_key": key}
    # file_mounts, setup_commands and the start commands' environment stay the template's own:
    # the e2e runs exactly what a user's nodes run (the venv they install into is pre-seeded
    # by the e2e, see local_cluster_e2e.sh). Only ports, CPUs and temp dirs change below.
    common = f" --num-cpus={num_cpus} --object-store-memory={object_store_bytes}"

    head = _start_command(template["head_start_ray_commands"], "head")
    head = _sub(head, r"--port=\d+", f"--port={ports['GCS_PORT']}")
    head = _sub(head, r"--dashboard-port=\d+", f"--dashboard-port={ports['DASHBOARD_PORT']}")
    head = _sub(
        head,
        r"--ray-client-server-port=\d+",
        f"--ray-client-server-port={ports['HEAD_CLIENT_SERVER_PORT']}",
    )
    worker = _start_command(template["worker_start_ray_commands"], "worker")
    worker = _sub(worker, r"\$RAY_HEAD_IP:\d+", f"$RAY_HEAD_IP:{ports['GCS_PORT']}")
    for role, prefix in (("head", "HEAD"), ("worker", "WORKER")):
        cmd = head if role == "head" else worker
        cmd = _sub(
            cmd,
            r"--object-manager-port=\d+",
            f"--object-manager-port={ports[prefix + '_OBJECT_MANAGER_PORT']}",
        )
        cmd = _sub(
            cmd,
            r"--node-manager-port=\d+",
            f"--node-manager-port={ports[prefix + '_NODE_MANAGER_PORT']}",
        )
        cmd = _sub(
            cmd, r"--min-worker-port=\d+", f"--min-worker-port={ports[prefix + '_MIN_WORKER_PORT']}"
        )
        cmd = _sub(
            cmd, r"--max-worker-port=\d+", f"--max-worker-port={ports[prefix + '_MAX_WORKER_PORT']}"
        )
        cmd += (
            common
            + f" --temp-dir={tmp}/{role[0]}"
            + f" --dashboard-agent-listen-port={ports[prefix + '_AGENT_LISTEN_PORT']}"
            + f" --dashboard-agent-grpc-port={ports[prefix + '_AGENT_GRPC_PORT']}"
            + f" --runtime-env-agent-port={ports[prefix + '_RUNTIME_ENV_PORT']}"
            + f" --metrics-export-port={ports[prefix + '_METRICS_PORT']}"
        )
        if role == "head":
            head = cmd
        else:
            worker = cmd
    config["head_start_ray_commands"] = [head]
    config["worker_start_ray_commands"] = [worker]
    return config


def cmd_render(args: argparse.Namespace) -> int:
    template = yaml.safe_load(Path(args.template).read_text())
    ports = {name: int(os.environ[name]) for name in slot_ports(0)}
    config = render(
        template,
        ports,
        key=args.key,
        user=args.user,
        tmp=args.tmp,
        tag=args.tag,
        num_cpus=args.num_cpus,
        object_store_bytes=args.object_store_mb * 2**20,
        head_ip=args.head_ip,
        worker_ip=args.worker_ip,
    )
    Path(args.out).write_text(yaml.safe_dump(config, sort_keys=False, width=1000))
    print(f"rendered {args.out} (cluster {config['cluster_name']})")
    return 0


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is parenthesised and may hold spaces; ppid follows its ")"
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rindex(")") + 2] != "Z"


def _tagged(tag: str) -> set[int]:
    return {pid for pid in _pids() if _environ(pid).get("DLGSWEEP_E2E_TAG") == tag}


def _with_descendants(roots: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        parent = _ppid(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    family, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in family:
            family.add(pid)
            todo.extend(children.get(pid, []))
    return family


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _hash10(text: str) -> str:
    """The name Ray's SSHCommandRunner gives control-path dirs (HASH_MAX_LENGTH = 10)."""
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def cmd_kill(args: argparse.Namespace) -> int:
    spared, pid = set(), os.getpid()
    while pid:  # this process and its ancestors (the e2e script) stay
        spared.add(pid)
        pid = _ppid(pid) or 0
    ended: set[int] = set()
    stubborn: set[int] = set()
    # a few rounds: a process forked while the first round ran (the head's autoscaler was
    # starting a lost worker again over SSH) is caught by the next
    for _ in range(3):
        targets = {p for p in _with_descendants(_tagged(args.tag) | set(args.pid)) if _alive(p)}
        targets -= spared
        if not targets:
            break
        _signal(targets, signal.SIGTERM)
        deadline = time.monotonic() + args.grace
        while time.monotonic() < deadline and any(_alive(p) for p in targets):
            time.sleep(0.2)
        stubborn |= {p for p in targets if _alive(p)}
        _signal(stubborn, signal.SIGKILL)
        ended |= targets
        time.sleep(0.5)
    if args.cluster_name:  # ray up's SSH control-socket dir for this cluster (now unused)
        user_dir = Path("/tmp") / f"ray_ssh_{_hash10(getpass.getuser())}"
        shutil.rmtree(user_dir / _hash10(args.cluster_name), ignore_errors=True)
        with contextlib.suppress(OSError):
            user_dir.rmdir()  # only when no other cluster's sockets are in it
    left = sorted(p for p in _tagged(args.tag) - spared if _alive(p))
    print(f"ended {len(ended)} processes ({len(stubborn)} needed SIGKILL); tagged left: {left}")
    return 1 if left else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Every trial present and ok, run on both nodes."""
    import pyarrow.dataset as ds

    status = json.loads(Path(args.status_json).read_text())
    print("status:", json.dumps(status, sort_keys=True))
    problems = []
    counts = status.get("counts", status)
    ok = int(counts.get("ok", 0))
    if ok != args.expect:
        problems.append(f"status reports {ok} ok trials, expected {args.expect}")
    if int(status.get("missing", 0)) != 0:
        problems.append(f"status reports {status.get('missing')} missing trials")
    table = ds.dataset(Path(args.sweep_dir) / "trials", format="parquet").to_table()
    rows = table.to_pylist()
    keys = {r["trial_key"] for r in rows}
    if len(rows) != args.expect or len(keys) != args.expect:
        problems.append(f"{len(rows)} rows / {len(keys)} trial keys, expected {args.expect}")
    bad = [(r["trial_key"], r["status"], r.get("error")) for r in rows if r["status"] != "ok"]
    if bad:
        problems.append(f"trials not ok: {bad}")
    nodes = sorted({r.get("node_id") for r in rows if "node_id" in r})
    print(f"rows: {len(rows)}; node ids: {nodes}")
    if args.min_nodes and len(nodes) < args.min_nodes:
        problems.append(f"trials ran on {len(nodes)} node(s), expected >= {args.min_nodes}")
    if args.kill_record:
        problems += _loss_cost(rows, json.loads(Path(args.kill_record).read_text()), args.min_rerun)
    for problem in problems:
        print("CHECK FAILED:", problem, file=sys.stderr)
    return 1 if problems else 0


def _loss_cost(rows: list[dict], record: dict, min_rerun: int) -> list[str]:
    """What the node's loss cost, from the rows' `attempt` and the attempts in flight at the kill:
    a trial whose row says attempt >= 2 ran again; its killed attempt had run since its
    counter was written."""
    rerun = [r for r in rows if r["attempt"] >= 2]
    lost = [record["killed_at"] - record["in_flight"][r["trial_key"]] for r in rerun
            if r["trial_key"] in record["in_flight"]]  # fmt: skip
    redone = sum(r["wall_seconds"] for r in rerun)
    waited = [r["started_at"].timestamp() - record["killed_at"] for r in rerun]
    print(
        f"node loss cost: {len(rerun)} of {len(rows)} trials ran again (attempts "
        f"{sorted(r['attempt'] for r in rerun)}); {sum(lost):.1f} s of attack lost at the kill, "
        f"{redone:.1f} s to redo; the rerun started {', '.join(f'{w:.1f}' for w in waited)} s "
        f"after the kill, on node(s) {sorted({r['node_id'][:8] for r in rerun})}"
    )
    if len(rerun) < min_rerun:
        return [f"{len(rerun)} trials ran again, expected >= {min_rerun}: the kill hit no trial"]
    return []


def _node_pids(tag: str, home: str) -> set[int]:
    """Every process of one e2e node: the tagged processes `ray start` left running on it (they
    carry the HOME sshd set for the address the node was reached at) and their descendants
    (Ray's agents and workers, whose environments Ray rewrites)."""
    roots = set()
    for pid in _pids():
        env = _environ(pid)
        if env.get("DLGSWEEP_E2E_TAG") == tag and env.get("HOME") == home and _alive(pid):
            roots.add(pid)
    return {p for p in _with_descendants(roots) if _alive(p)} - {os.getpid()}


def _cmdline(pid: int) -> str:
    try:
        return (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except OSError:
        return ""


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def _rows(sweep_dir: str, columns: list[str]) -> list[dict]:
    import pyarrow.dataset as ds

    trials = Path(sweep_dir) / "trials"
    if not trials.is_dir() or not any(trials.glob("*.parquet")):
        return []
    return ds.dataset(trials, format="parquet").to_table(columns=columns).to_pylist()


def _in_flight(sweep_dir: str) -> dict[str, float]:
    """Trials started (an attempt counter written) without a row yet: key -> counter's mtime."""
    finished = {r["trial_key"] for r in _rows(sweep_dir, ["trial_key"])}
    return {
        path.name: path.stat().st_mtime
        for path in (Path(sweep_dir) / ".attempts").glob("*/*")
        if path.name not in finished
    }


def _node_id(address: str, ip: str) -> str:
    from ray.util.state import list_nodes

    nodes = list_nodes(address=address, raise_on_missing_output=False)
    alive = [n.node_id for n in nodes if n.state == "ALIVE" and n.node_ip == ip]
    if len(alive) != 1:
        raise SystemExit(f"nodekill: expected one alive node at {ip}, got {alive}")
    return alive[0]


def cmd_nodekill(args: argparse.Namespace) -> int:
    """Wait for the moment, then SIGKILL every process of the node at once (a spot reclaim)."""
    deadline = time.monotonic() + args.timeout
    node_id = _node_id(args.address, args.node_ip) if not args.when_file else ""
    tick, told = os.sysconf("SC_CLK_TCK"), False
    while True:
        if time.monotonic() > deadline:
            print(
                f"nodekill: timed out after {args.timeout}s waiting for the moment", file=sys.stderr
            )
            return 1
        if args.when_file:
            if Path(args.when_file).exists():
                why = f"{args.when_file} appeared: {Path(args.when_file).read_text().strip()}"
                break
            time.sleep(0.1)
            continue
        # as many trials started as run at once (a trial writes its attempt counter after its
        # imports): every trainable is in its attack, so a busy one here is an attack running
        if len(_in_flight(args.sweep_dir)) < args.in_flight:
            time.sleep(0.2)
            continue
        actors = [p for p in _node_pids(args.tag, args.home) if "ImplicitFunc" in _cmdline(p)]
        before = {p: _cpu_ticks(p) for p in actors}
        time.sleep(0.5)
        used = {p: _cpu_ticks(p) - before[p] for p in actors}
        busy = [p for p, ticks in used.items() if ticks >= 0.05 * tick]
        if not busy and not told:
            print(f"nodekill: trials in flight, trainables on the node (CPU ticks): {used}")
            told = True
        if busy:
            why = f"trainable pid(s) {busy} on {args.node_ip} busy (an attack running)"
            break
    pids = _node_pids(args.tag, args.home)
    names = sorted({_cmdline(p).split(" ", 1)[0].rsplit("/", 1)[-1] for p in pids} - {""})
    in_flight = _in_flight(args.sweep_dir)
    killed_at = time.time()
    _signal(pids, signal.SIGKILL)
    for _ in range(10):  # a process the node forked as it was being killed: killed too
        time.sleep(0.3)
        late = _node_pids(args.tag, args.home)
        if not late:
            break
        pids |= late
        _signal(late, signal.SIGKILL)
    left = sorted(p for p in _node_pids(args.tag, args.home) if _alive(p))
    print(
        f"nodekill: {why}; SIGKILLed {len(pids)} processes of {args.node_ip} ({', '.join(names)})"
    )
    ages = ", ".join(f"{killed_at - at:.1f} s" for at in sorted(in_flight.values(), reverse=True))
    print(
        f"nodekill: trials in flight then: {len(in_flight)} ({ages or 'none'} since they started)"
    )
    print(f"nodekill: processes of {args.node_ip} left: {left}")
    if args.record:
        Path(args.record).write_text(
            json.dumps({"killed_at": killed_at, "in_flight": in_flight, "node_id": node_id})
        )
    return 1 if left or not pids else 0


def cmd_midcompact(args: argparse.Namespace) -> int:
    """A part file exists and row files of trials it holds are still there."""
    import pyarrow.parquet as pq

    trials = Path(args.sweep_dir) / "trials"
    parts = sorted(trials.glob("part-*.parquet"))
    loose = {p.stem for p in trials.glob("*.parquet") if not p.name.startswith("part-")}
    in_parts = {
        k
        for part in parts
        for k in pq.read_table(part, columns=["trial_key"])["trial_key"].to_pylist()
    }
    twice = sorted(in_parts & loose)
    raw = len(_rows(args.sweep_dir, ["trial_key"]))
    print(
        f"midcompact: {len(parts)} part(s) holding {len(in_parts)} rows, {len(loose)} row files, "
        f"{len(twice)} trial(s) in both; pyarrow reads {raw} rows"
    )
    if not twice:
        print("MIDCOMPACT FAILED: no row is both in a part and a row file", file=sys.stderr)
        return 1
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from ray.util.state import list_nodes

    deadline = time.monotonic() + args.timeout
    alive: list[str] = []
    # --replaced IP: that node was just killed. Until Ray's health check declares it dead
    # (3 s x 5) the GCS still lists it ALIVE, so wait for a node of that IP other than the
    # ones alive now: the one the autoscaler starts in its place.
    gone: set[str] = set()
    if args.replaced:
        nodes = list_nodes(address=args.address, raise_on_missing_output=False)
        gone = {n.node_id for n in nodes if n.state == "ALIVE" and n.node_ip == args.replaced}
    while time.monotonic() < deadline:
        try:
            nodes = list_nodes(address=args.address, raise_on_missing_output=False)
            live = [n for n in nodes if n.state == "ALIVE" and n.node_id not in gone]
            alive = sorted(n.node_ip for n in live)
        except Exception as exc:  # dashboard still starting: keep polling
            print(f"waiting for the dashboard: {type(exc).__name__}", file=sys.stderr)
        if alive == sorted(args.ips.split(",")) and not gone & {
            n.node_id for n in nodes if n.state == "ALIVE"
        }:
            print(f"alive nodes: {alive}")
            return 0
        time.sleep(3)
    print(f"timed out after {args.timeout}s with alive nodes {alive}", file=sys.stderr)
    return 1


def cmd_probe(args: argparse.Namespace) -> int:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address="auto")

    @ray.remote(num_cpus=0)
    def where() -> dict:
        import socket as _socket

        import orchestrator
        import workloads

        return {
            "node_ip": ray.util.get_node_ip_address(),
            "host": _socket.gethostname(),
            "home": os.path.expanduser("~"),
            "python": sys.executable,
            "workloads": workloads.__file__,
            "orchestrator": orchestrator.__file__,
            "auth_mode": os.environ.get("RAY_AUTH_MODE"),
        }

    nodes = [n for n in ray.nodes() if n["Alive"]]
    refs = [
        where.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
        for n in nodes
    ]
    seen = ray.get(refs, timeout=120)
    for item in seen:
        print("probe:", json.dumps(item, sort_keys=True))
    ips = sorted({item["node_ip"] for item in seen})
    problems = []
    if ips != sorted(args.ips.split(",")):
        problems.append(f"probe reached {ips}, expected {args.ips}")
    for item in seen:
        # the package the node's setup installed from the shipped wheel, not this checkout
        venv = os.path.join(item["home"], args.venv_name) + os.sep
        if not item["workloads"].startswith(venv) or not item["python"].startswith(venv):
            problems.append(f"{item['node_ip']}: dlgsweep not from {venv}: {item}")
        if item["auth_mode"] != "token":
            problems.append(f"{item['node_ip']}: RAY_AUTH_MODE={item['auth_mode']!r}")
    if len({item["home"] for item in seen}) != len(seen):
        problems.append("two nodes share one home: the file mounts were not tested")
    for problem in problems:
        print("PROBE FAILED:", problem, file=sys.stderr)
    if problems:
        return 1
    print(f"probe ok on {ips}")
    return 0


def cmd_authcheck(args: argparse.Namespace) -> int:
    """The dashboard's job API with no token, a wrong token and the right one."""
    import urllib.error
    import urllib.request

    token = Path(args.token_file).read_text().strip()
    url = args.address.rstrip("/") + "/api/jobs/"
    expected = {"none": 401, "wrong": 403, "right": 200}
    got = {}
    for name, header in (("none", None), ("wrong", "Bearer x" + token[:4]), ("right", token)):
        request = urllib.request.Request(url)
        if header is not None:
            bearer = header if header.startswith("Bearer ") else f"Bearer {header}"
            request.add_header("Authorization", bearer)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                got[name] = response.status
        except urllib.error.HTTPError as exc:
            got[name] = exc.code
    print(f"job API {url}: status without token / wrong token / token = {got}")
    if got != expected:
        print(f"AUTH CHECK FAILED: expected {expected}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ports")
    p.add_argument("--list", action="store_true", help="print every slot's ports as JSON")
    p.set_defaults(func=cmd_ports)
    p = sub.add_parser("render")
    for name in ("template", "out", "key", "user", "tmp", "tag", "head-ip", "worker-ip"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--num-cpus", type=int, default=1)
    p.add_argument("--object-store-mb", type=int, default=200)
    p.set_defaults(func=cmd_render)
    p = sub.add_parser("kill")
    p.add_argument("--tag", required=True)
    p.add_argument("--pid", type=int, action="append", default=[])
    p.add_argument("--grace", type=float, default=10.0)
    p.add_argument("--cluster-name", default="")
    p.set_defaults(func=cmd_kill)
    p = sub.add_parser("wait")
    p.add_argument("--address", required=True)
    p.add_argument("--ips", required=True, help="comma-separated node IPs expected alive")
    p.add_argument("--timeout", type=float, default=180)
    p.add_argument("--replaced", help="a node IP just killed: wait for its replacement")
    p.set_defaults(func=cmd_wait)
    p = sub.add_parser("authcheck")
    p.add_argument("--address", required=True, help="the dashboard's http://HOST:PORT")
    p.add_argument("--token-file", required=True)
    p.set_defaults(func=cmd_authcheck)
    p = sub.add_parser("probe")
    p.add_argument("--ips", required=True, help="comma-separated node IPs expected")
    p.add_argument("--venv-name", default="dlgsweep-venv", help="the venv under each node's home")
    p.set_defaults(func=cmd_probe)
    p = sub.add_parser("check")
    p.add_argument("--status-json", required=True)
    p.add_argument("--sweep-dir", required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--min-nodes", type=int, default=0)
    p.add_argument("--kill-record", default="", help="nodekill's --record: report the cost")
    p.add_argument("--min-rerun", type=int, default=0, help="rows with attempt >= 2 at least")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("nodekill")
    p.add_argument("--tag", required=True)
    p.add_argument("--home", required=True, help="the node's HOME (its processes carry it)")
    p.add_argument("--node-ip", required=True)
    p.add_argument("--sweep-dir", required=True)
    p.add_argument("--address", required=True, help="the dashboard's http://HOST:PORT")
    p.add_argument("--when-file", default="", help="kill once this file exists")
    p.add_argument("--in-flight", type=int, default=2, help="trials started, no row yet")
    p.add_argument("--record", default="", help="write the kill time and trials in flight here")
    p.add_argument("--timeout", type=float, default=180)
    p.set_defaults(func=cmd_nodekill)
    p = sub.add_parser("midcompact")
    p.add_argument("--sweep-dir", required=True)
    p.set_defaults(func=cmd_midcompact)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
