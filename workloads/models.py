"""The client models, their activations and their weight initialisations: one registry each.

- `mcmahan_cnn`: the FedAvg CNN (McMahan et al. 2016, arXiv:1602.05629): two conv5x5 (32, 64,
  same padding) each followed by the activation and a 2x2 max-pool, fc 512, fc classes.
  1,663,370 parameters on MNIST, 2,156,490 on CIFAR-10. `norm="batch"` adds BatchNorm after
  each conv (the seed study's variant, needed for the bn_mode experiment).
- `resnet18`: He et al. 2016 with the CIFAR stem (conv3x3 stride 1, no max-pool), BasicBlock
  [2, 2, 2, 2], width 64, BatchNorm.
- `mcmahan_cnn_seed`: the seed study's McMahan CNN (its `main.py`): conv5x5 with `padding=1`,
  BatchNorm after each conv, `MaxPool2d(2, padding=1)`: 32x32 -> 30 -> 16 -> 14 -> 8, so fc
  4096 -> 512. 2,156,682 parameters on CIFAR-10, 1,663,562 on MNIST.
- `lenet_zhu`: the LeNet of DLG (Zhu et al. 2019, arXiv:1906.08935): three conv5x5 with 12
  channels (strides 2, 2, 1; padding 2), fc -> classes; its own init is U(-0.5, 0.5).

Init gain conventions (`init_gain`):
- `activation` (default): the gain recommended for the model's activation
  (`torch.nn.init.calculate_gain`: relu sqrt(2), tanh 5/3, sigmoid 1) for Xavier and Kaiming.
- `seed`: the seed study's calls: Xavier with gain 1, Kaiming with PyTorch's default
  `a=sqrt(5)` (leaky_relu gain sqrt(1/3)), so its numbers can be compared.
`default` leaves PyTorch's own layer init (lenet_zhu: DLG's U(-0.5, 0.5)). Biases keep PyTorch's
init under every method; BatchNorm starts at weight 1, bias 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from workloads.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}


class McMahanCNN(nn.Module):
    """The FedAvg CNN; `conv_padding=1, pool_padding=1, norm="batch"` is the seed's variant."""

    def __init__(
        self,
        channels: int,
        side: int,
        num_classes: int,
        activation: str,
        norm: str = "none",
        conv_padding: int = 2,
        pool_padding: int = 0,
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        batch_norm = norm == "batch"
        layers: list[nn.Module] = []
        reduced, in_channels = side, channels
        for out_channels in (32, 64):
            layers += [nn.Conv2d(in_channels, out_channels, 5, padding=conv_padding)]
            layers += [nn.BatchNorm2d(out_channels)] if batch_norm else []
            layers += [act(), nn.MaxPool2d(2, padding=pool_padding)]
            reduced = reduced + 2 * conv_padding - 4  # conv5x5
            reduced = (reduced + 2 * pool_padding - 2) // 2 + 1  # max-pool 2x2, stride 2
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * reduced * reduced, 512),
            act(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, classes)
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, activation: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = ACTIVATIONS[activation]()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = ACTIVATIONS[activation]()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, channels: int, side: int, num_classes: int, activation: str) -> None:
        super().__init__()
        del side  # the adaptive pool makes the head independent of the input size
        self.stem = nn.Sequential(
            nn.Conv2d(channels, 64, 3, 1, 1, bias=False),
            nn.BatchNorm2d(64),
            ACTIVATIONS[activation](),
        )
        layers, in_planes = [], 64
        for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(in_planes, planes, stride, activation)]
            layers += [BasicBlock(planes, planes, 1, activation)]
            in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(self.layers(self.stem(x)))  # (B, 512, 1, 1)
        return self.fc(out.flatten(1))


