"""Scoring a reconstruction against the ground truth: the only code that sees both.

Images are in [0, 1]; reconstructions are clamped to [0, 1] before scoring. For a batch the
order the attacker produced is arbitrary, so reconstructions are matched one-to-one to ground
truth images (Hungarian assignment on the MSE matrix, scipy's `linear_sum_assignment`) before
any score. PSNR = 10 log10(1 / MSE) per image; SSIM is scikit-image's (Gaussian window,
sigma 1.5, as in Wang et al. 2004), averaged over channels.

`raw_psnr` is the seed study's score, kept beside ours in every row (`psnr_raw_mean`): PSNR per
image of the dummy as it is (unclamped) against the ground truth image at the same batch
position (unmatched), averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

MAX_PSNR = 100.0  # an exact reconstruction (MSE 0) scores this instead of infinity


@dataclass(frozen=True)
class Scores:
    order: np.ndarray  # reconstruction index matched to ground truth i
    psnr: np.ndarray  # (B,) per image, matched
    ssim: np.ndarray | None  # (B,) per image, matched; None when not asked for

    @property
    def psnr_mean(self) -> float:
        return float(self.psnr.mean())


def clamp(images: torch.Tensor) -> torch.Tensor:
    return images.detach().float().clamp(0.0, 1.0)


def mse_matrix(reconstruction: torch.Tensor, ground_truth: torch.Tensor) -> torch.Tensor:
    """(B, B) MSE between every reconstruction (rows) and every ground truth (cols)."""
    rec = reconstruction.flatten(1)  # (B, D)
    gt = ground_truth.flatten(1)
    return torch.cdist(gt, rec).pow(2).T / rec.shape[1]


def match(reconstruction: torch.Tensor, ground_truth: torch.Tensor) -> np.ndarray:
    """order[i] = the reconstruction assigned to ground truth image i (min total MSE)."""
    cost = mse_matrix(reconstruction, ground_truth).T.cpu().double().numpy()  # (gt, rec)
    gt_index, rec_index = linear_sum_assignment(cost)
    order = np.empty(len(gt_index), dtype=np.int64)
    order[gt_index] = rec_index
    return order


def psnr(reconstruction: torch.Tensor, ground_truth: torch.Tensor) -> np.ndarray:
    """Per-image PSNR of already matched, clamped batches (B, C, H, W)."""
    mse = ((reconstruction - ground_truth) ** 2).flatten(1).mean(dim=1).double().cpu().numpy()
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(1.0 / np.maximum(mse, 0.0))
    return np.minimum(values, MAX_PSNR)


def raw_psnr(reconstruction: torch.Tensor, ground_truth: torch.Tensor) -> float:
    """The seed's PSNR: no clamping, no matching, 10 log10(1 / MSE) per image, then the mean."""
    rec = reconstruction.detach().double().to(ground_truth.device)
    return float(psnr(rec, ground_truth.double()).mean())


def ssim(reconstruction: torch.Tensor, ground_truth: torch.Tensor) -> np.ndarray:
    from skimage.metrics import structural_similarity

    rec = reconstruction.cpu().double().numpy()
    gt = ground_truth.cpu().double().numpy()
    side = min(gt.shape[-2:])
    window = min(7, side if side % 2 else side - 1)
    return np.array(
        [
            structural_similarity(
                g,
                r,
                data_range=1.0,
                channel_axis=0,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                win_size=window,
            )
            for g, r in zip(gt, rec)
        ]
    )


def score(
    reconstruction: torch.Tensor, ground_truth: torch.Tensor, *, with_ssim: bool = True
) -> Scores:
    """Clamp, match one-to-one, then PSNR (and SSIM) per ground-truth image."""
    rec = clamp(reconstruction).to(ground_truth.device)
    order = match(rec, ground_truth) if len(rec) > 1 else np.zeros(1, dtype=np.int64)
    matched = rec[torch.as_tensor(order, device=rec.device)]
    return Scores(
        order=order,
        psnr=psnr(matched, ground_truth),
        ssim=ssim(matched, ground_truth) if with_ssim else None,
    )


def label_accuracy(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Multiset agreement: the share of true labels the attacker named (order-free)."""
    pred = predicted.cpu().tolist()
    hits = 0
    for label in true.cpu().tolist():
        if label in pred:
            pred.remove(label)
            hits += 1
    return hits / max(1, len(true))


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W, C) uint8."""
    return (clamp(images) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
