"""The cluster launcher configs pass Ray's own validation and keep their promises.

Promises checked here: the head offers no CPU to trials; every node runs the pinned Ray image
(Ray = this venv's Ray) and installs only what dist/constraints.txt pins; token auth on every
node with the token shipped; spot workers a switch away; each IAM role holds what it needs and
no more (scripts/aws_setup.sh run against a stand-in `aws`). What the local config really does
on machines is scripts/local_cluster_e2e.sh's job (`ray up` on loopback).

cluster.yaml (AWS) and orchestrator/cluster/local.yaml (machines the user has) go through the
steps `ray up` runs on a config before it touches a machine: `prepare_config` (Ray's provider
defaults merged in) and `validate_config` (Ray's bundled ray-schema.json plus its cross-field
checks). The local provider needs no cloud, so it goes through `ray up`'s own `_bootstrap_config`
whole; for AWS the remaining bootstrap steps call the EC2/IAM APIs, so the security group Ray would
create is computed with Ray's own rule builder instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"
LOCAL_YAML = ROOT / "orchestrator" / "cluster" / "local.yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _helper(*args: str, env: dict[str, str] | None = None) -> str:
    """Run the e2e's helper script (scripts/local_cluster_helper.py) as the e2e does; stdout."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_cluster_helper.py"), *args],
        capture_output=True, text=True, check=True, env={**os.environ, **(env or {})},
    )  # fmt: skip
    return done.stdout


def _slots() -> list[dict[str, int]]:
    return json.loads(_helper("ports", "--list"))


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


