"""DP-SGD at the client, and the epsilon its noise buys.

One DP-SGD step (Abadi et al. 2016, arXiv:1607.00133, Algorithm 1): the gradient of each
example's cross-entropy is computed on its own (`per_example_gradients`), scaled down to L2 norm
at most C = `dp_clip` over all parameters together (flat clipping: g_i min(1, C / |g_i|)),
the clipped gradients are summed, Gaussian noise of std sigma C (sigma = `dp_noise_multiplier`)
is added to every entry, and the sum is divided by the batch size B (the fixed batch size, as
Opacus divides by the expected batch size).

Per-example gradients come from `torch.func`: `vmap` over the batch of `grad` of one example's
loss under `functional_call`. BatchNorm: with `bn_mode: eval` BN is a fixed affine map of its
running statistics, each example's gradient is its own and the model runs as it is; with
`bn_mode: train` the batch statistics mix the examples, a per-example gradient is undefined
(Opacus refuses BN for this reason), and the trial's config refuses DP-SGD on a BN model in
train mode (`ConfigError` naming `bn_mode`). Models without BN run in either mode.

The epsilon (`epsilon`): the update composes T = dp_steps x local_steps DP-SGD steps, each the
sampled Gaussian mechanism with noise multiplier sigma and Poisson rate q = `dp_sample_rate`
(q = 1: the Gaussian mechanism itself). Google's dp-accounting states the guarantee for
`dp_delta` by privacy loss distributions (PLD: tight up to its discretisation) and by Renyi DP
(RDP: an upper bound, looser). The PLD's loss grid is 1e-4 wide (dp-accounting's default) up
to epsilon 1 and 1e-4 of the RDP bound above it (relative precision about 1e-4, in bounded
time for the small multipliers a frontier search visits); where the RDP bound exceeds 1000 the
PLD column holds the RDP bound (`PLD_LIMIT`: dp-accounting's PLD overflows near sigma 1e-3 at
q = 1, and such an epsilon is no guarantee in any case). One step at q = 1, sigma = 1,
delta = 1e-5 gives 4.377 under PLD, which is the analytic Gaussian mechanism's value (Balle and
Wang 2018). sigma = 0 releases the clipped mean unprotected: epsilon is infinite.

The sampling rate is a claim of the accounting, not of the trial: the attacker is handed the
update of the batch that was drawn (the batch the trial chose), as an attacker who sees one
update always is; q < 1 states how much the client's data set amplifies the guarantee.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
from torch import nn
from torch.nn import functional as F

Gradients = list[torch.Tensor]


def per_example_gradients(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    params: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Each example's gradient of its own cross-entropy: {name: (B, *shape)}.

    `params`: the parameter values to take the gradient at (default: the model's own). The model
    runs in the mode it is in (the caller sets eval for BN models; see the module's doc)."""
    from torch.func import functional_call, grad, vmap

    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x[None],))
        return F.cross_entropy(logits, y[None])

    grads = vmap(grad(loss), in_dims=(None, 0, 0))({n: params[n] for n in names}, images, labels)
    return {n: grads[n].detach() for n in names}


def per_example_norms(per_example: Gradients) -> torch.Tensor:
    """(B,) the L2 norm of each example's gradient over all parameters together."""
    squares = sum(g.flatten(1).double().square().sum(dim=1) for g in per_example)
    return squares.sqrt()


def clip_factors(norms: torch.Tensor, clip: float) -> torch.Tensor:
    """min(1, C / |g_i|): the scale that brings each norm to at most C (1 for a zero gradient)."""
    return (clip / norms.clamp_min(1e-30)).clamp(max=1.0)


@dataclass
class DPStep:
    """One DP-SGD step's pieces: shared = (signal_sum + noise) / B."""

    mean: Gradients  # (sum of clipped + noise) / B: what the step uses
    signal: Gradients  # sum of the clipped per-example gradients / B (the clipped mean)
    noise: Gradients  # the noise / B
    clipped: int  # examples whose norm exceeded C
    examples: int


