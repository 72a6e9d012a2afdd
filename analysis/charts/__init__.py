"""The study's charts: each a function of a trials frame returning an Altair chart.

What differs between the charts is data: `CHARTS` (in `specs`) is the one table of chart specs,
each a layout of panels saying what is on x, color, dash and facet, which metric, which rows
count and which axes must vary. `derive` shapes the rows (polars only), `draw` turns a panel into
Altair layers, `layout` puts a chart's panels together and makes its JSON small for a page.
Every chart follows the same rules:

- each point is the mean over the trials at that point; its bar is the 95% Student-t interval
  over seeds when it rests on 3 or more trials (clipped to what the metric can take: PSNR >= 0,
  label accuracy in [0, 1]), the range of the two trials (dashed) when on two, none on one
  (a hollow mean); the individual trials are drawn under it (small hollow marks; thin lines
  for curves, sampled when there are too many to draw, and the subtitle says how many);
- `n`, the trials behind a point, is printed beside it ("n=6"), so a static PNG shows it too;
- nothing is pooled silently: every config axis that varies within the points of the chart
  but is not encoded becomes a dropdown in the page (an Altair parameter bound to a select,
  works offline), and the subtitle names it with the level the PNG shows; axes that are
  functions of the encoded ones (say `iterations` fixed per model) are not filters; several
  sweeps in one frame are facet rows, one per sweep, and so are the variants of a sweep
  (`sweep/variant`, as `report` names them);
- only rows with status `ok` or `diverged` are plotted (`error` rows are counted by the report).

A chart whose axis does not vary in the frame raises `ChartSkipped` with the reason, so a report
of a partial or narrow sweep still builds. Figures of the seed study (Li 2024, "Attacking
gradients"): PSNR by init x activation x prune, McMahan CNN vs ResNet by init, PSNR vs batch
size, label strategy, BN train vs eval and the BN gradient figure; then convergence curves,
defense-strength curves, PSNR vs init scale and the pruning-aware attacker (issue 11).

    >>> chart = charts.build("psnr_vs_batch", load.trials("results/demo"))
    >>> chart.save("psnr_vs_batch.html")
    >>> charts.psnr_vs_batch(frame)  # the same: every chart of CHARTS by its name
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import altair as alt
import polars as pl

from analysis.charts.derive import AXES, ChartSkipped, curve_points, kernel_trials, with_parts
from analysis.charts.layout import UNPACK_JS, compact, compose, pack, unpack
from analysis.charts.panel import ChartSpec, Metric, Panel
from analysis.charts.specs import CHARTS


def build(name: str, frame: pl.DataFrame) -> alt.TopLevelMixin:
    """The chart `name` from `frame` (raises ChartSkipped if the frame lacks its data)."""
    if name not in CHARTS:
        raise KeyError(f"unknown chart {name!r}; known charts: {', '.join(CHARTS)}")
    return compose(CHARTS[name], frame)


def __getattr__(name: str) -> Callable[[pl.DataFrame], Any]:
    """`charts.psnr_vs_batch(frame)`: every chart of the registry by its name."""
    if name in CHARTS:
        return partial(build, name)
    raise AttributeError(f"module 'analysis.charts' has no attribute {name!r}")


__all__ = [
    "AXES", "CHARTS", "ChartSkipped", "ChartSpec", "Metric", "Panel", "UNPACK_JS", "build",
    "compact", "compose", "curve_points", "kernel_trials", "pack", "unpack", "with_parts",
]  # fmt: skip
