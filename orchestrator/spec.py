"""The sweep spec: YAML in, every trial's `TrialConfig` out, all checked before Ray starts.

```yaml
name: paper
grid: {seed: [0, 1], model: [mcmahan_cnn, resnet18]}   # cartesian product = the trials
fixed: {dataset: cifar10}                                # the same for every trial
attack: {optimizer: adam, lr: 0.1, iterations: 500}      # attack fields, same for every trial
resources: {cpu: 1, gpu: 0.25}                           # per trial (fractional GPUs pack)
retries: 2                                               # Tune FailureConfig max_failures
```

`load_spec` takes a preset name (`orchestrator/presets/<name>.yaml`) or a path. Every error is a
`UserError`/`ConfigError` naming the key and what is allowed, so the CLI exits 2 before any
Ray process exists.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from workloads.config import CHOICES, TrialConfig, coerce, normalize_key
from workloads.errors import ConfigError, UserError

TOP_LEVEL_KEYS = ("name", "description", "grid", "fixed", "attack", "resources", "retries")
RESOURCE_KEYS = ("cpu", "gpu")
# TrialConfig fields that describe the attacker (the `attack:` section); the rest go in `fixed`.
ATTACK_FIELDS = (
    "loss",
    "optimizer",
    "lr",
    "iterations",
    "label_strategy",
    "tv_weight",
    "stop",
    "stop_threshold",
    "stop_patience",
    "curve_points",
)
TRIAL_FIELDS = tuple(TrialConfig.__dataclass_fields__)
DEFAULT_RETRIES = 2
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Resources:
    """What one trial asks Ray for."""

    cpu: float = 1.0
    gpu: float = 0.0

    def as_ray(self) -> dict[str, float]:
        return {"cpu": self.cpu, "gpu": self.gpu}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: the grid axes, what is fixed, and what each trial may use."""

    name: str
    grid: dict[str, list[Any]]
    fixed: dict[str, Any]
    attack: dict[str, Any]
    resources: Resources = field(default_factory=Resources)
    retries: int = DEFAULT_RETRIES
    description: str = ""
    source: str = ""  # preset name or path the spec came from (not saved)

    def trials(self) -> list[TrialConfig]:
        """Every trial of the grid, in a stable order (the last axis varies fastest)."""
        return _expand(self.grid, {**self.fixed, **self.attack})

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec: defaults filled in, spellings normalised; `parse_spec` reads it."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["grid"] = {axis: list(values) for axis, values in self.grid.items()}
        out["fixed"] = dict(self.fixed)
        out["attack"] = dict(self.attack)
        out["resources"] = {"cpu": self.resources.cpu, "gpu": self.resources.gpu}
        out["retries"] = self.retries
        return out

    def to_yaml(self) -> str:
        header = f"# resolved sweep spec ({len(self.trials())} trials)"
        if self.source:
            header += f", from {self.source}"
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)
        return header + "\n" + body


def preset_names() -> list[str]:
    folder = resources.files("orchestrator").joinpath("presets")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return resources.files("orchestrator").joinpath("presets").joinpath(f"{name}.yaml").read_text()