def dp_gradient(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    clip: float,
    noise_multiplier: float,
    generator: torch.Generator,
    params: dict[str, torch.Tensor] | None = None,
) -> DPStep:
    """The noisy clipped mean gradient of one batch. Noise is drawn on the CPU from the client's
    generator (one N(0, 1) tensor per parameter, in parameter order); none when sigma is 0, so
    the result is then the clipped mean exactly."""
    per = list(per_example_gradients(model, images, labels, params).values())
    norms = per_example_norms(per)
    factors = clip_factors(norms, clip)
    batch = images.shape[0]
    signal = []
    for g in per:
        scale = factors.to(g.dtype).view(-1, *([1] * (g.dim() - 1)))
        signal.append((g * scale).sum(dim=0) / batch)
    noise = [torch.zeros_like(s) for s in signal]
    if noise_multiplier > 0:
        std = noise_multiplier * clip
        noise = [
            (std * torch.randn(s.shape, generator=generator, dtype=s.dtype)).to(s.device) / batch
            for s in signal
        ]
        mean = [s + n for s, n in zip(signal, noise)]
    else:
        mean = [s.clone() for s in signal]
    return DPStep(mean, signal, noise, int((norms > clip).sum()), batch)


@dataclass
class DPRecord:
    """What DP-SGD did over the client's steps (the row's dp_* result columns)."""

    clipped: int = 0
    examples: int = 0
    signal: Gradients = field(default_factory=list)  # sum over steps of the clipped means
    noise: Gradients = field(default_factory=list)  # sum over steps of the noise / B

    def add(self, step: DPStep) -> None:
        self.clipped += step.clipped
        self.examples += step.examples
        if not self.signal:
            self.signal = [s.clone() for s in step.signal]
            self.noise = [n.clone() for n in step.noise]
        else:
            self.signal = [a + s for a, s in zip(self.signal, step.signal)]
            self.noise = [a + n for a, n in zip(self.noise, step.noise)]

    @property
    def clipped_fraction(self) -> float:
        return self.clipped / max(1, self.examples)

    @property
    def noise_to_signal(self) -> float | None:
        """|noise| / |clipped signal| of the shared update (the local lr cancels), or None when
        the clipped signal is zero."""
        signal = math.sqrt(sum(float(s.double().square().sum()) for s in self.signal))
        noise = math.sqrt(sum(float(n.double().square().sum()) for n in self.noise))
        return noise / signal if signal > 0 else None


PLD_INTERVAL = 1e-4  # dp-accounting's default discretisation of the privacy loss
# above this RDP bound the PLD is not computed and `epsilon(..., "pld")` is the RDP bound (PLD
# is 3-10% below it there): no deployment states a guarantee within orders of magnitude of it
PLD_LIMIT = 1000.0


def _event(noise_multiplier: float, sample_rate: float, steps: int):  # noqa: ANN202
    import dp_accounting

    step = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sample_rate < 1:
        step = dp_accounting.PoissonSampledDpEvent(sample_rate, step)
    return dp_accounting.SelfComposedDpEvent(step, steps)


@lru_cache(maxsize=4096)
def epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str = "pld"
) -> float:
    """The (epsilon, delta) guarantee of `steps` sampled Gaussian steps (inf when sigma is 0)."""
    if noise_multiplier <= 0:
        return math.inf
    if accountant == "pld":
        from dp_accounting.pld import pld_privacy_accountant

        # the privacy loss grid: dp-accounting's 1e-4 wide, or 1e-4 of the RDP bound where that
        # is above 1, so the epsilon's relative precision stays about 1e-4 while the grid stays
        # small (at sigma 0.03 the default grid takes 50 s for an epsilon near 700)
        rdp = epsilon(noise_multiplier, sample_rate, steps, delta, "rdp")
        if rdp > PLD_LIMIT:  # the PLD grid overflows there (math range error at sigma 1e-3)
            return rdp
        interval = PLD_INTERVAL * max(1.0, rdp)
        account = pld_privacy_accountant.PLDAccountant(value_discretization_interval=interval)
    elif accountant == "rdp":
        from dp_accounting.rdp import rdp_privacy_accountant

        account = rdp_privacy_accountant.RdpAccountant()
    else:
        raise ValueError(f"accountant {accountant!r} not in pld, rdp")
    account.compose(_event(noise_multiplier, sample_rate, steps))
    return float(account.get_epsilon(delta))
