"""Attack fidelity: the review's bugs (each test failed before its fix) and the seed's protocol.

The seed-protocol tests check each field against what the seed study's code
(liziyu403/Gradient-Attacking, `main.py`) does: its McMahan CNN, its image choice and
normalisation, its whole-tensor pruning, its cosine distance that skips all-zero tensors, and its
raw PSNR.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlgsweep.commands.attack import summary
from workloads import client, metrics
from workloads.attack import GRADIENT_LOSSES, dummy_start
from workloads.client import apply_defenses, client_gradients, prune_tensors
from workloads.config import TrialConfig
from workloads.data import NORMALIZATION, choose_images, load_pool, normalize_images, to_tensor
from workloads.labels import LastLayer, idlg_labels, llg_labels
from workloads.models import create_model, first_conv, last_linear
from workloads.result import TrialResult
from workloads.trial import RandomStreams, last_layer_gradient, run_trial

QUICK = dict(iterations=6, curve_points=3)


def mcmahan_shapes() -> list[torch.Size]:
    model = create_model("mcmahan_cnn", channels=3, side=32, num_classes=10)
    return [p.shape for p in model.parameters()]


# -- Laplacian noise ------------------------------------------------------------------------


def test_laplacian_noise_is_finite_when_the_uniform_draw_is_exactly_zero(monkeypatch):
    real_rand = torch.rand

    def zeros_then_real(*args, **kwargs):  # the draw inverse-CDF sampling turned into -inf
        out = real_rand(*args, **kwargs)
        out.view(-1)[:3] = 0.0
        return out

    monkeypatch.setattr(client.torch, "rand", zeros_then_real)
    noised = client._laplacian(torch.zeros(1000), 1e-4, torch.Generator().manual_seed(0))
    assert torch.isfinite(noised).all()


@pytest.mark.parametrize("shapes", [[(4096, 512)], "mcmahan_cnn"], ids=["2M", "mcmahan_cnn"])
def test_shared_gradient_with_laplacian_noise_is_always_finite(shapes):
    """Seeds 0..59 at noise_scale 1e-4: ~1.3e8 uniform draws, where u == 0 happened ~8 times."""
    shapes = mcmahan_shapes() if shapes == "mcmahan_cnn" else shapes
    gradients = [torch.zeros(shape) for shape in shapes]
    for seed in range(60):
        streams = RandomStreams(seed)
        shared = apply_defenses(
            gradients, prune="none", prune_ratio=0.0, noise="laplacian", noise_scale=1e-4,
            generator=streams.generator("client"),
        )  # fmt: skip
        assert all(torch.isfinite(g).all() for g in shared), f"seed {seed}"


def test_the_attack_summary_prints_every_status_even_without_numbers():
    for status in ("ok", "diverged", "error"):
        result = TrialResult(status=status)  # every metric None, as a first-step divergence
        text = summary(TrialConfig(), result, out=__import__("pathlib").Path("out"))
        assert f"status {status}" in text and "n/a" in text


def test_attack_command_on_the_review_case_prints_and_exits_0(tmp_path, cli):
    done = cli("attack", "--seed", "11", "--noise", "laplacian", "--noise-scale", "0.0001",
               "--iterations", "1", "--out", str(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "PSNR mean" in done.stdout
    assert (tmp_path / "result.json").exists()


# -- labels -----------------------------------------------------------------------------------


def _penultimate_and_logits(model: nn.Module, images: torch.Tensor):
    """Penultimate activations a and logits of a whole batch (eval mode: images independent)."""
    captured = {}
    layer = last_linear(model)
    handle = layer.register_forward_hook(lambda m, inp, out: captured.update(a=inp[0]))
    with torch.no_grad():
        logits = model.eval()(images)
    handle.remove()
    return captured["a"], logits


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize(
    "name",
    [
        "mcmahan_cnn",
        pytest.param("resnet18", marks=pytest.mark.long),
        "lenet_zhu",
        "mcmahan_cnn_seed",
    ],  # ResNet-18 on 1,000 images: seconds each  # fmt: skip
)
def test_idlg_recovers_the_label_of_every_bundled_cifar_image(name, activation):
    """At batch 1 the bias gradient is softmax - onehot: exact for every activation.

    Each image's last-layer gradient is built from one batched forward (eval mode, so images
    do not interact): dbias = softmax(z) - onehot(y), dW = dbias a^T, the same tensors the
    client's backward gives (checked on the first images below).
    """
    pool = load_pool("cifar10")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model(
            name, channels=3, side=32, num_classes=10, activation=activation,
            init_method="xavier_normal",
        )  # fmt: skip
    images, labels = to_tensor(pool.images), torch.from_numpy(pool.labels)
    activations, logits = [], []
    for start in range(0, len(pool), 250):
        a, z = _penultimate_and_logits(model, images[start : start + 250])
        activations.append(a)
        logits.append(z)
    a, z = torch.cat(activations), torch.cat(logits)
    bias_grads = torch.softmax(z, dim=1) - nn.functional.one_hot(labels, 10)
    for i in range(2):  # the shortcut is the client's gradient
        shared = client_gradients(model, images[i : i + 1], labels[i : i + 1], "eval")
        last = last_layer_gradient(model, shared)
        torch.testing.assert_close(last.bias, bias_grads[i], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(last.weight, torch.outer(bias_grads[i], a[i]), rtol=1e-3,
                                   atol=1e-6)  # fmt: skip
    wrong = [
        i for i in range(len(pool))
        if int(idlg_labels(LastLayer(torch.outer(bias_grads[i], a[i]), bias_grads[i]), 1))
        != int(labels[i])
    ]  # fmt: skip
    assert len(pool) == 1000 and wrong == []


def test_the_weight_row_rule_alone_fails_with_tanh():
    """Why the bias is read: with tanh the penultimate activations take both signs."""
    pool = load_pool("cifar10")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = create_model("mcmahan_cnn", channels=3, side=32, num_classes=10,
                             activation="tanh", init_method="xavier_normal")  # fmt: skip
    images, labels = to_tensor(pool.images[:100]), torch.from_numpy(pool.labels[:100])
    a, z = _penultimate_and_logits(model, images)
    g = torch.softmax(z, dim=1) - nn.functional.one_hot(labels, 10)
    rows = [int(idlg_labels(LastLayer(torch.outer(g[i], a[i]), None), 1)) for i in range(100)]
    assert sum(r == int(y) for r, y in zip(rows, labels)) < 100


def test_llg_with_no_signal_spreads_its_picks():
    nothing = LastLayer(torch.zeros(10, 16), torch.zeros(10))
    assert sorted(set(llg_labels(nothing, 4).tolist())) == [0, 1, 2, 3]
    assert len(set(idlg_labels(nothing, 4).tolist())) == 4


# -- random streams and the dummy's start ---------------------------------------------------


def test_the_dummy_start_is_not_a_copy_of_the_model_weights():
    """The dummy used to come from a generator seeded like the model's: an affine copy."""

    def max_correlation(dummy: torch.Tensor, bias: torch.Tensor) -> float:
        flat, n = dummy.flatten().double(), bias.numel()
        windows = flat.unfold(0, n, 1)  # every contiguous slice of the dummy's length
        w = windows - windows.mean(1, keepdim=True)
        b = bias.double() - bias.double().mean()
        corr = (w @ b) / (w.norm(dim=1) * b.norm() + 1e-12)
        return float(corr.abs().max())

    seed = 0
    streams = RandomStreams(seed)
    with torch.random.fork_rng():
        torch.manual_seed(streams.seed_of("model"))
        model = create_model("mcmahan_cnn", channels=3, side=32, num_classes=10)
    bias = first_conv(model).bias.detach()
    for init in ("uniform", "randn"):
        dummy = dummy_start((1, 3, 32, 32), init, streams.generator("attacker"))
        assert max_correlation(dummy, bias) < 0.99
    # the old scheme (both generators seeded with the seed itself) fails this very check
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        old_model = create_model("mcmahan_cnn", channels=3, side=32, num_classes=10)
    old_dummy = dummy_start((1, 3, 32, 32), "uniform", torch.Generator().manual_seed(seed))
    assert max_correlation(old_dummy, first_conv(old_model).bias.detach()) > 0.999


