"""The sweep spec: YAML in, every trial's `TrialConfig` out, all checked before Ray starts.

```yaml
name: paper
grid: {seed: [0, 1], model: [mcmahan_cnn, resnet18]}   # cartesian product = the trials
fixed: {dataset: cifar10}                                # the same for every trial
attack: {optimizer: adam, lr: 0.1, iterations: 500}      # attack fields, same for every trial
# or: attack: {recipe: inverting-gradients, iterations: 2000}  (a recipe's fields, overridden)
resources: {cpu: 1, gpu: 0.25}                           # per trial (fractional GPUs pack)
retries: 2                                               # Tune FailureConfig max_failures
report_every: 25                                         # live reports (default: ~20 a trial)
```

`load_spec` takes a preset name (`store/presets/<name>.yaml`) or a path. Every error is a
`UserError`/`ConfigError` naming the key and what is allowed, so the CLI exits 2 before any
Ray process exists.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dlgsweep.errors import UserError
from store.search import Search, parse_search, search_space
from workloads.config import CHOICES, ENGINE_VERSION, TrialConfig, coerce, normalize_key
from workloads.errors import ConfigError
from workloads.recipes import RECIPES, recipe_fields

TOP_LEVEL_KEYS = (
    "name", "description", "grid", "fixed", "attack", "variants", "resources", "retries",
    "report_every", "search",
)  # fmt: skip
RESOURCE_KEYS = ("cpu", "gpu")
# Ray counts resources in units of 1/10000 (ray._raylet.RESOURCE_UNIT_SCALING); a request below
# one unit is refused by Ray's own option check, and a finer one would be silently rounded.
RESOURCE_UNITS = 10_000
MAX_TRIALS = 1_000_000  # a grid this large is a typo (a stray axis), not a study
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
    "dummy_init",
    "iterate",
    "skip_zero_tensors",
    "mask_pruned",
    "signed",
    "boxed",
    "lr_schedule",
    "lr_warmup",
    "restarts",
    "l2_weight",
    "bn_prior",
)
TRIAL_FIELDS = tuple(TrialConfig.__dataclass_fields__)
DEFAULT_RETRIES = 2
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a folder name: 100 at most


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
    # live reports every N attack iterations (None: about 20 a trial); not a trial field, so
    # trial keys and rows do not depend on it
    report_every: int | None = None
    description: str = ""
    source: str = ""  # preset name or path the spec came from (not saved)
    # name -> fields overriding fixed/attack; each variant is crossed with the whole grid
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    # a defense axis searched per cell instead of gridded (store.search)
    search: Search | None = None

    def trials(self) -> list[TrialConfig]:
        """Every trial: each variant x the grid, in a stable order (last axis fastest)."""
        return [config for _, config in self.labelled_trials()]

    def labelled_trials(self, only: set[str] | None = None) -> list[tuple[str, TrialConfig]]:
        """(variant name, trial) for every trial (or those whose key is in `only`), in
        `trial_keys` order; the name is "" when there are no variants. A search spec's trials
        are every trial its search may run (`frontier.search_space`)."""
        if self.search is not None:
            return search_space(self).labelled_trials(only)
        if only is None:
            return [
                (variant, config)
                for variant, base in self._bases()
                for config in _expand(self.grid, base, variant)
            ]
        keys = iter(self.trial_keys())
        out = []
        for variant, base in self._bases():
            for point in itertools.product(*self.grid.values()):
                if next(keys)[1] in only:
                    out.append((variant, _build(self.grid, point, base, variant)))
        return out

    def trial_keys(self) -> list[tuple[str, str]]:
        """(variant name, trial_key) of every trial, in order, without building the configs.

        Each key is `TrialConfig.trial_key` of the grid point (the same JSON, the same hash),
        assembled from each field's encoded value: 10^5 keys in well under a second, where
        building and validating 10^5 configs takes ten (`status`, `resume`: bench_store.py).
        A search spec's keys are those of every trial its search may run; which of them it
        runs depends on the results (`frontier.SearchState`).
        """
        return self._trial_keys

    @cached_property
    def _trial_keys(self) -> list[tuple[str, str]]:
        if self.search is not None:
            return search_space(self).trial_keys()
        return [(v, key) for v, base in self._bases() for key in _keys(self.grid, base)]

    def _bases(self) -> list[tuple[str, dict[str, Any]]]:
        """(variant, the fields every grid point of it shares): one per variant, or ("", ...)."""
        base = {**self.fixed, **self.attack}
        if not self.variants:
            return [("", base)]
        return [(name, {**base, **overrides}) for name, overrides in self.variants.items()]

    def variant_of(self) -> dict[str, str]:
        """trial_key -> the variant it belongs to (empty when the spec has no variants)."""
        return {key: name for name, key in self.trial_keys() if name}

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec: defaults filled in, spellings normalised; `parse_spec` reads it."""
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["grid"] = {axis: list(values) for axis, values in self.grid.items()}
        out["fixed"] = dict(self.fixed)
        out["attack"] = dict(self.attack)
        if self.variants:
            out["variants"] = {name: dict(fields) for name, fields in self.variants.items()}
        out["resources"] = {"cpu": self.resources.cpu, "gpu": self.resources.gpu}
        out["retries"] = self.retries
        if self.report_every is not None:
            out["report_every"] = self.report_every
        if self.search is not None:
            out["search"] = self.search.to_dict()
        return out

    def to_yaml(self) -> str:
        if self.search is not None:
            header = (
                f"# resolved sweep spec (a search: at most {len(self.trial_keys())} trials, "
                f"{len(self.search.lattice())} strengths per cell)"
            )
        else:
            header = f"# resolved sweep spec ({len(self.trial_keys())} trials)"
        if self.source:
            header += f", from {self.source}"
        body = yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=100)
        return header + "\n" + body


