"""`dlgsweep attack`: one attack, no Ray. Flags are the trial's fields (`--init-method ...`).

Writes `ground_truth.png`, `reconstruction.png`, `convergence.gif` (the reconstruction
converging: the seed study's video) and `result.json` (one row of the results schema, no image
bytes) into `--out`, and prints the metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import fields
from pathlib import Path

from dlgsweep.extras import require_sweep
from workloads.config import CHOICES, TrialConfig
from workloads.recipes import RECIPES, recipe_fields

BOOLEAN_FIELDS = {f.name for f in fields(TrialConfig) if f.type in ("bool", bool)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack", help="run one attack locally (no Ray)", description=__doc__.splitlines()[0]
    )
    defaults = TrialConfig()
    for field in fields(TrialConfig):
        allowed = CHOICES.get(field.name)
        hint = f" ({' | '.join(allowed)})" if allowed else ""
        flag = "--" + field.name.replace("_", "-")
        default = f"default {getattr(defaults, field.name)!r}"
        if field.name in BOOLEAN_FIELDS:  # `--mask-pruned` alone means true
            parser.add_argument(
                flag, dest=field.name, default=None, nargs="?", const="true",
                metavar="true|false", help=f"{default}; the flag alone means true",
            )  # fmt: skip
            continue
        parser.add_argument(
            flag, dest=field.name, default=None, metavar=field.name.upper(),
            help=f"{default}{hint}",
        )  # fmt: skip
    parser.add_argument(
        "--recipe", default=None, metavar="NAME",
        help=f"fill the attack fields from a published attack ({' | '.join(RECIPES)}); "
        "any field flag given beside it wins",
    )  # fmt: skip
    parser.add_argument("--out", default="attack-out", help="output folder (default attack-out)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda if present)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    require_sweep("attack", ("torch", "torchvision", "skimage"))  # not Ray: one attack, here
    from store.schema import json_row, make_row
    from workloads.trial import resolve_device, run_trial

    raw = {f.name: getattr(args, f.name) for f in fields(TrialConfig)}
    given = {k: v for k, v in raw.items() if v is not None}
    if args.recipe is not None:
        given = {**recipe_fields(args.recipe), **given}
    config = TrialConfig.from_dict(given)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    device = resolve_device(args.device)
    if device == "cpu":
        print("device: cpu (no CUDA device available or requested)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    result = run_trial(config, device, keep_frames=True)
    row = make_row(config, result, sweep="attack", with_images=False)
    (out / "result.json").write_text(json.dumps(json_row(row), indent=2) + "\n")
    if result.status == "error":
        print(f"error: {result.error}")
        return 1
    _write_images(out, result)
    print(summary(config, result, out))
    return 0


def _num(value: float | None, spec: str, scale: float = 1.0) -> str:
    """A number formatted by `spec`, or 'n/a' when the attack produced none (never a crash)."""
    return "n/a" if value is None else format(value * scale, spec)


def summary(config: TrialConfig, result, out: Path) -> str:  # noqa: ANN001 (TrialResult)
    """What one attack did, for every status (a diverged trial may lack any number)."""
    note = ""
    if result.status == "diverged":
        note = " (the attack hit NaN/inf; the scores are of the best finite iterate)"
    kept = "best" if config.iterate == "best" else "last"
    return (
        f"{config.model} {config.activation} {config.init_method} B={config.batch_size} "
        f"seed={config.seed} on {result.device}: status {result.status}{note}\n"
        f"  PSNR mean {_num(result.psnr_mean, '.2f')} dB (min {_num(result.psnr_min, '.2f')}, "
        f"max {_num(result.psnr_max, '.2f')}), SSIM {_num(result.ssim_mean, '.3f')}; "
        f"the seed's raw PSNR {_num(result.psnr_raw_mean, '.2f')} dB\n"
        f"  labels {result.predicted_labels} (true {result.true_labels}), "
        f"label accuracy {_num(result.label_accuracy, '.2f')} [{result.label_strategy_used}]\n"
        f"  attack {result.recipe}: gradient loss {_num(result.grad_loss_final, '.3g')} "
        f"({kept} iterate; best at iteration {result.best_iteration}"
        f"{_restarts(result)}), {result.iterations_run} iterations, "
        f"{_num(result.seconds_per_iteration, '.1f', 1000)} ms/iteration\n"
        f"{_client(config, result)}"
        f"  wrote {out}/ground_truth.png, reconstruction.png, convergence.gif, result.json"
    )


def _client(config: TrialConfig, result) -> str:  # noqa: ANN001 (TrialResult)
    """The client's update when it is not one plain gradient: FedAvg's steps, DP-SGD's epsilon."""
    lines = ""
    if config.fedavg:
        lines += (f"  client: FedAvg, {config.local_steps} local steps of lr {config.local_lr:g} "
                  f"on {config.client_images} images in batches of {config.batch_size} "
                  "(the attacker unrolls them)\n")  # fmt: skip
    if config.dp:
        lines += (
            f"  DP-SGD: clip {config.dp_clip:g}, noise multiplier {config.dp_noise_multiplier:g}"
            f" -> epsilon {_num(result.dp_epsilon, '.4g')} (PLD; RDP "
            f"{_num(result.dp_epsilon_rdp, '.4g')}) at delta {config.dp_delta:g}, q "
            f"{config.dp_sample_rate:g}, {config.dp_accounted_steps} steps; "
            f"{_num(result.dp_clipped_fraction, '.0%')} of per-example gradients clipped, "
            f"noise/signal {_num(result.dp_noise_to_signal, '.3g')}\n"
        )
    return lines


def _restarts(result) -> str:  # noqa: ANN001 (TrialResult)
    losses = [v for v in result.restart_grad_losses if v is not None]
    if len(result.restart_grad_losses) < 2:
        return ""
    spread = f", others {min(losses):.3g}..{max(losses):.3g}" if losses else ""
    return f"; restart {result.restart_kept} of {len(result.restart_grad_losses)} kept{spread}"


def _write_images(out: Path, result) -> None:
    from PIL import Image

    from store.schema import batch_png

    (out / "ground_truth.png").write_bytes(batch_png(result.ground_truth))
    (out / "reconstruction.png").write_bytes(batch_png(result.reconstruction))
    frames = [Image.open(_png_stream(batch_png(frame))) for frame in result.frames]
    if frames:
        scale = max(1, 128 // frames[0].height)  # tiny CIFAR images: enlarge for viewing
        frames = [f.resize((f.width * scale, f.height * scale), Image.NEAREST) for f in frames]
        frames[0].save(
            out / "convergence.gif", save_all=True, append_images=frames[1:], duration=80, loop=0
        )


def _png_stream(data: bytes):
    import io

    return io.BytesIO(data)