def test_streams_are_distinct_per_role_and_seed():
    states = {
        (seed, role): RandomStreams(seed).seed_of(role)
        for seed in range(20)
        for role in RandomStreams.ROLES
    }
    assert len(set(states.values())) == len(states)


def test_dummy_init_randn_is_the_default_and_uniform_is_unit_box():
    assert TrialConfig().dummy_init == "randn"
    generator = torch.Generator().manual_seed(0)
    normal = dummy_start((64, 3, 32, 32), "randn", generator)
    uniform = dummy_start((64, 3, 32, 32), "uniform", generator)
    assert abs(float(normal.mean())) < 0.02 and abs(float(normal.std()) - 1) < 0.02
    assert float(normal.min()) < 0 and float(uniform.min()) >= 0 and float(uniform.max()) < 1


def test_a_failed_attack_scores_lower_from_randn_than_from_uniform():
    """An attack with no step taken: its score is only the start's (the issue: ~6 vs ~8 dB)."""
    base = TrialConfig(iterations=1, lr=1e-12, seed=3)
    randn = run_trial(base).psnr_mean
    uniform = run_trial(base.replace(dummy_init="uniform")).psnr_mean
    assert randn < uniform


# -- the seed's protocol, field by field -----------------------------------------------------


def test_seed_model_matches_the_seed_code_shapes_and_parameter_count():
    model = create_model("mcmahan_cnn_seed", channels=3, side=32, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == 2_156_682
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [c.padding for c in convs] == [(1, 1), (1, 1)]
    assert [p.padding for p in pools] == [1, 1]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    sizes, x = [], torch.zeros(1, 3, 32, 32)
    for layer in model.features:
        x = layer(x)
        sizes.append(x.shape[-1])
    assert sizes == [30, 30, 30, 16, 14, 14, 14, 8]  # conv, bn, act, pool, conv, bn, act, pool
    assert last_linear(model).in_features == 512 and model.classifier[1].in_features == 4096
    mnist = create_model("mcmahan_cnn_seed", channels=1, side=28, num_classes=10)
    assert sum(p.numel() for p in mnist.parameters()) == 1_663_562


def test_seed_image_choice_is_the_first_images_for_every_seed():
    for seed in range(5):
        assert choose_images(seed, 1000, 4, "first").tolist() == [0, 1, 2, 3]
    assert choose_images(0, 1000, 4).tolist() != choose_images(1, 1000, 4).tolist()
    result = run_trial(TrialConfig(image_choice="first", batch_size=2, seed=7, **QUICK))
    pool = load_pool("cifar10")
    assert result.true_labels == pool.labels[:2].tolist()


def test_seed_image_norm_is_mean_std_then_per_image_minmax():
    pool = load_pool("cifar10")
    batch = to_tensor(pool.images[:3])
    normed = normalize_images(batch, "minmax", pool, "cifar10")
    mean, std = (np.array(v).reshape(1, 3, 1, 1) for v in NORMALIZATION["cifar10"])
    by_hand = (pool.images[:3].transpose(0, 3, 1, 2) / 255.0 - mean) / std
    low = by_hand.min(axis=(1, 2, 3), keepdims=True)
    high = by_hand.max(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(normed.numpy(), (by_hand - low) / (high - low), atol=1e-5)
    assert normed.amin(dim=(1, 2, 3)).tolist() == [0.0] * 3
    np.testing.assert_allclose(normed.amax(dim=(1, 2, 3)).numpy(), 1.0, atol=1e-6)
    assert torch.equal(normalize_images(batch, "unit", pool, "cifar10"), batch)


def seed_study_prune(gradient: list[torch.Tensor], percentage: float) -> list[torch.Tensor]:
    """The seed's `prune == "small"` branch, statement for statement (its main.py)."""
    gradient = [g.clone() for g in gradient]
    gradient_magnitudes = [layer.norm().item() for layer in gradient]
    sorted_gradients = sorted(zip(gradient_magnitudes, gradient), key=lambda x: x[0])
    retain_threshold = sorted_gradients[int(len(sorted_gradients) * percentage)][0]
    for i, (grad_mag, _) in enumerate(sorted_gradients):
        if grad_mag <= retain_threshold:
            gradient[i].zero_()  # i is a position in the sorted list, used on the unsorted one
    return gradient


def test_seed_pruning_zeroes_whole_tensors_by_list_position():
    norms = [5.0, 1.0, 3.0, 2.0, 4.0, 0.5, 6.0, 7.0, 8.0, 9.0]
    grads = [torch.full((3,), n / math.sqrt(3)) for n in norms]  # tensor norm == n
    pruned = prune_tensors(grads, 0.2)
    # threshold: position int(0.2 * 10) = 2 of 0.5, 1, 2, ... is 2.0; three norms are <= 2.0,
    # so the first three tensors go (norms 5, 1, 3), not the three smallest (1, 2, 0.5)
    zeroed = [i for i, g in enumerate(pruned) if not g.any()]
    assert zeroed == [0, 1, 2]
    for i, (before, after) in enumerate(zip(grads, pruned)):
        if i not in zeroed:
            assert torch.equal(before, after)
    generator = torch.Generator().manual_seed(0)
    for ratio in (0.0, 0.2, 0.5, 0.9):  # the seed's loop itself, on random tensors
        grads = [torch.randn(int(n), generator=generator) * s for n, s in
                 zip(torch.randint(1, 50, (12,), generator=generator),
                     torch.rand(12, generator=generator))]  # fmt: skip
        for ours, theirs in zip(prune_tensors(grads, ratio), seed_study_prune(grads, ratio)):
            assert torch.equal(ours, theirs)


def test_seed_pruning_on_the_seed_model_drops_conv1_and_the_first_bn_weight():
    model = create_model("mcmahan_cnn_seed", channels=3, side=32, num_classes=10)
    images, labels = torch.rand(1, 3, 32, 32), torch.tensor([3])
    grads = client_gradients(model, images, labels, "eval")
    names = [name for name, _ in model.named_parameters()]
    zeroed = [n for n, g in zip(names, prune_tensors(grads, 0.2)) if not g.any()]
    assert len(names) == 12 and zeroed == names[:3]
    assert zeroed == ["features.0.weight", "features.0.bias", "features.1.weight"]
    result = run_trial(TrialConfig(prune="small", prune_mode="tensors", **QUICK))
    assert 0 < result.grad_zero_fraction < 1


@pytest.mark.parametrize("loss", ["cosine", "l2"])
def test_skip_zero_tensors_leaves_all_zero_shared_tensors_out_of_the_distance(loss):
    shared = [torch.tensor([1.0, 2.0]), torch.zeros(3), torch.tensor([[3.0]])]
    dummy = [torch.tensor([1.5, 1.0]), torch.tensor([0.4, -0.2, 0.9]), torch.tensor([[2.0]])]
    skip = GRADIENT_LOSSES[loss](shared, skip_zero_tensors=True)
    only_nonzero = GRADIENT_LOSSES[loss]([shared[0], shared[2]])
    assert float(skip(dummy)) == pytest.approx(float(only_nonzero([dummy[0], dummy[2]])))
    assert float(skip(dummy)) != pytest.approx(float(GRADIENT_LOSSES[loss](shared)(dummy)))
    changed = [dummy[0], torch.tensor([9.0, 9.0, 9.0]), dummy[2]]
    assert float(skip(changed)) == pytest.approx(float(skip(dummy)))


def test_raw_psnr_is_unclamped_and_unmatched_on_a_known_pair():
    truth = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.0)])
    over = truth + 1.0  # 1.5 and 1.0: clamped, the first would score as 1.0
    assert metrics.raw_psnr(over, truth) == pytest.approx(0.0)  # MSE 1 for both images
    assert metrics.score(over, truth).psnr.mean() > 0.0
    swapped = truth.flip(0)  # a perfect reconstruction in the wrong order
    assert metrics.raw_psnr(swapped, truth) == pytest.approx(10 * math.log10(1 / 0.25))
    assert metrics.score(swapped, truth).psnr.mean() == metrics.MAX_PSNR


