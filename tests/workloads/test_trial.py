"""run_trial end to end on the bundled images: every strategy, defense and loss; iDLG exactness."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from workloads.config import TrialConfig
from workloads.data import load_pool
from workloads.trial import run_trial

QUICK = dict(iterations=8, curve_points=4)


def image_folder(root: Path, dataset: str, count: int = 1000) -> tuple[Path, list[int]]:
    """An ImageFolder tree (`<label>/<index>.png`) of the package's bundled images.

    Returns the folder and the bundled index of each image in ImageFolder's order (classes,
    then file names, sorted), built from the package's own copy: never from ../shared.
    """
    from PIL import Image

    pool = load_pool(dataset)
    for index in range(count):
        folder = root / str(int(pool.labels[index]))
        folder.mkdir(parents=True, exist_ok=True)
        pixels = pool.images[index]
        image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
        image.save(folder / f"{index:04d}.png")
    order = sorted(range(count), key=lambda i: (str(int(pool.labels[i])), f"{i:04d}.png"))
    return root, order


def _ok(result):
    assert result.status == "ok", result.error
    assert math.isfinite(result.psnr_mean) and result.psnr_min <= result.psnr_mean
    assert result.psnr_mean <= result.psnr_max
    assert 0.0 <= result.label_accuracy <= 1.0
    assert result.reconstruction.shape == result.ground_truth.shape
    assert result.curve_iteration[0] == 0 and len(result.curve_psnr) == len(result.curve_iteration)
    return result


@pytest.mark.parametrize("label_strategy", ["idlg", "llg", "optimize", "oracle"])
@pytest.mark.parametrize("batch_size", [1, 3])
def test_every_label_strategy(label_strategy, batch_size):
    config = TrialConfig(label_strategy=label_strategy, batch_size=batch_size, **QUICK)
    result = _ok(run_trial(config))
    assert len(result.predicted_labels) == batch_size
    if label_strategy == "oracle":
        assert sorted(result.predicted_labels) == sorted(result.true_labels)
        assert result.label_accuracy == 1.0
    if label_strategy == "idlg" and batch_size == 1:
        assert result.label_accuracy == 1.0


@pytest.mark.parametrize("model", ["mcmahan_cnn", "resnet18", "lenet_zhu"])
@pytest.mark.parametrize("dataset", ["cifar10", "mnist"])
def test_every_model_on_both_bundled_datasets(model, dataset):
    result = _ok(run_trial(TrialConfig(model=model, dataset=dataset, iterations=3)))
    channels = 3 if dataset == "cifar10" else 1
    assert result.ground_truth.shape[-1] == channels


@pytest.mark.parametrize(
    "changes",
    [
        dict(loss="l2"),
        dict(optimizer="lbfgs", lr=1.0, iterations=2),
        dict(tv_weight=0.01),
        dict(prune="small", prune_ratio=0.5),
        dict(noise="gaussian", noise_scale=0.01),
        dict(noise="laplacian", noise_scale=0.01),
        dict(norm="batch", bn_mode="train"),
        dict(norm="batch", bn_mode="eval"),
        dict(init_method="kaiming_uniform", init_gain="seed", activation="tanh"),
        dict(image_size=16),
        dict(stop="plateau", stop_patience=2, iterations=50),
        dict(stop="threshold", stop_threshold=0.5, iterations=50),
    ],
    ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()),
)
def test_trial_variants(changes):
    result = _ok(run_trial(TrialConfig(**{**QUICK, **changes})))
    if changes.get("prune") == "small":
        assert result.grad_zero_fraction >= 0.5
    if changes.get("image_size"):
        assert result.ground_truth.shape[1:3] == (16, 16)
    if changes.get("stop") in ("plateau", "threshold"):
        assert result.iterations_run < 50


def test_trial_is_deterministic_and_seed_sensitive():
    config = TrialConfig(batch_size=2, **QUICK)
    a, b = run_trial(config), run_trial(config)
    c = run_trial(config.replace(seed=1))
    assert a.psnr_mean == b.psnr_mean and a.curve_grad_loss == b.curve_grad_loss
    assert np.array_equal(a.reconstruction, b.reconstruction)
    assert a.true_labels == b.true_labels
    assert (a.true_labels, a.psnr_mean) != (c.true_labels, c.psnr_mean)


def test_the_live_hook_sees_the_curve_and_changes_nothing():
    """run_trial's `live` hook gets each curve point as computed; the result is the same."""
    config = TrialConfig(batch_size=2, **QUICK)
    seen: list[tuple[int, float, float]] = []
    quiet, live = run_trial(config), run_trial(config, live=lambda *point: seen.append(point))
    assert [i for i, _, _ in seen] == live.curve_iteration == quiet.curve_iteration
    assert [p for _, _, p in seen] == live.curve_psnr == quiet.curve_psnr
    assert [loss for _, loss, _ in seen] == live.curve_grad_loss == quiet.curve_grad_loss
    assert live.psnr_mean == quiet.psnr_mean and live.grad_loss_final == quiet.grad_loss_final
    assert np.array_equal(live.reconstruction, quiet.reconstruction)