def load_spec(name_or_path: str) -> SweepSpec:
    """A preset name (`paper`, `demo`, ...) or a path to a YAML file, validated."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        text, source = path.read_text(), str(path)
    elif name_or_path in preset_names():
        text, source = preset_text(name_or_path), f"preset {name_or_path}"
    else:
        raise UserError(
            f"spec {name_or_path!r} is neither a file nor a preset; presets: "
            + ", ".join(preset_names())
        )
    return parse_yaml(text, source)


def parse_yaml(text: str, source: str = "") -> SweepSpec:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{source or 'spec'}: not valid YAML: {exc}") from None
    return parse_spec(raw, source)


def parse_spec(raw: Any, source: str = "") -> SweepSpec:
    """Check every key and build every trial once, so a bad value fails here and not in Ray."""
    if not isinstance(raw, dict):
        keys = ", ".join(TOP_LEVEL_KEYS)
        raise UserError(f"{source or 'spec'}: expected a mapping with keys {keys}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(str(key), None, ", ".join(TOP_LEVEL_KEYS))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError("name", name, "a name of letters, digits, '_', '-', '.' (a folder name)")
    grid = _section(raw, "grid")
    fixed = _section(raw, "fixed")
    attack = _section(raw, "attack")

    grid_n = {_field(f"grid.{axis}", axis): _axis(axis, values) for axis, values in grid.items()}
    fixed_n = {_field(f"fixed.{key}", key): value for key, value in fixed.items()}
    attack_n = {_field(f"attack.{key}", key): value for key, value in attack.items()}
    for key in attack_n:
        if key not in ATTACK_FIELDS:
            raise ConfigError(f"attack.{key}", None, ", ".join(ATTACK_FIELDS))
    for key in attack_n.keys() & fixed_n.keys():
        raise UserError(f"{key}: set in both fixed and attack; keep one")
    for axis in grid_n:
        if axis in fixed_n or axis in attack_n:
            where = "fixed" if axis in fixed_n else "attack"
            raise UserError(f"grid.{axis}: also set in {where}.{axis}; an axis varies, keep one")

    spec = SweepSpec(
        name=name,
        grid={axis: [_value(f"grid.{axis}", axis, v) for v in vs] for axis, vs in grid_n.items()},
        fixed={key: _value(f"fixed.{key}", key, v) for key, v in fixed_n.items()},
        attack={key: _value(f"attack.{key}", key, v) for key, v in attack_n.items()},
        resources=_resources(raw.get("resources")),
        retries=_retries(raw.get("retries", DEFAULT_RETRIES)),
        description=str(raw.get("description") or ""),
        source=source,
    )
    trials = spec.trials()  # builds every TrialConfig: cross-field errors surface here
    keys = [t.trial_key for t in trials]
    if len(set(keys)) != len(keys):
        raise UserError(
            "grid: two grid points are the same trial (a value listed twice, perhaps in two "
            "spellings such as ReLU and relu); list each value once"
        )
    return spec


def _section(raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a mapping of trial field -> value")
    return value


def _field(where: str, key: Any) -> str:
    name = normalize_key(str(key))
    if name not in TRIAL_FIELDS:
        raise ConfigError(where, None, "a trial field: " + ", ".join(TRIAL_FIELDS))
    return name


def _axis(axis: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise ConfigError(f"grid.{axis}", values, "a list of values (put a single value in fixed)")
    if not values:
        raise ConfigError(f"grid.{axis}", values, "a non-empty list of values")
    return values


def _value(where: str, name: str, value: Any) -> Any:
    """The field's canonical value (`ReLU` -> `relu`); errors name the spec's key.

    Only the field's own type and allowed set are checked here; checks across fields
    (batch_size vs pool_size, norm vs model) run when `_expand` builds each trial.
    """
    try:
        value = coerce(name, value)
    except ConfigError as exc:
        raise ConfigError(where, exc.value, exc.allowed) from None
    if name in CHOICES and value not in CHOICES[name]:
        raise ConfigError(where, value, "one of " + ", ".join(CHOICES[name]))
    return value


def _resources(raw: Any) -> Resources:
    if raw is None:
        return Resources()
    if not isinstance(raw, dict):
        raise ConfigError("resources", raw, "a mapping {cpu: N, gpu: N}")
    for key in raw:
        if key not in RESOURCE_KEYS:
            raise ConfigError(f"resources.{key}", None, ", ".join(RESOURCE_KEYS))
    cpu, gpu = raw.get("cpu", 1), raw.get("gpu", 0)
    if isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0:
        raise ConfigError("resources.cpu", cpu, "a number > 0 (CPUs per trial)")
    if isinstance(gpu, bool) or not isinstance(gpu, (int, float)) or gpu < 0:
        raise ConfigError("resources.gpu", gpu, "a number >= 0 (GPUs per trial)")
    if gpu > 1 and float(gpu) != int(gpu):
        raise ConfigError("resources.gpu", gpu, "a fraction below 1 or a whole number (Ray's rule)")
    return Resources(cpu=float(cpu), gpu=float(gpu))


def _retries(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError("retries", raw, "an integer >= 0 (reruns of a failed trial)")
    return raw


def _expand(grid: dict[str, list[Any]], base: dict[str, Any]) -> list[TrialConfig]:
    axes = list(grid)
    trials = []
    for point in itertools.product(*(grid[axis] for axis in axes)):
        values = {**base, **dict(zip(axes, point))}
        try:
            trials.append(TrialConfig.from_dict(values))
        except ConfigError as exc:
            where = f"grid.{exc.key}" if exc.key in grid else exc.key
            at = ", ".join(f"{a}={v}" for a, v in zip(axes, point))
            raise ConfigError(where, exc.value, f"{exc.allowed} (at grid point {at})") from None
    return trials
