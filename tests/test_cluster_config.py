"""The cluster launcher configs pass Ray's own validation and keep their promises.

cluster.yaml (AWS) and orchestrator/cluster/local.yaml (machines the user has) go through the
steps `ray up` runs on a config before it touches a machine: `prepare_config` (Ray's provider
defaults merged in) and `validate_config` (Ray's bundled ray-schema.json plus its cross-field
checks). The local provider needs no cloud, so it goes through `ray up`'s own `_bootstrap_config`
whole; for AWS the remaining bootstrap steps call the EC2/IAM APIs, so the security group Ray would
create is computed with Ray's own rule builder instead.
"""

from __future__ import annotations

import copy
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.aws.config import _create_default_inbound_rules
from ray.autoscaler._private.commands import _bootstrap_config
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_YAML = ROOT / "cluster.yaml"
LOCAL_YAML = ROOT / "orchestrator" / "cluster" / "local.yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _helper():
    spec = importlib.util.spec_from_file_location(
        "local_cluster_helper", ROOT / "scripts" / "local_cluster_helper.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flag(command: str, name: str) -> str | None:
    """Value of `--name=value` / `--name value` in a shell command, else None."""
    words = shlex.split(command.replace(";", " ; "))
    for i, word in enumerate(words):
        if word == f"--{name}" and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
    return None


# ---------------------------------------------------------------- cluster.yaml (AWS)


def test_cluster_yaml_passes_ray_validation():
    config = prepare_config(_load(CLUSTER_YAML))
    validate_config(config)  # raises jsonschema.ValidationError / ValueError when invalid
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]


def test_cluster_yaml_validation_rejects_a_broken_copy():
    """The check above has teeth: Ray's schema refuses an unknown key in a node type."""
    broken = _load(CLUSTER_YAML)
    broken["available_node_types"]["gpu"]["gpus"] = 1
    with pytest.raises(Exception, match="gpus"):
        validate_config(prepare_config(broken))


def test_cluster_yaml_has_cpu_head_and_autoscaling_gpu_workers():
    config = _load(CLUSTER_YAML)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers)
    assert all(t.get("min_workers", 0) == 0 for t in workers)  # scales to zero when idle
    assert 0 < max(t["max_workers"] for t in workers) <= config["max_workers"]
    for node_type in types.values():
        node = node_type["node_config"]
        assert node["ImageId"].startswith(("ami-", "resolve:ssm:"))
        assert re.match(r"^(m|c|r|g|p)\d", node["InstanceType"])
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers)


def test_cluster_yaml_opens_only_ssh_to_the_world():
    """The ingress Ray creates: its defaults plus our IpPermissions (ray's own builder)."""
    config = _load(CLUSTER_YAML)
    extra = config["provider"].get("security_group", {}).get("IpPermissions", [])
    rules = _create_default_inbound_rules({"sg-dlgsweep"}, extra)
    for rule in rules:
        public = [r["CidrIp"] for r in rule.get("IpRanges", [])]
        public += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", [])]
        if public:
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
        else:  # everything else only from inside the cluster's own group
            assert rule.get("UserIdGroupPairs") == [{"GroupId": "sg-dlgsweep"}], rule
    assert any(r.get("UserIdGroupPairs") for r in rules)  # nodes reach each other