def preset_names() -> list[str]:
    folder = resources.files("store").joinpath("presets")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return resources.files("store").joinpath("presets").joinpath(f"{name}.yaml").read_text()


def load_spec(name_or_path: str) -> SweepSpec:
    """A preset name (`paper`, `demo`, ...) or a path to a YAML file, validated."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        text, source = _read_text(path), str(path)
    elif name_or_path in preset_names():
        text, source = preset_text(name_or_path), f"preset {name_or_path}"
    else:
        raise UserError(
            f"spec {name_or_path!r} is neither a file nor a preset; presets: "
            + ", ".join(preset_names())
        )
    return parse_yaml(text, source)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path}: byte {exc.start} ({exc.object[exc.start]:#04x}) is not UTF-8; "
            "expected a YAML spec saved as UTF-8 text"
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the spec ({exc.strerror})") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a spec must not."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float)) and key in seen:
                where = f"on line {line}" if seen[key] == line else f"lines {seen[key]}, {line}"
                raise UserError(f"{key}: given twice ({where}); expected each key once")
            if isinstance(key, (str, int, float)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str = "", *, check_trials: bool = True) -> SweepSpec:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise UserError(f"{source or 'spec'}: not valid YAML: {_one_line(exc)}") from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise UserError(
            f"{source or 'spec'}: YAML nested too deeply for Python's parser; expected a "
            "mapping of sections holding values or lists of values"
        ) from None
    return parse_spec(raw, source, check_trials=check_trials)


def _one_line(exc: yaml.YAMLError) -> str:
    """PyYAML's message spans lines (context, problem, a caret drawing); keep what and where."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def parse_spec(raw: Any, source: str = "", *, check_trials: bool = True) -> SweepSpec:
    """Check every key and build every trial once, so a bad value fails here and not in Ray.

    `check_trials=False` checks every key and value but builds no trial (the checks across
    fields of one trial wait until it is built): for a spec.yaml that `run` saved, so that
    `status` and `resume` need not validate 10^5 configs again to count them.
    """
    if not isinstance(raw, dict):
        keys = ", ".join(TOP_LEVEL_KEYS)
        raise UserError(f"{source or 'spec'}: expected a mapping with keys {keys}")
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(str(key), None, ", ".join(TOP_LEVEL_KEYS))
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            "name", name, "a name of 1-100 letters, digits, '_', '-', '.' (a folder name)"
        )
    grid = _section(raw, "grid")
    fixed = _section(raw, "fixed")
    recipe, attack = _take_recipe("attack", _section(raw, "attack"))

    grid_n = {axis: _axis(axis, values) for axis, values in _normalised("grid", grid).items()}
    fixed_n = _normalised("fixed", fixed)
    attack_n = _normalised("attack", attack)
    for key in attack_n:
        if key not in ATTACK_FIELDS:
            raise ConfigError(f"attack.{key}", None, ", ".join(("recipe",) + ATTACK_FIELDS))
    if recipe is not None:  # the recipe's fields, below the grid, fixed and attack's own
        given = grid_n.keys() | fixed_n.keys() | attack_n.keys()
        attack_n = {**_recipe_defaults(recipe, given), **attack_n}
    for key in attack_n.keys() & fixed_n.keys():
        raise UserError(f"{key}: set in both fixed and attack; keep one")
    for axis in grid_n:
        if axis in fixed_n or axis in attack_n:
            where = "fixed" if axis in fixed_n else "attack"
            raise UserError(f"grid.{axis}: also set in {where}.{axis}; an axis varies, keep one")

    variants_n = _variants(raw.get("variants"), grid_n)
    if raw.get("search") is None:
        _check_size(grid_n, len(variants_n) or 1)
    grid_c = {axis: [_value(f"grid.{axis}", axis, v) for v in vs] for axis, vs in grid_n.items()}
    fixed_c = {key: _value(f"fixed.{key}", key, v) for key, v in fixed_n.items()}
    attack_c = {key: _value(f"attack.{key}", key, v) for key, v in attack_n.items()}
    variants_c = {
        name: {key: _value(f"variants.{name}.{key}", key, v) for key, v in fields.items()}
        for name, fields in variants_n.items()
    }
    search = None
    if raw.get("search") is not None:  # checked against every value the spec gives
        values = _values_by_field(grid_c, fixed_c, attack_c, variants_c)
        search = parse_search(raw["search"], values)
        _check_size({**grid_n, search.axis: search.lattice()}, len(variants_n) or 1)

    spec = SweepSpec(
        name=name,
        grid=grid_c,
        fixed=fixed_c,
        attack=attack_c,
        resources=_resources(raw.get("resources")),
        retries=_retries(raw.get("retries", DEFAULT_RETRIES)),
        report_every=_report_every(raw.get("report_every")),
        description=str(raw.get("description") or ""),
        source=source,
        variants=variants_c,
        search=search,
    )
    if check_trials:
        spec.labelled_trials()  # builds every TrialConfig: cross-field errors here
    seen: dict[str, str] = {}
    for name, key in spec.trial_keys():
        if key in seen:
            if name or seen[key]:
                raise UserError(
                    f"variants: {seen[key]!r} and {name!r} give the same trial "
                    f"({key}); each variant must change something"
                )
            raise UserError(
                "grid: two grid points are the same trial (a value listed twice, perhaps in "
                "two spellings such as ReLU and relu); list each value once"
            )
        seen[key] = name
    return spec


