"""The client's images: a pool per dataset, and the seed's choice of a batch from it.

The first 1000 images of the CIFAR-10 and MNIST test splits ship inside the package
(`workloads/data/*.npz`, provenance in `workloads/data/SOURCES.md`), so a trial on the default
pool needs no internet and attacks the same images a torchvision download would give: the
arrays are the same uint8 data torchvision builds its PIL images from. A larger pool or the
training split comes through torchvision's download into `$DLGSWEEP_DATA_ROOT`
(default `~/.cache/dlgsweep/data`). `imagefolder:PATH` reads a user's own ImageFolder tree.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlgsweep.errors import UserError
from workloads.bundled import BUNDLED, BUNDLED_SIZE
from workloads.errors import ConfigError

NUM_CLASSES = {"cifar10": 10, "mnist": 10}
# The per-channel mean and std the seed study's transforms.Normalize used (its configs/dataset)
NORMALIZATION = {
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    "mnist": ((0.13062754273414612,), (0.30810779333114624,)),
}


@dataclass(frozen=True)
class Pool:
    images: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64
    num_classes: int
    source: str  # where the images came from, for the log

    def __len__(self) -> int:
        return len(self.labels)


def data_root() -> Path:
    return Path(os.environ.get("DLGSWEEP_DATA_ROOT", "~/.cache/dlgsweep/data")).expanduser()


@functools.lru_cache(maxsize=8)
def load_pool(dataset: str, split: str = "test", pool_size: int = BUNDLED_SIZE) -> Pool:
    """The first `pool_size` images of a dataset split (cached per process)."""
    if dataset.startswith("imagefolder:"):
        return _imagefolder(Path(dataset.split(":", 1)[1]).expanduser(), pool_size)
    if dataset not in NUM_CLASSES:
        raise ConfigError("dataset", dataset, "cifar10, mnist or imagefolder:PATH")
    if split == "test" and pool_size <= BUNDLED_SIZE:
        return _bundled(dataset, pool_size)
    return _torchvision(dataset, split, pool_size)


def _bundled(dataset: str, pool_size: int) -> Pool:
    with resources.files("workloads").joinpath("data", BUNDLED[dataset]).open("rb") as handle:
        arrays = np.load(handle)
        images, labels = arrays["x"][:pool_size], arrays["y"][:pool_size]
    if images.ndim == 3:  # MNIST ships as (N, H, W)
        images = images[..., None]
    source = f"bundled {dataset} test[:{pool_size}]"
    return Pool(images, labels.astype(np.int64), NUM_CLASSES[dataset], source)


def _torchvision(dataset: str, split: str, pool_size: int) -> Pool:
    from torchvision import datasets

    cls = {"cifar10": datasets.CIFAR10, "mnist": datasets.MNIST}[dataset]
    try:
        full = cls(str(data_root()), train=split == "train", download=True)
    except Exception as exc:  # no network, no disk: say what would have fixed it
        raise UserError(
            f"dataset {dataset} {split}[:{pool_size}] needs torchvision's download into "
            f"{data_root()} (set DLGSWEEP_DATA_ROOT), which failed: {exc}. The bundled pool is "
            f"the test split with pool_size <= {BUNDLED_SIZE}."
        ) from exc
    images = np.asarray(full.data)[:pool_size]
    if images.ndim == 3:
        images = images[..., None]
    labels = np.asarray(full.targets)[:pool_size].astype(np.int64)
    if len(labels) < pool_size:
        raise ConfigError("pool_size", pool_size, f"at most {len(labels)} for {dataset} {split}")
    return Pool(images, labels, NUM_CLASSES[dataset], f"torchvision {dataset} {split}")


def _imagefolder(root: Path, pool_size: int) -> Pool:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    if not root.is_dir():
        raise ConfigError("dataset", f"imagefolder:{root}", "imagefolder:PATH with PATH a folder")
    try:
        folder = ImageFolder(str(root), loader=Image.open)
    except (FileNotFoundError, RuntimeError) as exc:
        raise ConfigError("dataset", f"imagefolder:{root}", f"an ImageFolder tree ({exc})") from exc
    samples = folder.samples[:pool_size]
    first = Image.open(samples[0][0])
    mode = "L" if first.mode in ("L", "1", "I;16", "I") else "RGB"
    images, sizes = [], set()
    for path, _ in samples:
        with Image.open(path) as image:
            array = np.asarray(image.convert(mode))
        sizes.add(array.shape[:2])
        images.append(array if array.ndim == 3 else array[..., None])
    if len(sizes) > 1:
        side = min(min(s) for s in sizes)  # a common square size, as a crop-free resize
        images = [_resize_uint8(a, side) for a in images]
    labels = np.array([label for _, label in samples], dtype=np.int64)
    return Pool(np.stack(images), labels, len(folder.classes), f"imagefolder {root}")


def _resize_uint8(array: np.ndarray, side: int) -> np.ndarray:
    tensor = torch.from_numpy(array).permute(2, 0, 1)[None].float()
    resized = F.interpolate(tensor, size=(side, side), mode="bilinear", antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()


def choose_images(
    seed: int, pool_len: int, batch_size: int, image_choice: str = "random"
) -> np.ndarray:
    """Which images of the pool the client trains on (registry IMAGE_CHOICES)."""
    if batch_size > pool_len:
        raise ConfigError("batch_size", batch_size, f"at most the pool's {pool_len} images")
    return IMAGE_CHOICES[image_choice](seed, pool_len, batch_size)


def _random_images(seed: int, pool_len: int, batch_size: int) -> np.ndarray:
    # numpy's generator, its own stream: independent of the model's and the attacker's
    return np.random.default_rng(seed).choice(pool_len, size=batch_size, replace=False)


def _first_images(seed: int, pool_len: int, batch_size: int) -> np.ndarray:
    del seed, pool_len  # the seed study's unshuffled loader: the same images for every seed
    return np.arange(batch_size)


IMAGE_CHOICES = {"random": _random_images, "first": _first_images}


def normalize_images(
    batch: torch.Tensor, image_norm: str, pool: Pool, dataset: str
) -> torch.Tensor:
    """The images the client trains on, in [0, 1] (registry IMAGE_NORMS). batch: (B, C, H, W)."""
    return IMAGE_NORMS[image_norm](batch, pool, dataset)


def _unit(batch: torch.Tensor, pool: Pool, dataset: str) -> torch.Tensor:
    return batch  # pixels / 255, as `to_tensor` made them


def _minmax(batch: torch.Tensor, pool: Pool, dataset: str) -> torch.Tensor:
    """The seed study's: per-channel mean/std normalisation, then each image min-max to [0, 1].

    The dataset's constants for CIFAR-10 and MNIST; for an image folder, the pool's own
    per-channel mean and std. A constant image (max == min) becomes all zeros.
    """
    if dataset in NORMALIZATION:
        mean, std = (torch.tensor(v, dtype=batch.dtype) for v in NORMALIZATION[dataset])
    else:
        pixels = torch.from_numpy(pool.images).double() / 255.0  # (N, H, W, C)
        mean = pixels.mean(dim=(0, 1, 2)).to(batch.dtype)
        std = pixels.std(dim=(0, 1, 2)).clamp_min(1e-12).to(batch.dtype)
    standard = (batch - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    low = standard.amin(dim=(1, 2, 3), keepdim=True)
    high = standard.amax(dim=(1, 2, 3), keepdim=True)
    return (standard - low) / (high - low).clamp_min(1e-12)


IMAGE_NORMS = {"unit": _unit, "minmax": _minmax}
# The valid range of the model's input under each image_norm: what `boxed` clamps the dummy to.
# Both end in [0, 1] pixels (minmax rescales each image), so the model never sees other values.
IMAGE_BOX = {"unit": (0.0, 1.0), "minmax": (0.0, 1.0)}


def to_tensor(images: np.ndarray, image_size: int = 0) -> torch.Tensor:
    """uint8 (B, H, W, C) -> float (B, C, H, W) in [0, 1], resized when image_size > 0."""
    batch = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    if image_size and image_size != batch.shape[-1]:
        batch = F.interpolate(
            batch,
            size=(image_size, image_size),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        ).clamp(0, 1)
    return batch