def test_every_row_carries_the_seed_psnr_beside_ours():
    result = run_trial(TrialConfig(batch_size=2, **QUICK))
    assert math.isfinite(result.psnr_raw_mean) and result.psnr_raw_mean != result.psnr_mean


def test_iterate_last_keeps_the_final_iterate():
    base = TrialConfig(iterations=12, lr=0.5, seed=1)
    best, last = run_trial(base), run_trial(base.replace(iterate="last"))
    assert best.psnr_mean != last.psnr_mean
    assert last.grad_loss_final >= best.grad_loss_final - 1e-12 or last.iterations_run == 12


def test_the_seed_protocol_runs_end_to_end():
    config = TrialConfig(
        model="mcmahan_cnn_seed", image_choice="first", image_norm="minmax",
        label_strategy="oracle", prune="small", prune_mode="tensors", skip_zero_tensors=True,
        iterate="last", init_gain="seed", batch_size=2, **QUICK,
    )  # fmt: skip
    result = run_trial(config)
    assert result.status == "ok", result.error
    assert result.label_accuracy == 1.0 and math.isfinite(result.psnr_raw_mean)


# -- beyond the seed: init scale and the pruning-aware attacker -----------------------------


@pytest.mark.parametrize("scale", [0.25, 2.0, 4.0])
@pytest.mark.parametrize("name", ["mcmahan_cnn", "resnet18", "lenet_zhu"])
def test_init_scale_multiplies_every_conv_and_linear_weight_exactly(name, scale):
    def build(s: float) -> nn.Module:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            return create_model(name, channels=3, side=32, num_classes=10,
                                init_method="kaiming_normal", init_scale=s)  # fmt: skip

    plain, scaled = build(1.0), build(scale)
    for (key, a), (_, b) in zip(plain.named_parameters(), scaled.named_parameters()):
        owner = dict(plain.named_modules())[key.rsplit(".", 1)[0]]
        weighted = isinstance(owner, (nn.Conv2d, nn.Linear)) and key.endswith("weight")
        assert torch.equal(b, a * scale if weighted else a), key  # powers of 2: exact


