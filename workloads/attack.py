"""The attacker: gradient matching (DLG, Zhu et al. 2019, arXiv:1906.08935).

Dummy images (and, for `optimize`, soft labels) are optimised until the gradient they induce on
the model matches the shared gradient. The attacker sees only the model, the shared gradients
and what a server knows (batch size, input shape, number of classes); the ground truth never
enters this module. An `observer` callback lets the caller score the iterate as it converges.

Gradient losses: `l2` (DLG: sum of squared differences over all layers) and `cosine`
(Geiping et al. 2020, arXiv:2003.14053: 1 - <g, g'> / (|g| |g'|) over all layers together).
Two options restrict what is matched:
- `skip_zero_tensors` (the seed study's cosine): parameter tensors whose shared gradient is all
  zero are left out of the distance (of both sums and both norms).
- `mask_pruned` (a pruning-aware attacker): when the client is known to prune, entries that are
  exactly zero in the shared gradient are left out, so the dummy is not pushed to reproduce the
  zeros the defense wrote. The trial turns it on only when the client prunes.
The optional TV prior is added to the gradient loss on the dummy images (the seed added it to
the classification loss, where it has no effect on the image).

The dummy starts from N(0, 1) (`dummy_init: randn`: DLG, iDLG, Inverting Gradients and the
seed) or U[0, 1] (`uniform`), drawn from the attacker's own generator, never the model's.
The reconstruction is the iterate with the lowest gradient loss (`iterate: best`) or the last
one (`iterate: last`, the seed's).

Speed: the reference loop every DLG repository writes calls `loss.backward()` after
`autograd.grad(..., create_graph=True)`, which also builds and accumulates gradients for every
model parameter. Here the second pass asks autograd for the dummy's gradient only (nothing
accumulates in the parameters' .grad), and the shared gradient's norm is computed once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

Gradients = list[torch.Tensor]
Observer = Callable[[int, float, torch.Tensor], None]


@dataclass(frozen=True)
class AttackSettings:
    loss: str = "cosine"
    optimizer: str = "adam"
    lr: float = 0.1
    iterations: int = 500
    tv_weight: float = 0.0
    stop: str = "iterations"
    stop_threshold: float = 1e-4
    stop_patience: int = 100
    observe_every: int = 10
    dummy_init: str = "randn"
    iterate: str = "best"
    skip_zero_tensors: bool = False
    mask_pruned: bool = False

    def __repr__(self) -> str:  # one log line says what ran
        stop = {"threshold": f"<= {self.stop_threshold:g}", "plateau": f"{self.stop_patience}"}
        options = [name for name in ("skip_zero_tensors", "mask_pruned") if getattr(self, name)]
        return (
            f"Attack({self.loss} loss{''.join(', ' + o for o in options)}, {self.optimizer} "
            f"lr={self.lr:g}, {self.iterations} it, tv={self.tv_weight:g}, "
            f"start={self.dummy_init}, keep={self.iterate}, "
            f"stop={self.stop}{' ' + stop.get(self.stop, '')})"
        ).replace(" )", ")")


@dataclass
class AttackOutcome:
    reconstruction: torch.Tensor  # (B, C, H, W), the kept iterate (best or last), unclamped
    labels: torch.Tensor  # (B,) the labels the attacker used (argmax of soft labels)
    kept_loss: float  # gradient loss of the kept iterate
    best_iteration: int
    iterations_run: int
    diverged: bool


class GradientLoss:
    """A distance between the dummy's gradients and the shared gradients.

    `skip_zero_tensors`: tensors whose shared gradient is all zero take no part. `mask_pruned`:
    only entries that are non-zero in the shared gradient take part (the dummy's entries are
    multiplied by the 0/1 mask; the shared ones are zero there already).
    """

    def __init__(
        self, shared: Gradients, *, skip_zero_tensors: bool = False, mask_pruned: bool = False
    ) -> None:
        self.keep = [i for i, s in enumerate(shared) if not skip_zero_tensors or bool(s.any())]
        self.shared = [shared[i] for i in self.keep]
        self.masks = [(s != 0).to(s.dtype) for s in self.shared] if mask_pruned else None

    def selected(self, dummy: Gradients) -> Gradients:
        """The dummy's gradients that take part, masked where the shared ones are pruned."""
        chosen = [dummy[i] for i in self.keep]
        if self.masks is None:
            return chosen
        return [d * m for d, m in zip(chosen, self.masks)]

    def __call__(self, dummy: Gradients) -> torch.Tensor:
        raise NotImplementedError


