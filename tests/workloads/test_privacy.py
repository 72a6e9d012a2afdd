"""DP-SGD at the client (clipping, noise, the accountant's epsilon) and FedAvg updates with the
attacker that unrolls them (workloads.privacy, workloads.client.client_update, workloads.attack).
Real models, real per-example gradients, the package's bundled images."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import optimize, special, stats

from workloads.config import TrialConfig
from workloads.errors import ConfigError


def _model(model: str = "mcmahan_cnn", seed: int = 0, sigmoid: bool = False, **kwargs):
    from workloads.models import create_model

    torch.manual_seed(seed)
    activation = "sigmoid" if sigmoid else "relu"
    return create_model(model, channels=3, side=16, num_classes=10, activation=activation,
                        init_method="xavier_normal", **kwargs)  # fmt: skip


def _batch(n: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand((n, 3, 16, 16), generator=generator)
    labels = torch.randint(0, 10, (n,), generator=generator)
    return images, labels


def _loop_per_example(model, images, labels):
    """The reference: one autograd call per example, batch of one."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = []
    for x, y in zip(images, labels):
        loss = torch.nn.functional.cross_entropy(model(x[None]), y[None])
        out.append([g.detach() for g in torch.autograd.grad(loss, params)])
    return out


# -- the accountant -------------------------------------------------------------------------


def _analytic_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Balle and Wang (2018), Theorem 8: the exact epsilon of the Gaussian mechanism with
    sensitivity 1 and std sigma, by root-finding on delta(eps)."""

    def delta_of(eps: float) -> float:
        a = 1 / (2 * sigma) - eps * sigma
        b = -1 / (2 * sigma) - eps * sigma
        return stats.norm.cdf(a) - math.exp(eps + stats.norm.logcdf(b)) - delta

    return optimize.brentq(delta_of, 1e-6, 5000.0)


def _rdp_classic_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """Mironov et al. (2019): the sampled Gaussian's RDP at integer orders in closed form,
    composed over the steps, converted with eps = rdp + log(1/delta) / (alpha - 1): an upper
    bound no tighter than dp-accounting's own conversion."""
    best = math.inf
    for alpha in range(2, 256):
        k = np.arange(alpha + 1)
        log_terms = (special.gammaln(alpha + 1) - special.gammaln(k + 1)
                     - special.gammaln(alpha - k + 1) + (alpha - k) * math.log1p(-q)
                     + k * math.log(q) + (k * k - k) / (2 * sigma**2))  # fmt: skip
        rdp = steps * special.logsumexp(log_terms) / (alpha - 1)
        best = min(best, rdp + math.log(1 / delta) / (alpha - 1))
    return best


def test_one_full_batch_step_at_sigma_1_is_epsilon_4_377():
    from workloads.privacy import epsilon

    pld = epsilon(1.0, 1.0, 1, 1e-5, "pld")
    assert pld == pytest.approx(4.377, abs=0.002)
    assert pld == pytest.approx(_analytic_gaussian_epsilon(1.0, 1e-5), abs=0.002)
    assert epsilon(1.0, 1.0, 1, 1e-5, "rdp") >= pld  # RDP is the looser bound
    assert epsilon(0.0, 1.0, 1, 1e-5) == math.inf  # no noise, no guarantee


@pytest.mark.parametrize("sigma,steps", [(1.0, 2), (2.0, 10), (5.0, 100)])
def test_t_full_batch_steps_are_one_gaussian_step_of_sigma_over_root_t(sigma, steps):
    """Composing T Gaussian mechanisms (q = 1) is exactly one with std sigma / sqrt(T): the
    accountant's composition checked against the analytic single mechanism."""
    from workloads.privacy import epsilon

    composed = epsilon(sigma, 1.0, steps, 1e-5)
    single = _analytic_gaussian_epsilon(sigma / math.sqrt(steps), 1e-5)
    assert composed == pytest.approx(single, rel=2e-3)


