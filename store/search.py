"""The search of a defense axis: the spec's `search:` section, its lattice and its target.

The search finds the defense frontier: per configuration cell, the weakest defense that
defeats the attack.

A spec with a `search:` section searches one defense axis instead of gridding it:

```yaml
search:
  axis: noise_scale      # noise_scale (noise: gaussian | laplacian), prune_ratio (prune: small)
                         # or dp_noise_multiplier (dp_clip > 0: DP-SGD)
  range: [1.0e-4, 1.0]   # weakest, strongest
  scale: log             # log (default for noise_scale) | linear (default for prune_ratio)
  resolution: 0.125      # stop when the bracket is one step: decades (log) or axis units
  target: auto           # defeated when the seeds' mean psnr_mean < target dB; auto: see below
```

Every other axis (seed included) is crossed as usual; the cells are the grid points without
the seed (and the variants). Each cell is searched on a fixed lattice of strengths (the range
cut into equal steps no wider than `resolution`), so an evaluated point is an ordinary trial
of the spec with `axis` set to a lattice value: its `trial_key` is the one a grid sweep over
those values gives, rows are shared with grid sweeps, and `resume` continues a search from its
rows (`store.replay.SearchState` replays it: the search is a deterministic function of the
rows).

The search, per cell (`store.replay.CellSearch`): the two ends of the range, then bisection of
the bracket between the strongest point that does not defeat the attack and the weakest that
does, until the two are neighbours on the lattice. Every point is evaluated on all seeds of the
cell and decided on their mean. PSNR is not monotone in the strength across seeds, so the
decision is made on the antitonic (non-increasing) least-squares fit of the points' means,
weighted by their seeds (scipy's isotonic regression, pool-adjacent-violators): a point that
contradicts an earlier one is pooled with it and the bracket moves to where the pooled evidence
puts it, instead of the search trusting whichever point came last.

`target: auto` is the failed-attack floor plus MARGIN_DB: the PSNR of the best guess made
without the gradient, the pool's mean image, against the pool's images (CIFAR-10 12.7 dB,
MNIST 12.1 dB on the bundled images), plus 2 dB. An attack at or below it rebuilds nothing
the attacker could not have guessed from the dataset alone.

Pure Python and numpy (no torch, no Ray): `status`, `report` and the reader's install use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

import numpy as np

from workloads.bundled import BUNDLED
from workloads.errors import ConfigError

# a SweepSpec (store.spec): the spec imports this module, so the type stays a variable here
SpecT = TypeVar("SpecT")


class _Positive:
    """The switch values of an axis turned on by a number: any number > 0 (DP-SGD's clip)."""

    def __contains__(self, value: object) -> bool:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        return number and math.isfinite(value) and value > 0  # type: ignore[arg-type]

    def __iter__(self):  # noqa: ANN204 (the error message's "allowed values")
        yield "a number > 0"


AXES = {  # searched axis -> (the field that turns it on, its allowed values, default scale)
    "noise_scale": ("noise", ("gaussian", "laplacian"), "log"),
    "prune_ratio": ("prune", ("small",), "linear"),
    # DP-SGD's noise multiplier sigma (workloads.privacy): on with clipping, dp_clip > 0; the
    # frontier states the threshold as the epsilon it buys (analysis.frontier)
    "dp_noise_multiplier": ("dp_clip", _Positive(), "log"),
}
SCALES = ("log", "linear")
SEARCH_KEYS = ("axis", "range", "scale", "resolution", "target", "score")
SEARCH_SCORES = ("psnr_mean", "psnr_raw_mean")
MARGIN_DB = 2.0  # the findings engine's line between "small" and "big" (analysis.findings)
MAX_POINTS = 1025  # a lattice finer than this is a typo
DEFAULT_STEPS = 32  # resolution when none is given: the range in 32 steps
# outcomes of a cell's search
SEARCHING, FOUND, NOT_DEFEATED, DEFEATED_AT_WEAKEST, FAILED = (
    "searching", "found", "not defeated in range", "defeated at the weakest", "failed",
)  # fmt: skip


@dataclass(frozen=True)
class Search:
    """The spec's `search:` section, checked."""

    axis: str
    low: float
    high: float
    scale: str
    resolution: float
    target: float | None  # None: auto (floor + MARGIN_DB)
    score: str = "psnr_mean"

    def lattice(self) -> list[float]:
        """The strengths a search may evaluate, weakest first; the same floats every time
        (6 significant digits), so trial keys match a grid sweep listing these values."""
        return lattice(self.low, self.high, self.scale, self.resolution)

    def position(self, strength: float) -> float:
        """Where a strength sits on the search's scale (log10 for log)."""
        return math.log10(strength) if self.scale == "log" else strength

    def to_dict(self) -> dict[str, Any]:
        return {
            "axis": self.axis,
            "range": [self.low, self.high],
            "scale": self.scale,
            "resolution": self.resolution,
            "target": "auto" if self.target is None else self.target,
            "score": self.score,
        }

    def target_for(self, dataset: str) -> float:
        if self.target is not None:
            return self.target
        return floor_psnr(dataset) + MARGIN_DB


def lattice(low: float, high: float, scale: str, resolution: float) -> list[float]:
    if scale == "log":
        span = math.log10(high) - math.log10(low)
        steps = max(1, math.ceil(span / resolution - 1e-9))
        values = [low * 10 ** (span * i / steps) for i in range(steps + 1)]
    else:
        steps = max(1, math.ceil((high - low) / resolution - 1e-9))
        values = [low + (high - low) * i / steps for i in range(steps + 1)]
    return [float(f"{v:.6g}") for v in values]


@lru_cache(maxsize=4)
def floor_psnr(dataset: str) -> float:
    """The PSNR of the pool's mean image against each bundled image, averaged: what a guess
    that never saw the gradient scores (images in [0, 1], as `metrics.psnr` scores them)."""
    name = BUNDLED.get(dataset)
    if name is None:
        raise ConfigError(
            "search.target", "auto", f"a number of dB (auto knows {', '.join(BUNDLED)} only)"
        )
    with resources.files("workloads").joinpath("data").joinpath(name).open("rb") as handle:
        images = np.load(handle)["x"].astype(np.float64) / 255.0
    flat = images.reshape(len(images), -1)
    mse = ((flat - flat.mean(axis=0)) ** 2).mean(axis=1)
    return float(np.mean(10.0 * np.log10(1.0 / mse)))


def parse_search(raw: Any, spec_fields: dict[str, list[Any]]) -> Search:
    """The `search:` section; `spec_fields`: every value each trial field takes in the spec
    (grid, fixed, attack, variants), for the checks against the rest of the spec."""
    if not isinstance(raw, dict):
        raise ConfigError("search", raw, "a mapping with keys " + ", ".join(SEARCH_KEYS))
    for key in raw:
        if key not in SEARCH_KEYS:
            raise ConfigError(f"search.{key}", None, ", ".join(SEARCH_KEYS))
    axis = raw.get("axis")
    if axis not in AXES:
        raise ConfigError("search.axis", axis, "one of " + ", ".join(AXES))
    switch, allowed, default_scale = AXES[axis]
    if axis in spec_fields:
        raise ConfigError(
            "search.axis", axis, f"an axis the spec does not also set ({axis} is in the spec: "
            "drop it from grid/fixed/attack/variants, the search sets it)",
        )  # fmt: skip
    values = spec_fields.get(switch, [])
    if not values or any(v not in allowed for v in values):
        raise ConfigError(
            "search.axis", axis,
            f"{axis} with {switch}: {' or '.join(allowed)} set in fixed or grid "
            f"(the spec has {switch}: {', '.join(map(str, values)) or 'unset'})",
        )  # fmt: skip
    scale = raw.get("scale", default_scale)
    if scale not in SCALES:
        raise ConfigError("search.scale", scale, "one of " + ", ".join(SCALES))
    low, high = _range(raw.get("range"), axis, scale)
    span = math.log10(high / low) if scale == "log" else high - low
    unit = "decades" if scale == "log" else axis
    resolution = raw.get("resolution", span / DEFAULT_STEPS)
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, (int, float))
        or not 0 < resolution <= span
        or span / resolution > MAX_POINTS - 1
    ):
        raise ConfigError(
            "search.resolution", resolution,
            f"a step in {unit} > 0 and at most the range ({span:g}), at least "
            f"{span / (MAX_POINTS - 1):.3g} ({MAX_POINTS} points)",
        )  # fmt: skip
    target = raw.get("target", "auto")
    if target == "auto":
        target = None
        for dataset in spec_fields.get("dataset", ["cifar10"]):
            floor_psnr(str(dataset))  # auto needs a bundled dataset: refuse now, not in Ray
    elif isinstance(target, bool) or not isinstance(target, (int, float)) or not (0 < target < 100):
        raise ConfigError("search.target", target, "auto or a PSNR in dB between 0 and 100")
    score = raw.get("score", "psnr_mean")
    if score not in SEARCH_SCORES:
        raise ConfigError("search.score", score, "one of " + ", ".join(SEARCH_SCORES))
    return Search(axis, low, high, scale, float(resolution),
                  None if target is None else float(target), score)  # fmt: skip


def _range(raw: Any, axis: str, scale: str) -> tuple[float, float]:
    upper = 1.0 if axis == "prune_ratio" else math.inf
    lowest = "> 0" if scale == "log" else ">= 0"
    allowed = f"[weakest, strongest]: two numbers, weakest {lowest} and below strongest" + (
        ", strongest <= 1" if upper == 1.0 else ""
    )
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in raw)
    ):
        raise ConfigError("search.range", raw, allowed)
    low, high = float(raw[0]), float(raw[1])
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high <= upper:
        raise ConfigError("search.range", raw, allowed)
    if low < 0 or (scale == "log" and low == 0):
        raise ConfigError("search.range", raw, allowed + " (log scale: weakest > 0)")
    return low, high


def search_space(spec: SpecT) -> SpecT:
    """The spec with the searched axis as the last grid axis over the lattice: every trial the
    search may run, as an ordinary grid spec (its trial keys are the search's)."""
    search = spec.search  # type: ignore[attr-defined]
    assert search is not None
    return replace(spec, grid={**spec.grid, search.axis: search.lattice()}, search=None)  # type: ignore
