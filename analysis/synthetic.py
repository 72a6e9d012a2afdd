"""Synthetic sweeps of known truth: rows shaped like the sink's (every config field, its default
unless the grid varies it), with PSNR = truth(config) + noise; and the rows a search spec
writes over a known response (`synthetic_search`). The findings are calibrated on
them (`bench/bench_findings.py`) and tested on them (`tests/test_analysis_findings.py`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from workloads.config import TrialConfig

if TYPE_CHECKING:
    from store.spec import SweepSpec

_DEFAULTS = None


def synthetic_frame(
    grid: dict[str, list],
    psnr: Callable[[dict], float],
    seeds: Iterable[int] = (0, 1, 2),
    noise_sd: float | Callable[[dict], float] = 0.5,
    extra: Callable[[dict], dict] | None = None,
    rng: np.random.Generator | None = None,
) -> pl.DataFrame:
    """One ok row per grid point and seed: psnr(config) + N(0, noise_sd) (noise_sd may depend
    on the config). Without `rng` the noise is drawn from a generator seeded by the trial's
    config (the same frame every call); with one, from `rng` (a new sweep per call)."""
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS = TrialConfig().to_dict()
    rows = []
    axes = list(grid)
    for values in itertools.product(*(grid[a] for a in axes)):
        for seed in seeds:
            config = {**_DEFAULTS, **dict(zip(axes, values)), "seed": seed}
            blob = json.dumps(config, sort_keys=True, default=str).encode()
            key = hashlib.sha256(blob).hexdigest()[:16]
            draw = rng if rng is not None else np.random.default_rng(int(key, 16) % 2**32)
            sd = noise_sd(config) if callable(noise_sd) else noise_sd
            row = {
                **config, "sweep": "synthetic", "trial_key": key, "status": "ok", "error": None,
                "psnr_mean": float(psnr(config) + draw.normal(0, sd)),
                "label_accuracy": 1.0, "grad_zero_fraction": 0.1,
            }  # fmt: skip
            if extra:
                row.update(extra(config))
            rows.append(row)
    return pl.DataFrame(rows, infer_schema_length=None)


def synthetic_search(
    spec: SweepSpec,
    psnr: Callable[[dict], float],
    distortion: Callable[[dict], tuple[float, float]] | None = None,
    sweep: str | None = None,
) -> list[dict]:
    """The rows a search spec (`search:`) writes when every trial scores `psnr(config)`: the
    search (`SearchState`) driven to its end over that response, one ok row of the sink's
    schema (`make_row`, no images) per trial it asked for, under the spec's trial keys and
    variants. `distortion(config)` -> (grad_cosine, grad_rel_error); default (1, 0)."""
    from store.replay import SearchState
    from store.schema import make_row
    from workloads.result import TrialResult

    state = SearchState.of(spec)
    configs = {c.trial_key: (v, c) for v, c in spec.labelled_trials()}
    rows = []
    while wanted := state.wanted():
        for key in wanted:
            variant, config = configs[key]
            fields = config.to_dict()
            score = float(psnr(fields))
            cosine, error = distortion(fields) if distortion else (1.0, 0.0)
            result = TrialResult("ok", psnr_mean=score, psnr_raw_mean=score, label_accuracy=1.0,
                                 grad_cosine=cosine, grad_rel_error=error)  # fmt: skip
            row = make_row(config, result, sweep=sweep or spec.name, variant=variant or None,
                           with_images=False)  # fmt: skip
            rows.append(row)
            state.record(key, score)
    return rows
