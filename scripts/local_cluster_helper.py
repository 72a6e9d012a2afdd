"""Helpers for scripts/local_cluster_e2e.sh: ports, config rendering, tagged-process cleanup.

Subcommands:
  ports   pick a free port slot on this host; prints `export NAME=value` lines
  render  turn orchestrator/cluster/local.yaml into the config the e2e brings up on loopback
  kill    end every process carrying DLGSWEEP_E2E_TAG=<tag> in its environment (plus the given
          pids and their descendants), TERM then KILL; never this process or its ancestors
  wait    poll the dashboard's state API until exactly the given node IPs are alive
  authcheck  the job API refuses a request without the token (401) and with a wrong one (403),
          and answers one with the token (200)
  probe   (run inside a Ray job) one task pinned to each alive node imports the package there:
          from the node's venv (the shipped wheel), with token auth on
  check   assert on `dlgsweep status --json` output and the trial rows of one sweep

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
    targets = _with_descendants(_tagged(args.tag) | set(args.pid)) - spared
    _signal(targets, signal.SIGTERM)
    deadline = time.monotonic() + args.grace
    while time.monotonic() < deadline and any(_alive(p) for p in targets):
        time.sleep(0.2)
    stubborn = {p for p in targets if _alive(p)}
    _signal(stubborn, signal.SIGKILL)
    time.sleep(0.5)
    if args.cluster_name:  # ray up's SSH control-socket dir for this cluster (now unused)
        user_dir = Path("/tmp") / f"ray_ssh_{_hash10(getpass.getuser())}"
        shutil.rmtree(user_dir / _hash10(args.cluster_name), ignore_errors=True)
        with contextlib.suppress(OSError):
            user_dir.rmdir()  # only when no other cluster's sockets are in it
    left = sorted(p for p in _tagged(args.tag) - spared if _alive(p))
    print(f"ended {len(targets)} processes ({len(stubborn)} needed SIGKILL); tagged left: {left}")
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
    for problem in problems:
        print("CHECK FAILED:", problem, file=sys.stderr)
    return 1 if problems else 0


def cmd_wait(args: argparse.Namespace) -> int:
    from ray.util.state import list_nodes

    deadline = time.monotonic() + args.timeout
    alive: list[str] = []
    while time.monotonic() < deadline:
        try:
            nodes = list_nodes(address=args.address, raise_on_missing_output=False)
            alive = sorted(n.node_ip for n in nodes if n.state == "ALIVE")
        except Exception as exc:  # dashboard still starting: keep polling
            print(f"waiting for the dashboard: {type(exc).__name__}", file=sys.stderr)
        if alive == sorted(args.ips.split(",")):
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
    sub.add_parser("ports").set_defaults(func=cmd_ports)
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
    p.set_defaults(func=cmd_check)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
