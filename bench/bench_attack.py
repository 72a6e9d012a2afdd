"""Attack speed: dlgsweep's gradient-matching loop against the plain DLG loop, side by side.

The plain loop is the one every DLG repository writes (Zhu et al.'s and iDLG's reference code):

    optimizer.zero_grad()
    dummy_grads = autograd.grad(loss(model(dummy), labels), model.parameters(), create_graph=True)
    grad_diff = distance(dummy_grads, shared); grad_diff.backward(); optimizer.step()

Both run the same model, shared gradient, loss (cosine), optimizer (Adam 0.1) and dummy
initialisation, interleaved in one process, best of `--repeats`. Printed: iterations per second
and the ratio (ours / plain; above 1 = faster). `--profile` adds where the time goes: the share
of one iteration spent in the forward pass, the first (create_graph) backward, the gradient
distance and the double backward.

    python bench/bench_attack.py                     # all models, batch 1, 4, 16 (CPU: minutes)
    python bench/bench_attack.py --models mcmahan_cnn --batches 1 4 --device cuda --profile

A second table times the `inverting-gradients` recipe's attack (signed Adam, boxed, step
schedule, TV; labels given) with R restarts run one after the other (`sequential`) and as one
batched problem (`batched`: vmap over the restarts), interleaved, best of `--repeats`. Printed:
seconds per iteration of all R restarts together, each way, and the ratio (sequential /
batched; above 1 = batching is faster). `--restarts 1 4 8` picks R, `--only restarts` skips
the first table.

A third table (`--only privacy`) prices issue 24's client and attacker: the client's update
plain (one batch gradient) against DP-SGD's (per-example gradients by vmap, clipped, noised),
seconds per update and the ratio (DP / plain); and the attack's seconds per iteration matching
a FedSGD gradient against unrolling K local steps (`--local-steps 2 5`) of a FedAvg update on
the same n = B images (each step on the whole batch), each with its ratio to the plain attack.
"""

from __future__ import annotations

import argparse
import copy
import platform
import time

import torch
from torch.nn import functional as F

from workloads.attack import AttackSettings, reconstruct
from workloads.client import client_gradients
from workloads.data import load_pool, to_tensor
from workloads.models import create_model
from workloads.recipes import recipe_fields

# iterations per timing run, scaled so a CPU run stays in minutes
ITERATIONS = {"mcmahan_cnn": 40, "resnet18": 6, "lenet_zhu": 60}


def setup(model_name: str, batch: int, device: str):
    pool = load_pool("cifar10")
    images = to_tensor(pool.images[:batch]).to(device)
    labels = torch.from_numpy(pool.labels[:batch]).to(device)
    torch.manual_seed(0)
    model = create_model(
        model_name,
        channels=3,
        side=32,
        num_classes=10,
        activation="sigmoid",
        init_method="xavier_normal",
    ).to(device)
    shared = client_gradients(copy.deepcopy(model), images, labels, "eval")
    return model, shared, labels, tuple(images.shape)


def plain_loop(model, shared, labels, shape, iterations: int, device: str) -> None:
    dummy = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device)
    dummy.requires_grad_(True)
    optimizer = torch.optim.Adam([dummy], lr=0.1)
    for _ in range(iterations):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(dummy), labels)
        dummy_grads = torch.autograd.grad(loss, model.parameters(), create_graph=True)
        dot, dummy_norm, shared_norm = 0, 0, 0
        for gx, gy in zip(dummy_grads, shared):
            dot += (gx * gy).sum()
            dummy_norm += gx.pow(2).sum()
            shared_norm += gy.pow(2).sum()
        grad_diff = 1 - dot / (dummy_norm.sqrt() * shared_norm.sqrt())
        grad_diff.backward()
        optimizer.step()
    _sync(device)


def ours(model, shared, labels, shape, iterations: int, device: str) -> None:
    settings = AttackSettings(iterations=iterations, observe_every=iterations)
    restarts_run(model, shared, labels, shape, settings, device)