@pytest.mark.ray  # Ray's own config checks
def test_cluster_yaml_passes_ray_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(_load(CLUSTER_YAML))
    validate_config(config)  # raises jsonschema.ValidationError / ValueError when invalid
    assert config["provider"]["type"] == "aws"
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.ray  # Ray's own config checks
def test_cluster_yaml_validation_rejects_a_broken_copy():
    """The check above has teeth: Ray's schema refuses an unknown key in a node type."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    broken = _load(CLUSTER_YAML)
    broken["available_node_types"]["gpu"]["gpus"] = 1
    with pytest.raises(Exception, match="gpus"):
        validate_config(prepare_config(broken))


def test_cluster_yaml_head_offers_no_cpu_to_trials():
    """A sweep that lost its GPU workers must not run the paper grid on the head's cores."""
    config = _load(CLUSTER_YAML)
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # what the autoscaler plans with (RAY_OVERRIDE_...)
    (start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert _flag(start, "num-cpus") == "0"  # and what the head's raylet offers


def test_cluster_yaml_has_autoscaling_gpu_workers_and_a_spot_option():
    config = _load(CLUSTER_YAML)
    types = config["available_node_types"]
    workers = {name: t for name, t in types.items() if name != config["head_node_type"]}
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers.values())
    assert all(t.get("min_workers", 0) == 0 for t in workers.values())  # scale to zero
    assert 0 < sum(t["max_workers"] for t in workers.values()) <= config["max_workers"]
    assert all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in workers.values())
    spot = {n: t for n, t in workers.items() if "InstanceMarketOptions" in t["node_config"]}
    on_demand = {n: t for n, t in workers.items() if n not in spot}
    assert len(spot) == 1 and len(on_demand) == 1, sorted(workers)
    ((spot_name, spot_type),) = spot.items()
    ((_, demand_type),) = on_demand.items()
    assert spot_type["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    # the same worker but for the market, so switching is only the two max_workers numbers
    same = copy.deepcopy(spot_type)
    del same["node_config"]["InstanceMarketOptions"]
    same["max_workers"] = demand_type["max_workers"]
    assert same == demand_type
    # off by default: max_workers 0 (Ray accepts it; the on-demand type does the work)
    assert spot_type["max_workers"] == 0 and demand_type["max_workers"] > 0


@pytest.mark.ray  # Ray's own config checks
def test_cluster_yaml_every_node_runs_one_pinned_image_with_this_ray():
    """Ray in the image = the Ray that runs `ray up` here; the host image the same everywhere."""
    import ray

    config = _load(CLUSTER_YAML)
    docker = config["docker"]
    assert not ({"head_image", "worker_image"} & docker.keys())  # one image for every node
    repo, tag = docker["image"].split(":")
    assert repo == "rayproject/ray"
    version, python, platform = re.fullmatch(r"(\d+\.\d+\.\d+)-(py3\d+)-(gpu|cu\d+)", tag).groups()
    assert version == ray.__version__, (
        f"cluster.yaml runs Ray {version}, this venv {ray.__version__}"
    )
    assert "nightly" not in tag and "latest" not in tag
    images = {t["node_config"]["ImageId"] for t in config["available_node_types"].values()}
    assert len(images) == 1, images


def _pip_installs(commands: list[str]) -> list[list[str]]:
    """The argument lists of every `pip install` in a list of shell commands."""
    found = []
    for command in commands:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words_all = list(lexer)
        parts, current = [], []
        for word in words_all:  # split at ; && || | (shell operators, quotes respected)
            if word in (";", "&&", "||", "|"):
                parts.append(current)
                current = []
            else:
                current.append(word)
        parts.append(current)
        for words in parts:
            for i in range(len(words) - 1):
                if words[i].endswith("pip") and words[i + 1] == "install":
                    found.append(words[i + 2 :])
                elif words[i : i + 3] == ["-m", "pip", "install"]:
                    found.append(words[i + 3 :])
    return found


def _all_setup(config: dict) -> list[str]:
    keys = ("initialization_commands", "setup_commands", "head_setup_commands")
    commands = [c for key in keys + ("worker_setup_commands",) for c in config.get(key, [])]
    for node_type in config.get("available_node_types", {}).values():
        for key in ("initialization_commands", "worker_setup_commands"):
            commands += node_type.get(key, [])
    return commands


def _check_installs(config: dict) -> None:
    import ray

    (dist,) = [r for r, local in config["file_mounts"].items() if local == "./dist"]
    installs = _pip_installs(_all_setup(config))
    assert installs, "no pip install found: the parser above is out of date"
    wheel = f"{dist}/dlgsweep-*.whl"
    for args in installs:
        assert not {"-U", "--upgrade", "--pre", "-e"} & set(args), args
        names = [a for a in args if not a.startswith("-") and a != f"{dist}/constraints.txt"]
        if "--no-deps" in args:  # the package itself, nothing else
            assert names == [wheel], args
            continue
        assert "-c" in args, args
        assert args[args.index("-c") + 1] == f"{dist}/constraints.txt", args
        assert wheel in names, args
        for name in names:
            if name.startswith("ray"):  # explicit, and the Ray of this venv
                assert name.endswith(f"=={ray.__version__}"), name
    # the last setup step checks the node's Ray is this one
    assert f"ray.__version__ == '{ray.__version__}'" in config["setup_commands"][-1]


@pytest.mark.ray  # the pins are checked against this venv's Ray
@pytest.mark.parametrize("path", [CLUSTER_YAML, LOCAL_YAML], ids=["aws", "local"])
def test_every_install_is_pinned_to_the_shipped_constraints(path):
    """No `pip install ray>=...` per node: each install is pinned by dist/constraints.txt."""
    _check_installs(_load(path))


@pytest.mark.ray  # the pins are checked against this venv's Ray
@pytest.mark.parametrize(
    "command",
    [
        "pip install -q 'ray[default]>=2.40'",
        "python3 -m pip install -U pip",
        "true && pip install -c ~/dlgsweep-dist/constraints.txt ray==2.0.0 "
        "~/dlgsweep-dist/dlgsweep-*.whl",
        "pip install --no-deps ~/dlgsweep-dist/dlgsweep-*.whl torch",
    ],
)
def test_the_install_check_catches_unpinned_installs(command):
    broken = _load(CLUSTER_YAML)
    broken["head_setup_commands"] = [command]
    with pytest.raises(AssertionError):
        _check_installs(broken)


@pytest.mark.parametrize("path", [CLUSTER_YAML, LOCAL_YAML], ids=["aws", "local"])
def test_every_node_installs_the_sweep_extra(path):
    """The wheel's base install reads results only: a node also needs `dlgsweep[sweep]`
    (torch, Ray, ...), named in the same pinned install (a glob cannot carry `[sweep]`)."""
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {
        re.split(r"[\[<>=]", r, maxsplit=1)[0] for r in extra["optional-dependencies"]["sweep"]
    }
    for args in _pip_installs(_all_setup(_load(path))):
        if "--no-deps" in args:
            continue
        given = {re.split(r"[\[<>=]", a, maxsplit=1)[0] for a in args if not a.startswith("-")}
        assert names <= given, (sorted(names - given), args)


def test_build_dist_writes_what_the_configs_install():
    """scripts/build_dist.sh: the wheel and constraints.txt the setup commands above expect."""
    text = (ROOT / "scripts" / "build_dist.sh").read_text()
    assert "--wheel-dir" in text and "constraints.txt" in text and "--exclude-editable" in text


@pytest.mark.parametrize("path", [CLUSTER_YAML, LOCAL_YAML], ids=["aws", "local"])
def test_token_auth_on_every_node_and_the_token_shipped(path):
    config = _load(path)
    text = path.read_text()
    assert "RAY_AUTH_MODE=disabled" not in text
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        (start,) = [c for c in config[key] if "ray start" in c]
        assert re.search(r"export RAY_AUTH_MODE=token\b", start), start
    # interactive shells on the nodes (`ray exec ... 'ray status'`) send the token too
    assert any("export RAY_AUTH_MODE=token" in c for c in config["setup_commands"])


@pytest.mark.ray  # Ray's own config checks
def test_cluster_yaml_opens_only_ssh_to_the_world():
    """The ingress Ray creates: its defaults plus our IpPermissions (ray's own builder)."""
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

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


def test_cluster_yaml_dashboard_on_loopback():
    config = _load(CLUSTER_YAML)
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    (worker_start,) = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert _flag(head_start, "dashboard-host") == "127.0.0.1"  # reached via `ray dashboard`
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start
    assert _flag(worker_start, "address") == "$RAY_HEAD_IP:" + _flag(head_start, "port")


def test_cluster_yaml_storage_and_package():
    config = _load(CLUSTER_YAML)
    # every node gets an instance profile: trials write their rows to s3:// from the workers
    for node_type in config["available_node_types"].values():
        assert node_type["node_config"]["IamInstanceProfile"]["Name"].startswith("dlgsweep-")
    setup = "\n".join(config["setup_commands"])
    assert "import workloads, orchestrator, ray" in config["setup_commands"][-1]
    assert "boto3" in setup  # the head's autoscaler launches the workers through boto3
    assert "s3://" in CLUSTER_YAML.read_text()  # the documented --results URI
    # a GPU worker whose torch can't see its GPU fails setup instead of running trials on CPU
    assert any("torch.cuda.is_available()" in c for c in config["worker_setup_commands"])


# ---------------------------------------------------------------- IAM (scripts/aws_setup.sh)

IAM = ROOT / "scripts" / "aws_iam"
AWS_SETUP = ROOT / "scripts" / "aws_setup.sh"


def _statements(name: str) -> list[dict]:
    return json.loads((IAM / f"{name}.json").read_text())["Statement"]


def _actions(statements: list[dict]) -> set[str]:
    out = set()
    for st in statements:
        acts = st["Action"]
        out |= {acts} if isinstance(acts, str) else set(acts)
    return out


@pytest.fixture(scope="module")
def aws_setup_calls(tmp_path_factory):
    """scripts/aws_setup.sh run for real against a stand-in `aws` that records every call."""
    tmp = tmp_path_factory.mktemp("aws")
    log = tmp / "calls.jsonl"
    fake = tmp / "bin" / "aws"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "if sys.argv[1:3] == ['sts', 'get-caller-identity']: print('123456789012')\n"
        "sys.exit(1 if sys.argv[2:3] in (['head-bucket'], ['get-role'],"
        " ['get-instance-profile']) else 0)\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["bash", str(AWS_SETUP), "my-bucket", "eu-west-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in log.read_text().splitlines()]


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_aws_setup_grants_each_role_what_it_needs_and_no_more(aws_setup_calls):
    config = _load(CLUSTER_YAML)
    types = config["available_node_types"]
    head_profile = types[config["head_node_type"]]["node_config"]["IamInstanceProfile"]["Name"]
    worker_profiles = {
        t["node_config"]["IamInstanceProfile"]["Name"]
        for n, t in types.items()
        if n != config["head_node_type"]
    }
    (worker_profile,) = worker_profiles
    profiles = {
        _option(c, "--instance-profile-name")
        for c in aws_setup_calls
        if c[:2] == ["iam", "create-instance-profile"]
    }
    assert profiles == {head_profile, worker_profile}
    policies: dict[str, list[dict]] = {head_profile: [], worker_profile: []}
    for call in aws_setup_calls:
        if call[:2] == ["iam", "put-role-policy"]:
            document = _option(call, "--policy-document")
            assert not re.search(r"BUCKET|ACCOUNT|REGION|CLUSTER|WORKER_ROLE", document)
            statements = json.loads(document)["Statement"]
            policies[_option(call, "--role-name")] += statements
        assert call[:2] != ["iam", "attach-role-policy"], call  # no broad managed policies
    for statements in policies.values():
        for st in statements:
            actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
            assert all("*" not in a for a in actions), st  # no ec2:* / s3:*
            if any(a.startswith("s3:") for a in actions):
                assert st["Resource"] in ("arn:aws:s3:::my-bucket", "arn:aws:s3:::my-bucket/*")

    s3 = {
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    }
    assert _actions(policies[worker_profile]) == s3
    autoscaler = {
        "ec2:DescribeInstances",
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "iam:PassRole",
    }
    image = types[config["head_node_type"]]["node_config"]["ImageId"]
    if image.startswith("resolve:ssm:"):
        autoscaler.add("ssm:GetParameters")
    assert _actions(policies[head_profile]) == s3 | autoscaler
    head = policies[head_profile]
    (pass_role,) = [st for st in head if st["Action"] == "iam:PassRole"]
    assert pass_role["Resource"] == f"arn:aws:iam::123456789012:role/{worker_profile}"
    # terminate / retag only this cluster's instances (Ray tags them ray-cluster-name)
    (own,) = [st for st in head if "ec2:TerminateInstances" in st["Action"]]
    tag = own["Condition"]["StringEquals"]["ec2:ResourceTag/ray-cluster-name"]
    assert tag == config["cluster_name"]
    # no Start/StopInstances: so idle workers must be terminated, not stopped
    assert config["provider"]["cache_stopped_nodes"] is False
    if image.startswith("resolve:ssm:"):  # the head's autoscaler resolves the workers' AMI
        (ssm,) = [st for st in head if st["Action"] == "ssm:GetParameters"]
        parameter = image[len("resolve:ssm:") :]
        assert ssm["Resource"] == f"arn:aws:ssm:eu-west-1::parameter{parameter}"


