"""The report's parts and how it reads a sweep (analysis.report.model, analysis.frontier):

- every part of the report (a findings column) and every part of the frontier's findings is a
  part of `findings.parts` (the one grouping: variant and recipe, null a part of its own),
  named the same (`findings.named_parts`), for rows that mix a named variant with rows naming
  none, and variants whose rows mix attack recipes;
- a report opens each sweep once: its spec.yaml parsed once, its rows read once, whatever the
  counts, the parts, the search replay and the frontier need of them.

The search sweep is a real one (`synthetic_search`: the search driven to its end over a known
response), its rows written through the sink, each naming the recipe its fields match as a
trial's row does (`recipe_of`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from analysis import findings
from analysis.report import build_report, model
from analysis.synthetic import synthetic_frame, synthetic_search
from store import rows as store_rows
from store import spec as store_spec
from store.load import Trials
from store.opened import OpenedSweep, open_sweep
from store.schema import IMAGE_COLUMNS
from store.spec import parse_yaml
from store.sweep_store import SweepStore
from workloads.recipes import recipe_of

# two variants; label_strategy makes half of each variant's cells DLG's, half iDLG's
SEARCH_SPEC = """name: mixed
grid:
  seed: [0, 1, 2]
  activation: [relu, sigmoid]
  label_strategy: [optimize, idlg]
fixed: {dataset: cifar10, model: mcmahan_cnn, noise: gaussian}
attack: {recipe: dlg, iterations: 2}
search: {axis: noise_scale, range: [1.0e-4, 1.0], resolution: 0.5, target: 15.0}
variants:
  xavier: {}
  kaiming: {init_method: kaiming_normal}
