"""Every registered model, activation and init: shapes, gradients, parameter counts, gains."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from workloads.config import CHOICES
from workloads.models import ACTIVATIONS, INITS, MODELS, create_model, first_conv, last_linear

SHAPES = {"cifar10": (3, 32), "mnist": (1, 28)}


def test_registries_match_the_config_choices():
    assert tuple(MODELS) == CHOICES["model"]
    assert tuple(ACTIVATIONS) == CHOICES["activation"]
    assert tuple(INITS) == CHOICES["init_method"]


@pytest.mark.parametrize("dataset", SHAPES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", MODELS)
def test_forward_and_backward(name, activation, dataset):
    channels, side = SHAPES[dataset]
    model = create_model(
        name,
        channels=channels,
        side=side,
        num_classes=10,
        activation=activation,
        init_method="xavier_normal",
    )
    x = torch.rand(2, channels, side, side)
    logits = model(x)
    assert logits.shape == (2, 10)
    grads = torch.autograd.grad(logits.logsumexp(1).sum(), list(model.parameters()))
    assert all(torch.isfinite(g).all() for g in grads)
    used = {type(m) for m in model.modules()}
    assert ACTIVATIONS[activation] in used  # the chosen nonlinearity is the one applied
    others = set(ACTIVATIONS.values()) - {ACTIVATIONS[activation]}
    assert not used & others
    assert last_linear(model).out_features == 10
    assert first_conv(model).in_channels == channels


@pytest.mark.parametrize("dataset,expected", [("mnist", 1_663_370), ("cifar10", 2_156_490)])
def test_mcmahan_parameter_count(dataset, expected):
    channels, side = SHAPES[dataset]
    model = create_model("mcmahan_cnn", channels=channels, side=side, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_mcmahan_batch_norm_variant_adds_bn_after_each_conv():
    model = create_model("mcmahan_cnn", channels=3, side=32, num_classes=10, norm="batch")
    layers = list(model.features)
    assert isinstance(layers[0], nn.Conv2d) and isinstance(layers[1], nn.BatchNorm2d)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2


def test_lenet_zhu_is_dlgs_network():
    model = create_model("lenet_zhu", channels=3, side=32, num_classes=100, activation="sigmoid")
    assert last_linear(model).in_features == 768
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert module.weight.abs().max() <= 0.5 and module.weight.abs().max() > 0.45


@pytest.mark.parametrize("init_method", [m for m in INITS if m != "default"])
def test_init_is_seeded_and_changes_weights(init_method):
    def build(seed):
        torch.manual_seed(seed)
        return create_model(
            "mcmahan_cnn",
            channels=3,
            side=32,
            num_classes=10,
            activation="relu",
            init_method=init_method,
        )

    a, b, c = build(0), build(0), build(1)
    torch.manual_seed(0)
    plain = create_model("mcmahan_cnn", channels=3, side=32, num_classes=10)
    wa, wb, wc = (m.classifier[1].weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert not torch.equal(wa, plain.classifier[1].weight)


# expected std of the fc 4096 -> 512 weight under each convention
FAN_IN, FAN_OUT = 4096, 512
XAVIER_STD = math.sqrt(2.0 / (FAN_IN + FAN_OUT))


@pytest.mark.parametrize(
    "init_method,init_gain,activation,expected_std",
    [
        ("xavier_normal", "seed", "relu", XAVIER_STD),
        ("xavier_normal", "activation", "relu", math.sqrt(2) * XAVIER_STD),
        ("xavier_uniform", "activation", "tanh", 5 / 3 * XAVIER_STD),
        ("kaiming_normal", "activation", "relu", math.sqrt(2 / FAN_IN)),
        ("kaiming_normal", "activation", "sigmoid", math.sqrt(1 / FAN_IN)),
        ("kaiming_uniform", "seed", "relu", math.sqrt(2 / 6) / math.sqrt(FAN_IN)),
    ],
)
def test_gain_conventions(init_method, init_gain, activation, expected_std):
    torch.manual_seed(0)
    model = create_model(
        "mcmahan_cnn",
        channels=3,
        side=32,
        num_classes=10,
        activation=activation,
        init_method=init_method,
        init_gain=init_gain,
    )
    std = float(model.classifier[1].weight.detach().std())
    assert std == pytest.approx(expected_std, rel=0.01)


@pytest.mark.parametrize("name", MODELS)
def test_plan_has_a_flop_figure_for_every_model(name):
    from orchestrator.plan import GFLOP_PER_ITERATION

    assert GFLOP_PER_ITERATION[name] > 0
