"""Sweep specs: presets, validation (every error names its key), the resolved spec, plan."""

from __future__ import annotations

import pytest
import yaml

from dlgsweep.cli import main
from dlgsweep.errors import UserError
from orchestrator.plan import trial_gflop
from store.spec import load_spec, parse_spec, parse_yaml, preset_names
from workloads.config import TrialConfig

BASE = {
    "name": "t",
    "grid": {"seed": [0, 1], "activation": ["relu", "sigmoid"]},
    "fixed": {"dataset": "cifar10", "model": "mcmahan_cnn"},
    "attack": {"iterations": 5},
}


PRESETS = [
    "attacks", "bn-mode", "corrections", "defenses", "demo", "dp-frontier", "init-scale",
    "labels", "noise-frontier", "paper", "paper-seed", "prune-frontier", "pruning-aware",
]  # fmt: skip


def test_presets_are_the_named_ones():
    assert preset_names() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_validates(name):
    spec = load_spec(name)
    trials = spec.trials()
    assert spec.name == name and trials
    assert len({t.trial_key for t in trials}) == len(trials)


def test_paper_is_the_960_grid():
    spec = load_spec("paper")
    trials = spec.trials()
    assert len(trials) == 960
    assert spec.grid == {
        "seed": [0, 1, 2, 3, 4, 5],
        "model": ["mcmahan_cnn", "resnet18"],
        "batch_size": [1, 2, 4, 8, 16],
        "init_method": ["xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"],
        "activation": ["relu", "sigmoid"],
        "prune": ["small", "none"],
    }
    one = trials[0]
    assert (one.dataset, one.optimizer, one.lr, one.loss, one.iterations) == (
        "cifar10", "adam", 0.1, "cosine", 500,
    )  # fmt: skip
    assert one.label_strategy == "idlg" and one.init_gain == "seed"
    assert (spec.resources.cpu, spec.resources.gpu) == (1.0, 0.25)
    assert sum(trial_gflop(t) for t in trials) / 1e6 == pytest.approx(15.5, rel=0.02)  # PFLOP


# the seed study's protocol, as main.py runs it (liziyu403/Gradient-Attacking)
SEED_PROTOCOL = dict(
    model="mcmahan_cnn_seed", image_choice="first", image_norm="minmax", label_strategy="oracle",
    prune_mode="tensors", skip_zero_tensors=True, dummy_init="randn", iterate="last",
    init_gain="seed", optimizer="adam", lr=0.1, loss="cosine", iterations=500, tv_weight=0.0,
)  # fmt: skip


def test_paper_seed_is_the_960_grid_under_the_seed_protocol():
    seed, ours = load_spec("paper-seed"), load_spec("paper")
    trials = seed.trials()
    assert len(trials) == 960
    assert {axis: v for axis, v in seed.grid.items() if axis != "model"} == {
        axis: v for axis, v in ours.grid.items() if axis != "model"
    }
    for trial in trials:
        fields = trial.to_dict()
        expected = {**SEED_PROTOCOL, "model": fields["model"]}
        if trial.model != "resnet18":  # the seed's ResNet-18 is ours (same CIFAR stem, blocks)
            expected["model"] = "mcmahan_cnn_seed"
        assert {k: fields[k] for k in expected} == expected


def test_paper_is_the_seed_grid_with_every_correction_on():
    pairs = zip(load_spec("paper").trials(), load_spec("paper-seed").trials())
    switched = set()
    for ours, seed in pairs:
        a, b = ours.to_dict(), seed.to_dict()
        switched |= {k for k in a if a[k] != b[k]}
    assert switched == {
        "model", "image_choice", "image_norm", "label_strategy", "prune_mode",
        "skip_zero_tensors", "iterate",
    }  # fmt: skip


def test_plan_paper_seed_prints_960(capsys):
    assert main(["plan", "paper-seed", "--num-cpus", "2", "--num-gpus", "0"]) == 0
    assert "trials: 960" in capsys.readouterr().out.splitlines()


