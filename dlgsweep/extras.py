"""The optional install: the base package reads results; `dlgsweep[sweep]` runs attacks.

`pip install dlgsweep` gives `status`, `query`, `report`, `plan` and `analysis` in a notebook
(polars, pyarrow, altair; no torch, no Ray). `pip install 'dlgsweep[sweep]'` adds torch,
torchvision, Ray Tune and scikit-image for `run`, `resume` and `attack`. A command that needs
the extra says so (exit 2) instead of failing on an import deep inside.
"""

from __future__ import annotations

import importlib.util

from dlgsweep.errors import UserError

SWEEP = "sweep"
# import name -> what it is for; what `dlgsweep[sweep]` installs (pyproject.toml)
SWEEP_MODULES = {"torch": "torch", "torchvision": "torchvision", "ray": "ray[tune]",
                 "skimage": "scikit-image"}  # fmt: skip


def missing(modules: tuple[str, ...]) -> list[str]:
    """The distributions of `modules` that cannot be imported here."""
    return [SWEEP_MODULES.get(m, m) for m in modules if importlib.util.find_spec(m) is None]


def require_sweep(command: str, modules: tuple[str, ...] = tuple(SWEEP_MODULES)) -> None:
    """UserError (exit 2) naming the extra when `command` needs what only it installs."""
    absent = missing(modules)
    if absent:
        raise UserError(
            f"`dlgsweep {command}` needs the {SWEEP!r} extra ({', '.join(absent)} not installed; "
            f"this is the results reader's install): pip install 'dlgsweep[{SWEEP}]'"
        )