resources: {cpu: 1, gpu: 0}
"""
LABELS = [f"mixed/{v} [{r}]" for v in ("xavier", "kaiming") for r in ("dlg", "idlg")]


def psnr(config: dict) -> float:
    """15 dB (the target) at 10^-2.5 for ReLU, half a decade later for Sigmoid; 8 dB a decade."""
    threshold = -2.5 + 0.5 * (config["activation"] == "sigmoid") + 0.02 * config["seed"]
    return float(np.clip(15.0 + 8.0 * (threshold - math.log10(config["noise_scale"])), 5, 40))


@pytest.fixture(scope="module")
def search_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = parse_yaml(SEARCH_SPEC)
    store = SweepStore.of(str(tmp_path_factory.mktemp("mixed") / "results"), spec.name)
    store.save_spec(spec.to_yaml())
    for row in synthetic_search(spec, psnr):
        store.write_row({**row, "recipe": recipe_of(row)})
    return Path(store.path)


def test_report_parts_are_the_findings_parts() -> None:
    """Rows of variant `a` mixing two recipes, and rows naming no variant: three columns, each
    exactly one part of `findings.parts`, judged as `findings.table` judges it."""

    def names(config: dict) -> dict:
        kaiming = config["init_method"].startswith("kaiming")
        named = config["model"] == "mcmahan_cnn"
        return {"variant": "a" if named else None, "recipe": "idlg" if named and kaiming else "dlg"}

    grid = {"model": ["mcmahan_cnn", "resnet18"], "init_method": ["xavier_normal",
            "kaiming_normal"], "activation": ["relu", "sigmoid"]}  # fmt: skip
    frame = synthetic_frame(grid, lambda c: 20.0 + 2 * (c["activation"] == "sigmoid"),
                            extra=names)  # fmt: skip
    sweep = OpenedSweep("s", "s", SweepStore("s"), Trials(frame, {"s": []}), None)
    report = model.build([sweep], Path("unused"), findings.VALUE)
    assert [p.name for p in report.parts] == ["s/a [dlg]", "s/a [idlg]", "s/unknown"]
    # the part naming no variant holds one recipe: its recipe said, not in its name
    named = [("a", "dlg"), ("a", "idlg"), ("unknown", "dlg")]
    assert [(p.variant, p.recipe) for p in report.parts] == named
    split = findings.parts(frame)
    assert [rows.height for _, rows in split] == [6, 6, 12]
    table = findings.table(frame)
    for part, (_, rows) in zip(report.parts, split):
        assert [f.verdict for f in part.findings] == [f.verdict for f in findings.findings(rows)]
    assert table.height == len(report.parts) * len(findings.CLAIMS)
    assert report.counts["variants"] == {"a": {"ok": 12}, "unknown": {"ok": 12}}


def test_frontier_findings_split_as_the_report_parts(search_sweep: Path) -> None:
    """A search sweep whose variants each mix two recipes: the frontier's findings have one
    part per (variant, recipe), named as the report's columns, each on its own cells' seeds."""
    from analysis import frontier

    sweep = open_sweep(str(search_sweep))
    report = model.build([sweep], Path("unused"), findings.VALUE)
    assert [p.name for p in report.parts] == LABELS
    found = frontier.sweep_frontier(sweep)
    assert found is not None
    assert [p.label for p in found.parts] == LABELS
    assert [(p.variant, p.recipe) for p in found.parts] == [
        (p.variant, p.name.rsplit("[", 1)[1].rstrip("]")) for p in report.parts
    ]
    for part in found.parts:  # 2 cells (relu, sigmoid) of 3 seeds each: matched per seed
        sigmoid = next(f for f in part.findings if f.key == "frontier_sigmoid_vs_relu")
        assert sigmoid.verdict == findings.SUPPORTED and sigmoid.n == 3
    assert "recipe" not in found.thresholds.columns  # frontier_seeds.csv: the cells' fields


def counted(monkeypatch: pytest.MonkeyPatch, function: Callable[..., Any]) -> list[tuple]:
    """The calls of `function` through every module's binding of it (a module that imported it
    by name calls its own binding), as a list of the calls' arguments."""
    calls: list[tuple] = []

    def count(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return function(*args, **kwargs)

    for module in list(sys.modules.values()):
        if getattr(module, function.__name__, None) is function:
            monkeypatch.setattr(module, function.__name__, count)
    return calls


def test_a_report_parses_the_spec_and_reads_the_rows_once(
    search_sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counts (expected trials from the search's replay, rows per variant), the parts, the
    frontier and the gallery of a search sweep with variants: one parse of spec.yaml, one read
    of its rows (the gallery's and explorer's image reads fetch PNG columns only)."""
    parses = counted(monkeypatch, store_spec.parse_spec)
    reads = counted(monkeypatch, store_rows.read_files)
    report = build_report(str(search_sweep), tmp_path / "out")
    assert report.frontiers and report.counts["expected"] == report.counts["rows"] > 0
    assert set(report.counts["variants"]) == {"xavier", "kaiming"}
    assert len(parses) == 1
    rows = [columns for _, _, columns in reads if not set(IMAGE_COLUMNS) & set(columns)]
    assert len(rows) == 1
    assert pl.read_csv(tmp_path / "out" / "findings.csv")["recipe"].drop_nulls().n_unique() == 2


def test_status_parses_the_spec_and_reads_the_rows_once(
    search_sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dlgsweep status` of a search sweep: the search's replay takes its scores from the same
    read of the rows as the counts, and every trial the search asked for has its row."""
    from store.status import sweep_status

    parses = counted(monkeypatch, store_spec.parse_spec)
    reads = counted(monkeypatch, store_rows.read_files)
    status = sweep_status(SweepStore(str(search_sweep)))
    assert len(parses) == 1 and len(reads) == 1
    expected = open_sweep(str(search_sweep)).expected
    assert status.spec_found and status.total == len(expected) > 0
    assert sum(status.counts.values()) == status.total and not status.missing


def test_findings_strata_csv_holds_every_stratum_of_every_part(
    search_sweep: Path, tmp_path: Path
) -> None:
    """findings_strata.csv: a row for each stratum and averaged-over level of each finding of
    each part (the seed's claims and the frontier's), with that stratum's own numbers."""
    report = build_report(str(search_sweep), tmp_path / "out")
    table = pl.read_csv(tmp_path / "out" / "findings_strata.csv")
    parts = [(p.variant, p.recipe, p.findings) for p in report.parts]
    parts += [(p.variant, p.recipe, p.findings) for f in report.frontiers for p in f.parts]
    expected = [
        (variant, recipe, f.key, s.label, s.estimate)
        for variant, recipe, items in parts
        for f in items
        for s in (*f.strata, *f.levels)
    ]
    assert table.height == len(expected) > 0
    assert {k.startswith("frontier_") for _, _, k, _, _ in expected} == {True, False}
    rows = {
        (r["variant"], r["recipe"], r["key"], r["label"]): r for r in table.iter_rows(named=True)
    }
    assert len(rows) == len(expected)  # one row each, none merged
    for variant, recipe, key, label, estimate in expected:
        row = rows[(variant, recipe, key, label)]
        assert row["n"] == estimate.n and row["censored"] == estimate.censored
        if estimate.censored == 0 and estimate.n >= 2:
            assert row["estimate"] == pytest.approx(estimate.mean)
            assert row["ci_low"] == pytest.approx(estimate.low)
            assert row["ci_high"] == pytest.approx(estimate.high)
