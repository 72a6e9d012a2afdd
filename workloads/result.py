"""What one trial produces: metrics, the convergence curve and the images, never a gap.

A trial that fails still returns a `TrialResult` (status `error`, the message in `error`), so
the results sink writes one row for every trial (optuna's FrozenTrial: failures are records).

This dataclass is the declaration of the row's result columns: store.schema derives
their Arrow types from the annotations below and `make_row` copies every field, so a field
added here is a column everywhere. A field's `metadata["column"]` says how it is stored when
not as itself: `timestamp` (unix seconds -> UTC timestamp), `png` (the image batch -> PNG
bytes in `<name>_png`), or `None` (kept out of the row).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STATUSES = ("ok", "diverged", "error")


@dataclass
class TrialResult:
    status: str  # ok | diverged (NaN/inf hit; best iterate kept) | error
    error: str | None = None
    psnr_mean: float | None = None
    psnr_min: float | None = None
    psnr_max: float | None = None
    psnr_raw_mean: float | None = None  # the seed's PSNR: unclamped, unmatched, mean over B
    ssim_mean: float | None = None
    label_accuracy: float | None = None
    grad_loss_final: float | None = None  # gradient loss (priors left out) of the kept iterate
    recipe: str | None = None  # the attack recipe the trial's fields match, or "custom"
    restart_kept: int | None = None  # which restart was kept (0-based)
    restart_mode: str | None = None  # sequential | batched: how the restarts ran
    # the gradient loss of every restart's kept iterate (the kept one's is grad_loss_final)
    restart_grad_losses: list[float] = field(default_factory=list)
    iterations_run: int = 0
    best_iteration: int = 0
    wall_seconds: float = 0.0
    seconds_per_iteration: float | None = None  # attack seconds / (iterations x restarts)
    device: str = "cpu"
    gpu_memory_peak_bytes: int | None = None  # the trial's peak CUDA allocation (None on CPU)
    started_at: float = field(default=0.0, metadata={"column": "timestamp"})  # unix seconds
    finished_at: float = field(default=0.0, metadata={"column": "timestamp"})
    label_strategy_used: str | None = None
    true_labels: list[int] = field(default_factory=list)
    predicted_labels: list[int] = field(default_factory=list)
    grad_zero_fraction: float | None = None  # share of exactly-zero shared-gradient entries
    # what the defense cost the gradient: the shared gradient against the clean one, over all
    # entries as one vector (1 and 0 without a defense; null in rows written before them)
    grad_cosine: float | None = None  # cosine similarity, shared vs clean
    grad_rel_error: float | None = None  # |shared - clean| / |clean|
    # DP-SGD (null without it): epsilon for the trial's dp_delta over dp_steps x local_steps
    # sampled Gaussian steps, by PLD and by RDP (dp-accounting; inf when the multiplier is 0);
    # the share of per-example gradients clipped; |noise| / |clipped signal| of the update
    dp_epsilon: float | None = None
    dp_epsilon_rdp: float | None = None
    dp_clipped_fraction: float | None = None
    dp_noise_to_signal: float | None = None
    init_weight_std: float | None = None  # std of the first conv's weights as initialised
    grad_kernel_norms: list[float] = field(default_factory=list)  # first conv, per kernel
    curve_iteration: list[int] = field(default_factory=list)
    curve_grad_loss: list[float] = field(default_factory=list)
    curve_psnr: list[float] = field(default_factory=list)
    # (B, H, W, C) uint8, matched order: reconstruction[i] is scored against ground_truth[i]
    reconstruction: np.ndarray | None = field(default=None, metadata={"column": "png"})
    ground_truth: np.ndarray | None = field(default=None, metadata={"column": "png"})
    # for the GIF of `dlgsweep attack`; never in a row
    frames: list[np.ndarray] = field(default_factory=list, repr=False, metadata={"column": None})

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} not in {STATUSES}")