def test_corrections_switches_one_correction_at_a_time_from_the_seed_protocol():
    spec = load_spec("corrections")
    labelled = spec.labelled_trials()
    by_variant: dict[str, list] = {}
    for name, trial in labelled:
        by_variant.setdefault(name, []).append(trial)
    per_variant = 3 * 2 * 2 * 2 * 2
    assert all(len(v) == per_variant for v in by_variant.values())
    assert len(labelled) == len(spec.trials()) == per_variant * len(by_variant)
    base = by_variant["seed-protocol"]
    for trial in base:
        assert {k: trial.to_dict()[k] for k in SEED_PROTOCOL} == SEED_PROTOCOL
    switched = {}
    for name, trials in by_variant.items():
        changed = set()
        for seed_trial, trial in zip(base, trials):
            a, b = seed_trial.to_dict(), trial.to_dict()
            changed |= {k for k in a if a[k] != b[k]}
        switched[name] = changed
    singles = {n: c for n, c in switched.items() if n not in ("seed-protocol", "all-corrections")}
    assert all(len(c) == 1 for c in singles.values())  # one correction at a time
    assert set().union(*singles.values()) == switched["all-corrections"]
    paper = load_spec("paper").trials()[0].to_dict()
    corrected = by_variant["all-corrections"][0].to_dict()
    assert {k: corrected[k] for k in switched["all-corrections"]} == {
        k: paper[k] for k in switched["all-corrections"]
    }
    assert spec.variant_of()[base[0].trial_key] == "seed-protocol"
    resolved = parse_yaml(spec.to_yaml())  # what resume reads back from spec.yaml
    assert resolved.labelled_trials() == labelled


def test_variants_are_validated():
    with pytest.raises(UserError, match="grid axis"):
        parse_spec(_with(variants={"a": {"seed": 3}}))
    with pytest.raises(UserError, match="same trial"):
        parse_spec(_with(variants={"a": {}, "b": {}}))
    with pytest.raises(UserError, match="variants.a.model"):
        parse_spec(_with(variants={"a": {"model": "vgg"}}))
    with pytest.raises(UserError, match="variants"):
        parse_spec(_with(variants=["a"]))


def test_demo_is_small():
    # a few minutes on 2 cores: at most 8,000 image-iterations of the McMahan CNN (about 3 min)
    trials = load_spec("demo").trials()
    assert sum(t.iterations * t.batch_size for t in trials) <= 8000
    assert {t.model for t in trials} == {"mcmahan_cnn"}
    assert max(t.iterations for t in trials) <= 300


def test_seed_spellings_map_over():
    raw = {**BASE, "grid": {"activation": ["ReLU", "Sigmoid"], "model": ["McMahan_CNN"]}}
    raw["fixed"] = {"dataset": "cifar10", "init_method": "xavier_normal_", "prune": None}
    trials = parse_spec(raw).trials()
    assert [t.activation for t in trials] == ["relu", "sigmoid"]
    assert {(t.model, t.init_method, t.prune) for t in trials} == {
        ("mcmahan_cnn", "xavier_normal", "none")
    }


def test_trials_are_every_grid_point_in_order():
    trials = parse_spec(BASE).trials()
    assert [(t.seed, t.activation) for t in trials] == [
        (0, "relu"), (0, "sigmoid"), (1, "relu"), (1, "sigmoid"),
    ]  # fmt: skip
    assert all(t.iterations == 5 and t.model == "mcmahan_cnn" for t in trials)


def test_resolved_spec_round_trips():
    spec = load_spec("paper")
    again = parse_yaml(spec.to_yaml())
    assert [t.trial_key for t in again.trials()] == [t.trial_key for t in spec.trials()]
    assert again.resources == spec.resources and again.retries == spec.retries
    # the live-report cadence is the sweep's, not the trials': same keys, and saved
    paced = parse_yaml(spec.to_yaml() + "report_every: 7\n")
    assert [t.trial_key for t in paced.trials()] == [t.trial_key for t in spec.trials()]
    assert parse_yaml(paced.to_yaml()).report_every == 7


def _with(**changes):
    raw = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return raw


