"""The trial's configuration: one frozen, flat dataclass, checked once.

`TrialConfig.from_dict` is the single entry point for untrusted input (CLI flags, sweep YAML,
Ray Tune's param space). It rejects unknown keys and bad values with the key's name and the
allowed values, and it maps the seed study's Hydra spellings (`McMahan_CNN`, `Custom_ResNet`,
`xavier_normal_`, `ReLU`, `null`) onto ours so its sweep lines carry over directly.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from workloads.errors import ConfigError

# Allowed values of each categorical field. The registries (models, inits, ...) are checked
# against these in the tests so the two can never drift apart.
CHOICES: dict[str, tuple[str, ...]] = {
    "model": ("mcmahan_cnn", "resnet18", "lenet_zhu", "mcmahan_cnn_seed"),
    "norm": ("none", "batch"),
    "init_method": (
        "xavier_normal",
        "xavier_uniform",
        "kaiming_normal",
        "kaiming_uniform",
        "default",
    ),
    "init_gain": ("activation", "seed"),
    "activation": ("relu", "sigmoid", "tanh"),
    "bn_mode": ("eval", "train"),
    "prune": ("none", "small"),
    "noise": ("none", "gaussian", "laplacian"),
    "loss": ("cosine", "l2"),
    "optimizer": ("adam", "lbfgs"),
    "label_strategy": ("idlg", "llg", "yin", "optimize", "oracle"),
    "stop": ("iterations", "threshold", "plateau"),
    "split": ("test", "train"),
    # the seed study's protocol, one field per departure from the literature (docs: the seed study)
    "image_choice": ("random", "first"),
    "image_norm": ("unit", "minmax"),
    "prune_mode": ("entries", "tensors"),
    "dummy_init": ("randn", "uniform"),
    "iterate": ("best", "last"),
    "precision": ("fp32", "tf32"),
    # the attack's optimisation (workloads.attack): Inverting Gradients' signed steps, schedules
    "signed": ("none", "hard"),
    "lr_schedule": ("none", "step", "cosine"),
}

# Bumped whenever the same TrialConfig would give a different result (a fixed attack bug, a
# changed random stream): it is part of `trial_key`, so rows of an older engine are never taken
# for trials of this one; `resume` reruns them. 2: independent random streams per role, iDLG
# from the bias gradient, LLG's spreading fallback, dummy_init/seed-protocol fields. 3: the
# attack fields of Inverting Gradients and GradInversion (signed, boxed, schedules, restarts,
# priors); `grad_loss_final` and the curve's loss are the gradient loss without the priors.
ENGINE_VERSION = 3
# restarts run as one batched problem: R copies of the dummy in memory at once
MAX_RESTARTS = 64
# FedAvg: the attacker unrolls every local step on its dummies (graph memory grows with K)
MAX_LOCAL_STEPS = 100

# The seed study's spellings (Hydra sweep lines) -> ours.
ALIASES: dict[str, dict[str, str]] = {
    "model": {
        "mcmahan_cnn": "mcmahan_cnn",
        "mcmahan": "mcmahan_cnn",
        "mcmahan_cnn_seed": "mcmahan_cnn_seed",
        "custom_resnet": "resnet18",
        "resnet": "resnet18",
        "resnet18": "resnet18",
        "lenet": "lenet_zhu",
    },
    "activation": {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh"},
    "prune": {"null": "none", "none": "none", "small": "small"},
    "noise": {"null": "none", "none": "none"},
    "loss": {"mse": "l2", "cos": "cosine", "cosine_similarity": "cosine"},
}

# The results store's integer columns are int64: a larger value could be validated, then run,
# then never written.
INT64_MAX = 2**63 - 1
# Images in each split of the torchvision datasets: a pool_size beyond them fails every trial.
SPLIT_SIZES = {("cifar10", "test"): 10_000, ("cifar10", "train"): 50_000,
               ("mnist", "test"): 10_000, ("mnist", "train"): 60_000}  # fmt: skip

NONE_WORDS = {"null", "none", "~", ""}
TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class TrialConfig:
    """One attack on one batch of images against one freshly initialised model.

    Every field is a grid axis; two configs with equal fields are the same trial (`trial_key`).
    """

    seed: int = 0
    dataset: str = "cifar10"  # cifar10 | mnist | imagefolder:PATH
    split: str = "test"
    pool_size: int = 1000  # images are drawn from the first `pool_size` of the split
    image_choice: str = "random"  # random: drawn per seed | first: the first B (the seed's)
    image_norm: str = "unit"  # unit: pixels / 255 | minmax: mean/std, then per-image min-max
    model: str = "mcmahan_cnn"
    norm: str = "none"  # mcmahan_cnn only: "batch" adds BatchNorm after each conv
    init_method: str = "xavier_normal"
    init_gain: str = "activation"
    init_scale: float = 1.0  # every Conv/Linear weight times this, after the init method
    activation: str = "sigmoid"
    batch_size: int = 1
    bn_mode: str = "eval"
    prune: str = "none"
    prune_ratio: float = 0.2
    prune_mode: str = "entries"  # entries: smallest per tensor | tensors: the seed's code
    noise: str = "none"
    noise_scale: float = 0.0
    loss: str = "cosine"
    optimizer: str = "adam"
    lr: float = 0.1
    iterations: int = 500
    label_strategy: str = "idlg"
    tv_weight: float = 0.0  # TV prior weight (workloads.attack: anisotropic, mean over entries)
    l2_weight: float = 0.0  # L2 prior weight: mean of the squared dummy pixels
    bn_prior: float = 0.0  # GradInversion's BN-statistics prior weight (0: off; BN models only)
    signed: str = "none"  # hard: the optimiser steps on the sign of the dummy's gradient (IG)
    boxed: bool = False  # clamp the dummy into the valid pixel range ([0, 1]) after every step
    lr_schedule: str = "none"  # none | step (x0.1 at 3/8, 5/8, 7/8) | cosine (after lr_warmup)
    lr_warmup: int = 0  # cosine: iterations of linear warmup
    restarts: int = 1  # independent dummy starts; the lowest gradient loss is kept
    dummy_init: str = "randn"  # the dummy's start: N(0, 1) (DLG, iDLG, the seed) or U[0, 1]
    iterate: str = "best"  # which iterate is the reconstruction: lowest loss, or the last
    skip_zero_tensors: bool = False  # the seed's distance: leave out all-zero shared tensors
    mask_pruned: bool = False  # match only the entries that are non-zero in the shared gradient
    precision: str = "fp32"  # fp32 | tf32 (CUDA matmul and convolutions)
    deterministic: bool = False  # PyTorch's deterministic algorithms, cuDNN without autotuning
    stop: str = "iterations"
    stop_threshold: float = 1e-4  # stop == "threshold": gradient loss at or below this
    stop_patience: int = 100  # stop == "plateau": iterations without a new best loss
    image_size: int = 0  # 0 = native resolution; else resize to this side length
    curve_points: int = 50  # how many points of the convergence curve to keep
    # DP-SGD at the client (Abadi et al. 2016; workloads.privacy): per-example gradients clipped
    # to dp_clip, summed, N(0, (dp_noise_multiplier dp_clip)^2) noise added, divided by the batch
    # size. 0: no DP-SGD. The accountant's epsilon covers dp_steps x local_steps steps at
    # sampling rate dp_sample_rate, for dp_delta.
    dp_clip: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_sample_rate: float = 1.0  # q: the Poisson sampling rate the guarantee claims
    dp_steps: int = 1  # client updates the guarantee covers (1: the update the attacker sees)
    dp_delta: float = 1e-5
    # FedAvg (workloads.client.client_update): local_steps SGD steps of local_lr on the client's
    # local_images images, in mini-batches of batch_size visited in order; the client shares the
    # weight difference. local_steps 1 on one batch (local_images 0 = batch_size) is FedSGD: the
    # client shares the gradient, as before these fields.
    local_steps: int = 1
    local_lr: float = 0.1
    local_images: int = 0  # n, a multiple of batch_size; 0 (or batch_size): one batch

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(name, value, "one of " + ", ".join(allowed))
        if not (self.dataset in ("cifar10", "mnist") or self.dataset.startswith("imagefolder:")):
            raise ConfigError("dataset", self.dataset, "cifar10, mnist or imagefolder:PATH")
        if self.dataset.startswith("imagefolder:"):
            root = Path(self.dataset.split(":", 1)[1]).expanduser()
            if not root.is_dir():
                raise ConfigError(
                    "dataset", self.dataset, "imagefolder:PATH with PATH an existing folder"
                )
            # absolute: Ray Tune runs each trial in a working directory of its own
            object.__setattr__(self, "dataset", f"imagefolder:{root.resolve()}")
        for name in _FLOAT_FIELDS_OF_CLASS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(name, value, "a number")
            if not math.isfinite(value):
                raise ConfigError(name, value, "a finite number")
        for name in _BOOL_FIELDS_OF_CLASS:
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, getattr(self, name), "true or false")
        # numpy's SeedSequence (every random stream of the trial) takes no negative seed
        _check_range("seed", self.seed, 0, None, "an integer >= 0")
        for name in _INT_FIELDS_OF_CLASS:
            if getattr(self, name) > INT64_MAX:
                allowed = f"an integer at most {INT64_MAX} (2**63 - 1: the results store's int64)"
                raise ConfigError(name, getattr(self, name), allowed)
        _check_range("batch_size", self.batch_size, 1, None, "an integer >= 1")
        _check_range("pool_size", self.pool_size, 1, None, "an integer >= 1")
        _check_range("iterations", self.iterations, 1, None, "an integer >= 1")
        _check_range("curve_points", self.curve_points, 2, None, "an integer >= 2")
        _check_range("stop_patience", self.stop_patience, 1, None, "an integer >= 1")
        _check_range("image_size", self.image_size, 0, 1024, "0 (native) or a side length 8..1024")
        if 0 < self.image_size < 8:
            raise ConfigError("image_size", self.image_size, "0 (native) or a side length 8..1024")
        if not 0.0 <= self.prune_ratio < 1.0:
            raise ConfigError("prune_ratio", self.prune_ratio, "a fraction in [0, 1)")
        if self.noise_scale < 0:
            raise ConfigError("noise_scale", self.noise_scale, "a number >= 0")
        if self.lr <= 0:
            raise ConfigError("lr", self.lr, "a number > 0")
        for name in ("tv_weight", "l2_weight", "bn_prior"):
            if getattr(self, name) < 0:
                raise ConfigError(name, getattr(self, name), "a number >= 0")
        _check_range("restarts", self.restarts, 1, MAX_RESTARTS, f"an integer 1..{MAX_RESTARTS}")
        _check_range("lr_warmup", self.lr_warmup, 0, None, "an integer >= 0")
        if self.lr_warmup > 0 and self.lr_schedule != "cosine":
            raise ConfigError(
                "lr_warmup", self.lr_warmup, f"0 with lr_schedule {self.lr_schedule} (cosine only)"
            )
        if self.lr_warmup >= self.iterations:
            raise ConfigError(
                "lr_warmup", self.lr_warmup, f"fewer than iterations ({self.iterations})"
            )
        if self.bn_prior > 0:
            self._check_bn_prior()
        self._check_dp()
        self._check_fedavg()
        if self.stop_threshold < 0:
            raise ConfigError("stop_threshold", self.stop_threshold, "a number >= 0")
        split_size = SPLIT_SIZES.get((self.dataset, self.split))
        if split_size is not None and self.pool_size > split_size:
            raise ConfigError(
                "pool_size", self.pool_size, f"at most {split_size} ({self.dataset} {self.split})"
            )
        if self.batch_size > self.pool_size:
            raise ConfigError(
                "batch_size", self.batch_size, f"at most pool_size ({self.pool_size})"
            )
        if self.init_scale <= 0:
            raise ConfigError("init_scale", self.init_scale, "a number > 0")
        # resnet18's last BatchNorm would see one value per channel: torch refuses to train
        one_value = self.batch_size == 1 and self.image_size == 8
        if self.model == "resnet18" and self.bn_mode == "train" and one_value:
            raise ConfigError(
                "image_size", 8, "at least 9 for resnet18 with bn_mode train at batch_size 1"
            )
        if self.norm == "batch" and self.model != "mcmahan_cnn":
            raise ConfigError(
                "norm",
                self.norm,
                "'batch' only with model mcmahan_cnn (resnet18 and mcmahan_cnn_seed have BN)",
            )

    @property
    def has_bn(self) -> bool:
        return self.model in ("resnet18", "mcmahan_cnn_seed") or self.norm == "batch"

    @property
    def dp(self) -> bool:
        """DP-SGD at the client: per-example clipping (and noise where the multiplier > 0)."""
        return self.dp_clip > 0

    @property
    def client_images(self) -> int:
        """n: the images the client trains on (and the attacker rebuilds)."""
        return self.local_images or self.batch_size

    @property
    def fedavg(self) -> bool:
        """The client shares a weight difference of several steps or batches, not a gradient."""
        return self.local_steps > 1 or self.client_images > self.batch_size

    @property
    def dp_accounted_steps(self) -> int:
        """T, the DP-SGD steps the epsilon composes: dp_steps updates of local_steps each."""
        return self.dp_steps * self.local_steps

    def _check_dp(self) -> None:
        if self.dp_clip < 0:
            raise ConfigError("dp_clip", self.dp_clip, "a number >= 0 (0: no DP-SGD)")
        if self.dp_noise_multiplier < 0:
            raise ConfigError("dp_noise_multiplier", self.dp_noise_multiplier, "a number >= 0")
        if not 0 < self.dp_sample_rate <= 1:
            raise ConfigError("dp_sample_rate", self.dp_sample_rate, "a rate in (0, 1]")
        _check_range("dp_steps", self.dp_steps, 1, None, "an integer >= 1")
        if not 0 < self.dp_delta < 1:
            raise ConfigError("dp_delta", self.dp_delta, "a probability in (0, 1), e.g. 1e-5")
        if not self.dp:  # the DP fields mean nothing without clipping: one spelling per trial
            defaults = {"dp_noise_multiplier": 0.0, "dp_sample_rate": 1.0, "dp_steps": 1,
                        "dp_delta": 1e-5}  # fmt: skip
            for name, default in defaults.items():
                if getattr(self, name) != default:
                    raise ConfigError(
                        name, getattr(self, name), f"{default:g} without DP-SGD (set dp_clip > 0)"
                    )
            return
        if self.has_bn and self.bn_mode == "train":
            raise ConfigError(
                "bn_mode", "train",
                f"eval with DP-SGD (dp_clip {self.dp_clip:g}) on {self.model}'s BatchNorm: in "
                "train mode BN's batch statistics mix the examples, so a per-example gradient is "
                "undefined (Opacus refuses it too)",
            )  # fmt: skip

    def _check_fedavg(self) -> None:
        _check_range("local_steps", self.local_steps, 1, MAX_LOCAL_STEPS,
                     f"an integer 1..{MAX_LOCAL_STEPS}")  # fmt: skip
        if self.local_lr <= 0:
            raise ConfigError("local_lr", self.local_lr, "a number > 0")
        _check_range("local_images", self.local_images, 0, None,
                     "0 (one batch) or a multiple of batch_size")  # fmt: skip
        if self.local_images == self.batch_size:  # one spelling of one batch: the same trial
            object.__setattr__(self, "local_images", 0)
        n = self.client_images
        if n % self.batch_size:
            raise ConfigError(
                "local_images", n, f"0 or a multiple of batch_size ({self.batch_size})"
            )
        if n > self.pool_size:
            raise ConfigError("local_images", n, f"at most pool_size ({self.pool_size})")
        if self.local_steps * self.batch_size < n:
            raise ConfigError(
                "local_images", n,
                f"at most local_steps x batch_size ({self.local_steps * self.batch_size}): "
                "every image must be visited by a local step",
            )  # fmt: skip
        if self.fedavg and self.bn_prior > 0:
            raise ConfigError(
                "bn_prior", self.bn_prior,
                "0 with FedAvg updates (local_steps > 1 or local_images > batch_size): the BN "
                "buffers then mix several batches' statistics",
            )  # fmt: skip

    def _check_bn_prior(self) -> None:
        """The BN prior matches the client's batch statistics: the model must have BN, and the
        client must train in train mode, whose update of the BN buffers reveals them."""
        if not self.has_bn:
            raise ConfigError(
                "bn_prior",
                self.bn_prior,
                f"0 for {self.model} without BatchNorm (BN models: resnet18, mcmahan_cnn_seed, "
                "mcmahan_cnn with norm batch)",
            )
        if self.bn_mode != "train":
            raise ConfigError(
                "bn_prior",
                self.bn_prior,
                "0 with bn_mode eval: an eval-mode client's update reveals no batch statistics "
                "(set bn_mode train)",
            )

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrialConfig:
        """Build from untrusted input: unknown keys, wrong types and unknown values are errors."""
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            name = normalize_key(key)
            if name not in known:
                raise ConfigError(key, None, "a trial field: " + ", ".join(sorted(known)))
            if name in values:
                raise ConfigError(
                    str(key), value, f"each field once (also given as {spelled[name]!r})"
                )
            spelled[name] = str(key)
            values[name] = coerce(name, value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        # flat fields only: a comprehension, not dataclasses.asdict's deep copy (a 10^5-trial
        # spec expands in a third less time; status and resume hash every trial)
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def replace(self, **changes: Any) -> TrialConfig:
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    @property
    def trial_key(self) -> str:
        """A stable hash of every field and the engine version: same trial, same key.

        A field added later changes every key, so a row written before it existed is never
        taken for a trial with the new field's default (an old U[0,1]-start row is not a
        `randn` row); such rows read with the field null, and `resume` reruns their trials.
        """
        blob = json.dumps(
            {**self.to_dict(), "engine": ENGINE_VERSION}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def effective_label_strategy(self) -> str:
        """iDLG's rule is defined for one image; for B > 1 its batch extension (LLG) is used."""
        if self.label_strategy == "idlg" and self.client_images > 1:
            return "llg"
        return self.label_strategy