def test_aws_setup_defaults_match_cluster_yaml():
    """Region and cluster name are in the policies' ARNs and tag condition: they must agree."""
    config = _load(CLUSTER_YAML)
    text = AWS_SETUP.read_text()
    assert f'REGION="${{2:-{config["provider"]["region"]}}}"' in text
    assert f'CLUSTER="${{DLGSWEEP_CLUSTER_NAME:-{config["cluster_name"]}}}"' in text


def test_aws_setup_makes_the_spot_service_linked_role(aws_setup_calls):
    assert ["iam", "create-service-linked-role", "--aws-service-name", "spot.amazonaws.com"] in [
        c[:4] for c in aws_setup_calls
    ]


def test_iam_templates_are_json_with_known_placeholders():
    for path in IAM.glob("*.json"):
        json.loads(path.read_text())
    assert {p.stem for p in IAM.glob("*.json")} == {"trust", "results-bucket", "head-autoscaler"}
    assert _statements("trust")[0]["Principal"] == {"Service": "ec2.amazonaws.com"}


@pytest.mark.parametrize("script", sorted((ROOT / "scripts").glob("*.sh")), ids=lambda p: p.name)
def test_scripts_parse_and_pass_shellcheck(script):
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    shellcheck = shutil.which("shellcheck")
    if shellcheck:  # not a dependency; run where it is installed
        proc = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