class L2Loss(GradientLoss):
    def __call__(self, dummy: Gradients) -> torch.Tensor:
        return sum(((d - s) ** 2).sum() for d, s in zip(self.selected(dummy), self.shared))


class CosineLoss(GradientLoss):
    def __init__(self, shared: Gradients, **options: bool) -> None:
        super().__init__(shared, **options)
        self.shared_norm = torch.sqrt(sum((s * s).sum() for s in self.shared))

    def __call__(self, dummy: Gradients) -> torch.Tensor:
        chosen = self.selected(dummy)
        dot = sum((d * s).sum() for d, s in zip(chosen, self.shared))
        dummy_norm = torch.sqrt(sum((d * d).sum() for d in chosen))
        return 1 - dot / (dummy_norm * self.shared_norm + 1e-12)


GRADIENT_LOSSES: dict[str, type[GradientLoss]] = {"l2": L2Loss, "cosine": CosineLoss}


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV, mean absolute difference of neighbours. images: (B, C, H, W)."""
    dx = (images[:, :, :, 1:] - images[:, :, :, :-1]).abs().mean()
    dy = (images[:, :, 1:, :] - images[:, :, :-1, :]).abs().mean()
    return dx + dy


def _randn(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator)


DUMMY_INITS: dict[str, Callable[[tuple[int, ...], torch.Generator], torch.Tensor]] = {
    "randn": _randn,
    "uniform": _uniform,
}


def dummy_start(
    shape: tuple[int, ...], dummy_init: str, generator: torch.Generator
) -> torch.Tensor:
    """The dummy images' start, (B, C, H, W), from the attacker's generator (on the CPU)."""
    return DUMMY_INITS[dummy_init](shape, generator)


def _adam(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def _lbfgs(params: list[torch.Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.LBFGS(params, lr=lr)  # DLG's own choice, torch defaults otherwise


OPTIMIZERS: dict[str, Callable[[list[torch.Tensor], float], torch.optim.Optimizer]] = {
    "adam": _adam,
    "lbfgs": _lbfgs,
}


def soft_cross_entropy(logits: torch.Tensor, soft_label_logits: torch.Tensor) -> torch.Tensor:
    """DLG's loss for optimised labels: CE against softmax(label logits), mean over the batch."""
    return torch.sum(-F.softmax(soft_label_logits, -1) * F.log_softmax(logits, -1), -1).mean()