def test_divergence_ends_cleanly_with_the_best_iterate():
    # ReLU passes the blown-up dummy straight through: the L2 gradient loss overflows to inf
    result = run_trial(TrialConfig(lr=1e30, activation="relu", loss="l2", iterations=20))
    assert result.status == "diverged"
    assert result.iterations_run < 20
    assert math.isfinite(result.psnr_mean)  # the kept (first, finite) iterate is scored


def test_a_failing_trial_is_a_record_not_a_crash(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()  # exists at validation, holds no images: ImageFolder refuses it
    result = run_trial(TrialConfig(dataset=f"imagefolder:{folder}", iterations=2))
    assert result.status == "error" and "imagefolder" in result.error


def test_imagefolder_pool_is_the_bundled_images_by_file_index(tmp_path):
    root, order = image_folder(tmp_path / "cifar", "cifar10", count=300)
    pool = load_pool(f"imagefolder:{root}")
    bundled = load_pool("cifar10")
    assert len(pool) == 300 and pool.num_classes == 10
    assert np.array_equal(pool.images, bundled.images[order])
    assert np.array_equal(pool.labels, bundled.labels[order])


def test_imagefolder_mnist_trial_is_grayscale(tmp_path):
    root, _ = image_folder(tmp_path / "mnist", "mnist", count=40)
    config = TrialConfig(dataset=f"imagefolder:{root}", pool_size=40, **QUICK)
    result = _ok(run_trial(config))
    assert result.ground_truth.shape == (1, 28, 28, 1)


def test_a_relative_imagefolder_path_is_made_absolute(tmp_path, monkeypatch):
    image_folder(tmp_path / "rel", "mnist", count=10)
    monkeypatch.chdir(tmp_path)
    config = TrialConfig.from_dict({"dataset": "imagefolder:rel", "pool_size": 10})
    assert config.dataset == f"imagefolder:{(tmp_path / 'rel').resolve()}"
    monkeypatch.chdir("/")  # Tune runs a trial in a working directory of its own
    assert _ok(run_trial(config.replace(iterations=2))).ground_truth.shape == (1, 28, 28, 1)


@pytest.mark.long
def test_quality_on_real_images_sigmoid_beats_relu():
    """The issue's bar: McMahan CNN, xavier_normal, B=1, cosine, adam 0.1, 500 it, iDLG."""

    def mean_psnr(activation):
        return np.mean(
            [
                run_trial(TrialConfig(seed=seed, activation=activation)).psnr_mean
                for seed in range(3)
            ]
        )

    sigmoid, relu = mean_psnr("sigmoid"), mean_psnr("relu")
    print(f"mean PSNR over seeds 0..2: sigmoid {sigmoid:.2f} dB, relu {relu:.2f} dB")
    assert sigmoid >= 25.0
    assert relu < sigmoid - 5.0


def test_attack_command_writes_images_gif_and_one_schema_row(tmp_path, cli):
    out = tmp_path / "out"
    done = cli(
        "attack",
        "--model",
        "mcmahan_cnn",
        "--dataset",
        "cifar10",
        "--activation",
        "sigmoid",
        "--init-method",
        "xavier_normal",
        "--batch-size",
        "2",
        "--seed",
        "0",
        "--iterations",
        "12",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "PSNR" in done.stdout and "ms/iteration" in done.stdout
    for name in ("ground_truth.png", "reconstruction.png", "convergence.gif"):
        assert (out / name).stat().st_size > 100
    row = json.loads((out / "result.json").read_text())
    from store.schema import IMAGE_COLUMNS, SCHEMA

    assert set(row) == set(SCHEMA.names) - set(IMAGE_COLUMNS)
    assert row["status"] == "ok" and row["batch_size"] == 2 and row["iterations"] == 12
    assert row["device"] == "cpu" and row["psnr_mean"] > 0


@pytest.mark.parametrize(
    "flags,named",
    [
        (["--model", "vgg16"], "model"),
        (["--batch-size", "0"], "batch_size"),
        (["--prune-ratio", "1.5"], "prune_ratio"),
        (["--dataset", "imagefolder:/no/such/folder"], "dataset"),
    ],
)
def test_attack_bad_input_exits_2_naming_the_field(tmp_path, flags, named, cli):
    done = cli("attack", *flags, "--out", str(tmp_path))
    assert done.returncode == 2
    assert named in done.stderr and "expected" in done.stderr
    assert not (tmp_path / "result.json").exists()