def inverting_gradients(restarts: int, iterations: int, mode: str) -> AttackSettings:
    """The recipe's attack settings (`inverting-gradients`), at a bench's budget."""
    recipe = recipe_fields("inverting-gradients")
    fields = {k: recipe[k] for k in ("loss", "optimizer", "lr", "tv_weight", "signed", "boxed")}
    return AttackSettings(
        **fields,
        lr_schedule=recipe["lr_schedule"],
        iterations=iterations,
        restarts=restarts,
        restart_mode=mode,
        observe_every=iterations,
    )


def restarts_run(model, shared, labels, shape, settings: AttackSettings, device: str) -> None:
    reconstruct(
        model,
        shared,
        input_shape=shape,
        num_classes=10,
        labels=labels,
        bn_mode="eval",
        settings=settings,
        generator=torch.Generator().manual_seed(0),
    )
    _sync(device)


def restarts_table(args: argparse.Namespace, device: str) -> None:
    print(
        "\ninverting-gradients, R restarts: sequential vs batched (vmap), s per iteration of all R"
    )
    header = (
        f"{'model':<12} {'batch':>5} {'R':>3} {'iters':>5} {'sequential':>11} {'batched':>9} "
        f"{'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for model_name in args.models:
        for batch in args.batches:
            state = setup(model_name, batch, device)
            iterations = max(2, round(ITERATIONS[model_name] * args.scale / max(1, batch / 4)))
            for restarts in args.restarts:
                modes = {m: inverting_gradients(restarts, iterations, m) for m in MODES}
                warm = {m: inverting_gradients(restarts, 2, m) for m in MODES}
                for mode in MODES:
                    restarts_run(*state, warm[mode], device)
                best = dict.fromkeys(MODES, float("inf"))
                for _ in range(args.repeats):
                    for mode in MODES:
                        seconds = timed(restarts_run, *state, modes[mode], device)
                        best[mode] = min(best[mode], seconds)
                sequential, batched = (best[m] / iterations for m in MODES)
                print(
                    f"{model_name:<12} {batch:>5} {restarts:>3} {iterations:>5} "
                    f"{sequential:>11.4f} {batched:>9.4f} {sequential / batched:>6.2f}"
                )


MODES = ("sequential", "batched")


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def profile(model, shared, labels, shape, iterations: int, device: str) -> dict[str, float]:
    """Seconds per phase of one gradient-matching iteration (synchronised between phases)."""
    dummy = torch.rand(shape).to(device).requires_grad_(True)
    phases = dict.fromkeys(
        ["forward", "backward (create_graph)", "distance", "double backward"], 0.0
    )
    params = list(model.parameters())
    for _ in range(iterations):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(dummy), labels)
        _sync(device)
        t1 = time.perf_counter()
        grads = torch.autograd.grad(loss, params, create_graph=True)
        _sync(device)
        t2 = time.perf_counter()
        dot = sum((g * s).sum() for g, s in zip(grads, shared))
        norm = torch.sqrt(sum((g * g).sum() for g in grads))
        distance = 1 - dot / norm
        _sync(device)
        t3 = time.perf_counter()
        torch.autograd.grad(distance, [dummy])
        _sync(device)
        t4 = time.perf_counter()
        for key, seconds in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            phases[key] += seconds
    total = sum(phases.values())
    return {key: value / total for key, value in phases.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(ITERATIONS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the iteration counts")
    parser.add_argument("--profile", action="store_true", help="add the per-phase breakdown")
    parser.add_argument("--restarts", nargs="+", type=int, default=[4], help="R of the 2nd table")
    parser.add_argument("--only", choices=["loop", "restarts", "privacy"], default=None)
    parser.add_argument("--local-steps", nargs="+", type=int, default=[2, 5],
                        help="K of the privacy table's unrolled attacks")  # fmt: skip
    args = parser.parse_args()
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor()
    print(
        f"device: {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    if args.only in (None, "loop"):
        loop_table(args, device)
    if args.only in (None, "restarts"):
        restarts_table(args, device)
    if args.only in (None, "privacy"):
        privacy_table(args, device)


def loop_table(args: argparse.Namespace, device: str) -> None:
    header = (
        f"{'model':<12} {'batch':>5} {'iters':>5} {'plain it/s':>11} {'ours it/s':>10} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    breakdowns = []
    for model_name in args.models:
        for batch in args.batches:
            iterations = max(2, round(ITERATIONS[model_name] * args.scale / max(1, batch / 4)))
            state = setup(model_name, batch, device)
            ours(*state, 2, device)  # warm-up: allocator, kernels, thread pools
            plain_loop(*state, 2, device)
            plain_best = ours_best = float("inf")
            for _ in range(args.repeats):
                plain_best = min(plain_best, timed(plain_loop, *state, iterations, device))
                ours_best = min(ours_best, timed(ours, *state, iterations, device))
            plain_rate, ours_rate = iterations / plain_best, iterations / ours_best
            print(
                f"{model_name:<12} {batch:>5} {iterations:>5} {plain_rate:>11.2f} "
                f"{ours_rate:>10.2f} {ours_rate / plain_rate:>6.2f}"
            )
            if args.profile:
                breakdowns.append((model_name, batch, profile(*state, iterations, device)))
    if breakdowns:
        print("\nwhere one iteration's time goes (share of the four phases):")
        for model_name, batch, shares in breakdowns:
            parts = ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items())
            print(f"  {model_name} B={batch}: {parts}")


def client_run(model, images, labels, dp: bool) -> None:
    from workloads.client import client_update

    client_update(copy.deepcopy(model), images, labels, bn_mode="eval",
                  batch_size=images.shape[0], dp_clip=1.0 if dp else 0.0,
                  dp_noise_multiplier=1.0, generator=torch.Generator().manual_seed(0))  # fmt: skip
    _sync(str(images.device))


def unrolled_run(model, update, labels, shape, steps: int, iterations: int, device: str) -> None:
    settings = AttackSettings(iterations=iterations, observe_every=iterations, local_steps=steps,
                              local_lr=0.1, local_batch=shape[0] if steps > 0 else 0)  # fmt: skip
    reconstruct(model, update, input_shape=shape, num_classes=10, labels=labels, bn_mode="eval",
                settings=settings, generator=torch.Generator().manual_seed(0))  # fmt: skip
    _sync(device)


def privacy_table(args: argparse.Namespace, device: str) -> None:
    from workloads.client import client_update

    steps = args.local_steps
    print("\nprivacy: the client's update plain vs DP-SGD (s per update), the attack plain vs "
          "unrolled over K local steps (s per iteration)")  # fmt: skip
    header = (
        f"{'model':<12} {'batch':>5} {'plain':>8} {'DP-SGD':>8} {'ratio':>6} "
        f"{'attack':>8} " + " ".join(f"{f'K={k}':>8} {'ratio':>6}" for k in steps)
    )
    print(header)
    print("-" * len(header))
    for model_name in args.models:
        for batch in args.batches:
            model, _, labels, shape = setup(model_name, batch, device)
            images = to_tensor(load_pool("cifar10").images[:batch]).to(device)
            client = {}
            for dp in (False, True):
                client_run(model, images, labels, dp)  # warm-up
                client[dp] = min(timed(client_run, model, images, labels, dp)
                                 for _ in range(args.repeats))  # fmt: skip
            iterations = max(2, round(ITERATIONS[model_name] * args.scale / max(1, batch / 4)))
            attack = {}
            for k in (0, *steps):  # 0: the plain FedSGD attack on the gradient
                update = client_update(copy.deepcopy(model), images, labels, bn_mode="eval",
                                       batch_size=batch, local_steps=max(1, k), local_lr=0.1,
                                       ).update if k > 1 else None  # fmt: skip
                if update is None:
                    update = client_gradients(copy.deepcopy(model), images, labels, "eval")
                    if k == 1:
                        update = [-0.1 * g for g in update]
                run = (model, update, labels, shape, k, iterations, device)
                unrolled_run(*run[:5], 2, device)  # warm-up
                attack[k] = min(timed(unrolled_run, *run) for _ in range(args.repeats))
                attack[k] /= iterations
            cells = " ".join(f"{attack[k]:>8.4f} {attack[k] / attack[0]:>6.2f}" for k in steps)
            print(f"{model_name:<12} {batch:>5} {client[False]:>8.4f} {client[True]:>8.4f} "
                  f"{client[True] / client[False]:>6.2f} {attack[0]:>8.4f} {cells}")  # fmt: skip


if __name__ == "__main__":
    main()