def test_cluster_yaml_dashboard_and_auth():
    config = _load(CLUSTER_YAML)
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    (worker_start,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert _flag(head_start, "dashboard-host") == "127.0.0.1"  # reached via `ray dashboard`
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert "RAY_AUTH_MODE=disabled" in head_start and "RAY_AUTH_MODE=disabled" in worker_start
    assert _flag(worker_start, "address") == "$RAY_HEAD_IP:" + _flag(head_start, "port")


def test_cluster_yaml_storage_and_package():
    config = _load(CLUSTER_YAML)
    # every node gets an instance profile: trials write their rows to s3:// from the workers
    for node_type in config["available_node_types"].values():
        assert node_type["node_config"]["IamInstanceProfile"]["Name"].startswith("dlgsweep-")
    # the package is shipped as a wheel and installed into a venv on every node
    (remote,) = [r for r, local in config["file_mounts"].items() if local == "./dist"]
    setup = "\n".join(config["setup_commands"])
    assert f"{remote}/dlgsweep-*.whl" in setup
    assert "import workloads, orchestrator, ray" in config["setup_commands"][-1]
    assert any("boto3" in c for c in config["head_setup_commands"])  # AWS autoscaler needs it
    assert "s3://" in CLUSTER_YAML.read_text()  # the documented --results URI


# ---------------------------------------------------------------- local.yaml (own machines)


def test_local_yaml_passes_ray_up_bootstrap():
    """`ray up`'s own config pipeline for the local provider, schema validation included."""
    config = _bootstrap_config(_load(LOCAL_YAML), no_config_cache=True)
    node_type = config["available_node_types"][config["head_node_type"]]
    workers = len(config["provider"]["worker_ips"])
    assert node_type["min_workers"] == node_type["max_workers"] == workers


def test_local_yaml_start_commands_carry_the_measured_fixes():
    config = _load(LOCAL_YAML)
    (head,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    (worker,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert "RAY_enable_autoscaler_v2=0" in head  # v2 never launches local-provider workers
    for command in (head, worker):
        assert "RAY_AUTH_MODE=disabled" in command
        assert "SSH_CONNECTION" in _flag(command, "node-ip-address")
    assert _flag(head, "dashboard-host") == "127.0.0.1"
    assert _flag(worker, "address") == "$RAY_HEAD_IP:" + _flag(head, "port")


def test_e2e_render_of_local_yaml_is_valid_and_isolated():
    """What scripts/local_cluster_e2e.sh brings up: no `ray stop`, every port from its slot."""
    helper = _helper()
    ports = helper.slot_ports(1)
    config = helper.render(
        _load(LOCAL_YAML),
        ports,
        key="/tmp/e2e/ssh/id",
        user="root",
        venv="/opt/venv",
        tmp="/tmp/e2e",
        tag="abc",
        num_cpus=1,
        object_store_bytes=200 * 2**20,
        head_ip="127.0.0.3",
        worker_ip="127.0.0.2",
    )
    _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert not any("ray stop" in c for c in commands)
    (head,), (worker,) = config["head_start_ray_commands"], config["worker_start_ray_commands"]
    assert _flag(head, "port") == str(ports["GCS_PORT"])
    assert _flag(worker, "address") == f"$RAY_HEAD_IP:{ports['GCS_PORT']}"
    assert _flag(head, "dashboard-port") == str(ports["DASHBOARD_PORT"])
    used = []
    for command in commands:
        for flag in re.findall(r"--([a-z-]+-port)=(\d+)", command):
            used.append(int(flag[1]))
    assert len(used) == len(set(used))  # head and worker share one host: no port twice
    assert all(6500 <= p < 6600 or 8500 <= p < 8550 or 21000 <= p < 22000 for p in used)
    assert _flag(head, "num-cpus") == _flag(worker, "num-cpus") == "1"


def test_port_slots_stay_in_the_agreed_ranges_and_apart():
    helper = _helper()
    seen: set[int] = set()
    for slot in range(helper.SLOTS):
        ports = helper.slot_ports(slot)
        span = range(ports["HEAD_MIN_WORKER_PORT"], ports["WORKER_MAX_WORKER_PORT"] + 1)
        assert 21000 <= span.start and span.stop - 1 <= 21999
        assert 6500 <= ports["GCS_PORT"] <= 6549 and 8500 <= ports["DASHBOARD_PORT"] <= 8549
        ranged = ("SSH_PORT", "GCS_PORT", "DASHBOARD_PORT")
        misc = {k: v for k, v in ports.items() if k not in ranged and "_WORKER_PORT" not in k}
        assert misc and all(6550 <= v <= 6599 for v in misc.values()), misc
        mine = {ports[k] for k in ranged} | set(misc.values()) | set(span)
        assert len(mine) == len(ranged) + len(misc) + len(span)  # no port twice in a slot
        assert not mine & seen  # nor shared with another slot
        seen |= mine