def test_tiny_multipliers_get_an_epsilon_in_bounded_time():
    """A frontier search visits sigma down to 1e-4: the PLD grid scales with epsilon, and past
    PLD_LIMIT the column is the RDP bound, never an overflow."""
    from workloads.privacy import PLD_LIMIT, epsilon

    values = [epsilon(s, 1.0, 1, 1e-5) for s in (0.3, 0.03, 1e-3, 1e-4)]
    assert values == sorted(values)  # less noise, larger epsilon
    assert values[1] == pytest.approx(_analytic_gaussian_epsilon(0.03, 1e-5), rel=1e-3)
    assert values[2] > PLD_LIMIT and values[2] == epsilon(1e-3, 1.0, 1, 1e-5, "rdp")


@pytest.mark.parametrize("sigma,q,steps", [(1.1, 0.01, 1000), (2.0, 0.05, 50), (0.8, 0.1, 10)])
def test_subsampled_multistep_epsilon_against_dp_accounting_and_the_closed_form(sigma, q, steps):
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant
    from dp_accounting.rdp import rdp_privacy_accountant

    from workloads.privacy import epsilon

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    pld_account = pld_privacy_accountant.PLDAccountant()
    pld_account.compose(event)
    rdp_account = rdp_privacy_accountant.RdpAccountant()
    rdp_account.compose(event)
    pld, rdp = epsilon(sigma, q, steps, 1e-5, "pld"), epsilon(sigma, q, steps, 1e-5, "rdp")
    # dp-accounting's default grid (1e-4 wide); ours is 1e-4 of epsilon above 1
    assert pld == pytest.approx(pld_account.get_epsilon(1e-5), rel=1e-3)
    assert rdp == pytest.approx(rdp_account.get_epsilon(1e-5), rel=1e-9)
    classic = _rdp_classic_epsilon(sigma, q, steps, 1e-5)
    assert pld <= rdp <= classic * 1.001  # PLD tightest, then RDP, then the classic conversion
    assert rdp >= 0.7 * classic  # the same mechanism: the conversions differ, not the RDP
    # sampling amplifies: the same steps at q = 1 cost far more
    assert epsilon(sigma, 1.0, steps, 1e-5) > 3 * pld


# -- clipping and noise on real per-example gradients ----------------------------------------


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_per_example_gradients_are_each_examples_own(norm):
    from workloads.privacy import per_example_gradients

    model = _model(norm=norm).eval()  # BN in eval mode: a fixed affine map (privacy's doc)
    images, labels = _batch(4)
    per = per_example_gradients(model, images, labels)
    loop = _loop_per_example(model, images, labels)
    for i in range(4):
        for g, ref in zip(per.values(), loop[i]):
            torch.testing.assert_close(g[i], ref, rtol=1e-4, atol=1e-6)
    # they differ between examples: the test would notice a batch gradient repeated B times
    first = list(per.values())[0]
    assert not torch.allclose(first[0], first[1])


@pytest.mark.parametrize("clip", [0.05, 0.5, 5.0])
def test_clipping_bounds_every_per_example_norm_and_leaves_small_ones(clip):
    from workloads.privacy import clip_factors, per_example_gradients, per_example_norms

    model = _model(seed=1)
    images, labels = _batch(6, seed=1)
    per = list(per_example_gradients(model, images, labels).values())
    norms = per_example_norms(per)
    factors = clip_factors(norms, clip)
    clipped = [g * factors.to(g.dtype).view(-1, *([1] * (g.dim() - 1))) for g in per]
    after = per_example_norms(clipped)
    assert float(after.max()) <= clip * (1 + 1e-5)
    small = norms <= clip
    torch.testing.assert_close(after[small], norms[small], rtol=1e-6, atol=0)
    torch.testing.assert_close(after[~small], torch.full_like(after[~small], clip), rtol=1e-5,
                               atol=0)  # fmt: skip
    if clip == 0.05:
        assert bool((~small).all())  # the test clips something at the small bound