BAD = [
    (_with(bogus=1), "bogus"),
    (_with(grid__seed=[]), "grid.seed"),
    (_with(grid__seed=3), "grid.seed"),
    (_with(grid__colour=["red"]), "grid.colour"),
    (_with(grid__activation=["relu", "swish"]), "grid.activation"),
    (_with(grid__model=["vgg"]), "grid.model"),
    (_with(fixed__seed=1), "grid.seed"),
    (_with(attack__activation="relu"), "attack.activation"),
    (_with(attack__optimizer="sgd"), "attack.optimizer"),
    (_with(attack__iterations="many"), "attack.iterations"),
    (_with(fixed__batch_size=0), "batch_size"),
    (_with(fixed__dataset="imagenet"), "dataset"),
    (_with(resources={"cpu": 1, "tpu": 1}), "resources.tpu"),
    (_with(resources={"cpu": 0}), "resources.cpu"),
    (_with(resources={"gpu": -1}), "resources.gpu"),
    (_with(resources={"gpu": 1.5}), "resources.gpu"),
    (_with(retries=-1), "retries"),
    (_with(name="a b/c"), "name"),
    (_with(grid__activation=["relu", "ReLU"]), "grid"),
    (_with(fixed__model="resnet18", fixed__norm="batch"), "norm"),
]


@pytest.mark.parametrize("raw,key", BAD, ids=[k for _, k in BAD])
def test_bad_spec_names_the_key(raw, key):
    with pytest.raises(UserError) as caught:
        parse_spec(raw)
    assert key in str(caught.value)


def test_bad_values_list_the_allowed_ones():
    with pytest.raises(UserError, match="relu, sigmoid, tanh"):
        parse_spec(_with(grid__activation=["swish"]))
    with pytest.raises(UserError, match="name, description, grid"):
        parse_spec(_with(bogus=1))


def test_unknown_spec_lists_presets():
    with pytest.raises(UserError, match=", ".join(PRESETS)):
        load_spec("no-such-preset")


@pytest.mark.parametrize("command", ["run", "plan"])
def test_cli_exits_2_naming_the_key(tmp_path, capsys, command):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_with(grid__activation=["relu", "swish"])))
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert "grid.activation" in err and "swish" in err and len(err.strip().splitlines()) == 1


def test_cli_exit_2_on_yaml_syntax(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed\n")
    assert main(["plan", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_plan_paper(capsys):
    assert main(["plan", "paper", "--num-cpus", "2", "--num-gpus", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "trials: 960" in out
    text = "\n".join(out)
    for axis in ("seed (6)", "model (2)", "batch_size (5)", "init_method (4)", "prune (2)"):
        assert axis in text
    assert "cpu 1, gpu 0.25" in text and "15.5 PFLOP" in text
    assert "fit at once: 2 trials" in text
    assert "GFLOP/s per CPU core" in text  # the throughput assumption is stated
    assert any(line.startswith("warning: ETA") for line in out)


def test_plan_on_gpus_packs_four_per_gpu(capsys):
    assert main(["plan", "paper", "--num-cpus", "64", "--num-gpus", "8"]) == 0
    text = capsys.readouterr().out
    assert "fit at once: 32 trials" in text and "TFLOP/s per GPU" in text


def test_plan_demo_has_no_warning(capsys):
    assert main(["plan", "demo"]) == 0
    out = capsys.readouterr().out
    assert "trials: 64" in out.splitlines() and "warning" not in out


def test_trial_flops_scale_with_batch_and_pixels():
    one = TrialConfig(model="resnet18", iterations=1)
    assert trial_gflop(one) == pytest.approx(10.1)
    assert trial_gflop(one.replace(batch_size=4)) == pytest.approx(40.4)
    assert trial_gflop(one.replace(image_size=64)) == pytest.approx(40.4)
    mnist = TrialConfig(dataset="mnist", iterations=1)
    assert trial_gflop(mnist) == pytest.approx(0.3 * 784 / 1024)


@pytest.mark.parametrize("name", preset_names())
def test_trial_keys_without_configs_equal_the_configs_keys(name):
    """SweepSpec.trial_keys (status, resume: no TrialConfig built) = TrialConfig.trial_key."""
    spec = load_spec(name)
    slow = [(variant, config.trial_key) for variant, config in spec.labelled_trials()]
    assert spec.trial_keys() == slow


def test_trial_keys_of_odd_values_and_imagefolder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    spec = parse_yaml(
        "name: odd\ngrid: {lr: [1, 0.1, 1e-05], stop: [iterations, plateau]}\n"
        f"fixed: {{dataset: 'imagefolder:{folder}', init_scale: 2, mask_pruned: yes}}\n"
    )
    assert [k for _, k in spec.trial_keys()] == [t.trial_key for t in spec.trials()]
    only = {spec.trial_keys()[2][1]}
    assert [c.trial_key for _, c in spec.labelled_trials(only=only)] == list(only)