def test_init_scale_is_validated_and_recorded():
    with pytest.raises(Exception, match="init_scale"):
        TrialConfig.from_dict({"init_scale": 0})
    result = run_trial(TrialConfig(init_scale=2.0, **QUICK))
    plain = run_trial(TrialConfig(**QUICK))
    assert result.init_weight_std == pytest.approx(2 * plain.init_weight_std, rel=1e-6)


@pytest.mark.parametrize("loss", ["cosine", "l2"])
def test_mask_pruned_ignores_exactly_the_zero_entries(loss):
    generator = torch.Generator().manual_seed(0)
    shared = [torch.randn(50, generator=generator), torch.randn(4, 5, generator=generator)]
    shared[0][::3] = 0.0
    shared[1][0] = 0.0
    masked = GRADIENT_LOSSES[loss](shared, mask_pruned=True)
    dummy = [torch.randn(s.shape, generator=generator) for s in shared]
    at_zeros = [d + 5.0 * (s == 0) for d, s in zip(dummy, shared)]
    at_kept = [d + 5.0 * (s != 0) for d, s in zip(dummy, shared)]
    assert float(masked(at_zeros)) == pytest.approx(float(masked(dummy)))
    assert float(masked(at_kept)) != pytest.approx(float(masked(dummy)))
    plain = GRADIENT_LOSSES[loss](shared)
    assert float(plain(at_zeros)) != pytest.approx(float(plain(dummy)))


def test_mask_pruned_is_a_no_op_without_pruning():
    base = TrialConfig(activation="relu", batch_size=2, **QUICK)  # ReLU: natural zeros too
    a, b = run_trial(base), run_trial(base.replace(mask_pruned=True))
    assert a.curve_grad_loss == b.curve_grad_loss and a.psnr_mean == b.psnr_mean
    assert np.array_equal(a.reconstruction, b.reconstruction)
    pruned = base.replace(prune="small", prune_ratio=0.5)
    c, d = run_trial(pruned), run_trial(pruned.replace(mask_pruned=True))
    assert c.curve_grad_loss != d.curve_grad_loss