def test_noise_multiplier_zero_is_the_clipped_mean_exactly_and_draws_nothing():
    from workloads.client import client_update

    model = _model(seed=2)
    images, labels = _batch(4, seed=2)
    clip = 0.3
    loop = _loop_per_example(model, images, labels)
    expected = []
    for tensors in zip(*loop):
        scaled = [g * min(1.0, clip / float(torch.sqrt(sum((t * t).sum() for t in
                  loop[i])))) for i, g in enumerate(tensors)]  # fmt: skip
        expected.append(torch.stack(scaled).sum(0) / 4)
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    update = client_update(model, images, labels, bn_mode="eval", batch_size=4, dp_clip=clip,
                           dp_noise_multiplier=0.0, generator=generator)  # fmt: skip
    for got, want in zip(update.update, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)
    assert torch.equal(generator.get_state(), state)
    assert update.record.noise_to_signal == 0.0
    assert update.record.clipped_fraction == 1.0  # clip 0.3 is below every norm here


def test_noise_has_the_std_dp_sgd_states():
    """(sum of clipped + N(0, (sigma C)^2)) / B: the noise part's entries have std sigma C / B."""
    from workloads.privacy import dp_gradient

    model = _model(seed=3)
    images, labels = _batch(4, seed=3)
    step = dp_gradient(model, images, labels, clip=0.5, noise_multiplier=2.0,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    noise = torch.cat([n.flatten() for n in step.noise])
    assert float(noise.std()) == pytest.approx(2.0 * 0.5 / 4, rel=0.01)
    for mean, signal, n in zip(step.mean, step.signal, step.noise):
        torch.testing.assert_close(mean, signal + n)


# -- the trial: DP rows, FedSGD equivalence, FedAvg ------------------------------------------

SMALL = {"dataset": "cifar10", "pool_size": 16, "image_size": 16, "iterations": 20,
         "curve_points": 2, "activation": "sigmoid", "label_strategy": "oracle"}  # fmt: skip


def test_dp_rows_carry_epsilon_for_q_over_t_steps_and_plain_rows_leave_it_null():
    import dp_accounting
    from dp_accounting.pld import pld_privacy_accountant

    from workloads.trial import run_trial

    config = TrialConfig.from_dict({**SMALL, "batch_size": 2, "local_steps": 3,
                                    "local_images": 4, "dp_clip": 1.0, "dp_noise_multiplier": 1.3,
                                    "dp_sample_rate": 0.02, "dp_steps": 40})  # fmt: skip
    result = run_trial(config, "cpu")
    assert result.status == "ok", result.error
    event = dp_accounting.SelfComposedDpEvent(  # T = dp_steps x local_steps = 120
        dp_accounting.PoissonSampledDpEvent(0.02, dp_accounting.GaussianDpEvent(1.3)), 120
    )
    account = pld_privacy_accountant.PLDAccountant()
    account.compose(event)
    assert result.dp_epsilon == pytest.approx(account.get_epsilon(1e-5), rel=1e-3)
    assert result.dp_epsilon_rdp >= result.dp_epsilon
    assert 0.0 <= result.dp_clipped_fraction <= 1.0
    assert result.dp_noise_to_signal > 0
    assert result.grad_rel_error > 0  # the distortion is against the update without DP
    plain = run_trial(TrialConfig.from_dict(SMALL), "cpu")
    assert (plain.dp_epsilon, plain.dp_clipped_fraction, plain.dp_noise_to_signal) == (
        None, None, None)  # fmt: skip


def test_fedsgd_written_as_one_local_step_is_todays_trial():
    """`local_steps: 1` with `local_images` = batch size is the trial before these fields: the
    same key and the same reconstruction for a seed."""
    from workloads.trial import run_trial

    for batch in (1, 2):
        today = TrialConfig.from_dict({**SMALL, "batch_size": batch, "seed": 3})
        spelled = TrialConfig.from_dict({**SMALL, "batch_size": batch, "seed": 3,
                                         "local_steps": 1, "local_images": batch})  # fmt: skip
        assert spelled == today and spelled.trial_key == today.trial_key
        a, b = run_trial(today, "cpu"), run_trial(spelled, "cpu")
        assert a.status == b.status == "ok"
        np.testing.assert_array_equal(a.reconstruction, b.reconstruction)
        assert a.curve_grad_loss == b.curve_grad_loss


def test_fedsgd_is_the_gradient_pipeline_before_fedavg():
    """The trial's FedSGD path is the pipeline these fields came after, rebuilt here from its
    parts (the client's gradient, the noise defense from the client stream, the attack from the
    attacker stream): the same reconstruction, exactly."""
    import copy

    from workloads import metrics
    from workloads.attack import AttackSettings, reconstruct
    from workloads.client import apply_defenses, client_gradients
    from workloads.data import choose_images, load_pool, normalize_images, to_tensor
    from workloads.models import create_model
    from workloads.trial import RandomStreams, run_trial

    config = TrialConfig.from_dict({**SMALL, "batch_size": 2, "seed": 5, "noise": "gaussian",
                                    "noise_scale": 1e-3, "local_steps": 1,
                                    "local_images": 2})  # fmt: skip
    pool = load_pool("cifar10", "test", 16)
    chosen = choose_images(5, len(pool), 2, "random")
    truth = normalize_images(to_tensor(pool.images[chosen], 16), "unit", pool, "cifar10")
    labels = torch.from_numpy(pool.labels[chosen])
    streams = RandomStreams(5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(streams.seed_of("model"))
        model = create_model("mcmahan_cnn", channels=3, side=16, num_classes=10,
                             activation="sigmoid", norm="none", init_method="xavier_normal",
                             init_gain="activation", init_scale=1.0)  # fmt: skip
    server = copy.deepcopy(model)
    shared = apply_defenses(client_gradients(model, truth, labels, "eval"), prune="none",
                            prune_ratio=0.2, noise="gaussian", noise_scale=1e-3,
                            generator=streams.generator("client"))  # fmt: skip
    settings = AttackSettings(iterations=20, observe_every=10, box=(0.0, 1.0))
    outcome = reconstruct(server, shared, input_shape=(2, 3, 16, 16), num_classes=10,
                          labels=labels, bn_mode="eval", settings=settings,
                          generator=streams.generator("attacker"))  # fmt: skip
    order = metrics.score(outcome.reconstruction, truth).order
    expected = metrics.to_uint8(outcome.reconstruction[torch.as_tensor(order)])
    result = run_trial(config, "cpu")
    assert result.status == "ok", result.error
    np.testing.assert_array_equal(result.reconstruction, expected)


def test_the_unrolled_objective_at_one_step_matches_the_gradient_objective():
    """Unrolling one step of lr on the whole batch gives -lr x the gradient: the cosine loss of
    the same dummy is the same (up to rounding), and its gradient points the same way."""
    from workloads.attack import AttackSettings, Objective

    model = _model(seed=4)
    images, labels = _batch(2, seed=4)
    shared = [
        g.detach()
        for g in torch.autograd.grad(
            torch.nn.functional.cross_entropy(model(images), labels), list(model.parameters())
        )
    ]
    dummy = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(1))
    values = []
    for settings, target in (
        (AttackSettings(), shared),
        (AttackSettings(local_steps=1, local_lr=0.3, local_batch=2), [-0.3 * g for g in shared]),
    ):
        objective = Objective(model, target, labels, settings, None)
        objective.images = 2
        variable = dummy.clone().requires_grad_(True)
        value, _ = objective.autograd(variable, None)
        values.append((float(value.detach()), torch.autograd.grad(value, variable)[0]))
    assert values[0][0] == pytest.approx(values[1][0], abs=1e-5)
    torch.testing.assert_close(values[0][1], values[1][1], rtol=1e-3, atol=1e-6)


def test_fedavg_update_is_the_weight_difference_of_k_steps_in_batch_order():
    from workloads.client import client_gradients, client_update

    model = _model(seed=5)
    reference = _model(seed=5)
    images, labels = _batch(4, seed=5)
    update = client_update(model, images, labels, bn_mode="eval", batch_size=2, local_steps=3,
                           local_lr=0.05)  # fmt: skip
    start = [p.detach().clone() for p in reference.parameters()]
    for t in range(3):  # batches 0, 1, 0
        rows = slice((t % 2) * 2, (t % 2) * 2 + 2)
        grads = client_gradients(reference, images[rows], labels[rows], "eval")
        with torch.no_grad():
            for p, g in zip(reference.parameters(), grads):
                p.sub_(0.05 * g)
    for got, p, s in zip(update.update, reference.parameters(), start):
        torch.testing.assert_close(got, p.detach() - s)
    assert update.record is None


@pytest.mark.long
def test_the_attacker_who_unrolls_two_steps_beats_one_who_assumes_one():
    """K = 2 local steps of learning rate 1 on n = 2 bundled CIFAR-10 images, one per step
    (McMahan CNN, Sigmoid, 16 x 16): the attacker that unrolls the two steps rebuilds the images
    better than one that matches the update as a single step on both (a FedSGD attacker): by
    more than 3 dB on average over the seeds, and never worse on one. The optimisation is
    chaotic enough that torch's thread count moves single seeds (200 Adam steps each; measured
    margins 10.2, 6.6, 3.1 dB with one thread, 9.0, 7.1, 0.5 with two: seed 2's images are
    rebuilt at 20 dB by both attackers), so no single seed carries the claim."""
    from workloads.attack import AttackSettings, reconstruct
    from workloads.client import client_update
    from workloads.data import load_pool, to_tensor
    from workloads.metrics import score

    pool = load_pool("cifar10", "test", 16)
    margins = []
    for seed in range(3):
        chosen = [2 * seed, 2 * seed + 1]
        images = to_tensor(pool.images[chosen], 16)
        labels = torch.from_numpy(pool.labels[chosen])
        model, server = _model(seed=seed, sigmoid=True), _model(seed=seed, sigmoid=True)
        update = client_update(model, images, labels, bn_mode="eval", batch_size=1,
                               local_steps=2, local_lr=1.0).update  # fmt: skip
        psnr = {}
        for name, batch, steps in (("unrolled", 1, 2), ("one step", 2, 1)):
            settings = AttackSettings(optimizer="adam", lr=0.1, iterations=200, boxed=True,
                                      local_steps=steps, local_lr=1.0,
                                      local_batch=batch)  # fmt: skip
            outcome = reconstruct(server, update, input_shape=(2, 3, 16, 16), num_classes=10,
                                  labels=labels, bn_mode="eval", settings=settings,
                                  generator=torch.Generator().manual_seed(seed))  # fmt: skip
            psnr[name] = score(outcome.reconstruction, images, with_ssim=False).psnr_mean
        margins.append(psnr["unrolled"] - psnr["one step"])
    assert sum(margins) / len(margins) > 3.0 and min(margins) > 0.0, margins


def test_unrolled_restarts_batched_equal_sequential():
    """The unrolled objective under torch.func (vmapped restarts) is the autograd one."""
    from workloads.attack import AttackSettings, reconstruct
    from workloads.client import client_update

    model, server = _model(seed=6), _model(seed=6)
    images, labels = _batch(4, seed=6)
    update = client_update(model, images, labels, bn_mode="eval", batch_size=2, local_steps=2,
                           local_lr=0.5).update  # fmt: skip
    kept = {}
    for mode in ("batched", "sequential"):
        settings = AttackSettings(iterations=6, restarts=2, restart_mode=mode, tv_weight=0.01,
                                  local_steps=2, local_lr=0.5, local_batch=2)  # fmt: skip
        outcome = reconstruct(server, update, input_shape=(4, 3, 16, 16), num_classes=10,
                              labels=labels, bn_mode="eval", settings=settings,
                              generator=torch.Generator().manual_seed(0))  # fmt: skip
        assert outcome.restart_mode == mode
        kept[mode] = outcome
    assert kept["batched"].restart_losses == pytest.approx(kept["sequential"].restart_losses,
                                                           rel=1e-3)  # fmt: skip
    torch.testing.assert_close(
        kept["batched"].reconstruction, kept["sequential"].reconstruction, rtol=1e-3, atol=1e-4
    )


# -- bad values exit 2 naming the field ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw,key",
    [
        ({"dp_clip": -1}, "dp_clip"),
        ({"dp_clip": "big"}, "dp_clip"),
        ({"dp_clip": 1, "dp_noise_multiplier": -0.5}, "dp_noise_multiplier"),
        ({"dp_noise_multiplier": 1.0}, "dp_noise_multiplier"),  # noise without clipping
        ({"dp_clip": 1, "dp_sample_rate": 0}, "dp_sample_rate"),
        ({"dp_clip": 1, "dp_sample_rate": 1.5}, "dp_sample_rate"),
        ({"dp_sample_rate": 0.1}, "dp_sample_rate"),  # accounting without DP
        ({"dp_clip": 1, "dp_steps": 0}, "dp_steps"),
        ({"dp_clip": 1, "dp_steps": 2.5}, "dp_steps"),
        ({"dp_clip": 1, "dp_delta": 0}, "dp_delta"),
        ({"dp_clip": 1, "dp_delta": 1}, "dp_delta"),
        ({"dp_clip": 1, "model": "resnet18", "bn_mode": "train"}, "bn_mode"),
        ({"dp_clip": 1, "norm": "batch", "bn_mode": "train"}, "bn_mode"),
        ({"local_steps": 0}, "local_steps"),
        ({"local_steps": 101}, "local_steps"),
        ({"local_lr": 0}, "local_lr"),
        ({"local_lr": -0.1}, "local_lr"),
        ({"local_images": -1}, "local_images"),
        ({"batch_size": 2, "local_images": 3, "local_steps": 2}, "local_images"),
        ({"batch_size": 2, "local_images": 6, "local_steps": 2}, "local_images"),  # unvisited
        ({"local_images": 8, "local_steps": 8, "pool_size": 4}, "local_images"),
        ({"local_steps": 2, "model": "resnet18", "bn_mode": "train", "bn_prior": 1.0}, "bn_prior"),
    ],
)
def test_bad_dp_and_fedavg_values_name_the_field(raw, key):
    with pytest.raises(ConfigError) as info:
        TrialConfig.from_dict(raw)
    assert info.value.key == key
    assert key in str(info.value) and "expected" in str(info.value)