# ---------------------------------------------------------------- local.yaml (own machines)


@pytest.mark.ray  # Ray's own config checks
def test_local_yaml_passes_ray_up_bootstrap():
    """`ray up`'s own config pipeline for the local provider, schema validation included."""
    from ray.autoscaler._private.commands import _bootstrap_config

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
        assert "SSH_CONNECTION" in _flag(command, "node-ip-address")
    assert _flag(head, "dashboard-host") == "127.0.0.1"
    assert _flag(worker, "address") == "$RAY_HEAD_IP:" + _flag(head, "port")


@pytest.mark.ray  # Ray's own config checks
def test_e2e_render_of_local_yaml_is_valid_and_isolated(tmp_path):
    """What scripts/local_cluster_e2e.sh brings up: no `ray stop`, every port from its slot."""
    from ray.autoscaler._private.commands import _bootstrap_config

    ports = _slots()[1]
    rendered = tmp_path / "local.yaml"
    _helper(
        "render", "--template", str(LOCAL_YAML), "--out", str(rendered), "--key",
        "/tmp/e2e/ssh/id", "--user", "root", "--tmp", "/tmp/e2e", "--tag", "abc",
        "--head-ip", "127.0.0.3", "--worker-ip", "127.0.0.2", "--num-cpus", "1",
        "--object-store-mb", "200", env={name: str(port) for name, port in ports.items()},
    )  # fmt: skip
    config = _load(rendered)
    _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
    template = _load(LOCAL_YAML)
    # what gets shipped and installed is the config's own, not a stand-in
    for key in ("file_mounts", "setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert config[key] == template[key], key
    commands = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        # the environment the nodes start in is the template's; only flags are changed
        (mine,) = config[key]
        (theirs,) = [c for c in template[key] if "ray start" in c]
        assert mine.split("ray start")[0] == theirs.split("ray start")[0]
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
    seen: set[int] = set()
    slots = _slots()
    assert len(slots) >= 2
    for ports in slots:
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
