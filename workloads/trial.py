"""One trial: a client's shared gradient, the attack on it, and the score. No Ray here.

`run_trial(config)` is pure: the same config (and seed) on the same device gives the same
result. The seed fixes the model's initial weights, the images drawn from the pool, the dummy
initialisation and the defense noise, each from a random stream of its own (`RandomStreams`):
no draw of one role can echo another's (the dummy is never a copy of the weights' draws). The
boundary is breaching's: the attacker (`attack.py`) receives the model, the shared gradients and
the batch shape; only `metrics.py` sees the ground truth.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import traceback
from typing import Callable

import numpy as np
import torch

from workloads import metrics
from workloads.attack import AttackSettings, bn_layers, reconstruct
from workloads.client import (
    apply_defenses,
    client_update,
    distortion,
    pseudo_gradient,
    zero_fraction,
)
from workloads.config import TrialConfig
from workloads.data import IMAGE_BOX, choose_images, load_pool, normalize_images, to_tensor
from workloads.device import resolve_device, trial_runtime
from workloads.labels import LABEL_RULES, LastLayer
from workloads.models import create_model, first_conv, last_linear
from workloads.privacy import DPRecord, epsilon
from workloads.recipes import recipe_of
from workloads.result import TrialResult

log = logging.getLogger("dlgsweep")


__all__ = ["RandomStreams", "resolve_device", "run_trial"]


class RandomStreams:
    """One independent random stream per role, all derived from the trial's seed.

    numpy's SeedSequence mixes (seed, role) into unrelated states, so the model's weights, the
    client's noise and the attacker's draws (dummy start, soft labels) never share draws. The
    images keep `numpy.random.default_rng(seed)` (`data.choose_images`).
    """

    ROLES = {"model": 1, "client": 2, "attacker": 3}

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def seed_of(self, role: str) -> int:
        sequence = np.random.SeedSequence([self.seed, self.ROLES[role]])
        return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1))  # < 2**63

    def generator(self, role: str) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed_of(role))


Live = Callable[[int, float, float], None]  # (iteration, gradient loss, PSNR so far)


def run_trial(
    config: TrialConfig,
    device: str | None = None,
    *,
    keep_frames: bool = False,
    live: Live | None = None,
) -> TrialResult:
    """Run one attack. Never raises for a failing attack: the error becomes the result.

    `live(iteration, grad_loss, psnr)` is called at each point of the convergence curve
    (every ceil(iterations / curve_points) iterations, and the last), with the values the curve
    keeps: the PSNR is scored as the final one is (`metrics.score`, without SSIM). It adds no
    computation and does not change the result; the caller decides which points to pass on."""
    started = time.time()
    device = resolve_device(device)
    try:
        with trial_runtime(device, config.precision, config.deterministic) as runtime:
            result = _run(config, device, started, keep_frames, live)
        result.gpu_memory_peak_bytes = runtime.peak_memory_bytes
        result.recipe = recipe_of(config.to_dict())
        return result
    except Exception as exc:  # a failed trial is a record, not a gap
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.error("trial %s failed: %s", config.trial_key, detail)
        return TrialResult(
            status="error",
            error=detail,
            recipe=recipe_of(config.to_dict()),
            device=device,
            started_at=started,
            finished_at=time.time(),
            wall_seconds=time.time() - started,
        )


def _run(
    config: TrialConfig, device: str, started: float, keep_frames: bool, live: Live | None
) -> TrialResult:
    pool = load_pool(config.dataset, config.split, config.pool_size)
    n = config.client_images  # the client's images: one batch unless FedAvg
    chosen = choose_images(config.seed, len(pool), n, config.image_choice)
    images = to_tensor(pool.images[chosen], config.image_size)
    ground_truth = normalize_images(images, config.image_norm, pool, config.dataset)
    ground_truth = ground_truth.to(device)  # (B, C, H, W) in [0, 1]
    true_labels = torch.from_numpy(pool.labels[chosen]).to(device)
    _, channels, height, width = ground_truth.shape

    streams = RandomStreams(config.seed)
    with torch.random.fork_rng(devices=[]):  # the model's own stream; global state untouched
        torch.manual_seed(streams.seed_of("model"))
        model = create_model(
            config.model,
            channels=channels,
            side=height,
            num_classes=pool.num_classes,
            activation=config.activation,
            norm=config.norm,
            init_method=config.init_method,
            init_gain=config.init_gain,
            init_scale=config.init_scale,
        )
    model = model.to(device)
    init_weight_std = float(first_conv(model).weight.detach().std())
    server_model = copy.deepcopy(model)  # what the attacker knows: the weights sent out

    # --- client: its update (a gradient, or FedAvg's weight difference), then the defense --
    client_stream = streams.generator("client")
    client = client_update(
        model,
        ground_truth,
        true_labels,
        bn_mode=config.bn_mode,
        batch_size=config.batch_size,
        local_steps=config.local_steps,
        local_lr=config.local_lr,
        dp_clip=config.dp_clip,
        dp_noise_multiplier=config.dp_noise_multiplier,
        generator=client_stream,
    )
    gradients = client.update
    targets = bn_targets(server_model, model) if config.bn_prior > 0 else None
    # DP-SGD draws its noise first, prune/noise after it, from the one client stream; without
    # DP the stream is as before these fields
    shared = apply_defenses(
        gradients,
        prune=config.prune,
        prune_ratio=config.prune_ratio,
        prune_mode=config.prune_mode,
        noise=config.noise,
        noise_scale=config.noise_scale,
        generator=client_stream,
    )
    grad_cosine, grad_rel_error = distortion(client.clean, shared)
    dp_columns = dp_result(config, client.record)
    del gradients, model, client

    # --- attacker: labels, then gradient matching --------------------------------------------
    strategy = config.effective_label_strategy
    rule = LABEL_RULES[strategy]
    if rule is not None:  # read off the update in gradient units (-delta / (K lr) for FedAvg)
        units = pseudo_gradient(shared, config.local_steps, config.local_lr, config.fedavg)
        labels = rule(last_layer_gradient(server_model, units), n)
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
        dummy_init=config.dummy_init,
        iterate=config.iterate,
        skip_zero_tensors=config.skip_zero_tensors,
        # the attacker masks only when it knows the client prunes: a no-op otherwise
        mask_pruned=config.mask_pruned and config.prune != "none",
        signed=config.signed,
        boxed=config.boxed,
        box=IMAGE_BOX[config.image_norm],
        lr_schedule=config.lr_schedule,
        lr_warmup=config.lr_warmup,
        restarts=config.restarts,
        l2_weight=config.l2_weight,
        bn_prior_weight=config.bn_prior,
        local_steps=config.local_steps,
        local_lr=config.local_lr,
        local_batch=config.batch_size if config.fedavg else 0,
    )
    curve: dict[str, list] = {"iteration": [], "loss": [], "psnr": []}
    frames: list[np.ndarray] = []

    def observe(iteration: int, loss: float, dummy: torch.Tensor) -> None:
        curve["iteration"].append(iteration)
        curve["loss"].append(loss)
        curve["psnr"].append(metrics.score(dummy, ground_truth, with_ssim=False).psnr_mean)
        if live is not None:
            live(iteration, loss, curve["psnr"][-1])
        if keep_frames:
            frames.append(metrics.to_uint8(dummy))

    generator = streams.generator("attacker")
    attack_started = time.perf_counter()
    log.info("trial %s on %s: %r", config.trial_key, device, settings)
    outcome = reconstruct(
        server_model,
        shared,
        input_shape=(n, channels, height, width),
        num_classes=pool.num_classes,
        labels=labels,
        bn_mode=config.bn_mode,
        settings=settings,
        generator=generator,
        observer=observe,
        bn_targets=targets,
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
        psnr_raw_mean=metrics.raw_psnr(outcome.reconstruction, ground_truth),
        ssim_mean=float(scores.ssim.mean()) if scores.ssim is not None else None,
        label_accuracy=metrics.label_accuracy(outcome.labels, true_labels),
        grad_loss_final=_finite(outcome.kept_loss),
        restart_kept=outcome.kept_restart,
        restart_mode=outcome.restart_mode,
        restart_grad_losses=[_finite(v) for v in outcome.restart_losses],
        iterations_run=outcome.iterations_run,
        best_iteration=outcome.best_iteration,
        wall_seconds=finished - started,
        # per iteration of one restart: R restarts cost about R times one (less when batched)
        seconds_per_iteration=attack_seconds / max(1, outcome.iterations_run * config.restarts),
        device=str(device),
        started_at=started,
        finished_at=finished,
        label_strategy_used=strategy,
        true_labels=[int(v) for v in true_labels.cpu()],
        predicted_labels=[int(v) for v in outcome.labels],
        grad_zero_fraction=zero_fraction(shared),
        grad_cosine=grad_cosine,
        grad_rel_error=grad_rel_error,
        init_weight_std=init_weight_std,
        grad_kernel_norms=[float(v) for v in kernel_norms.cpu()],
        curve_iteration=curve["iteration"],
        curve_grad_loss=[v if math.isfinite(v) else None for v in curve["loss"]],
        curve_psnr=curve["psnr"],
        reconstruction=metrics.to_uint8(matched),
        ground_truth=metrics.to_uint8(ground_truth),
        frames=frames,
        **dp_columns,
    )


def dp_result(config: TrialConfig, record: DPRecord | None) -> dict[str, float | None]:
    """The DP result columns: epsilon (PLD and RDP) for the config's sigma, q, T = dp_steps x
    local_steps and delta; the clipped fraction and the noise-to-signal ratio of the update.
    All null without DP-SGD."""
    if record is None:
        return {}
    sigma, q, steps = config.dp_noise_multiplier, config.dp_sample_rate, config.dp_accounted_steps
    return {
        "dp_epsilon": epsilon(sigma, q, steps, config.dp_delta, "pld"),
        "dp_epsilon_rdp": epsilon(sigma, q, steps, config.dp_delta, "rdp"),
        "dp_clipped_fraction": record.clipped_fraction,
        "dp_noise_to_signal": record.noise_to_signal,
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def bn_targets(
    server_model: torch.nn.Module, client_model: torch.nn.Module
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The client's batch statistics at each BN layer, as a train-mode update reveals them.

    A client in train mode updates every BN layer's running buffers once with its batch:
    new = (1 - m) old + m batch, m the layer's momentum (the variance the unbiased one). The
    server sent the old buffers and receives the new ones with the update (FedAvg shares the
    model's state; no defense here touches the buffers), so it solves for the batch's mean and
    unbiased variance exactly. `server_model` holds the buffers sent, `client_model` the
    buffers after the client's step."""
    targets = []
    for old, new in zip(bn_layers(server_model), bn_layers(client_model)):
        m = new.momentum
        mean = (new.running_mean - (1 - m) * old.running_mean) / m
        var = (new.running_var - (1 - m) * old.running_var) / m
        targets.append((mean.detach(), var.detach()))
    return targets


def last_layer_gradient(model: torch.nn.Module, shared: list[torch.Tensor]) -> LastLayer:
    """The shared gradient of the classifier layer (weight and, where it has one, bias)."""
    layer = last_linear(model)
    weight = shared[_param_index(model, layer.weight)].cpu()
    bias = None if layer.bias is None else shared[_param_index(model, layer.bias)].cpu()
    return LastLayer(weight=weight, bias=bias)


def _param_index(model: torch.nn.Module, parameter: torch.nn.Parameter) -> int:
    params = [p for p in model.parameters() if p.requires_grad]
    return next(i for i, p in enumerate(params) if p is parameter)