def test_good_dp_and_fedavg_values_next_to_the_bad_ones_pass():
    config = TrialConfig.from_dict({"dp_clip": 1, "dp_noise_multiplier": 0, "dp_sample_rate": 1,
                                    "model": "resnet18", "bn_mode": "eval", "batch_size": 2,
                                    "local_images": 8, "local_steps": 4})  # fmt: skip
    assert config.dp and config.fedavg and config.client_images == 8
    assert config.dp_accounted_steps == 4
    assert TrialConfig.from_dict({"local_images": 1}).local_images == 0  # = batch size


@pytest.mark.parametrize("flags,field", [(["--dp-clip", "-1"], "dp_clip"),
                                         (["--local-steps", "0"], "local_steps"),
                                         (["--dp-delta", "2"], "dp_delta")])  # fmt: skip
def test_the_attack_command_exits_2_naming_the_field(flags, field, tmp_path, capsys):
    from dlgsweep import cli

    rc = cli.main(["attack", *flags, "--out", str(tmp_path / "out")])
    assert rc == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_attack_command_states_the_clients_update_and_its_epsilon(tmp_path, capsys):
    from dlgsweep import cli

    rc = cli.main(["attack", "--iterations", "2", "--image-size", "16", "--pool-size", "8",
                   "--batch-size", "2", "--local-images", "4", "--local-steps", "2",
                   "--dp-clip", "1", "--dp-noise-multiplier", "1", "--out",
                   str(tmp_path / "out")])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "FedAvg, 2 local steps of lr 0.1 on 4 images in batches of 2" in out
    # two DP-SGD steps at q = 1, sigma = 1: PLD gives 6.573 (one step at sigma 1/sqrt(2))
    expected = f"epsilon {_pld(1.0, 1.0, 2):.4g} (PLD"
    assert expected in out, out


def _pld(sigma: float, q: float, steps: int) -> float:
    from workloads.privacy import epsilon

    return epsilon(sigma, q, steps, 1e-5)