def reconstruct(
    model: nn.Module,
    shared_gradients: Gradients,
    *,
    input_shape: tuple[int, int, int, int],  # (B, C, H, W)
    num_classes: int,
    labels: torch.Tensor | None,  # None: optimise soft labels jointly (DLG)
    bn_mode: str,
    settings: AttackSettings,
    generator: torch.Generator,
    observer: Observer | None = None,
) -> AttackOutcome:
    """Optimise dummy inputs until their gradient matches `shared_gradients`; keep the best."""
    device = shared_gradients[0].device
    model = copy.deepcopy(model).train(bn_mode == "train")
    # the dummy's gradient w.r.t. these is matched; nothing ever accumulates in their .grad
    params = [p for p in model.parameters() if p.requires_grad]

    dummy = dummy_start(input_shape, settings.dummy_init, generator)
    dummy = dummy.to(device).requires_grad_(True)
    variables = [dummy]
    soft_labels = None
    if labels is None:
        soft_labels = torch.randn((input_shape[0], num_classes), generator=generator)
        soft_labels = soft_labels.to(device).requires_grad_(True)
        variables.append(soft_labels)
    else:
        labels = labels.to(device)

    gradient_loss = GRADIENT_LOSSES[settings.loss](
        shared_gradients,
        skip_zero_tensors=settings.skip_zero_tensors,
        mask_pruned=settings.mask_pruned,
    )
    optimizer = OPTIMIZERS[settings.optimizer](variables, settings.lr)
    # Best-iterate bookkeeping stays on the device: no host sync per iteration (on a GPU a
    # float(loss) every step stalls the queue). The host looks only every `observe_every` steps.
    best_loss = torch.tensor(math.inf, device=device)
    best_iteration = torch.tensor(0, device=device)
    best_dummy = dummy.detach().clone()
    best_labels = None if soft_labels is None else soft_labels.detach().clone()
    step = {"iteration": 0, "loss": best_loss}

    def objective() -> torch.Tensor:
        logits = model(dummy)
        if soft_labels is None:
            task_loss = F.cross_entropy(logits, labels)
        else:
            task_loss = soft_cross_entropy(logits, soft_labels)
        dummy_gradients = torch.autograd.grad(task_loss, params, create_graph=True)
        loss = gradient_loss(dummy_gradients)
        if settings.tv_weight > 0:
            loss = loss + settings.tv_weight * total_variation(dummy)
        return loss

    def closure() -> torch.Tensor:
        nonlocal best_loss, best_iteration
        optimizer.zero_grad(set_to_none=True)
        loss = objective()
        value = loss.detach()
        improved = value < best_loss  # NaN never improves: the best iterate stays finite
        best_loss = torch.where(improved, value, best_loss)
        best_iteration = torch.where(improved, step["iteration"], best_iteration)
        best_dummy.copy_(torch.where(improved, dummy.detach(), best_dummy))
        if best_labels is not None:
            best_labels.copy_(torch.where(improved, soft_labels.detach(), best_labels))
        step["loss"] = value
        grads = torch.autograd.grad(loss, variables)
        for variable, grad in zip(variables, grads):
            variable.grad = grad
        return loss

    iterations_run, diverged = 0, False
    check_every = 1 if settings.stop != "iterations" else settings.observe_every
    for iteration in range(settings.iterations):
        step["iteration"] = iteration
        last = iteration == settings.iterations - 1
        observe = observer is not None and (iteration % settings.observe_every == 0 or last)
        before_step = dummy.detach().clone() if observe else None
        optimizer.step(closure)  # evaluates the loss of the iterate as it was before the step
        iterations_run = iteration + 1
        if not (observe or last or iteration % check_every == 0):
            continue
        loss_now = float(step["loss"])  # the one host sync every few iterations
        if before_step is not None:
            observer(iteration, loss_now, before_step)
        if not math.isfinite(loss_now) or not torch.isfinite(dummy).all():
            diverged = True
            break
        if _should_stop(settings, loss_now, iteration, int(best_iteration)):
            break

    final_labels = labels
    reconstruction, kept_loss = best_dummy, float(best_loss)
    if settings.iterate == "last" and not diverged:
        reconstruction = dummy.detach().clone()  # after the last step, as the seed kept it
        kept_loss = float(objective().detach())  # that iterate's loss was never evaluated
        if soft_labels is not None:
            final_labels = soft_labels.detach().argmax(dim=-1)
    elif best_labels is not None:
        final_labels = best_labels.argmax(dim=-1)
    return AttackOutcome(
        reconstruction=reconstruction,
        labels=final_labels.detach().cpu(),
        kept_loss=kept_loss,
        best_iteration=int(best_iteration),
        iterations_run=iterations_run,
        diverged=diverged,
    )


def _should_stop(settings: AttackSettings, loss: float, iteration: int, best_at: int) -> bool:
    if settings.stop == "threshold":
        return loss <= settings.stop_threshold
    if settings.stop == "plateau":
        return iteration - best_at >= settings.stop_patience
    return False
