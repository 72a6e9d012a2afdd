"""Where and how a trial's tensors run: the device, TF32, determinism, GPU memory.

`trial_runtime(device, precision, deterministic)` wraps one trial: it sets PyTorch's global
numerics flags for the trial's fields and restores them afterwards, so trials that share a
worker process (Ray reuses actors) never inherit each other's settings. It also keeps a reused
worker's GPU memory clean: leftovers of the previous trial (a failed one's traceback, say) are
collected before the trial, the trial's own memory is handed back to the driver after it, and
the trial's peak allocation is measured (`TrialRuntime.peak_memory_bytes`).

- `precision: fp32` turns TF32 off for CUDA matmuls and cuDNN convolutions (PyTorch leaves
  cuDNN's TF32 on by default); `tf32` turns both on. On CPU neither flag changes anything.
- `deterministic: true` asks for PyTorch's deterministic algorithms (erroring on ops that have
  none), `cudnn.deterministic` and no cuDNN autotuning; `false` leaves PyTorch's defaults.

`limit_gpu_memory(device, share)` caps this process's CUDA caching allocator at its share of
the GPU (a trial holding `gpu: 0.25` may use a quarter of the card), so one greedy attack runs
out of memory on its own instead of starving the other trials packed on the same GPU.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

log = logging.getLogger("dlgsweep")

# cuBLAS reads its workspace config once, when the process makes its first handle; a worker
# that runs a deterministic trial after a non-deterministic one needs it in place from the
# start, so it is set when this module is imported (before any trial touches CUDA).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

# Memory a process holds outside the caching allocator (the CUDA context, cuDNN/cuBLAS
# handles), subtracted from each trial's share so that the processes packed on one GPU fit.
CONTEXT_RESERVE_BYTES = 768 * 2**20


def resolve_device(device: str | None) -> str:
    """CUDA when asked for (or, with None, when present); otherwise CPU, and say so."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        log.warning("CUDA was requested but is not available: running the attack on CPU")
        return "cpu"
    return device


def is_cuda(device: str | torch.device) -> bool:
    return str(device).startswith("cuda") and torch.cuda.is_available()


@dataclass
class TrialRuntime:
    """What `trial_runtime` measured: the trial's peak CUDA allocation (None on CPU)."""

    device: str
    peak_memory_bytes: int | None = None


@contextlib.contextmanager
def trial_runtime(device: str, precision: str, deterministic: bool) -> Iterator[TrialRuntime]:
    """Apply the trial's precision and determinism for one trial; clean GPU memory around it."""
    runtime = TrialRuntime(device=str(device))
    release_memory(device, collect=True)  # whatever the previous trial in this worker left
    saved = (
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.are_deterministic_algorithms_enabled(),
    )
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    try:
        yield runtime
    finally:
        runtime.peak_memory_bytes = peak_memory_bytes(device)
        (
            torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            deterministic_before,
        ) = saved
        torch.use_deterministic_algorithms(deterministic_before)
        release_memory(device)


def release_memory(device: str | torch.device, collect: bool = False) -> None:
    """Hand the allocator's cached blocks back to the driver (CUDA only).

    Within one process the cache would be reused anyway; it is released because the other
    trials packed on the same GPU (other processes) cannot use one process's cache. The peak
    counter restarts, so `peak_memory_bytes` afterwards is the next trial's own. `collect`
    first runs a full garbage collection (tensors held by reference cycles, such as a failed
    trial's traceback; about 0.1 s with torch and Ray loaded), done once per trial, before it.
    """
    if not is_cuda(device):
        return
    if collect:
        gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: str | torch.device) -> int | None:
    """Most CUDA memory allocated since the last `release_memory` (None on CPU)."""
    if not is_cuda(device):
        return None
    return int(torch.cuda.max_memory_allocated(device))


def memory_fraction(share: float, total_bytes: int) -> float | None:
    """The allocator cap for a trial holding `share` of a GPU of `total_bytes`, or None.

    None when there is nothing to cap (no share, or the whole GPU or more). Otherwise the share
    less the memory a process holds outside the allocator, never below half the share.
    """
    if share <= 0 or share >= 1:
        return None
    return max(share - CONTEXT_RESERVE_BYTES / total_bytes, share / 2)


def limit_gpu_memory(device: str | torch.device, share: float | None) -> float | None:
    """Cap this process's CUDA allocator at its GPU `share`; the fraction set, or None.

    Per process and lasting: a reused worker gets the same share for every trial of a sweep
    (one resource request per sweep), and setting it again is cheap. A no-op on CPU.
    """
    if not share or not is_cuda(device):
        return None
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    fraction = memory_fraction(share, torch.cuda.get_device_properties(index).total_memory)
    if fraction is not None:
        torch.cuda.set_per_process_memory_fraction(fraction, index)
    return fraction
