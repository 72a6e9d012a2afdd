"""How the attacker gets the batch's labels from what the client shared.

- `idlg` (Zhao et al. 2020, arXiv:2001.02610): for one image, the last layer's weight gradient
  is g_i * a, with g_i = softmax_i - 1[i = c] negative only for the true class c. With
  non-negative penultimate activations a (ReLU, Sigmoid) the row sum of class c is the only
  negative one: label = argmin_i sum_j dW[i, j]. Exact at batch 1. For B > 1 `idlg` uses LLG.
- `llg` (Wainakh et al. 2022, "User-Level Label Leakage from Gradients in Federated Learning",
  arXiv:2105.09369, the LLG rule): every class whose row sum is negative is in the batch; the
  impact of one image, m = (sum of the negative row sums) / B, is then used to count repeats:
  each pick adds |m| back to that class's sum and the next pick is the most negative one left.
- `optimize` (DLG, Zhu et al. 2019): labels are optimised jointly as soft labels.
- `oracle`: the true labels, handed over as an upper bound (never the default).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# last_weight_grad: (classes, features) gradient of the final Linear's weight
LabelRule = Callable[[torch.Tensor, int], torch.Tensor]


def idlg_labels(last_weight_grad: torch.Tensor, batch_size: int) -> torch.Tensor:
    if batch_size > 1:
        return llg_labels(last_weight_grad, batch_size)
    return torch.argmin(last_weight_grad.sum(dim=1)).reshape(1)


def llg_labels(last_weight_grad: torch.Tensor, batch_size: int) -> torch.Tensor:
    row_sums = last_weight_grad.sum(dim=1).double()  # (classes,)
    negative = torch.nonzero(row_sums < 0).flatten()
    negative = negative[torch.argsort(row_sums[negative])][:batch_size]
    picks = [int(c) for c in negative]
    impact = row_sums[row_sums < 0].sum() / batch_size  # <= 0
    remaining = row_sums.clone()
    for c in picks:
        remaining[c] -= impact
    while len(picks) < batch_size:
        c = int(torch.argmin(remaining))
        picks.append(c)
        remaining[c] -= impact if impact < 0 else 1.0  # no signal at all: spread the picks
    return torch.tensor(sorted(picks), dtype=torch.long)


LABEL_RULES: dict[str, LabelRule | None] = {
    "idlg": idlg_labels,
    "llg": llg_labels,
    "optimize": None,  # soft labels optimised with the images
    "oracle": None,  # true labels, given by the trial as an upper bound
}
