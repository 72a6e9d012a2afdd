"""Attack recipes: a published attack's defaults as values of the trial's attack fields.

A spec's `attack: {recipe: NAME, ...}` (or a variant's `recipe:`) and `dlgsweep attack --recipe
NAME` fill the attack fields from `RECIPES[NAME]`; every field given beside the recipe wins. The
fields stay the truth: a row's `recipe` column is read back from its fields (`recipe_of`), the
recipe's name where every method field equals the recipe's, `custom` otherwise. The budget
fields (`BUDGET_FIELDS`: iterations, restarts, stopping, curve points) may differ: Inverting
Gradients run for 2,000 steps on a CPU is still Inverting Gradients.

Sources and the choices made where a paper and its code disagree are in the docs (reference:
recipes); in short:
- `dlg` (Zhu et al. 2019, arXiv:1906.08935, and its code): L-BFGS lr 1 on the L2 gradient
  distance, 300 iterations, soft labels optimised jointly, N(0, 1) start, the last iterate.
- `idlg` (Zhao et al. 2020, arXiv:2001.02610, and its code): DLG with the label read off the
  classifier's gradient (LLG beyond batch 1).
- `seed-study`: the seed study's Adam loop (`paper-seed`): Adam lr 0.1 on the cosine distance
  skipping all-zero tensors, 500 iterations, the true labels, N(0, 1) start, the last iterate.
- `inverting-gradients` (Geiping et al. 2020, arXiv:2003.14053; its code, inversefed): cosine
  distance, Adam lr 0.1 on the sign of the gradient, boxed, step schedule (x0.1 at 3/8, 5/8,
  7/8), TV 0.1, 8 restarts scored by gradient loss, 24,000 iterations, labels from the gradient.
- `gradinversion` (Yin et al. 2021, arXiv:2104.07586, as breaching's see-through-gradients
  config sets it): L2 distance, Adam lr 0.1 with cosine decay after 50 warmup steps, boxed,
  TV, L2 and BN-statistics priors, labels by Yin's rule, 20,000 iterations; group consistency
  and Langevin noise left out.
"""

from __future__ import annotations

from typing import Any

# What every recipe sets: the attacker's method and its default budget. Fields a recipe does not
# list keep TrialConfig's defaults when the recipe is applied.
RECIPE_FIELDS = (
    "loss", "optimizer", "lr", "iterations", "label_strategy", "tv_weight", "l2_weight",
    "bn_prior", "signed", "boxed", "lr_schedule", "lr_warmup", "restarts", "dummy_init",
    "iterate", "skip_zero_tensors", "mask_pruned",
)  # fmt: skip
# The attack's budget: changing one keeps the recipe's name.
BUDGET_FIELDS = (
    "iterations", "restarts", "curve_points", "stop", "stop_threshold", "stop_patience",
)  # fmt: skip

_PLAIN = {
    "tv_weight": 0.0, "l2_weight": 0.0, "bn_prior": 0.0, "signed": "none", "boxed": False,
    "lr_schedule": "none", "lr_warmup": 0, "restarts": 1, "dummy_init": "randn",
    "skip_zero_tensors": False, "mask_pruned": False,
}  # fmt: skip

RECIPES: dict[str, dict[str, Any]] = {
    "dlg": {
        **_PLAIN,
        "loss": "l2",
        "optimizer": "lbfgs",
        "lr": 1.0,
        "iterations": 300,
        "label_strategy": "optimize",
        "iterate": "last",
    },
    "idlg": {
        **_PLAIN,
        "loss": "l2",
        "optimizer": "lbfgs",
        "lr": 1.0,
        "iterations": 300,
        "label_strategy": "idlg",
        "iterate": "last",
    },
    "seed-study": {
        **_PLAIN,
        "loss": "cosine",
        "optimizer": "adam",
        "lr": 0.1,
        "iterations": 500,
        "label_strategy": "oracle",
        "iterate": "last",
        "skip_zero_tensors": True,
    },
    "inverting-gradients": {
        **_PLAIN,
        "loss": "cosine",
        "optimizer": "adam",
        "lr": 0.1,
        "iterations": 24_000,
        "label_strategy": "idlg",
        "signed": "hard",
        "boxed": True,
        "lr_schedule": "step",
        "tv_weight": 0.1,
        "restarts": 8,
        "iterate": "best",
    },
    # breaching's weights divided by its objective scale 1e-4 (Adam is invariant to scaling the
    # whole objective): gradient 1, TV 1e-4 -> 1, L2 1e-6 -> 0.01, BN 0.1 -> 1000
    "gradinversion": {
        **_PLAIN,
        "loss": "l2",
        "optimizer": "adam",
        "lr": 0.1,
        "iterations": 20_000,
        "label_strategy": "yin",
        "boxed": True,
        "lr_schedule": "cosine",
        "lr_warmup": 50,
        "tv_weight": 1.0,
        "l2_weight": 0.01,
        "bn_prior": 1000.0,
        "iterate": "best",
    },
}
CUSTOM = "custom"


def recipe_names() -> tuple[str, ...]:
    return tuple(RECIPES)


def recipe_fields(name: str) -> dict[str, Any]:
    """The recipe's field values; a `ConfigError` naming `recipe` for an unknown name."""
    from workloads.errors import ConfigError

    if name not in RECIPES:
        raise ConfigError("recipe", name, "one of " + ", ".join(RECIPES))
    return dict(RECIPES[name])


def recipe_of(values: dict[str, Any]) -> str:
    """The recipe whose method fields all equal `values`' (a trial's fields), else `custom`."""
    for name, fields in RECIPES.items():
        method = {k: v for k, v in fields.items() if k not in BUDGET_FIELDS}
        if all(values.get(k) == v for k, v in method.items()):
            return name
    return CUSTOM
