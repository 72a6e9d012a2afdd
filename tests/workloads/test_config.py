"""TrialConfig: validation, the seed's spellings, and the stable trial key."""

from __future__ import annotations

import pytest

from workloads.config import TrialConfig
from workloads.errors import ConfigError


def test_seed_spellings_map_onto_ours():
    config = TrialConfig.from_dict(
        {
            "+seed": "3",
            "model": "McMahan_CNN",
            "model.init_method": "xavier_normal_",
            "model.activation": "ReLU",
            "client.prune.type": None,
            "batch_size": 4,
        }
    )
    assert (config.seed, config.model, config.init_method) == (3, "mcmahan_cnn", "xavier_normal")
    assert (config.activation, config.prune, config.batch_size) == ("relu", "none", 4)
    assert TrialConfig.from_dict({"model": "Custom_ResNet", "prune": "null"}).model == "resnet18"


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"model": "vgg"}, "model"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"prune_ratio": 1.5}, "prune_ratio"),
        ({"lr": "fast"}, "lr"),
        ({"dataset": "imagenet"}, "dataset"),
        ({"dataset": "imagefolder:/no/such/folder"}, "dataset"),
        ({"label_strategy": "guess"}, "label_strategy"),
        ({"colour": "red"}, "colour"),
        ({"iterations": True}, "iterations"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(raw, key):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(raw)
    assert info.value.key == key
    message = str(info.value)
    assert key in message
    assert "expected" in message or "allowed keys" in message


def test_unknown_value_lists_known_ones():
    with pytest.raises(ConfigError, match="mcmahan_cnn, resnet18, lenet_zhu"):
        TrialConfig.from_dict({"model": "vgg"})


def test_trial_key_is_stable_and_config_sensitive():
    a = TrialConfig.from_dict({"seed": 1, "model": "resnet18"})
    assert a.trial_key == TrialConfig(seed=1, model="resnet18").trial_key
    assert a.trial_key != a.replace(seed=2).trial_key
    assert len(a.trial_key) == 16


def test_idlg_uses_its_batch_extension_for_larger_batches():
    assert TrialConfig(batch_size=1).effective_label_strategy == "idlg"
    assert TrialConfig(batch_size=4).effective_label_strategy == "llg"


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"lr": float("nan")}, "lr"),
        ({"noise_scale": float("inf")}, "noise_scale"),
        ({"init_scale": 0}, "init_scale"),
        ({"init_scale": -1.0}, "init_scale"),
        ({"mask_pruned": "maybe"}, "mask_pruned"),
        ({"deterministic": 2}, "deterministic"),
        ({"dummy_init": "zeros"}, "dummy_init"),
        ({"image_choice": "last"}, "image_choice"),
        ({"image_norm": "zscore"}, "image_norm"),
        ({"prune_mode": "layers"}, "prune_mode"),
        ({"iterate": "middle"}, "iterate"),
        ({"precision": "fp16"}, "precision"),
        ({"model": "mcmahan_cnn_seed", "norm": "batch"}, "norm"),
    ],
)
def test_new_fields_reject_bad_values(raw, key):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(raw)
    assert info.value.key == key


def test_booleans_accept_yaml_and_flag_spellings():
    for text, value in (("true", True), ("False", False), ("yes", True), ("0", False)):
        assert TrialConfig.from_dict({"mask_pruned": text}).mask_pruned is value
    assert TrialConfig.from_dict({"deterministic": True}).deterministic is True


def test_one_field_under_two_spellings_is_an_error():
    with pytest.raises(ConfigError, match="each field once"):
        TrialConfig.from_dict({"init_method": "xavier_normal", "model.init_method": "default"})


def test_trial_key_changes_with_the_engine_version(monkeypatch):
    """Rows of an older engine (or written before a field existed) never match a new trial."""
    from workloads import config as config_module

    before = TrialConfig().trial_key
    monkeypatch.setattr(config_module, "ENGINE_VERSION", config_module.ENGINE_VERSION + 1)
    assert TrialConfig().trial_key != before
    assert TrialConfig(dummy_init="uniform").trial_key != TrialConfig().trial_key
