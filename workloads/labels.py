"""How the attacker gets the batch's labels from what the client shared.

All rules read the last (classifier) layer's gradient, `LastLayer(weight, bias)`. For one image
with cross-entropy, the bias gradient is g = softmax(logits) - onehot(c): negative exactly at
the true class c, whatever the activations before it. The weight gradient is g a^T (a: the
penultimate activations), so its row sums carry g's signs only when a >= 0 (ReLU, Sigmoid).

- `idlg` (Zhao et al. 2020, arXiv:2001.02610): at batch 1, the index of the negative entry of
  the bias gradient (exact for every activation); for a classifier without bias, the index of
  the negative row sum of the weight gradient (exact when a >= 0). For B > 1 `idlg` uses LLG.
- `llg` (Wainakh et al. 2022, "User-Level Label Leakage from Gradients in Federated Learning",
  arXiv:2105.09369, the LLG rule): every class whose weight-gradient row sum is negative is in
  the batch; the impact of one image, m = (sum of the negative row sums) / B, is then used to
  count repeats: each pick adds |m| back to that class's sum and the next pick is the most
  negative one left. With no negative sum at all (e.g. an all-zero, fully pruned gradient) the
  picks spread over the classes instead of repeating one.
- `yin` (GradInversion, Yin et al. 2021, arXiv:2104.07586, sec. 3.1): for a batch of distinct
  labels, the B classes whose weight-gradient rows have the most negative minimum over the
  features (each present class has a strongly negative entry; absent classes only small
  positive ones when a >= 0). It cannot count repeats: a batch with a repeated label loses one.
- `optimize` (DLG, Zhu et al. 2019): labels are optimised jointly as soft labels.
- `oracle`: the true labels, handed over as an upper bound (the seed study's protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LastLayer:
    """The shared gradient of the classifier layer."""

    weight: torch.Tensor  # (classes, features)
    bias: torch.Tensor | None  # (classes,), None when the layer has no bias


LabelRule = Callable[[LastLayer, int], torch.Tensor]


def idlg_labels(last: LastLayer, batch_size: int) -> torch.Tensor:
    if batch_size > 1:
        return llg_labels(last, batch_size)
    signal = last.bias if last.bias is not None else last.weight.sum(dim=1)
    return torch.argmin(signal).reshape(1)


def llg_labels(last: LastLayer, batch_size: int) -> torch.Tensor:
    row_sums = last.weight.sum(dim=1).double()  # (classes,)
    negative = torch.nonzero(row_sums < 0).flatten()
    negative = negative[torch.argsort(row_sums[negative])][:batch_size]
    picks = [int(c) for c in negative]
    impact = row_sums[row_sums < 0].sum() / batch_size  # <= 0
    # with no signal left, each pick makes its class less likely, so the picks spread
    step = -impact if impact < 0 else torch.tensor(1.0, dtype=torch.float64)
    remaining = row_sums.clone()
    for c in picks:
        remaining[c] += step
    while len(picks) < batch_size:
        c = int(torch.argmin(remaining))
        picks.append(c)
        remaining[c] += step
    return torch.tensor(sorted(picks), dtype=torch.long)


def yin_labels(last: LastLayer, batch_size: int) -> torch.Tensor:
    row_minima = last.weight.double().amin(dim=1)  # (classes,)
    order = torch.argsort(row_minima, stable=True)
    order = order.repeat(-(-batch_size // order.numel()))  # B > classes: classes repeat in turn
    return torch.sort(order[:batch_size]).values.to(torch.long)


LABEL_RULES: dict[str, LabelRule | None] = {
    "idlg": idlg_labels,
    "llg": llg_labels,
    "yin": yin_labels,
    "optimize": None,  # soft labels optimised with the images
    "oracle": None,  # true labels, given by the trial as an upper bound
}