def normalize_key(key: str) -> str:
    """`init-method`, `model.init_method` and `client.prune.type` all name our flat fields."""
    key = str(key).strip().lstrip("+").replace("-", "_")
    seed_paths = {
        "model.init_method": "init_method",
        "model.activation": "activation",
        "client.prune.type": "prune",
        "client.prune.ratio": "prune_ratio",
    }
    if key in seed_paths:
        return seed_paths[key]
    return key.rsplit(".", 1)[-1]


_FIELD_NAMES = tuple(f.name for f in fields(TrialConfig))
_INT_FIELDS = {f.name for f in fields(TrialConfig) if f.type in ("int", int)}
_FLOAT_FIELDS = {f.name for f in fields(TrialConfig) if f.type in ("float", float)}
_BOOL_FIELDS = {f.name for f in fields(TrialConfig) if f.type in ("bool", bool)}
_FLOAT_FIELDS_OF_CLASS = tuple(sorted(_FLOAT_FIELDS))
_BOOL_FIELDS_OF_CLASS = tuple(sorted(_BOOL_FIELDS))
_INT_FIELDS_OF_CLASS = tuple(sorted(_INT_FIELDS))


def coerce(name: str, value: Any) -> Any:
    """Turn one raw value into the field's type, accepting the seed's spellings."""
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not _is_integral(value):
            raise ConfigError(name, value, "an integer")
        return int(value)
    if name in _FLOAT_FIELDS:
        if isinstance(value, bool):
            raise ConfigError(name, value, "a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(name, value, "a number") from None
        if not math.isfinite(number):
            raise ConfigError(name, value, "a finite number")
        return number
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in TRUE_WORDS or text in FALSE_WORDS:
            return text in TRUE_WORDS
        raise ConfigError(name, value, "true or false")
    if value is None:
        value = "none"
    if not isinstance(value, str):
        raise ConfigError(name, value, "a string")
    text = value.strip()
    if name == "dataset":
        return text if text.startswith("imagefolder:") else text.lower()
    text = text.lower().rstrip("_")  # torch's in-place names: xavier_normal_
    if text in NONE_WORDS and name in ("prune", "noise", "norm"):
        return "none"
    return ALIASES.get(name, {}).get(text, text)


def _is_integral(value: Any) -> bool:
    if isinstance(value, int):
        return True
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, str):
        try:
            int(value)
        except ValueError:
            return False
        return True
    return False


def _check_range(name: str, value: int, low: int, high: int | None, allowed: str) -> None:
    if value < low or (high is not None and value > high):
        raise ConfigError(name, value, allowed)
