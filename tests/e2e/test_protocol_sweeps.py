"""The beyond-the-seed presets plan, and a reduced version of each runs on CPU through Ray."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from dlgsweep.cli import main
from orchestrator.sweep import run_sweep
from store.spec import SweepSpec, load_spec


@pytest.mark.parametrize("name,trials", [("init-scale", 360), ("pruning-aware", 84)])
def test_presets_plan(name, trials, capsys):
    assert main(["plan", name, "--num-cpus", "2", "--num-gpus", "0"]) == 0
    assert f"trials: {trials}" in capsys.readouterr().out.splitlines()


def reduced(name: str, keep: dict[str, list]) -> SweepSpec:
    """The preset with each axis cut to `keep` (or its first value) and 3 iterations."""
    spec = load_spec(name)
    grid = {axis: keep.get(axis, values[:1]) for axis, values in spec.grid.items()}
    attack = {**spec.attack, "iterations": 3, "curve_points": 2}
    return dataclasses.replace(spec, grid=grid, attack=attack)


def rows(results, spec: SweepSpec) -> list[dict]:
    """Every row of the sweep, read with pyarrow directly (whatever files the sink wrote)."""
    import pyarrow.dataset as ds

    folder = results / spec.name / "trials"
    table = ds.dataset(str(folder), format="parquet").to_table(
        columns=[
            "trial_key",
            "status",
            "init_method",
            "init_scale",
            "init_weight_std",
            "prune_ratio",
            "mask_pruned",
            "grad_zero_fraction",
        ]  # fmt: skip
    )
    assert pq is not None
    return table.to_pylist()


def test_reduced_presets_run_on_cpu(local_ray, results):
    init_scale = reduced(
        "init-scale",
        {"init_method": ["xavier_normal", "kaiming_normal"], "init_scale": [0.25, 4.0]},
    )
    pruning = reduced(
        "pruning-aware",
        {"activation": ["sigmoid"], "prune_ratio": [0.0, 0.5], "mask_pruned": [False, True]},
    )  # sigmoid: no exact zeros of its own, so the zero share is the pruned share
    for spec in (init_scale, pruning):
        outcome = run_sweep(spec, str(results), say=lambda *_: None)
        assert outcome.exit_code == 0 and outcome.counts == {"ok": 4}

    by_method: dict[str, dict[float, float]] = {}
    for row in rows(results, init_scale):
        by_method.setdefault(row["init_method"], {})[row["init_scale"]] = row["init_weight_std"]
    for stds in by_method.values():  # the scale multiplies the first layer's weights
        assert stds[4.0] / stds[0.25] == pytest.approx(16.0, rel=1e-5)

    pruned = rows(results, pruning)
    assert {(r["prune_ratio"], r["mask_pruned"]) for r in pruned} == {
        (0.0, False), (0.0, True), (0.5, False), (0.5, True),
    }  # fmt: skip
    for row in pruned:
        assert row["grad_zero_fraction"] == pytest.approx(row["prune_ratio"], abs=0.01)


def test_every_row_names_its_variant(local_ray, results):
    spec = reduced("corrections", {"activation": ["sigmoid"]})
    spec = dataclasses.replace(
        spec, variants={k: spec.variants[k] for k in ("seed-protocol", "labels", "iterate")}
    )
    plain = dataclasses.replace(reduced("pruning-aware", {}), name="plain")
    for sweep in (spec, plain):
        outcome = run_sweep(sweep, str(results), say=lambda *_: None)
        assert outcome.exit_code == 0, outcome

    import pyarrow.dataset as ds

    def read(name):
        folder = results / name / "trials"
        return (
            ds.dataset(str(folder), format="parquet")
            .to_table(columns=["trial_key", "variant", "label_strategy", "iterate"])
            .to_pylist()
        )

    got = read(spec.name)
    assert spec.variant_of() == {r["trial_key"]: r["variant"] for r in got}
    assert {r["variant"] for r in got} == {"seed-protocol", "labels", "iterate"}
    for r in got:  # the variant's overrides are the row's fields
        assert (r["label_strategy"] == "idlg") == (r["variant"] == "labels")
        assert (r["iterate"] == "best") == (r["variant"] == "iterate")
    assert {r["variant"] for r in read("plain")} == {None}


# fields and columns this engine added: a row written before them lacks them all
NEW_FIELDS = (
    "image_choice", "image_norm", "init_scale", "prune_mode", "dummy_init", "iterate",
    "skip_zero_tensors", "mask_pruned", "precision", "deterministic",
    "signed", "boxed", "lr_schedule", "lr_warmup", "restarts", "l2_weight", "bn_prior",
    "dp_clip", "dp_noise_multiplier", "dp_sample_rate", "dp_steps", "dp_delta",
    "local_steps", "local_lr", "local_images",
)  # fmt: skip
NEW_COLUMNS = ("psnr_raw_mean", "engine_version", "init_weight_std", "gpu_memory_peak_bytes",
               "recipe", "restart_kept", "restart_mode", "restart_grad_losses",
               "dp_epsilon", "dp_epsilon_rdp", "dp_clipped_fraction",
               "dp_noise_to_signal")  # fmt: skip


def old_row_table(config) -> tuple[str, "object"]:
    """A row as the previous engine wrote it: no new columns, its own trial_key (no engine)."""
    import hashlib
    import json

    import pyarrow as pa

    from store.schema import SCHEMA, make_row
    from workloads.result import TrialResult

    old_fields = {k: v for k, v in config.to_dict().items() if k not in NEW_FIELDS}
    blob = json.dumps(old_fields, sort_keys=True, separators=(",", ":"))
    old_key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    result = TrialResult(status="ok", psnr_mean=8.4, psnr_min=8.4, psnr_max=8.4)
    row = {**make_row(config, result, sweep="old", with_images=False), "trial_key": old_key}
    keep = [f for f in SCHEMA if f.name not in NEW_FIELDS + NEW_COLUMNS]
    return old_key, pa.Table.from_pylist([{f.name: row.get(f.name) for f in keep}],
                                         schema=pa.schema(keep))  # fmt: skip


def test_an_old_results_folder_is_read_with_the_new_fields_unknown_and_rerun(local_ray, results):
    from store import load
    from store.status import sweep_status
    from store.sweep_store import SweepStore

    spec = dataclasses.replace(
        load_spec("demo"), name="old", grid={"seed": [0, 1]},
        attack={**load_spec("demo").attack, "iterations": 2, "curve_points": 2},
    )  # fmt: skip
    folder = results / "old"
    (folder / "trials").mkdir(parents=True)
    (folder / "spec.yaml").write_text(spec.to_yaml())
    old_keys = []
    for config in spec.trials():  # the same trials, as the previous engine keyed them
        key, table = old_row_table(config)
        pq.write_table(table, folder / "trials" / f"{key}.parquet")
        old_keys.append(key)
    assert not set(old_keys) & {c.trial_key for c in spec.trials()}

    frame = load.load(str(folder)).frame  # readable, the new fields unknown (null)
    assert sorted(frame["trial_key"].to_list()) == sorted(old_keys)
    for column in (*NEW_FIELDS, *NEW_COLUMNS):
        assert frame[column].null_count() == frame.height, column

    status = sweep_status(SweepStore(str(folder)))
    assert status.counts.get("ok", 0) == 0 and len(status.missing) == 2  # not the new trials
    assert status.extra == 2  # counted as rows of trials no longer in the spec

    assert main(["resume", str(folder)]) == 0  # reruns both under the current engine
    after = load.load(str(folder)).frame
    new = after.filter(~after["trial_key"].is_in(old_keys))
    assert sorted(new["trial_key"].to_list()) == sorted(c.trial_key for c in spec.trials())
    assert new["dummy_init"].to_list() == ["randn", "randn"]
    assert new["recipe"].to_list() == ["custom", "custom"]  # the demo's attack is no recipe
    assert after.filter(after["trial_key"].is_in(old_keys))["dummy_init"].null_count() == 2
    assert len(sweep_status(SweepStore(str(folder))).missing) == 0