class LeNetZhu(nn.Module):
    def __init__(self, channels: int, side: int, num_classes: int, activation: str) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        self.body = nn.Sequential(
            nn.Conv2d(channels, 12, 5, padding=2, stride=2),
            act(),
            nn.Conv2d(12, 12, 5, padding=2, stride=2),
            act(),
            nn.Conv2d(12, 12, 5, padding=2, stride=1),
            act(),
        )
        reduced = math.ceil(math.ceil(side / 2) / 2)  # 32 -> 8: fc 768 on CIFAR as in DLG
        self.fc = nn.Linear(12 * reduced * reduced, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))

    def default_init(self) -> None:
        """DLG's `weights_init`: every weight and bias U(-0.5, 0.5)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.uniform_(module.weight, -0.5, 0.5)
                if module.bias is not None:
                    nn.init.uniform_(module.bias, -0.5, 0.5)


def _mcmahan(channels: int, side: int, classes: int, activation: str, norm: str) -> nn.Module:
    return McMahanCNN(channels, side, classes, activation, norm)


def _mcmahan_seed(channels: int, side: int, classes: int, activation: str, norm: str) -> nn.Module:
    # the seed study's main.py: conv padding 1, BN after each conv, max-pool padding 1
    return McMahanCNN(channels, side, classes, activation, "batch", conv_padding=1, pool_padding=1)


def _resnet18(channels: int, side: int, classes: int, activation: str, norm: str) -> nn.Module:
    return ResNet18(channels, side, classes, activation)


def _lenet(channels: int, side: int, classes: int, activation: str, norm: str) -> nn.Module:
    return LeNetZhu(channels, side, classes, activation)


MODELS: dict[str, Callable[[int, int, int, str, str], nn.Module]] = {
    "mcmahan_cnn": _mcmahan,
    "resnet18": _resnet18,
    "lenet_zhu": _lenet,
    "mcmahan_cnn_seed": _mcmahan_seed,
}


def _gain(activation: str, convention: str) -> float:
    if convention == "seed":
        return 1.0
    return nn.init.calculate_gain(activation)


def _xavier_normal(w: torch.Tensor, activation: str, convention: str) -> None:
    nn.init.xavier_normal_(w, gain=_gain(activation, convention))


def _xavier_uniform(w: torch.Tensor, activation: str, convention: str) -> None:
    nn.init.xavier_uniform_(w, gain=_gain(activation, convention))


def _kaiming_args(activation: str, convention: str) -> dict:
    if convention == "seed":  # PyTorch's defaults as the seed called them: leaky_relu, a=sqrt(5)
        return {"a": math.sqrt(5), "nonlinearity": "leaky_relu"}
    return {"nonlinearity": activation}


def _kaiming_normal(w: torch.Tensor, activation: str, convention: str) -> None:
    nn.init.kaiming_normal_(w, **_kaiming_args(activation, convention))


def _kaiming_uniform(w: torch.Tensor, activation: str, convention: str) -> None:
    nn.init.kaiming_uniform_(w, **_kaiming_args(activation, convention))


INITS: dict[str, Callable[[torch.Tensor, str, str], None] | None] = {
    "xavier_normal": _xavier_normal,
    "xavier_uniform": _xavier_uniform,
    "kaiming_normal": _kaiming_normal,
    "kaiming_uniform": _kaiming_uniform,
    "default": None,  # the layer's own init (lenet_zhu: DLG's U(-0.5, 0.5))
}


def create_model(
    name: str,
    *,
    channels: int,
    side: int,
    num_classes: int,
    activation: str = "relu",
    norm: str = "none",
    init_method: str = "default",
    init_gain: str = "activation",
    init_scale: float = 1.0,
) -> nn.Module:
    """Build a model by name and initialise its Conv/Linear weights (timm's create_model)."""
    if name not in MODELS:
        raise ConfigError("model", name, "one of " + ", ".join(MODELS))
    if activation not in ACTIVATIONS:
        raise ConfigError("activation", activation, "one of " + ", ".join(ACTIVATIONS))
    if init_method not in INITS:
        raise ConfigError("init_method", init_method, "one of " + ", ".join(INITS))
    model = MODELS[name](channels, side, num_classes, activation, norm)
    init = INITS[init_method]
    if init is None and isinstance(model, LeNetZhu):
        model.default_init()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for module in layers:
            if init is not None:
                init(module.weight, activation, init_gain)
            if init_scale != 1.0:
                module.weight.mul_(init_scale)
    return model


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier layer whose gradient iDLG reads the label from."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1]


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))
