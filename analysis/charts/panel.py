"""The chart types as data: a metric, a panel (what is on x, color, dash and facet, which rows
count) and a chart spec (its panels and layout). `specs` holds the registry of charts built of
them; `derive`, `draw` and `layout` read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    log: bool = False  # geometric mean, interval on log10 values, log y axis
    bounds: tuple[float | None, float | None] | None = None  # the interval is clipped to it


# PSNR of a reconstruction clamped to [0, 1] against an image in [0, 1] is >= 0 (MSE <= 1)
PSNR = Metric("psnr_mean", "PSNR (dB)", bounds=(0.0, None))
LABEL_ACCURACY = Metric("label_accuracy", "label accuracy", bounds=(0.0, 1.0))
ZERO_SHARE = Metric("grad_zero_fraction", "share of exactly-zero gradient entries", bounds=(0, 1))
GRAD_LOSS = Metric("grad_loss", "gradient loss", log=True)
CURVE_PSNR = Metric("psnr", "PSNR (dB)", bounds=(0.0, None))
KERNEL_NORM = Metric("kernel_norm", "gradient norm of the kernel", log=True)


@dataclass(frozen=True)
class Panel:
    """One panel as data: what is on x, color, dash and facet, and which rows count."""

    name: str
    x: str
    title: str | None = None  # the panel's own title (in a chart of several panels)
    x_scale: str = "nominal"  # nominal | log2 | log | linear | symlog
    x_title: str | None = None
    x_group: str | None = None  # group the points by this; x is then the group's mean of `x`
    color: str | None = None
    dash: str | None = None
    column: str | None = None
    metrics: tuple[Metric, ...] = (PSNR,)
    mark: str = "dot"  # dot: points + interval rules, series side by side | line
    trials: str = "point"  # how individual trials are drawn: point | line (curves)
    needs: tuple[str, ...] = ()  # axes that must vary, else ChartSkipped
    where: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # rows kept: (column, levels)
    derive: Callable[[pl.DataFrame], pl.DataFrame] | None = None  # derived columns or rows
    covers: tuple[str, ...] = ()  # config fields the derived encodings stand for
    tooltip_means: tuple[str, ...] = ()  # other columns averaged per point, in the tooltip
    subtitle: str = ""  # what the rows are, when `derive` or `where` shapes them
    kind: str = "summary"  # the drawer: summary (means over trials) | kernels (one trial pair)
    optional: bool = False  # left out without data; the chart is skipped only if all are
    absent: str = ""  # what the chart's subtitle names when this optional panel is left out

    @property
    def group_x(self) -> str:
        return self.x_group or self.x

    def encoded(self) -> list[str]:
        named = [self.group_x, self.color, self.dash, self.column]
        if len(self.metrics) > 1:
            named.append("metric")
        return [n for n in dict.fromkeys(named) if n]


@dataclass(frozen=True)
class ChartSpec:
    """One chart: its panels, how they are laid out, and the rows they draw from."""

    name: str
    title: str  # the report's heading for it
    heading: str  # the chart's own title (in its HTML and PNG)
    panels: tuple[Panel, ...]
    layout: str = "single"  # single | hconcat | vconcat
    rows: Callable[[pl.DataFrame], pl.DataFrame] | None = None  # default: the ok/diverged rows
    skip: str = ""  # the reason when `rows` is empty or every (optional) panel is left out