def _values_by_field(
    grid: dict[str, list[Any]],
    fixed: dict[str, Any],
    attack: dict[str, Any],
    variants: dict[str, dict[str, Any]],
) -> dict[str, list[Any]]:
    """Every value each field takes in the spec's (canonical) sections, for the search checks."""
    out: dict[str, list[Any]] = {name: list(values) for name, values in grid.items()}
    for fields in [fixed, attack, *variants.values()]:
        for name, value in fields.items():
            out.setdefault(name, []).append(value)
    return out


def _variants(raw: Any, grid: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """`variants: {name: {field: value}}`: one-at-a-time designs (e.g. `corrections`)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("variants", raw, "a non-empty mapping of name -> {field: value}")
    out: dict[str, dict[str, Any]] = {}
    for name, fields in raw.items():
        if not isinstance(name, str) or not NAME_PATTERN.match(name):
            raise ConfigError(
                "variants", name, "variant names of 1-100 letters, digits, '_', '-', '.'"
            )
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            raise ConfigError(f"variants.{name}", fields, "a mapping of trial field -> value")
        recipe, fields = _take_recipe(f"variants.{name}", fields)
        normalised = _normalised(f"variants.{name}", fields)
        for key in normalised:
            if key in grid:
                raise UserError(
                    f"variants.{name}.{key}: {key} is a grid axis; a variant overrides fixed "
                    "or attack fields only"
                )
        if recipe is not None:  # the variant's recipe, below its own fields, above the rest
            normalised = {**_recipe_defaults(recipe, grid.keys() | normalised.keys()), **normalised}
        out[name] = normalised
    return out


def _take_recipe(where: str, section: dict) -> tuple[str | None, dict]:
    """`recipe: NAME` out of an attack or variant section: (the name or None, the rest)."""
    if "recipe" not in section:
        return None, section
    name = section["recipe"]
    if not isinstance(name, str) or name not in RECIPES:
        raise ConfigError(f"{where}.recipe", name, "one of " + ", ".join(RECIPES))
    return name, {k: v for k, v in section.items() if k != "recipe"}


def _recipe_defaults(name: str, given: Any) -> dict[str, Any]:
    """The recipe's field values for the fields the spec does not set itself."""
    return {k: v for k, v in recipe_fields(name).items() if k not in given}


def _section(raw: dict, key: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(key, value, "a mapping of trial field -> value")
    return value


def _normalised(section: str, raw: dict) -> dict[str, Any]:
    """Field name -> value, with the seed's spellings (`model.init_method`) mapped to ours.

    Two spellings of one field in a section (`activation` and `model.activation`) are an
    error: keeping either silently would run a sweep other than the one written.
    """
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in raw.items():
        name = _field(f"{section}.{key}", key)
        if name in out:
            raise ConfigError(
                f"{section}.{key}",
                value,
                f"each field once; {section}.{spelled[name]} already sets {name}",
            )
        out[name], spelled[name] = value, str(key)
    return out


def _check_size(grid: dict[str, list[Any]], variants: int = 1) -> None:
    """Refuse a runaway grid before building its trials (each one is validated below)."""
    total = math.prod(len(values) for values in grid.values()) * variants
    if total > MAX_TRIALS:
        sizes = " x ".join(f"{axis} {len(values)}" for axis, values in grid.items())
        sizes += f" x {variants} variants" if variants > 1 else ""
        raise ConfigError(
            "grid", f"{total:,} trials ({sizes})", f"at most {MAX_TRIALS:,} trials per sweep"
        )


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
    cpu = _quantity("resources.cpu", raw.get("cpu", 1), "a number > 0 (CPUs per trial)")
    gpu = _quantity("resources.gpu", raw.get("gpu", 0), "a number >= 0 (GPUs per trial)")
    if cpu == 0:
        raise ConfigError("resources.cpu", cpu, "a number > 0 (CPUs per trial)")
    if gpu > 1 and not gpu.is_integer():
        raise ConfigError("resources.gpu", gpu, "a fraction below 1 or a whole number (Ray's rule)")
    return Resources(cpu=float(cpu), gpu=float(gpu))


def _quantity(where: str, value: Any, allowed: str) -> float:
    """A finite, non-negative number that Ray can represent: a multiple of 1/RESOURCE_UNITS."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(where, value, allowed)
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(where, value, allowed)
    units = value * RESOURCE_UNITS
    if abs(units - round(units)) > 1e-6 * max(1.0, units):
        raise ConfigError(
            where, value, f"{allowed}, in steps of {1 / RESOURCE_UNITS:g} (Ray's resource unit)"
        )
    return value


def _report_every(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise ConfigError("report_every", raw, "an integer >= 1 (attack iterations per report)")
    return raw


def _retries(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise ConfigError("retries", raw, "an integer >= 0 (reruns of a failed trial)")
    return raw


def _expand(
    grid: dict[str, list[Any]], base: dict[str, Any], variant: str = ""
) -> list[TrialConfig]:
    return [_build(grid, point, base, variant) for point in itertools.product(*grid.values())]


def _build(
    grid: dict[str, list[Any]], point: tuple, base: dict[str, Any], variant: str
) -> TrialConfig:
    """The trial at one grid point; an error names the grid point (and variant)."""
    try:
        return TrialConfig.from_dict({**base, **dict(zip(grid, point))})
    except ConfigError as exc:
        where = f"grid.{exc.key}" if exc.key in grid else exc.key
        at = ", ".join(f"{a}={v}" for a, v in zip(grid, point))
        at = f"variant {variant}, {at}" if variant else at
        raise ConfigError(where, exc.value, f"{exc.allowed} (at grid point {at})") from None


_DEFAULTS = TrialConfig().to_dict()


def _keys(grid: dict[str, list[Any]], base: dict[str, Any]) -> list[str]:
    """`TrialConfig.trial_key` of every grid point over `base`, in `itertools.product` order.

    The key hashes `json.dumps({**fields, "engine": ENGINE_VERSION}, sort_keys=True,
    separators=(",", ":"))`; that text is the sorted `"name":value` pairs, so each value is
    encoded once and each key costs a join and a hash. Spec values are already canonical
    (`_value`); an `imagefolder:` dataset is resolved against the working folder by TrialConfig,
    so those trials (and any grid whose first trial disagrees) take the slow path.
    """
    fixed = {**_DEFAULTS, **base, "engine": ENGINE_VERSION}
    names = sorted(fixed)
    datasets = [fixed["dataset"], *grid.get("dataset", [])]
    if any(str(d).startswith("imagefolder:") for d in datasets):
        return [_build(grid, p, base, "").trial_key for p in itertools.product(*grid.values())]
    parts = [f"{json.dumps(n)}:{json.dumps(fixed[n])}" for n in names]
    slots = [names.index(axis) for axis in grid]
    encoded = [[f"{json.dumps(axis)}:{json.dumps(v)}" for v in grid[axis]] for axis in grid]
    keys = []
    for point in itertools.product(*encoded):
        for slot, text in zip(slots, point):
            parts[slot] = text
        blob = "{" + ",".join(parts) + "}"
        keys.append(hashlib.sha256(blob.encode()).hexdigest()[:16])
    first = _build(grid, tuple(values[0] for values in grid.values()), base, "")
    if keys and keys[0] != first.trial_key:  # a field TrialConfig rewrites: build them all
        return [_build(grid, p, base, "").trial_key for p in itertools.product(*grid.values())]
    return keys
