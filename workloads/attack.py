"""The attacker: gradient matching, from DLG to Inverting Gradients and GradInversion.

Dummy images (and, for `optimize`, soft labels) are optimised until the gradient they induce on
the model matches the shared gradient (DLG, Zhu et al. 2019, arXiv:1906.08935). The attacker
sees only the model, the shared gradients, what a server knows (batch size, input shape, number
of classes) and, for the BatchNorm prior, the BN statistics a train-mode client update reveals;
the ground truth never enters this module. An `observer` callback lets the caller score the
iterate as it converges.

Gradient losses: `l2` (DLG: sum of squared differences over all layers) and `cosine`
(Geiping et al. 2020, arXiv:2003.14053: 1 - <g, g'> / (|g| |g'|) over all layers together).
Two options restrict what is matched:
- `skip_zero_tensors` (the seed study's cosine): parameter tensors whose shared gradient is all
  zero are left out of the distance (of both sums and both norms).
- `mask_pruned` (a pruning-aware attacker): when the client is known to prune, entries that are
  exactly zero in the shared gradient are left out, so the dummy is not pushed to reproduce the
  zeros the defense wrote. The trial turns it on only when the client prunes.

Image priors, added to the gradient loss on the dummy images x, (B, C, H, W):
- `tv_weight` x TV(x), TV the anisotropic mean absolute difference of neighbours,
  mean|x[..., :, 1:] - x[..., :, :-1]| + mean|x[..., 1:, :] - x[..., :-1, :]|, each mean over
  every entry of the batch (Inverting Gradients' public code, inversefed, computes the same);
- `l2_weight` x mean(x^2), over every entry of the batch;
- `bn_prior_weight` x sum over BN layers of |mu_l(x) - mu_l| + |var_l(x) - var_l| (Euclidean
  norms over channels; GradInversion, Yin et al. 2021, arXiv:2104.07586, eq. 6): mu_l(x),
  var_l(x) are the dummy's batch mean and unbiased variance at the BN layer's input, mu_l, var_l
  the targets the trial hands over (the client's batch statistics: `trial.bn_targets`).

FedAvg updates (Geiping et al. 2020, sec. 5): when the client shares the weight difference of
K = `local_steps` SGD steps of `local_lr` on n images in mini-batches of B = `local_batch`, the
attacker, who knows K, the learning rate and B as the server that set them does, unrolls the
same K steps on its n dummies (step t on dummies [iB, (i+1)B), i = t mod n/B, the client's
order) through `torch.func.functional_call` with the graph kept, and the gradient loss compares
the dummies' weight difference with the shared one. Restarts, priors, signed and boxed steps
are unchanged. A server that does not know the client's step count is out of scope.

The optimiser (`adam` or `lbfgs`) steps on the dummy's gradient, or on its sign (`signed: hard`,
Inverting Gradients); `boxed` clamps the dummy into the valid pixel range after every step;
`lr_schedule` scales the step size per iteration (`schedule_factor`).

The dummy starts from N(0, 1) (`dummy_init: randn`: DLG, iDLG, Inverting Gradients and the
seed) or U[0, 1] (`uniform`), drawn from the attacker's own generator, never the model's.
`restarts: R` draws R starts one after the other from that generator (restart 0 is the start a
single run draws) and runs R independent attacks. Each keeps its iterate with the lowest
objective (`iterate: best`; the objective includes the priors) or its last one (`iterate: last`,
the seed's), and the restart whose kept iterate has the lowest gradient loss (priors left out:
Inverting Gradients' scoring) is the reconstruction. The R restarts run one after the other
(`sequential`) or as one batched problem (`batched`: `torch.func.vmap` over the restarts of the
per-restart double gradient); both give the same result up to float rounding (amplified by
signed steps: the mode is part of how a result was made, and `auto` fixes it by device).
`auto` runs R > 1 restarts batched on a CUDA device where it applies (Adam, given labels, the
full iteration budget) and sequential on a CPU, where bench/bench_attack.py measured the
McMahan CNN's batched restarts slower than sequential ones (functorch materialises each
restart's 2.1M-entry parameter gradient and the elementwise work dominates).

Speed: the reference loop every DLG repository writes calls `loss.backward()` after
`autograd.grad(..., create_graph=True)`, which also builds and accumulates gradients for every
model parameter. Here the second pass asks autograd for the dummy's gradient only (nothing
accumulates in the parameters' .grad), and the shared gradient's norm is computed once.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

Gradients = list[torch.Tensor]
Observer = Callable[[int, float, torch.Tensor], None]
# the batch statistics at each BatchNorm layer's input: (mean, unbiased variance) per channel
BatchStats = list[tuple[torch.Tensor, torch.Tensor]]

RESTART_MODES = ("auto", "batched", "sequential")


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
    signed: str = "none"  # none | hard: step on sign(gradient) (Inverting Gradients)
    boxed: bool = False  # project into `box` after every step
    box: tuple[float, float] = (0.0, 1.0)  # the valid pixel range of the model's input
    lr_schedule: str = "none"  # none | step | cosine (`schedule_factor`)
    lr_warmup: int = 0  # cosine: iterations of linear warmup
    restarts: int = 1
    l2_weight: float = 0.0
    bn_prior_weight: float = 0.0
    restart_mode: str = "auto"  # how R restarts run; never changes the result beyond rounding
    # FedAvg: unroll `local_steps` SGD steps of `local_lr` on mini-batches of `local_batch` of the
    # dummies and match the weight difference; local_batch 0: match the gradient (FedSGD)
    local_steps: int = 1
    local_lr: float = 0.1
    local_batch: int = 0

    @property
    def unroll(self) -> bool:
        return self.local_batch > 0

    def __repr__(self) -> str:  # one log line says what ran
        stop = {"threshold": f"<= {self.stop_threshold:g}", "plateau": f"{self.stop_patience}"}
        options = [name for name in ("skip_zero_tensors", "mask_pruned") if getattr(self, name)]
        options += ["signed"] if self.signed != "none" else []
        options += [f"boxed {self.box[0]:g}..{self.box[1]:g}"] if self.boxed else []
        priors = [f"tv={self.tv_weight:g}"]
        priors += [f"l2={self.l2_weight:g}"] if self.l2_weight else []
        priors += [f"bn={self.bn_prior_weight:g}"] if self.bn_prior_weight else []
        schedule = "" if self.lr_schedule == "none" else f" {self.lr_schedule}"
        if self.unroll:
            options += [f"unrolled {self.local_steps} x lr {self.local_lr:g} on {self.local_batch}"]
        return (
            f"Attack({self.loss} loss{''.join(', ' + o for o in options)}, {self.optimizer} "
            f"lr={self.lr:g}{schedule}, {self.iterations} it, {', '.join(priors)}, "
            f"start={self.dummy_init}, keep={self.iterate}, restarts={self.restarts}, "
            f"stop={self.stop}{' ' + stop.get(self.stop, '')})"
        ).replace(" )", ")")

    def batchable(self, labels_given: bool) -> bool:
        """Whether the restarts can run as one batched problem (`restart_mode: batched`)."""
        return self.optimizer == "adam" and labels_given and self.stop == "iterations"


@dataclass
class AttackOutcome:
    reconstruction: torch.Tensor  # (B, C, H, W), the kept iterate of the kept restart
    labels: torch.Tensor  # (B,) the labels the attacker used (argmax of soft labels)
    kept_loss: float  # gradient loss (priors left out) of the kept iterate
    best_iteration: int
    iterations_run: int
    diverged: bool
    restart_losses: list[float] = field(default_factory=list)  # each restart's kept loss
    kept_restart: int = 0
    restart_mode: str = "sequential"  # how the restarts ran


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
    """Anisotropic TV: mean |horizontal difference| + mean |vertical difference|, (B, C, H, W)."""
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


def step_milestones(iterations: int) -> list[int]:
    """The step schedule's milestones: inversefed's `T // 2.667, T // 1.6, T // 1.142`.

    These are 3/8, 5/8 and 7/8 of T, floored after a float division, as inversefed computes
    them: 749, 1249, 1751 at T = 2000 (2000 // 1.6 is 1249.0 in floating point); 8998, 14999,
    21015 at T = 24000."""
    return [int(iterations // 2.667), int(iterations // 1.6), int(iterations // 1.142)]


def schedule_factor(settings: AttackSettings, iteration: int) -> float:
    """The step size of `iteration` (0-based) as a fraction of `lr`.

    - `none`: 1.
    - `step`: x0.1 from each milestone on (`step_milestones`; torch's MultiStepLR).
    - `cosine`: (t + 1) / W for the first W = `lr_warmup` iterations, then
      (1 + cos(pi (t - W) / (T - W))) / 2: from 1 down to near 0 at the last iteration.
    """
    if settings.lr_schedule == "step":
        passed = sum(iteration >= m for m in step_milestones(settings.iterations))
        return 0.1**passed
    if settings.lr_schedule == "cosine":
        warmup = settings.lr_warmup
        if iteration < warmup:
            return (iteration + 1) / warmup
        span = max(1, settings.iterations - warmup)
        return 0.5 * (1 + math.cos(math.pi * (iteration - warmup) / span))
    return 1.0


def batch_statistics(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of a BN layer's input, (N, C, ...)."""
    dims = [0, *range(2, inputs.dim())]
    return inputs.mean(dim=dims), inputs.var(dim=dims, unbiased=True)


def bn_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


class Objective:
    """What one dummy batch costs: the gradient distance, then the image priors.

    Evaluated two ways on the attacker's copy of the model: with autograd on one restart
    (`autograd`, any optimiser, optimised labels), or as a pure function of one restart's dummy
    for `torch.func` (`functional`, vmapped over the restarts)."""

    def __init__(
        self,
        model: nn.Module,
        shared: Gradients,
        labels: torch.Tensor | None,
        settings: AttackSettings,
        bn_targets: BatchStats | None,
    ) -> None:
        self.model = model
        self.images = 0  # n, set by reconstruct: the dummies' batch
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.labels = labels
        self.settings = settings
        self.gradient_loss = GRADIENT_LOSSES[settings.loss](
            shared, skip_zero_tensors=settings.skip_zero_tensors, mask_pruned=settings.mask_pruned
        )
        self.bn_targets = bn_targets if settings.bn_prior_weight > 0 else None
        self.stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.bn_targets is not None:
            layers = bn_layers(model)
            if len(layers) != len(self.bn_targets):
                raise ValueError(f"{len(self.bn_targets)} BN targets for {len(layers)} BN layers")
            for layer in layers:
                layer.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: object) -> None:
        self.stats.append(batch_statistics(inputs[0]))

    def task_loss(
        self, logits: torch.Tensor, soft_labels: torch.Tensor | None, rows: slice = slice(None)
    ) -> torch.Tensor:
        """The client's training loss on the dummies' `rows` (a mini-batch when unrolling)."""
        if soft_labels is None:
            return F.cross_entropy(logits, self.labels[rows])
        return soft_cross_entropy(logits, soft_labels[rows])

    def _batches(self) -> list[slice]:
        """The rows of the dummies each unrolled local step trains on, as the client visits
        its images: step t on mini-batch t mod (n / B)."""
        size = self.settings.local_batch
        count = self.images // size
        return [
            slice((t % count) * size, (t % count + 1) * size)
            for t in range(self.settings.local_steps)
        ]

    def unrolled(
        self, dummy: torch.Tensor, soft_labels: torch.Tensor | None, params: dict, grad_fn
    ) -> list[torch.Tensor]:
        """theta_K - theta_0 of the client's K local steps on the dummies (Inverting Gradients'
        FedAvg attack, inversefed's `loss_steps`), differentiable w.r.t. the dummy.
        `grad_fn(loss_of_params, params)` is autograd's (create_graph) or torch.func's grad."""
        from torch.func import functional_call

        current = dict(params)
        for rows in self._batches():

            def loss(p: dict, rows: slice = rows) -> torch.Tensor:
                logits = functional_call(self.model, p, (dummy[rows],))
                return self.task_loss(logits, soft_labels, rows)

            grads = grad_fn(loss, current)
            current = {n: current[n] - self.settings.local_lr * grads[n] for n in self.names}
        return [current[n] - params[n] for n in self.names]

    def priors(self, dummy: torch.Tensor, stats: BatchStats) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        if self.settings.tv_weight > 0:
            total = total + self.settings.tv_weight * total_variation(dummy)
        if self.settings.l2_weight > 0:
            total = total + self.settings.l2_weight * dummy.pow(2).mean()
        if self.bn_targets is not None:
            bn = sum(
                (mean - target_mean).norm() + (var - target_var).norm()
                for (mean, var), (target_mean, target_var) in zip(stats, self.bn_targets)
            )
            total = total + self.settings.bn_prior_weight * bn
        return total

    def autograd(
        self, dummy: torch.Tensor, soft_labels: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(objective, gradient loss) of one restart's dummy, (B, C, H, W), with a graph."""
        self.stats.clear()
        if self.settings.unroll:

            def autograd_grad(loss, p: dict) -> dict:  # noqa: ANN001
                values = list(p.values())
                grads = torch.autograd.grad(loss(p), values, create_graph=True)
                return dict(zip(p, grads))

            params = dict(zip(self.names, self.params))
            dummy_gradients = self.unrolled(dummy, soft_labels, params, autograd_grad)
        else:
            logits = self.model(dummy)
            dummy_gradients = torch.autograd.grad(
                self.task_loss(logits, soft_labels), self.params, create_graph=True
            )
        gradient_loss = self.gradient_loss(dummy_gradients)
        return gradient_loss + self.priors(dummy, list(self.stats)), gradient_loss

    def batched(self) -> Callable[[torch.Tensor], tuple[torch.Tensor, tuple]]:
        """(R, B, C, H, W) -> (d objective / d dummy, (objective (R,), gradient loss (R,)))."""
        from torch.func import functional_call, grad, grad_and_value, vmap

        params = {n: p.detach() for n, p in zip(self.names, self.params)}

        def one(dummy: torch.Tensor) -> tuple[torch.Tensor, tuple]:
            def task(p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, tuple]:
                self.stats.clear()
                logits = functional_call(self.model, p, (dummy,))
                return self.task_loss(logits, None), tuple(self.stats)

            if self.settings.unroll:
                self.stats.clear()
                update = self.unrolled(dummy, None, params, lambda loss, p: grad(loss)(p))
                stats: tuple = ()
            else:
                dummy_gradients, stats = grad(task, has_aux=True)(params)
                update = [dummy_gradients[n] for n in self.names]
            gradient_loss = self.gradient_loss(update)
            objective = gradient_loss + self.priors(dummy, list(stats))
            return objective, gradient_loss

        return vmap(grad_and_value(one, has_aux=True))


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
    bn_targets: BatchStats | None = None,
) -> AttackOutcome:
    """Optimise dummy inputs until their gradient matches `shared_gradients`; keep the best."""
    if settings.restart_mode not in RESTART_MODES:
        raise ValueError(f"restart_mode {settings.restart_mode!r} not in {RESTART_MODES}")
    device = shared_gradients[0].device
    model = copy.deepcopy(model).train(bn_mode == "train")
    if bn_mode == "train":  # batch statistics, and no running buffers to update (vmap-safe)
        from torch.func import replace_all_batch_norm_modules_

        replace_all_batch_norm_modules_(model)
    for p in model.parameters():  # the dummy's gradient w.r.t. these is matched; none
        p.grad = None  # ever accumulates in their .grad
    if labels is not None:
        labels = labels.to(device)
    objective = Objective(model, shared_gradients, labels, settings, bn_targets)
    objective.images = input_shape[0]
    if settings.unroll and input_shape[0] % settings.local_batch:
        raise ValueError(f"{input_shape[0]} dummies in mini-batches of {settings.local_batch}")

    # R starts, one after the other from the attacker's stream (restart 0 = a single run's)
    starts, soft_starts = [], []
    for _ in range(settings.restarts):
        starts.append(dummy_start(input_shape, settings.dummy_init, generator))
        if labels is None:
            soft_starts.append(torch.randn((input_shape[0], num_classes), generator=generator))

    # auto: batched on a GPU, where one batched problem saves R-1 sets of kernel launches; on a
    # CPU the McMahan CNN's batched restarts ran at half the speed of sequential ones (bench)
    batched = settings.restart_mode == "batched" or (
        settings.restart_mode == "auto" and settings.restarts > 1 and device.type == "cuda"
    )
    batched = batched and settings.batchable(labels is not None)
    if settings.restart_mode == "batched" and not batched:
        raise ValueError("restart_mode batched needs adam, given labels and stop: iterations")
    # with one restart the observer sees the attack live; with more, the kept one is replayed
    live = observer if settings.restarts == 1 else None
    if batched:
        runs = [_optimise(objective, torch.stack(starts), None, settings, device, live, True)]
    else:
        runs = [
            _optimise(
                objective,
                start[None],
                soft_starts[r][None] if labels is None else None,
                settings,
                device,
                live,
                False,
            )
            for r, start in enumerate(starts)
        ]
    return _choose(runs, labels, observer if settings.restarts > 1 else None, batched)


@dataclass
class _Run:
    """R restarts optimised together (R = 1 on the sequential path)."""

    kept: torch.Tensor  # (R, B, C, H, W)
    kept_labels: torch.Tensor | None  # (R, B, classes) soft label logits, or None
    losses: list[float]  # gradient loss of each restart's kept iterate
    best_iterations: list[int]
    iterations_run: int
    diverged: list[bool]
    observed: list[list[tuple[int, float, torch.Tensor]]]  # per restart, when buffered


def _optimise(
    objective: Objective,
    start: torch.Tensor,  # (R, B, C, H, W)
    soft_start: torch.Tensor | None,  # (1, B, classes) on the sequential path with soft labels
    settings: AttackSettings,
    device: torch.device,
    live: Observer | None,
    batched: bool,  # vmapped over the restarts (reconstruct decides), else autograd on one
) -> _Run:
    restarts = start.shape[0]
    dummy = start.to(device).requires_grad_(True)
    variables = [dummy]
    soft_labels = None
    if soft_start is not None:
        soft_labels = soft_start.to(device).requires_grad_(True)
        variables.append(soft_labels)
    evaluate_batch = objective.batched() if batched else None

    optimizer = OPTIMIZERS[settings.optimizer](variables, settings.lr)
    scheduler = None
    if settings.lr_schedule != "none":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: schedule_factor(settings, t)
        )
    # Best-iterate bookkeeping stays on the device: no host sync per iteration (on a GPU a
    # float(loss) every step stalls the queue). The host looks only every `observe_every` steps.
    inf = torch.full((restarts,), math.inf, device=device)
    best_objective, best_loss = inf.clone(), inf.clone()
    best_iteration = torch.zeros(restarts, dtype=torch.long, device=device)
    best_dummy = dummy.detach().clone()
    best_labels = None if soft_labels is None else soft_labels.detach().clone()
    step = {"iteration": 0, "loss": inf.clone()}

    def evaluate() -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(objective (R,), gradient loss (R,), d objective / d variables)."""
        if evaluate_batch is not None:
            grads, (value, loss) = evaluate_batch(dummy.detach())
            return value, loss, [grads]
        labels = None if soft_labels is None else soft_labels[0]
        value, loss = objective.autograd(dummy[0], labels)
        grads = list(torch.autograd.grad(value, variables))
        return value.detach().reshape(1), loss.detach().reshape(1), grads

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        value, loss, grads = evaluate()
        value, loss = value.detach(), loss.detach()
        improved = value < best_objective  # NaN never improves: the best iterate stays finite
        best_objective.copy_(torch.where(improved, value, best_objective))
        best_loss.copy_(torch.where(improved, loss, best_loss))
        best_iteration.copy_(torch.where(improved, step["iteration"], best_iteration))
        shape = (restarts,) + (1,) * (dummy.dim() - 1)
        best_dummy.copy_(torch.where(improved.view(shape), dummy.detach(), best_dummy))
        if best_labels is not None:
            best_labels.copy_(torch.where(improved.view(-1, 1, 1), soft_labels, best_labels))
        step["loss"] = loss
        for variable, grad in zip(variables, grads):
            variable.grad = grad.sign() if settings.signed == "hard" else grad
        return value.sum()

    observed: list[list[tuple[int, float, torch.Tensor]]] = [[] for _ in range(restarts)]
    iterations_run = 0
    diverged = [False] * restarts
    check_every = 1 if settings.stop != "iterations" else settings.observe_every
    for iteration in range(settings.iterations):
        step["iteration"] = iteration
        last = iteration == settings.iterations - 1
        observe = iteration % settings.observe_every == 0 or last
        before_step = dummy.detach().clone() if observe else None
        optimizer.step(closure)  # evaluates the loss of the iterate as it was before the step
        if scheduler is not None:
            scheduler.step()
        if settings.boxed:
            with torch.no_grad():
                dummy.clamp_(*settings.box)
        iterations_run = iteration + 1
        if not (observe or last or iteration % check_every == 0):
            continue
        losses = step["loss"].tolist()  # the one host sync every few iterations
        if before_step is not None:
            for r in range(restarts):
                if live is not None:
                    live(iteration, losses[r], before_step[r])
                else:
                    observed[r].append((iteration, losses[r], before_step[r]))
        finite = torch.isfinite(dummy.detach()).flatten(1).all(dim=1).tolist()
        diverged = [d or not math.isfinite(v) or not f for d, v, f in zip(diverged, losses, finite)]
        if all(diverged):
            break
        if restarts == 1 and _should_stop(settings, losses[0], iteration, int(best_iteration[0])):
            break

    kept, kept_labels, losses = best_dummy, best_labels, best_loss.tolist()
    if settings.iterate == "last":  # after the last step, as the seed kept it
        kept = dummy.detach().clone()
        kept_labels = None if soft_labels is None else soft_labels.detach().clone()
        _, loss, _ = evaluate()  # that iterate's loss was never evaluated
        losses = [v if not d else best for v, d, best in zip(loss.tolist(), diverged, losses)]
        kept = torch.stack([b if d else k for k, b, d in zip(kept, best_dummy, diverged)])
    return _Run(
        kept=kept,
        kept_labels=kept_labels,
        losses=losses,
        best_iterations=best_iteration.tolist(),
        iterations_run=iterations_run,
        diverged=diverged,
        observed=observed,
    )


def _choose(
    runs: list[_Run], labels: torch.Tensor | None, observer: Observer | None, batched: bool
) -> AttackOutcome:
    """The restart whose kept iterate has the lowest gradient loss (a NaN loss never wins)."""
    flat = [(run, i) for run in runs for i in range(len(run.losses))]
    losses = [run.losses[i] for run, i in flat]
    scores = [v if math.isfinite(v) else math.inf for v in losses]
    kept = min(range(len(flat)), key=lambda r: scores[r])
    run, i = flat[kept]
    if observer is not None:  # the kept restart's curve, replayed
        for iteration, loss, dummy in run.observed[i]:
            observer(iteration, loss, dummy)
    final_labels = labels
    if run.kept_labels is not None:
        final_labels = run.kept_labels[i].argmax(dim=-1)
    return AttackOutcome(
        reconstruction=run.kept[i],
        labels=final_labels.detach().cpu(),
        kept_loss=losses[kept],
        best_iteration=run.best_iterations[i],
        iterations_run=run.iterations_run,
        diverged=all(r.diverged[j] for r, j in flat),
        restart_losses=losses,
        kept_restart=kept,
        restart_mode="batched" if batched else "sequential",
    )


def _should_stop(settings: AttackSettings, loss: float, iteration: int, best_at: int) -> bool:
    if settings.stop == "threshold":
        return loss <= settings.stop_threshold
    if settings.stop == "plateau":
        return iteration - best_at >= settings.stop_patience
    return False
