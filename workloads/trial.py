"""One trial: a client's shared gradient, the attack on it, and the score. No Ray here.

`run_trial(config)` is pure: the same config (and seed) on the same device gives the same
result. The seed fixes the model's initial weights, the images drawn from the pool, the dummy
initialisation and the defense noise. The boundary is breaching's: the attacker (`attack.py`)
receives the model, the shared gradients and the batch shape; only `metrics.py` sees the
ground truth.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import traceback

import numpy as np
import torch

from workloads import metrics
from workloads.attack import AttackSettings, reconstruct
from workloads.client import apply_defenses, client_gradients, zero_fraction
from workloads.config import TrialConfig
from workloads.data import choose_images, load_pool, to_tensor
from workloads.labels import LABEL_RULES
from workloads.models import create_model, first_conv, last_linear
from workloads.result import TrialResult

log = logging.getLogger("dlgsweep")


def resolve_device(device: str | None) -> str:
    """CUDA when asked for (or, with None, when present); otherwise CPU, and say so."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("CUDA was requested but is not available: running the attack on CPU")
        return "cpu"
    return device


def run_trial(
    config: TrialConfig, device: str | None = None, *, keep_frames: bool = False
) -> TrialResult:
    """Run one attack. Never raises for a failing attack: the error becomes the result."""
    started = time.time()
    device = resolve_device(device)
    try:
        return _run(config, device, started, keep_frames)
    except Exception as exc:  # a failed trial is a record, not a gap
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.error("trial %s failed: %s", config.trial_key, detail)
        return TrialResult(
            status="error",
            error=detail,
            device=device,
            started_at=started,
            finished_at=time.time(),
            wall_seconds=time.time() - started,
        )


def _run(config: TrialConfig, device: str, started: float, keep_frames: bool) -> TrialResult:
    pool = load_pool(config.dataset, config.split, config.pool_size)
    chosen = choose_images(config.seed, len(pool), config.batch_size)
    ground_truth = to_tensor(pool.images[chosen], config.image_size).to(device)  # (B, C, H, W)
    true_labels = torch.from_numpy(pool.labels[chosen]).to(device)
    _, channels, height, width = ground_truth.shape

    torch.manual_seed(config.seed)
    model = create_model(
        config.model,
        channels=channels,
        side=height,
        num_classes=pool.num_classes,
        activation=config.activation,
        norm=config.norm,
        init_method=config.init_method,
        init_gain=config.init_gain,
    ).to(device)
    server_model = copy.deepcopy(model)  # what the attacker knows: the weights sent out

    # --- client: gradient of one local step, then the defense ------------------------------
    gradients = client_gradients(model, ground_truth, true_labels, config.bn_mode)
    shared = apply_defenses(
        gradients,
        prune=config.prune,
        prune_ratio=config.prune_ratio,
        noise=config.noise,
        noise_scale=config.noise_scale,
        seed=config.seed,
    )
    del gradients, model

    # --- attacker: labels, then gradient matching --------------------------------------------
    strategy = config.effective_label_strategy
    rule = LABEL_RULES[strategy]
    if rule is not None:
        index = _param_index(server_model, last_linear(server_model).weight)
        labels = rule(shared[index].cpu(), config.batch_size)
    elif strategy == "oracle":
        labels = true_labels.cpu()
    else:
        labels = None

    every = max(1, math.ceil(config.iterations / config.curve_points))
    settings = AttackSettings(
        loss=config.loss,
        optimizer=config.optimizer,
        lr=config.lr,
        iterations=config.iterations,
        tv_weight=config.tv_weight,
        stop=config.stop,
        stop_threshold=config.stop_threshold,
        stop_patience=config.stop_patience,
        observe_every=every,
    )
    curve: dict[str, list] = {"iteration": [], "loss": [], "psnr": []}
    frames: list[np.ndarray] = []

    def observe(iteration: int, loss: float, dummy: torch.Tensor) -> None:
        curve["iteration"].append(iteration)
        curve["loss"].append(loss)
        curve["psnr"].append(metrics.score(dummy, ground_truth, with_ssim=False).psnr_mean)
        if keep_frames:
            frames.append(metrics.to_uint8(dummy))

    generator = torch.Generator().manual_seed(config.seed)
    attack_started = time.perf_counter()
    log.info("trial %s on %s: %r", config.trial_key, device, settings)
    outcome = reconstruct(
        server_model,
        shared,
        input_shape=(config.batch_size, channels, height, width),
        num_classes=pool.num_classes,
        labels=labels,
        bn_mode=config.bn_mode,
        settings=settings,
        generator=generator,
        observer=observe,
    )
    attack_seconds = time.perf_counter() - attack_started

    # --- score: the only place the ground truth meets the reconstruction ---------------------
    scores = metrics.score(outcome.reconstruction, ground_truth)
    matched = outcome.reconstruction[torch.as_tensor(scores.order)]
    kernel = first_conv(server_model).weight
    kernel_norms = shared[_param_index(server_model, kernel)].flatten(1).norm(dim=1)
    finished = time.time()
    return TrialResult(
        status="diverged" if outcome.diverged else "ok",
        psnr_mean=float(scores.psnr.mean()),
        psnr_min=float(scores.psnr.min()),
        psnr_max=float(scores.psnr.max()),
        ssim_mean=float(scores.ssim.mean()) if scores.ssim is not None else None,
        label_accuracy=metrics.label_accuracy(outcome.labels, true_labels),
        grad_loss_final=outcome.best_loss if math.isfinite(outcome.best_loss) else None,
        iterations_run=outcome.iterations_run,
        best_iteration=outcome.best_iteration,
        wall_seconds=finished - started,
        seconds_per_iteration=attack_seconds / max(1, outcome.iterations_run),
        device=str(device),
        started_at=started,
        finished_at=finished,
        label_strategy_used=strategy,
        true_labels=[int(v) for v in true_labels.cpu()],
        predicted_labels=[int(v) for v in outcome.labels],
        grad_zero_fraction=zero_fraction(shared),
        grad_kernel_norms=[float(v) for v in kernel_norms.cpu()],
        curve_iteration=curve["iteration"],
        curve_grad_loss=[v if math.isfinite(v) else None for v in curve["loss"]],
        curve_psnr=curve["psnr"],
        reconstruction=metrics.to_uint8(matched),
        ground_truth=metrics.to_uint8(ground_truth),
        frames=frames,
    )


def _param_index(model: torch.nn.Module, parameter: torch.nn.Parameter) -> int:
    params = [p for p in model.parameters() if p.requires_grad]
    return next(i for i, p in enumerate(params) if p is parameter)
