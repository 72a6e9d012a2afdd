"""Exact maths: pruning, noise, gradient losses, PSNR under matching and clamping, labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workloads import metrics
from workloads.attack import GRADIENT_LOSSES, total_variation
from workloads.client import (
    NOISES,
    PRUNE_MODES,
    PRUNES,
    apply_defenses,
    distortion,
    prune_smallest,
    zero_fraction,
)
from workloads.config import CHOICES
from workloads.labels import LABEL_RULES, LastLayer, llg_labels


def test_registries_match_the_config_choices():
    assert tuple(PRUNES) == CHOICES["prune"]
    assert tuple(PRUNE_MODES) == CHOICES["prune_mode"]
    assert tuple(NOISES) == CHOICES["noise"]
    assert set(GRADIENT_LOSSES) == set(CHOICES["loss"])
    assert tuple(LABEL_RULES) == CHOICES["label_strategy"]


@pytest.mark.parametrize("ratio", [0.0, 0.2, 0.5, 0.9, 0.999])
def test_prune_zeroes_exactly_the_smallest_fraction_of_each_tensor(ratio):
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(64, 3, 5, 5, generator=generator), torch.randn(10, generator=generator)]
    pruned = prune_smallest(grads, ratio)
    for before, after in zip(grads, pruned):
        k = math.floor(ratio * before.numel())
        zeroed = after == 0
        assert int(zeroed.sum()) == k
        if 0 < k < before.numel():
            # every zeroed entry was no larger than every kept entry
            assert before[zeroed].abs().max() <= before[~zeroed].abs().min()
        assert torch.equal(after[~zeroed], before[~zeroed])
    assert zero_fraction(pruned) == pytest.approx(
        sum(math.floor(ratio * g.numel()) for g in grads) / sum(g.numel() for g in grads)
    )


@pytest.mark.parametrize("noise,spread", [("gaussian", 1.0), ("laplacian", 1.0)])
def test_noise_is_seeded_and_has_its_scale(noise, spread):
    grads = [torch.zeros(200_000)]
    kwargs = dict(prune="none", prune_ratio=0.0, noise=noise, noise_scale=0.01)
    a = apply_defenses(grads, generator=torch.Generator().manual_seed(0), **kwargs)[0]
    b = apply_defenses(grads, generator=torch.Generator().manual_seed(0), **kwargs)[0]
    c = apply_defenses(grads, generator=torch.Generator().manual_seed(1), **kwargs)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    if noise == "gaussian":
        assert float(a.std()) == pytest.approx(0.01, rel=0.02)
    else:  # Laplace(0, b): E|x| = b, Var = 2 b^2
        assert float(a.abs().mean()) == pytest.approx(0.01, rel=0.02)
        assert float(a.std()) == pytest.approx(math.sqrt(2) * 0.01, rel=0.03)


def test_distortion_reads_what_the_defense_did_to_the_gradient():
    generator = torch.Generator().manual_seed(0)
    clean = [torch.randn(64, 32, generator=generator), torch.randn(500, generator=generator)]
    assert distortion(clean, clean) == pytest.approx((1.0, 0.0))
    norm = math.sqrt(sum(float(g.square().sum()) for g in clean))
    entries = sum(g.numel() for g in clean)
    # Gaussian noise of std s: |noise| ~ s sqrt(N), nearly orthogonal to the gradient
    noised = apply_defenses(clean, prune="none", prune_ratio=0.0, noise="gaussian",
                            noise_scale=0.5, generator=generator)  # fmt: skip
    cosine, error = distortion(clean, noised)
    assert error == pytest.approx(0.5 * math.sqrt(entries) / norm, rel=0.05)
    assert cosine == pytest.approx(1 / math.sqrt(1 + error**2), abs=0.02)
    # pruning keeps a sub-vector: cosine = |kept| / |clean|, error = |dropped| / |clean|
    pruned = prune_smallest(clean, 0.5)
    kept = math.sqrt(sum(float(g.square().sum()) for g in pruned))
    cosine, error = distortion(clean, pruned)
    assert cosine == pytest.approx(kept / norm, rel=1e-6)
    assert error == pytest.approx(math.sqrt(1 - (kept / norm) ** 2), rel=1e-6)
    assert distortion([torch.zeros(3)], [torch.ones(3)]) == (None, None)


def test_gradient_losses():
    g = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    cosine = GRADIENT_LOSSES["cosine"](g)
    assert float(cosine(g)) == pytest.approx(0.0, abs=1e-6)
    assert float(cosine([-t for t in g])) == pytest.approx(2.0)
    assert float(cosine([2 * t for t in g])) == pytest.approx(0.0, abs=1e-6)
    l2 = GRADIENT_LOSSES["l2"](g)
    assert float(l2([t + 1 for t in g])) == pytest.approx(3.0)


def test_total_variation_is_zero_on_flat_images():
    assert float(total_variation(torch.full((1, 3, 8, 8), 0.3))) == 0.0
    assert float(total_variation(torch.rand(1, 3, 8, 8))) > 0.0


def test_psnr_of_a_permuted_batch_equals_psnr_of_the_batch():
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(8, 3, 32, 32, generator=generator)
    noisy = (truth + 0.05 * torch.randn(truth.shape, generator=generator)).clamp(0, 1)
    straight = metrics.score(noisy, truth)
    permuted = metrics.score(noisy[torch.randperm(8, generator=generator)], truth)
    np.testing.assert_allclose(permuted.psnr, straight.psnr)
    np.testing.assert_allclose(permuted.ssim, straight.ssim)


def test_psnr_value_clamping_and_perfect_match():
    truth = torch.full((1, 1, 4, 4), 0.5)
    assert metrics.score(truth + 0.1, truth).psnr[0] == pytest.approx(20.0)  # MSE 0.01
    # values beyond [0, 1] are clamped first: 5.0 scores like 1.0
    assert metrics.score(truth + 4.5, truth).psnr[0] == pytest.approx(10 * math.log10(1 / 0.25))
    assert metrics.score(truth, truth).psnr[0] == metrics.MAX_PSNR
    assert metrics.score(truth, truth).ssim[0] == pytest.approx(1.0)


def test_label_accuracy_is_order_free_multiset_agreement():
    acc = metrics.label_accuracy
    assert acc(torch.tensor([3, 1, 1]), torch.tensor([1, 3, 1])) == 1.0
    assert acc(torch.tensor([1, 1, 1]), torch.tensor([1, 3, 2])) == pytest.approx(1 / 3)


def test_llg_counts_repeated_labels_from_the_last_layer():
    # 3 images of class 2 and 1 of class 5: the row sums carry proportional negative mass
    grad = torch.full((10, 4), 0.01)
    grad[2] = -0.75
    grad[5] = -0.25
    assert llg_labels(LastLayer(grad, None), 4).tolist() == [2, 2, 2, 5]
