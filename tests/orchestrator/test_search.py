"""The defense-frontier search (store.search, store.replay, orchestrator.searcher).

On synthetic responses of known threshold: the search finds it (exactly when monotone and
noise-free; within one lattice step in nearly every cell when seeds are noisy and the response
is not monotone), replays from partial results to the same path, and is refused with a line
naming the key when its section is bad. Through real Ray on CPU: a search writes ordinary rows
(grid trial keys), a second run runs nothing, and a search interrupted mid-way resumes with
only the missing trials.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from dlgsweep import cli
from store.replay import SearchState, scores_of
from store.search import FOUND, NOT_DEFEATED, lattice
from store.spec import parse_spec, parse_yaml
from store.sweep_store import SweepStore

SPEC = """\
name: search
grid: {{seed: [{seeds}], activation: [relu, sigmoid], init_method: [xavier_normal, kaiming_normal]}}
fixed: {{dataset: cifar10, model: mcmahan_cnn, batch_size: 1, noise: gaussian}}
attack: {{iterations: 5}}
search: {{axis: noise_scale, range: [1.0e-4, 1.0], resolution: {resolution}, target: 14.0}}
"""


def _spec(seeds: int = 3, resolution: float = 0.125):
    return parse_yaml(SPEC.format(seeds=", ".join(map(str, range(seeds))), resolution=resolution))


def _run(state: SearchState, response) -> int:
    """Drive a search to the end the way the Tune searcher does; returns the trials used."""
    used = 0
    while not state.done():
        wanted = state.wanted()
        assert wanted, "a search that is not done must ask for something"
        for key in wanted:
            cell, seed, index = state.where[key]
            state.record(key, response(cell, seed, state.strengths[index]))
            used += 1
    return used


def _crossing(strengths: list[float], mean, target: float) -> int | None:
    """The first lattice index whose mean response is below the target (the grid's answer)."""
    return next((i for i, s in enumerate(strengths) if mean(s) < target), None)


def test_lattice_is_fixed_and_no_step_wider_than_the_resolution():
    values = lattice(1e-4, 1.0, "log", 0.125)
    assert values[0] == 1e-4 and values[-1] == 1.0 and len(values) == 33
    steps = np.diff(np.log10(values))
    assert steps.max() <= 0.125 + 1e-5 and steps.min() > 0.12
    assert values == lattice(1e-4, 1.0, "log", 0.125)  # the same floats: the same trial keys
    linear = lattice(0.0, 0.9, "linear", 0.1)
    assert linear == pytest.approx([round(0.1 * i, 6) for i in range(10)])


def test_monotone_response_gives_the_exact_crossing_in_few_trials():
    spec = _spec(seeds=2)
    state = SearchState.of(spec)
    rng = np.random.default_rng(1)
    # per cell a threshold anywhere in (and beyond) the range, a steep falling response
    where = {cell: rng.uniform(-4.5, 0.5) for cell in state.cells}

    def mean(cell, strength):
        return 30.0 - 25.0 / (1.0 + math.exp(-3.0 * (math.log10(strength) - where[cell])))

    used = _run(state, lambda cell, seed, s: mean(cell, s))
    assert used <= state.expected()
    grid_trials = len(state.strengths) * sum(len(k) for k in state.keys.values())
    assert grid_trials >= 3 * used
    for cell, frontier in zip(state.cells, state.frontiers()):
        first = _crossing(state.strengths, lambda s: mean(cell, s), 14.0)
        if first is None:
            assert frontier["outcome"] == NOT_DEFEATED
        elif first == 0:
            assert frontier["outcome"] == "defeated at the weakest"
        else:
            assert frontier["outcome"] == FOUND
            assert frontier["strength"] == state.strengths[first]
            assert frontier["bracket_low"] == state.strengths[first - 1]


def test_noisy_non_monotone_response_within_one_step_of_the_grid():
    """Seeds scatter (sd 1.5 dB, seed offsets of 1 dB) and the response has a bump: PSNR
    rises again over 3 steps past the threshold. The search's answer must sit within one
    lattice step of the grid's (the first point whose seeds' mean is below the target, on
    the same noisy data) in at least 90% of cells, with under a third of the grid's trials."""
    rng = np.random.default_rng(7)
    close, cells, used_all, grid_all = 0, 0, 0, 0
    for _ in range(8):
        state = SearchState.of(_spec(seeds=3))
        center = {cell: rng.uniform(-3.2, -0.8) for cell in state.cells}
        offset = {(cell, seed): rng.normal(0, 1.0) for cell in state.cells for seed in range(3)}
        noise = {}

        def value(cell, seed, strength):
            x = math.log10(strength)
            falling = 28.0 - 20.0 / (1.0 + math.exp(-4.0 * (x - center[cell])))
            bump = 3.0 * math.exp(-(((x - center[cell] - 0.6) / 0.15) ** 2))
            key = (cell, seed, strength)
            if key not in noise:
                noise[key] = rng.normal(0, 1.5)
            return falling + bump + offset[(cell, seed)] + noise[key]

        used = _run(state, value)
        used_all += used
        grid_all += len(state.strengths) * sum(len(k) for k in state.keys.values())
        for cell, frontier in zip(state.cells, state.frontiers()):
            cells += 1
            first = _crossing(
                state.strengths, lambda s: np.mean([value(cell, z, s) for z in range(3)]), 14.0
            )
            assert first is not None and frontier["outcome"] == FOUND
            found = state.strengths.index(frontier["strength"])
            close += abs(found - first) <= 1
    print(f"{close} of {cells} cells within one step; {used_all} trials vs {grid_all}")
    assert close >= 0.9 * cells, f"{close} of {cells} cells within one step"
    assert grid_all >= 3 * used_all


def test_a_point_that_contradicts_the_bisection_is_pooled_not_trusted():
    """Means by lattice index 0: 20, 8: 10, 4: 15, 6: 13, 5: 15.5, 7: 16: index 7 is above
    the target although 6 is below it; the antitonic fit pools them, the bracket moves."""
    spec = parse_yaml(SPEC.format(seeds="0", resolution=0.5))  # 9 strengths
    state = SearchState.of(spec)
    cell = state.cells[0]
    table = {0: 20.0, 8: 10.0, 4: 15.0, 6: 13.0, 5: 15.5, 7: 16.0}
    for index, score in table.items():
        state.record(state.keys[cell][0][index], score)
    outcome, lo, hi, _ = state.searches[cell].state()
    # 6 (13) and 7 (16) pool to 14.5 >= 14: the frontier is past 7, not at 6
    assert (outcome, lo, hi) == (FOUND, 7, 8)


def test_replay_from_part_of_the_rows_continues_the_same_search():
    spec = _spec(seeds=2, resolution=0.25)
    rng = np.random.default_rng(3)
    full = SearchState.of(spec)
    truth = {cell: rng.uniform(-3.5, -0.5) for cell in full.cells}

    def value(cell, seed, strength):
        x = math.log10(strength)
        return 28 - 20 / (1 + math.exp(-3 * (x - truth[cell]))) + 0.7 * seed

    _run(full, value)
    order = full.ran
    for cut in (0, len(order) // 3, len(order) - 1, len(order)):
        scores = {}
        for key in order[:cut]:
            cell, seed, index = full.where[key]
            scores[key] = value(cell, seed, full.strengths[index])
        resumed = SearchState.of(spec, scores)
        assert set(resumed.wanted()) <= set(order[cut:])
        _run(resumed, value)
        assert set(resumed.ran) == set(order[cut:])  # only what was missing, all of it
        assert resumed.frontiers() == full.frontiers()


BAD = {
    "unknown-key": ("{axis: noise_scale, range: [0.001, 1], steps: 8}", ("search.steps",)),
    "axis": ("{axis: lr, range: [0.001, 1]}", ("search.axis", "noise_scale, prune_ratio")),
    "range-order": ("{axis: noise_scale, range: [1, 0.001]}", ("search.range", "weakest")),
    "range-zero-log": ("{axis: noise_scale, range: [0, 1]}", ("search.range", "weakest > 0")),
    "resolution": ("{axis: noise_scale, range: [0.001, 1], resolution: 0}", ("search.resolution",)),
    "target": ("{axis: noise_scale, range: [0.001, 1], target: hot}", ("search.target", "auto")),
    "scale": ("{axis: noise_scale, range: [0.001, 1], scale: cubic}", ("search.scale", "log")),
    "score": ("{axis: noise_scale, range: [0.001, 1], score: ssim}", ("search.score",)),
    "not-mapping": ("[noise_scale]", ("search", "a mapping")),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_search_section_exits_2_naming_the_key(case, tmp_path, capsys):
    section, expected = BAD[case]
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: s\ngrid: {seed: [0, 1]}\nfixed: {model: mcmahan_cnn, noise: gaussian}\n"
        f"search: {section}\n"
    )
    results = tmp_path / "results"
    assert cli.main(["run", str(spec), "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(part in err for part in expected), err
    assert not results.exists()


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("fixed: {noise: none}\nsearch: {axis: noise_scale, range: [0.001, 1]}",
         ("search.axis", "noise: gaussian or laplacian")),
        ("fixed: {noise: gaussian, noise_scale: 0.1}\n"
         "search: {axis: noise_scale, range: [0.001, 1]}", ("search.axis", "drop it")),
        ("fixed: {prune: none}\nsearch: {axis: prune_ratio, range: [0, 0.9]}",
         ("search.axis", "prune: small")),
        ("fixed: {prune: small}\nsearch: {axis: prune_ratio, range: [0, 1.5]}",
         ("search.range", "strongest <= 1")),
        ("fixed: {model: mcmahan_cnn}\nsearch: {axis: dp_noise_multiplier, range: [0.1, 10]}",
         ("search.axis", "dp_clip: a number > 0", "unset")),
        ("fixed: {dp_clip: 0}\nsearch: {axis: dp_noise_multiplier, range: [0.1, 10]}",
         ("search.axis", "dp_clip: a number > 0")),
        ("fixed: {dp_clip: 1, dp_noise_multiplier: 1}\n"
         "search: {axis: dp_noise_multiplier, range: [0.1, 10]}", ("search.axis", "drop it")),
        ("fixed: {dp_clip: 1}\nsearch: {axis: dp_noise_multiplier, range: [0, 10]}",
         ("search.range", "weakest > 0")),
    ],
)  # fmt: skip
def test_search_against_the_rest_of_the_spec(spec, expected, tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: s\ngrid: {{seed: [0]}}\n{spec}\n")
    assert cli.main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert all(part in err for part in expected), err


def test_a_dp_noise_multiplier_search_plans_on_a_log_lattice(tmp_path, capsys):
    from store.spec import parse_yaml

    text = ("name: s\ngrid: {seed: [0, 1]}\nfixed: {dp_clip: 1.0, dp_sample_rate: 0.01}\n"
            "search: {axis: dp_noise_multiplier, range: [0.1, 10]}\n")  # fmt: skip
    spec = parse_yaml(text)
    assert spec.search.scale == "log" and spec.search.lattice()[0] == 0.1
    assert spec.search.lattice()[-1] == 10.0 and len(spec.search.lattice()) == 33
    path = tmp_path / "s.yaml"
    path.write_text(text)
    assert cli.main(["plan", str(path)]) == 0


REAL = """\
name: real-search
grid: {seed: [0, 1], activation: [relu, sigmoid]}
fixed: {dataset: cifar10, model: mcmahan_cnn, batch_size: 1, noise: gaussian}
attack: {optimizer: adam, lr: 0.1, iterations: 30, label_strategy: idlg, curve_points: 5}
search: {axis: noise_scale, range: [1.0e-4, 1.0], resolution: 1, target: 10.0}
resources: {cpu: 2, gpu: 0}
retries: 0
"""


@pytest.mark.ray
def test_search_through_ray_writes_grid_rows_and_resumes_only_what_is_missing(
    tmp_path, capsys, monkeypatch, file_states, local_ray
):
    monkeypatch.setenv("DLGSWEEP_COMPACT_MIN_ROWS", "1000")  # rows stay one file per trial
    path = tmp_path / "search.yaml"
    path.write_text(REAL)
    results = tmp_path / "results"
    argv = ["run", str(path), "--results", str(results), "--num-cpus", "2"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "search of noise_scale" in out and "[dlgsweep] search: 2 cells" in out

    sweep = results / "real-search"
    store = SweepStore(str(sweep))
    rows = store.read_rows().table
    spec = parse_yaml(REAL)
    state = SearchState.of(spec, scores_of(rows, "psnr_mean"))
    assert state.done()
    # ordinary rows: keys of the grid sweep over the same strengths, the same schema
    raw = yaml.safe_load(REAL)
    del raw["search"]
    raw["grid"]["noise_scale"] = state.strengths
    grid = parse_spec(raw)
    keys = set(rows.column("trial_key").to_pylist())
    assert keys <= {t.trial_key for t in grid.trials()}
    assert keys == set(state.planned()) and len(keys) == rows.num_rows
    assert set(rows.column("noise_scale").to_pylist()) <= set(state.strengths)
    assert all(0 < c <= 1 for c in rows.column("grad_cosine").to_pylist())
    for frontier in state.frontiers():
        if frontier["outcome"] == FOUND:  # a one-step bracket the rows agree with
            low = state.strengths.index(frontier["bracket_low"])
            assert state.strengths.index(frontier["strength"]) == low + 1

    # a second run of the finished search runs nothing and touches nothing
    before = file_states(sweep)
    assert cli.main(argv) == 0
    assert "nothing to run" in capsys.readouterr().out
    assert file_states(sweep) == before
    assert cli.main(["status", str(sweep)]) == 0
    assert "missing       0" in capsys.readouterr().out

    # interrupted before its last points were written: status counts them missing, resume
    # runs exactly those, and the search ends where it ended before
    last = state.ran[-3:]
    for key in last:
        (sweep / "trials" / f"{key}.parquet").unlink()
    kept = {k: v for k, v in file_states(sweep).items()}
    assert cli.main(["status", str(sweep)]) == 0
    assert f"missing       {len(last)}" in capsys.readouterr().out
    assert cli.main(["resume", str(sweep), "--num-cpus", "2"]) == 0
    after = file_states(sweep)
    assert {k: after[k] for k in kept} == kept
    assert set(after) - set(kept) == {f"{key}.parquet" for key in last}
    again = SearchState.of(spec, scores_of(store.read_rows().table, "psnr_mean"))
    assert again.frontiers() == state.frontiers()


def test_plan_counts_the_trials_a_search_is_expected_to_run(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(seeds="0, 1, 2", resolution=0.125))
    assert cli.main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    # 4 cells x 3 seeds x (2 ends + 5 bisections of 32 steps); the grid would be 33 strengths
    assert "trials: about 84 (a search: 4 cells" in out and "at most 396" in out
    assert "searched: noise_scale in [0.0001, 1], log, 33 strengths" in out
