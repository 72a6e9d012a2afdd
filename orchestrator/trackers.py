"""`--log`: experiment trackers through Ray Tune's own logger callbacks, one run per trial.

    --log tensorboard     Tune's TBXLoggerCallback: event files in each trial's Tune folder
    --log wandb           Tune's WandbLoggerCallback, project = the sweep's name; W&B's own
                          WANDB_MODE (offline: no network) and WANDB_DIR (default: here)
    --log mlflow=URI      Tune's MLflowLoggerCallback, experiment = the sweep's name, at the
                          tracking URI (http://HOST:PORT of an `mlflow server`, or a folder)

Each trial's run gets its config (Tune's param space: the trial's fields, the variant) and its
curve: the live reports (`attack_iteration` as the step, `grad_loss`, `psnr`) and the final one
(`psnr_mean`). The trackers' packages are optional extras: `dlgsweep[wandb]`, `dlgsweep[mlflow]`
(tensorboardX comes with `ray[tune]`); a missing one is named before Ray starts (exit 2).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Callable

from dlgsweep.errors import UserError

ALLOWED = "tensorboard, wandb, mlflow=URI"


def _tensorboard(value: str | None, sweep: str) -> Any:
    from ray.tune.logger import TBXLoggerCallback

    return TBXLoggerCallback()


def _wandb(value: str | None, sweep: str) -> Any:
    from ray.air.integrations.wandb import WandbLoggerCallback

    # W&B's logging actors run in Ray workers, whose environment is not this one: the mode and
    # folder are passed to wandb.init explicitly
    return WandbLoggerCallback(
        project=os.environ.get("WANDB_PROJECT") or sweep,
        mode=os.environ.get("WANDB_MODE") or None,
        dir=os.path.abspath(os.environ.get("WANDB_DIR") or "."),
    )


def _mlflow(value: str | None, sweep: str) -> Any:
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    return MLflowLoggerCallback(tracking_uri=value, experiment_name=sweep)


# name -> (maker, takes a value, the package it needs, the extra that installs it)
TRACKERS: dict[str, tuple[Callable[[str | None, str], Any], bool, str, str]] = {
    "tensorboard": (_tensorboard, False, "tensorboardX", "sweep"),
    "wandb": (_wandb, False, "wandb", "wandb"),
    "mlflow": (_mlflow, True, "mlflow", "mlflow"),
}


def parse(text: str) -> tuple[str, str | None]:
    """One `--log` value as (tracker, value), checked: a known name, a value where one is
    needed, the package installed. UserError naming what is allowed otherwise."""
    name, _, value = text.partition("=")
    if name not in TRACKERS:
        raise UserError(f"{text!r} is not allowed; expected {ALLOWED}")
    _, takes_value, package, extra = TRACKERS[name]
    if takes_value and not value:
        raise UserError(f"{text!r} needs a tracking URI; expected {name}=URI")
    if not takes_value and value:
        raise UserError(f"{text!r} takes no value; expected {name}")
    if importlib.util.find_spec(package) is None:
        raise UserError(
            f"{name}: the {package} package is not installed; pip install 'dlgsweep[{extra}]'"
        )
    return name, value or None


def callbacks(logs: list[tuple[str, str | None]], sweep: str) -> list[Any]:
    """The Tune callbacks for checked `--log` values (made on the driver, when Ray runs)."""
    return [TRACKERS[name][0](value, sweep) for name, value in logs]
