"""The federated client: one gradient step's worth of gradients, then its defense.

Defenses, applied to the gradient before it leaves the client:
- `prune: small` (gradient sparsification; Zhu et al. 2019 sec. 5, "pruning"): in every
  parameter tensor, zero exactly the `floor(prune_ratio * numel)` entries of smallest magnitude.
  (The seed's code zeroed whole layers by list position; this is the defense as published.)
- `noise: gaussian | laplacian` (Zhu et al. 2019 sec. 5, "noisy gradients"): add i.i.d. noise of
  scale `noise_scale` (std for Gaussian, b for Laplace) to every entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

Gradients = list[torch.Tensor]


def client_gradients(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, bn_mode: str
) -> Gradients:
    """The gradient of the mean cross-entropy over the batch, in the client's BN mode."""
    model.train(bn_mode == "train")
    params = [p for p in model.parameters() if p.requires_grad]
    loss = F.cross_entropy(model(images), labels)
    return [g.detach() for g in torch.autograd.grad(loss, params)]


def prune_smallest(gradients: Gradients, ratio: float) -> Gradients:
    """Zero exactly floor(ratio * n) smallest-|g| entries of each tensor (ties broken by index)."""
    pruned = []
    for grad in gradients:
        flat = grad.flatten().clone()
        k = math.floor(ratio * flat.numel())
        if k > 0:
            smallest = torch.argsort(flat.abs(), stable=True)[:k]
            flat[smallest] = 0.0
        pruned.append(flat.view_as(grad))
    return pruned


def _gaussian(grad: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(grad.shape, generator=generator, device="cpu", dtype=grad.dtype)
    return grad + scale * noise.to(grad.device)


def _laplacian(grad: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    # inverse-CDF sampling so the seeded CPU generator drives it
    u = torch.rand(grad.shape, generator=generator, device="cpu", dtype=grad.dtype) - 0.5
    noise = -torch.sign(u) * torch.log1p(-2 * u.abs())
    return grad + scale * noise.to(grad.device)


NOISES: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor] | None] = {
    "none": None,
    "gaussian": _gaussian,
    "laplacian": _laplacian,
}

PRUNES: dict[str, Callable[[Gradients, float], Gradients] | None] = {
    "none": None,
    "small": prune_smallest,
}


def apply_defenses(
    gradients: Gradients,
    *,
    prune: str,
    prune_ratio: float,
    noise: str,
    noise_scale: float,
    seed: int,
) -> Gradients:
    """What the client actually shares: pruned first, then noised (the usual DP-style order)."""
    pruner = PRUNES[prune]
    if pruner is not None:
        gradients = pruner(gradients, prune_ratio)
    add_noise = NOISES[noise]
    if add_noise is not None and noise_scale > 0:
        generator = torch.Generator().manual_seed(seed + 7919)
        gradients = [add_noise(g, noise_scale, generator) for g in gradients]
    return gradients


def zero_fraction(gradients: Gradients) -> float:
    """Share of exactly-zero entries over all shared gradient entries."""
    zeros = sum(int((g == 0).sum()) for g in gradients)
    return zeros / max(1, sum(g.numel() for g in gradients))
