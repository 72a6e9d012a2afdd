"""A sweep with `variants:` in `dlgsweep report`: each variant a part of its own, as sweeps are
in `report A B` (a findings column, a row of panels, a filter in the explorer), counted with its
sweep (expected vs present from the spec); and the page, opened in headless Chromium, draws its
charts from the packed data the same as the chart's own JSON.

The rows are written through the sink from one real attack (`run_trial`), its metrics shifted
per variant, under the trial keys and variant names of a real spec (`parse_yaml`), so `counts`
meets the keys it expects.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest

from analysis import charts, findings
from dlgsweep.cli import main

pytestmark = pytest.mark.ray  # a real attack, a report with PNGs (the browser test: `browser`)

SPEC = """name: vsweep
grid:
  seed: [0, 1, 2]
  init_method: [xavier_normal, kaiming_normal]
  activation: [relu, sigmoid]
  prune: [none, small]
fixed: {dataset: cifar10, model: mcmahan_cnn, curve_points: 2, label_strategy: oracle}
attack: {iterations: 2}
variants:
  seed-protocol: {}
  labels: {label_strategy: idlg}
resources: {cpu: 1, gpu: 0}
"""
LEFT_OUT = 1  # rows of the spec never written: the sweep is partial


@pytest.fixture(scope="module")
def variant_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from store.schema import make_row
    from store.spec import parse_yaml
    from store.sweep_store import SweepStore
    from workloads.config import TrialConfig
    from workloads.trial import run_trial

    base = tmp_path_factory.mktemp("variants")
    spec = parse_yaml(SPEC)
    store = SweepStore.of(str(base / "results"), "vsweep")
    store.save_spec(SPEC)
    result = run_trial(TrialConfig(iterations=2, curve_points=2), device="cpu")
    for i, (variant, config) in enumerate(spec.labelled_trials()[LEFT_OUT:]):
        psnr = 10.0 + (4.0 if variant == "labels" else 0.0) + 0.1 * config.seed + 0.01 * i
        row = make_row(config, replace(result, psnr_mean=psnr), sweep="vsweep", variant=variant)
        store.write_row(row)
    out = base / "report"
    assert main(["report", str(base / "results" / "vsweep"), "--out", str(out)]) == 0
    return out


def test_each_variant_is_a_findings_column_and_a_row_of_panels(variant_report: Path) -> None:
    out = variant_report
    index = (out / "index.html").read_text()
    header = re.search(r"<table class='findings'><tr>(.*?)</tr>", index).group(1)
    assert header.endswith("<th>vsweep/seed-protocol</th><th>vsweep/labels</th>")
    table = pl.read_csv(out / "findings.csv")
    assert table.height == 2 * len(findings.CLAIMS)
    assert set(table["sweep"]) == {"vsweep"}
    assert table["variant"].unique(maintain_order=True).to_list() == ["seed-protocol", "labels"]
    specs = json.loads(re.search(r"const specs = (\{.*?\});\n", index).group(1))
    psnr = charts.unpack(specs["psnr_by_init"])
    assert psnr["facet"]["row"] == {
        "field": "sweep",
        "title": "sweep/variant",
        "type": "nominal",
    }  # no explicit sort: Vega-Lite misplaces a sorted layered facet's rows
    means = [r for rows in psnr["datasets"].values() for r in rows if r.get("kind") == "mean"]
    assert {r["sweep"] for r in means} == {"vsweep/seed-protocol", "vsweep/labels"}
    assert {round(r["mean"]) for r in means if r["sweep"] == "vsweep/labels"} == {14}  # unpooled
    assert "label_strategy" not in json.dumps(psnr.get("params", []))  # a variant's field
    explorer = (out / "explorer.html").read_text()
    data = json.loads(re.search(r'id="explorer-data">(.*?)</script>', explorer, re.S).group(1))
    assert data["axes"][0] == "variant"  # a filter and an axis of the parallel coordinates
    assert {r["variant"] for r in data["rows"]} == {"seed-protocol", "labels"}


def test_counts_stay_per_sweep(variant_report: Path) -> None:
    out = variant_report
    counts = json.loads((out / "counts.json").read_text())
    assert counts["expected"] == 48 and counts["missing"] == LEFT_OUT  # the sweep, not a part
    assert counts["variants"] == {"seed-protocol": {"ok": 23}, "labels": {"ok": 24}}
    index = (out / "index.html").read_text()
    assert index.count("trials of the spec have a row") == 1
    assert "47 of 48 trials of the spec have a row (partial sweep)" in index
    assert "<li>seed-protocol: 23 ok</li>" in index


def test_page_draws_the_packed_data_as_built(variant_report: Path, browser) -> None:
    """The page's `unpack` (JavaScript) gives back the rows of the chart's own JSON."""

    out = variant_report
    index = (out / "index.html").read_text()
    packed = json.loads(re.search(r"const specs = (\{.*?\});\n", index).group(1))
    with browser() as browser:
        browser.open((out / "index.html").as_uri())
        drawn = browser.wait_for("document.body.dataset.rendered || document.body.dataset.error")
        assert drawn.isdigit() and int(drawn) == len(packed), drawn
        for name, spec in packed.items():
            page = browser.evaluate(f"JSON.stringify(specs[{json.dumps(name)}].datasets)")
            assert json.loads(page) == charts.unpack(spec)["datasets"], name
        assert not [line for line in browser.console if line.startswith("error")]
    sections = re.findall(r"<section><h2>[^<]*</h2>((?:<p class='note'>[^<]*</p>)*)<div", index)
    assert len(sections) == len(packed)
