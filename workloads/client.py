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

DP-SGD (`dp_clip` > 0; workloads.privacy) is part of the client's training step, not a filter
on its output: each local step's gradient is the noisy clipped mean. `prune` and `noise` then
apply to what is shared.

The update (`client_update`): FedSGD (one step on one batch: the gradient, as DLG attacks) or
FedAvg (McMahan et al. 2017): K = `local_steps` SGD steps of `local_lr` on the client's n =
`local_images` images, step t on mini-batch t mod (n / B) (images [iB, (i+1)B), in the order
drawn: inversefed's `loss_steps`), the client sharing the weight difference theta_K - theta_0.
"""

from __future__ import annotations

import copy
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


class ClientUpdate:
    """What the client computed: the update it shares (before prune/noise), the same update
    without DP-SGD (the distortion's reference; the update itself when DP is off) and DP's
    record (None without DP)."""

    def __init__(self, update: Gradients, clean: Gradients, record: object | None) -> None:
        self.update, self.clean, self.record = update, clean, record


def client_update(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    bn_mode: str,
    batch_size: int,
    local_steps: int = 1,
    local_lr: float = 0.1,
    dp_clip: float = 0.0,
    dp_noise_multiplier: float = 0.0,
    generator: torch.Generator | None = None,
) -> ClientUpdate:
    """The client's update of `model` (left trained) on `images`, (n, C, H, W).

    FedSGD (one step, n = B): the mean gradient (`client_gradients`; DP-SGD's noisy clipped mean
    when `dp_clip` > 0). FedAvg otherwise: the weight difference after K steps, each a DP-SGD
    step when `dp_clip` > 0 (noise from `generator`, the client's stream)."""
    from workloads.privacy import DPRecord, dp_gradient

    n = images.shape[0]
    fedsgd = local_steps == 1 and n == batch_size
    dp = dp_clip > 0
    if fedsgd and not dp:
        gradients = client_gradients(model, images, labels, bn_mode)
        return ClientUpdate(gradients, gradients, None)
    record = DPRecord() if dp else None

    def step_gradient(net: nn.Module, x: torch.Tensor, y: torch.Tensor, private: bool) -> Gradients:
        if private:
            step = dp_gradient(net, x, y, clip=dp_clip, noise_multiplier=dp_noise_multiplier,
                               generator=generator)  # fmt: skip
            record.add(step)
            return step.mean
        return client_gradients(net, x, y, bn_mode)

    if fedsgd:  # DP-SGD's one step: the shared gradient is the noisy clipped mean
        model.train(bn_mode == "train")
        clean = client_gradients(model, images, labels, bn_mode)
        return ClientUpdate(step_gradient(model, images, labels, True), clean, record)

    def train(net: nn.Module, private: bool) -> Gradients:
        net.train(bn_mode == "train")
        params = [p for p in net.parameters() if p.requires_grad]
        start = [p.detach().clone() for p in params]
        batches = n // batch_size
        for t in range(local_steps):
            rows = slice((t % batches) * batch_size, (t % batches + 1) * batch_size)
            grads = step_gradient(net, images[rows], labels[rows], private)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    p.sub_(local_lr * g)
        return [p.detach() - s for p, s in zip(params, start)]

    reference = copy.deepcopy(model) if dp else None
    update = train(model, dp)
    clean = train(reference, False) if dp else update
    return ClientUpdate(update, clean, record)


def pseudo_gradient(
    update: Gradients, local_steps: int, local_lr: float, fedavg: bool
) -> Gradients:
    """The update in gradient units: -delta / (K lr) for a FedAvg weight difference (the mean
    gradient of the K steps), the gradient itself for FedSGD (what label rules read)."""
    if not fedavg:
        return update
    return [-u / (local_steps * local_lr) for u in update]


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
