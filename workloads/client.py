"""The federated client: one gradient step's worth of gradients, then its defense.

Defenses, applied to the gradient before it leaves the client:
- `prune: small` (gradient sparsification; Zhu et al. 2019 sec. 5, "pruning"), by `prune_mode`:
  - `entries` (default, the defense as published): in every parameter tensor, zero exactly the
    `floor(prune_ratio * numel)` entries of smallest magnitude;
  - `tensors` (the seed study's code, `SimpleClient.compute_true_gradient`): it sorts the
    parameter tensors by the norm of their gradient, takes the norm at position
    `int(prune_ratio * n_tensors)` of that ascending order as a threshold, then zeroes
    `gradient[i]` for every position i of the *sorted* list whose norm is at or below it: the
    index is applied to the unsorted list, so the tensors zeroed are the first m in parameter
    order (m = how many norms are at or below the threshold), whatever their norms. On the
    seed's McMahan CNN at 0.2 that is conv1's weight and bias and the first BN's weight.
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


def prune_tensors(gradients: Gradients, ratio: float) -> Gradients:
    """The seed's pruning, as its code runs: zero the first m tensors by list position.

    m is the number of tensors whose gradient norm is at or below the norm at position
    int(ratio * n) of the ascending order (the threshold the seed computed); the seed's loop
    then indexed the unsorted list with positions of the sorted one.
    """
    norms = [float(g.norm()) for g in gradients]
    threshold = sorted(norms)[int(len(norms) * ratio)]
    zeroed = sum(1 for n in norms if n <= threshold)
    return [torch.zeros_like(g) if i < zeroed else g.clone() for i, g in enumerate(gradients)]


def _gaussian(grad: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(grad.shape, generator=generator, device="cpu", dtype=grad.dtype)
    return grad + scale * noise.to(grad.device)


def _laplacian(grad: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    # Laplace(0, 1) as the difference of two Exp(1) draws, each -log(1 - u) with u in [0, 1):
    # finite for every u torch.rand can return (inverse-CDF sampling with log1p(-2|u - 1/2|)
    # is -inf when u is exactly 0, about once in 2^24 float32 draws)
    first = torch.rand(grad.shape, generator=generator, device="cpu", dtype=torch.float64)
    second = torch.rand(grad.shape, generator=generator, device="cpu", dtype=torch.float64)
    noise = torch.log1p(-second) - torch.log1p(-first)
    return grad + scale * noise.to(device=grad.device, dtype=grad.dtype)


NOISES: dict[str, Callable[[torch.Tensor, float, torch.Generator], torch.Tensor] | None] = {
    "none": None,
    "gaussian": _gaussian,
    "laplacian": _laplacian,
}

# `prune: small` by `prune_mode`; `prune: none` shares the gradient as it is
PRUNE_MODES: dict[str, Callable[[Gradients, float], Gradients]] = {
    "entries": prune_smallest,
    "tensors": prune_tensors,
}
PRUNES: dict[str, bool] = {"none": False, "small": True}


def apply_defenses(
    gradients: Gradients,
    *,
    prune: str,
    prune_ratio: float,
    noise: str,
    noise_scale: float,
    generator: torch.Generator,
    prune_mode: str = "entries",
) -> Gradients:
    """What the client actually shares: pruned first, then noised (the usual DP-style order).

    `generator` drives the noise: the client's own random stream, independent of the model's
    and the attacker's (see `workloads.trial.RandomStreams`).
    """
    if PRUNES[prune]:
        gradients = PRUNE_MODES[prune_mode](gradients, prune_ratio)
    add_noise = NOISES[noise]
    if add_noise is not None and noise_scale > 0:
        gradients = [add_noise(g, noise_scale, generator) for g in gradients]
    return gradients


def distortion(clean: Gradients, shared: Gradients) -> tuple[float | None, float | None]:
    """What the defense did to the gradient: (cosine similarity of the shared gradient to the
    clean one, relative L2 error |shared - clean| / |clean|), each over all entries as one
    vector. (1, 0) when nothing was changed; None where the clean gradient is all zeros."""
    dot = sum(float((c.double() * s.double()).sum()) for c, s in zip(clean, shared))
    clean_sq = sum(float(c.double().square().sum()) for c in clean)
    shared_sq = sum(float(s.double().square().sum()) for s in shared)
    error_sq = sum(float((s.double() - c.double()).square().sum()) for c, s in zip(clean, shared))
    if clean_sq == 0:
        return None, None
    cosine = dot / (clean_sq * shared_sq) ** 0.5 if shared_sq > 0 else 0.0
    return cosine, (error_sq / clean_sq) ** 0.5


def zero_fraction(gradients: Gradients) -> float:
    """Share of exactly-zero entries over all shared gradient entries."""
    zeros = sum(int((g == 0).sum()) for g in gradients)
    return zeros / max(1, sum(g.numel() for g in gradients))
