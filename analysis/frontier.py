"""The defense frontier of a search sweep (issue 17): what the report shows of a spec's `search:`.

A sweep whose saved spec has a `search:` section (store.search) searched, per cell
(a grid point without the seed, per variant), the weakest strength of one defense axis whose
seeds' mean score is below the target. Its rows are ordinary trial rows; this module reads the
search replayed from them (`OpenedSweep.search`: `SearchState.of`, the replay `run` and `resume`
make):

- `frontier_table`: one row per cell: its configuration, the search's outcome, the strength
  found and its bracket, the trials and points it took, the seeds' mean score there, and what
  the defense did to the gradient there (mean `grad_cosine`, `grad_rel_error` over the seeds'
  rows at that lattice point): "defeats the attack at the cost of this much distortion".
- `seed_thresholds`: per cell and seed, that seed's own crossing: the antitonic fit of its
  scores at the strengths the search evaluated (`frontier.bracket`), interpolated linearly on
  the search's scale (log10 for log) between the last point at or above the target and the
  first below it. A seed whose fit never crosses inside the points it has (not defeated at the
  strongest, or defeated at the weakest) is censored: a null threshold, counted, never imputed,
  with the bounds it does have (`position_low`, `position_high`: beyond the strongest point, or
  before the weakest).
- `frontier_findings`: claims about the thresholds with the findings engine's verdicts
  (analysis.findings: matched pairs per seed, strata, balance over complete seeds, mixed,
  inconclusive, not enough data): "Sigmoid needs a stronger defense than ReLU", "Kaiming needs
  a stronger defense than Xavier", in decades for a log search. A censored seed enters as its
  bounds (sign tests on what they prove), never dropped, so a stratum whose arm is censored
  still speaks, and only as far as its bounds go.
- `frontier_chart`: the strength needed per init x activation, one panel per model.

`sweep_frontier(sweep)` does all of it for the report, on a sweep opened once (store.opened;
None without a search section); its findings are split per variant and attack recipe as the
report splits its rows (`findings.named_parts`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import polars as pl

from analysis.charts.derive import ChartSkipped
from analysis.findings import NOT_ENOUGH, Claim, Finding, check, named_parts, part_label, prepare
from analysis.findings.claims import Compare
from analysis.findings.finding import build, with_holm
from analysis.findings.rows import bounds_of
from analysis.stats import Rule
from store.replay import Cell, SearchState, bracket
from store.search import AXES, DEFEATED_AT_WEAKEST, FAILED, FOUND, NOT_DEFEATED, SEARCHING
from workloads.recipes import recipe_of

if TYPE_CHECKING:
    import altair as alt

    from store.opened import OpenedSweep
    from store.search import Search

FRONTIER_CHART = "defense_frontier"
FRONTIER_TITLE = "Defense frontier: strength needed per init x activation"
NO_SCORES = "no scores"  # a seed without a scored point (every trial of it failed, or none ran)
# the config fields the chart encodes (x, color, facet); other cell axes become facet rows
CHART_FIELDS = ("model", "init_method", "activation")
# shown in the table (and named by the chart) even when the spec fixes them
TABLE_FIELDS = (*CHART_FIELDS, "batch_size", "dataset")
DISTORTION = ("grad_cosine", "grad_rel_error")
# a DP-SGD search (axis dp_noise_multiplier) states its threshold as the guarantee it buys: the
# rows' dp_epsilon (PLD, for the cell's dp_delta over dp_steps x local_steps steps at rate
# dp_sample_rate) at the multiplier found and at the bracket's weaker end
DP_AXIS = "dp_noise_multiplier"
EPSILON = "dp_epsilon"
DP_FIELDS = ("dp_clip", "dp_delta", "dp_sample_rate", "dp_steps", "local_steps")
# the frontier table's columns that are not the cell's configuration
RESULTS = ("sweep", "axis", "variant", "cell", "outcome", "strength", "bracket_low",
           "bracket_high", "score_at_strength", "target", "trials", "points", "seeds",
           "grad_cosine", "grad_rel_error", "distortion_rows", "seeds_censored", "epsilon",
           "epsilon_bracket_low")  # fmt: skip
SHAPES = {FOUND: "circle", NOT_DEFEATED: "triangle-up", DEFEATED_AT_WEAKEST: "triangle-down",
          SEARCHING: "diamond"}  # fmt: skip


def unit_of(search: Search) -> str:
    """The unit a threshold difference is in: decades on a log search, else the axis's own."""
    return "decades" if search.scale == "log" else search.axis


def cell_configs(state: SearchState) -> dict[Cell, dict[str, Any]]:
    """Every cell's configuration: all trial fields (defaults filled in), without the seed and
    the searched axis. Built from one trial per cell (the spec builds only those)."""
    first = {cell: next(iter(state.keys[cell].values()))[0] for cell in state.cells}
    built = {c.trial_key: c for _, c in state.spec.labelled_trials(only=set(first.values()))}
    drop = ("seed", state.search.axis)
    return {
        cell: {k: v for k, v in built[key].to_dict().items() if k not in drop}
        for cell, key in first.items()
    }


def _cell_columns(state: SearchState) -> list[str]:
    """The columns naming a cell: the variant (when the spec has variants), the grid axes of
    the cells, then model, init method, activation, batch size, dataset and the defense (noise
    or prune) when the spec fixes them."""
    axes = [a for a, _ in state.cells[0].point] if state.cells else []
    variant = ["variant"] if state.spec.variants else []
    switch = AXES[state.search.axis][0]  # noise or prune: the defense whose strength is searched
    dp = DP_FIELDS if state.search.axis == DP_AXIS else ()  # what the epsilon is for
    return [*variant, *dict.fromkeys([*axes, *TABLE_FIELDS, switch, *dp])]


def _search_rows(state: SearchState, frame: pl.DataFrame) -> pl.DataFrame:
    """The frame's ok/diverged rows that are trials of the search: `_cell` (the cell's index in
    `state.cells`), `_index` (the lattice index), seed and the distortion columns."""
    ids = {cell: i for i, cell in enumerate(state.cells)}
    where = [(key, ids[c], i) for key, (c, _, i) in state.where.items()]
    lookup = pl.DataFrame(where, schema={"trial_key": pl.String, "_cell": pl.Int64,
                                         "_index": pl.Int64}, orient="row")  # fmt: skip
    measured = (*DISTORTION, EPSILON)
    if frame.is_empty() or "trial_key" not in frame.columns:
        return lookup.clear().with_columns(pl.lit(None, pl.Float64).alias(c) for c in measured)
    rows = frame.filter(pl.col("status").is_in(["ok", "diverged"]))
    for column in measured:
        if column not in rows.columns:
            rows = rows.with_columns(pl.lit(None, pl.Float64).alias(column))
    return rows.select("trial_key", *measured).join(lookup, on="trial_key", how="inner")


def frontier_table(
    state: SearchState, frame: pl.DataFrame, thresholds: pl.DataFrame | None = None
) -> pl.DataFrame:
    """One row per cell (the spec's order): its columns (`_cell_columns`), `cell` (its label),
    outcome, strength found, bracket_low/high, score_at_strength (the seeds' mean), target,
    trials, points, seeds, the mean gradient distortion at the strength found (over its rows:
    `distortion_rows`), and the seeds whose own threshold is censored (`seeds_censored`, from
    `thresholds`: `seed_thresholds`, computed when not given). While a cell is searching, its
    strength is the weakest that defeats the attack so far (as `SearchState.frontiers` says)."""
    configs = cell_configs(state)
    rows = _search_rows(state, frame)
    at = {
        (c, i): (cos, err, n)
        for c, i, cos, err, n in rows.group_by("_cell", "_index")
        .agg(*(pl.col(d).mean() for d in DISTORTION), pl.col("grad_cosine").count().alias("n"))
        .iter_rows()
    }  # fmt: skip
    dp = state.search.axis == DP_AXIS
    # every seed of a point has the same epsilon (it depends on the config alone): the mean
    # of the finite values; inf (sigma 0) never occurs on a log lattice
    epsilon_at = {
        (c, i): e
        for c, i, e in rows.filter(pl.col(EPSILON).is_finite()).group_by("_cell", "_index")
        .agg(pl.col(EPSILON).mean()).iter_rows()
    } if dp else {}  # fmt: skip
    thresholds = seed_thresholds(state) if thresholds is None else thresholds
    censored = thresholds.group_by("cell").agg(
        pl.col("threshold").is_null().sum().alias("seeds_censored")
    )
    columns = _cell_columns(state)
    records = []
    for c, (cell, found) in enumerate(zip(state.cells, state.frontiers())):
        index = None if found["strength"] is None else state.strengths.index(found["strength"])
        cos, err, n = at.get((c, index), (None, None, 0))
        config = {**configs[cell], "variant": cell.variant or None}
        records.append({
            **{k: config.get(k) for k in columns}, "cell": cell.label(),
            **{k: found[k] for k in ("outcome", "strength", "bracket_low", "bracket_high",
                                     "score_at_strength", "target", "trials", "points")},
            "seeds": len(state.keys[cell]), "grad_cosine": cos, "grad_rel_error": err,
            "distortion_rows": n,
        })  # fmt: skip
        if dp:
            low = found["bracket_low"]
            low = None if low is None else state.strengths.index(low)
            records[-1]["epsilon"] = epsilon_at.get((c, index))
            records[-1]["epsilon_bracket_low"] = epsilon_at.get((c, low))
    schema = {"strength": pl.Float64, "bracket_low": pl.Float64, "bracket_high": pl.Float64,
              "score_at_strength": pl.Float64, "target": pl.Float64, "grad_cosine": pl.Float64,
              "grad_rel_error": pl.Float64, "variant": pl.String, "epsilon": pl.Float64,
              "epsilon_bracket_low": pl.Float64}  # fmt: skip
    table = pl.DataFrame(records, schema_overrides=schema, infer_schema_length=None)
    if table.is_empty():
        return table
    return table.join(censored, on="cell", how="left").with_columns(
        pl.col("seeds_censored").fill_null(0).cast(pl.Int64)
    )


@dataclass(frozen=True)
class Crossing:
    """One seed's own threshold in one cell (None when censored, with the reason, and the
    bounds the censoring leaves: below the weakest point, or above the strongest)."""

    threshold: float | None  # in the axis's units
    position: float | None  # on the search's scale (log10 of the threshold for log)
    censored: str | None  # NOT_DEFEATED | DEFEATED_AT_WEAKEST | NO_SCORES | None
    points: int  # scored points of this seed
    low: float | None = None  # the position's bounds: equal to it when it is known;
    high: float | None = None  # -inf / +inf on the open side when censored; None: no scores


def crossing(search: Search, strengths: list[float], scores: dict[int, float],
             target: float) -> Crossing:  # fmt: skip
    """A seed's crossing from its scores by lattice index: antitonic fit (equal weights), then
    linear interpolation on the search's scale between the last point whose fit is at or above
    the target and the first below it; censored when the fit does not cross there."""
    indices = sorted(scores)
    if not indices:
        return Crossing(None, None, NO_SCORES, 0)
    fit, k0, k1 = bracket([scores[i] for i in indices], [1.0] * len(indices), target)
    first, last = (search.position(strengths[indices[k]]) for k in (0, -1))
    if k1 is None:  # never below the target: the threshold lies beyond the strongest point
        return Crossing(None, None, NOT_DEFEATED, len(indices), float(last), math.inf)
    if k0 is None:  # below it already at the weakest point: the threshold lies before it
        return Crossing(None, None, DEFEATED_AT_WEAKEST, len(indices), -math.inf, float(first))
    x0, x1 = (search.position(strengths[indices[k]]) for k in (k0, k1))
    share = (fit[k0] - target) / (fit[k0] - fit[k1])  # in (0, 1]: fit[k0] >= target > fit[k1]
    position = x0 + float(share) * (x1 - x0)
    threshold = 10**position if search.scale == "log" else position
    return Crossing(float(threshold), position, None, len(indices), position, position)


def seed_thresholds(state: SearchState) -> pl.DataFrame:
    """One row per (cell, seed): `variant`, `cell`, seed, threshold (axis units), position (on
    the search's scale), position_low / position_high (its bounds: equal to it when known,
    open on one side, -inf or +inf, when censored; null without scores), censored (why the
    threshold is null), points (scored), every config field.
    The scores are those the search was replayed from (`state`: `OpenedSweep.search`)."""
    configs = cell_configs(state)
    records = []
    for cell in state.cells:
        search = state.searches[cell]
        for seed in state.keys[cell]:
            scores = {
                i: v for i, by in search.scores.items() if (v := by.get(seed)) is not None
            }  # fmt: skip
            found = crossing(state.search, state.strengths, scores, search.target)
            records.append({
                "variant": cell.variant or None, "cell": cell.label(), "seed": seed,
                "threshold": found.threshold, "position": found.position,
                LOW: found.low, HIGH: found.high,
                "censored": found.censored, "points": found.points, **configs[cell],
            })  # fmt: skip
    schema = {"threshold": pl.Float64, "position": pl.Float64, LOW: pl.Float64,
              HIGH: pl.Float64, "censored": pl.String, "variant": pl.String}  # fmt: skip
    return pl.DataFrame(records, schema_overrides=schema, infer_schema_length=None)


# -- findings ------------------------------------------------------------------------------------

VALUE = "position"  # the findings' value column: the threshold on the search's scale
LOW, HIGH = bounds_of(VALUE)  # its bounds: a censored threshold enters the findings as these


def _levels_present(
    column: str, levels: tuple[Any, Any], labels: tuple[str, str]
) -> Callable[[pl.DataFrame], str | None]:
    """`Claim.requires`: why the claim cannot be tested on these thresholds, or None."""

    def why(rows: pl.DataFrame) -> str | None:
        if column not in rows.columns:
            return f"{column} not recorded"
        present = set(rows[column].unique().to_list())
        missing = [lab for lev, lab in zip(levels, labels) if lev not in present]
        if missing:
            return (f"the search has no {' or '.join(missing)} cells ({column}: "
                    f"{', '.join(sorted(map(str, present - {None})))})")  # fmt: skip
        known = rows.filter(pl.col(LOW).is_not_null()) if LOW in rows.columns else rows.clear()
        lost = [lab for lev, lab in zip(levels, labels)
                if known.filter(pl.col(column) == lev).is_empty()]  # fmt: skip
        if lost:
            return f"no seed of {' and '.join(lost)} has a scored point"
        return None

    return why


def _censored_note(
    column: str, levels: tuple[Any, Any], labels: tuple[str, str]
) -> Callable[[pl.DataFrame, str], str]:
    """`Claim.extra`: how many seed thresholds of each side were censored (they enter as
    bounds), and the cells whose every seed is censored (a stratum whose arm is known only by
    its bounds: it decides only what they prove)."""

    def note(rows: pl.DataFrame, value: str) -> str:
        parts = []
        for level, label in zip(levels, labels):
            side = rows.filter(pl.col(column) == level)
            lost = side.filter(pl.col(value).is_null())
            why = ", ".join(f"{n} {c}" for c, n in sorted(
                lost.group_by("censored").len().iter_rows(), key=lambda t: str(t[0])))  # fmt: skip
            parts.append(f"{label} {lost.height} of {side.height}" + (f" ({why})" if why else ""))
        text = ("censored seed thresholds, entered as bounds (sign tests on what they prove; "
                "never imputed, never dropped): " + "; ".join(parts))  # fmt: skip
        if "cell" in rows.columns:
            cells = (
                rows.filter(pl.col(column).is_in(list(levels)))
                .group_by("cell")
                .agg(pl.col(value).is_null().all().alias("all"), pl.col("censored").first())
            )
            whole = sorted(f"{c} ({why})" for c, every, why in cells.iter_rows() if every)
            if whole:
                text += "; every seed censored in: " + ", ".join(whole)
        return text

    return note


def frontier_claims(search: Search) -> dict[str, Claim]:
    """The claims the thresholds test, in the search's unit (decades on a log search): the
    difference of matched per-seed thresholds (equal in every other config field, seed
    included), per stratum."""
    unit = unit_of(search)
    word = {"noise_scale": "noise", DP_AXIS: "DP-SGD noise"}.get(search.axis, "pruning")
    specs = (
        ("frontier_sigmoid_vs_relu", f"Sigmoid needs stronger {word} than ReLU to be defeated",
         "activation", ("sigmoid", "relu"), ("Sigmoid", "ReLU"), ("network", "family"), ()),
        ("frontier_kaiming_vs_xavier", f"Kaiming init needs stronger {word} than Xavier to be "
         "defeated", "family", ("kaiming", "xavier"), ("Kaiming", "Xavier"),
         ("network", "activation"), ("init_method", "distribution")),
    )  # fmt: skip
    out = {}
    for key, text, column, levels, labels, strata, ignore in specs:
        part = Compare(column, levels[0], levels[1], labels, Rule("greater"), strata,
                       ignore=ignore, unit=unit)  # fmt: skip
        out[key] = Claim(key, text, (part,), requires=_levels_present(column, levels, labels),
                         extra=_censored_note(column, levels, labels))  # fmt: skip
    return out


def frontier_findings(search: Search, thresholds: pl.DataFrame) -> list[Finding]:
    """Every frontier claim against per-seed thresholds of one sweep or variant (`seed_
    thresholds`), with a Holm column; each finding names the search's score."""
    claims = frontier_claims(search)
    if thresholds.is_empty():
        found = [build(c, [], VALUE, why="no cell of the search has a scored point yet")
                 for c in claims.values()]  # fmt: skip
    else:
        rows = prepare(thresholds.with_columns(pl.lit("ok").alias("status")))
        found = [check(claim, rows, VALUE) for claim in claims.values()]
    return [replace(f, score=search.score) for f in with_holm(found)]


# -- the chart -----------------------------------------------------------------------------------


def frontier_chart(table: pl.DataFrame, search: Search | None) -> alt.TopLevelMixin:
    """The strength needed per init x activation, one panel per model (a row of panels per
    other cell axis that varies, and per sweep/variant): a point at the strength found, a rule
    for its bracket; "not defeated in range" at the range's strongest end (triangle up),
    "defeated at the weakest" at its weakest (triangle down). ChartSkipped without a search or
    without a cell to draw."""
    import altair as alt

    if search is None:
        raise ChartSkipped(f"{FRONTIER_CHART}: the sweep's spec has no search: section")
    if table.is_empty() or "outcome" not in table.columns:
        raise ChartSkipped(f"{FRONTIER_CHART}: no cell of the search has an outcome yet")
    drawn = _chart_rows(table, search)
    if drawn.is_empty():
        raise ChartSkipped(f"{FRONTIER_CHART}: no cell of the search has an outcome yet")
    log = search.scale == "log"
    y_scale = alt.Scale(type="log" if log else "linear", domain=[search.low, search.high])
    y_title = f"{search.axis.replace('_', ' ')} needed" + (" (log)" if log else "")
    base = alt.Chart().encode(
        x=alt.X("init_method:N", title="init method"),
        xOffset=alt.XOffset("activation:N"),
        color=alt.Color("activation:N", title="activation"),
    )
    rules = (
        base.transform_filter("isValid(datum.bracket_low) && isValid(datum.bracket_high)")
        .mark_rule(strokeWidth=2)
        .encode(y=alt.Y("bracket_low:Q", scale=y_scale, title=y_title), y2="bracket_high:Q")
    )
    tooltip = [
        alt.Tooltip(f"{c}:{'N' if c in ('cell', 'outcome') else 'Q'}", format=fmt)
        for c, fmt in (("cell", ""), ("outcome", ""), ("strength", ".3g"),
                       ("bracket_low", ".3g"), ("bracket_high", ".3g"),
                       ("score_at_strength", ".3g"), ("target", ".3g"), ("grad_cosine", ".3g"),
                       ("grad_rel_error", ".3g"), ("epsilon", ".3g"),
                       ("epsilon_bracket_low", ".3g"), ("n", "d"), ("trials", "d"))
        if c in drawn.columns
    ]  # fmt: skip
    present = set(drawn.filter(pl.col("y").is_not_null())["outcome"].to_list())
    shown = [o for o in SHAPES if o in present]  # the legend lists what is drawn
    points = base.transform_filter("isValid(datum.y)").mark_point(size=80, filled=True).encode(
        y=alt.Y("y:Q", scale=y_scale, title=y_title),
        shape=alt.Shape("outcome:N", title="outcome",
                        scale=alt.Scale(domain=shown, range=[SHAPES[o] for o in shown])),
        tooltip=tooltip,
    )  # fmt: skip
    layers = [rules, points]
    if "epsilon" in drawn.columns:  # DP-SGD: the threshold as the epsilon it buys, beside it
        drawn = drawn.with_columns(pl.Series("epsilon_label", [
            None if e is None else f"ε{'≥' if o == DEFEATED_AT_WEAKEST else '='}{e:.3g}"
            for e, o in zip(drawn["epsilon"], drawn["outcome"])
        ], dtype=pl.String))  # fmt: skip
        layers.append(
            base.transform_filter("isValid(datum.y) && isValid(datum.epsilon_label)")
            .mark_text(align="left", dx=7, fontSize=10)
            .encode(y=alt.Y("y:Q", scale=y_scale, title=y_title), text="epsilon_label:N")
        )
    layered = alt.layer(*layers, data=drawn)
    facet_row = "facet" if drawn["facet"].n_unique() > 1 else None
    chart = layered.facet(
        column=alt.Column("model:N", title="model"),
        **({"row": alt.Row(f"{facet_row}:N", title=None)} if facet_row else {}),
    )
    chart.title = alt.Title("Defense frontier: the weakest " + search.axis.replace("_", " ")
                            + " that defeats the attack", subtitle=_subtitle(table, search),
                            anchor="start")  # fmt: skip
    return chart


def _cell_axes(table: pl.DataFrame) -> list[str]:
    """The table's columns naming the cell's configuration, besides the chart's own."""
    return [c for c in table.columns if c not in (*RESULTS, *CHART_FIELDS)]


def _facet_axes(table: pl.DataFrame) -> list[str]:
    """Cell columns besides the chart's own that vary: each level combination is a row."""
    return [c for c in _cell_axes(table) if table[c].n_unique() > 1]


def _chart_rows(table: pl.DataFrame, search: Search) -> pl.DataFrame:
    """The cells to draw: `y` (the strength found, the range's end for a cell not defeated in
    it or defeated at its weakest, the weakest strength defeating so far while searching),
    `n` (seeds), `kind` = mean (the report counts points by it), and `facet` (sweep/variant
    and the other varying cell axes). Failed cells are left out (the subtitle counts them)."""
    if table.is_empty():
        return table
    rows = table.filter(pl.col("outcome") != FAILED)
    y = (
        pl.when(pl.col("outcome") == FOUND).then(pl.col("strength"))
        .when(pl.col("outcome") == DEFEATED_AT_WEAKEST).then(pl.lit(search.low))
        .when(pl.col("outcome") == NOT_DEFEATED).then(pl.lit(search.high))
        .when(pl.col("outcome") == SEARCHING).then(pl.col("bracket_high"))
        .otherwise(None)
    )  # fmt: skip
    named = [c for c in ("sweep", "variant") if c in rows.columns]
    axes = _facet_axes(rows)
    facet = [
        ", ".join([*(str(r[c]) for c in named if r[c] is not None),
                   *(f"{c}={r[c]}" for c in axes)])
        for r in rows.select(*named, *axes).iter_rows(named=True)
    ]  # fmt: skip
    return rows.with_columns(
        y.alias("y"), pl.col("seeds").alias("n"), pl.lit("mean").alias("kind"),
        pl.Series("facet", facet, dtype=pl.String),
        *(pl.col(c).cast(pl.String) for c in CHART_FIELDS if c in rows.columns),
    ).filter(pl.col("y").is_not_null() | pl.col("bracket_low").is_not_null())  # fmt: skip


def _subtitle(table: pl.DataFrame, search: Search) -> list[str]:
    seeds = sorted(table["seeds"].unique().to_list()) if "seeds" in table.columns else []
    fixed = [f"{c}={table[c][0]}" for c in _fixed_axes(table)]
    target = "auto (failed-attack floor + 2 dB)" if search.target is None else (
        f"{search.target:g} dB")  # fmt: skip
    lines = [
        f"each point: one cell's search, decided on the mean {search.score} of its "
        f"{'/'.join(map(str, seeds))} seeds (target {target}); nothing else is averaged",
        "bar: the bracket (strongest strength not defeating the attack .. weakest defeating)",
        f"triangle up at {search.high:g}: not defeated in range; triangle down at "
        f"{search.low:g}: defeated at the weakest",
    ]
    if search.axis == DP_AXIS:
        lines.append("ε: DP-SGD's epsilon (PLD, dp-accounting; above 1000 the RDP bound) at "
                     "the multiplier found, for the cell's dp_delta, dp_sample_rate, dp_steps x "
                     "local_steps")  # fmt: skip
    outcomes = table["outcome"].to_list()
    if SEARCHING in outcomes:
        lines.append(f"diamond: still searching ({outcomes.count(SEARCHING)} cells), at the "
                     "weakest strength that defeats the attack so far")  # fmt: skip
    if FAILED in outcomes:
        lines.append(f"not drawn: {outcomes.count(FAILED)} cells whose every seed failed at a "
                     "point (frontier.csv lists them)")  # fmt: skip
    varying = _facet_axes(table)
    if varying:
        lines.append("rows of panels: " + ", ".join(varying))
    if fixed:
        lines.append("every cell: " + ", ".join(fixed))
    return lines


def _fixed_axes(table: pl.DataFrame) -> list[str]:
    return [c for c in _cell_axes(table) if table[c].n_unique() == 1]


# -- one sweep, for the report -------------------------------------------------------------------


@dataclass
class FrontierPart:
    """The frontier's findings on one part of its sweep, split and named as the report splits
    its rows (`findings.named_parts`: per variant, per attack recipe where they mix)."""

    label: str  # sweep, sweep/variant, sweep [recipe], ...
    variant: str | None
    recipe: str | None  # None unless the variant's cells mix attack recipes
    findings: list[Finding]


@dataclass
class Frontier:
    """A search sweep's frontier: the table, the per-seed thresholds, the findings per part."""

    sweep: str
    search: Search
    table: pl.DataFrame
    thresholds: pl.DataFrame
    parts: list[FrontierPart] = field(default_factory=list)

    @property
    def findings(self) -> dict[str, list[Finding]]:
        """The findings by part label."""
        return {part.label: part.findings for part in self.parts}

    @property
    def censored(self) -> int:
        return int(self.thresholds["threshold"].null_count()) if self.thresholds.height else 0


def sweep_frontier(sweep: OpenedSweep) -> Frontier | None:
    """The frontier of an opened sweep, from its spec and its search replayed from its rows
    (None: no spec, or no search)."""
    state = sweep.search
    if sweep.spec is None or state is None:
        return None
    thresholds = seed_thresholds(state)
    table = frontier_table(state, sweep.frame, thresholds)
    table = table.insert_column(0, pl.lit(sweep.name).alias("sweep"))
    parts = [
        FrontierPart(part_label(sweep.name, variant, recipe), variant, recipe,
                     frontier_findings(state.search, rows.drop("recipe")))
        for variant, recipe, rows in named_parts(with_recipe(thresholds), sweep.variants)
    ]  # fmt: skip
    return Frontier(sweep.name, state.search, table, thresholds, parts)


def with_recipe(thresholds: pl.DataFrame) -> pl.DataFrame:
    """The thresholds with each cell's attack recipe, read from its fields as a row's `recipe`
    is (`recipe_of`): what the findings split by, never pool over (frontier_seeds.csv keeps
    the fields alone)."""
    if thresholds.is_empty():
        return thresholds.with_columns(pl.lit(None, pl.String).alias("recipe"))
    cells = thresholds.unique("cell", maintain_order=True).iter_rows(named=True)
    recipes = {row["cell"]: recipe_of(row) for row in cells}
    return thresholds.with_columns(pl.col("cell").replace_strict(recipes).alias("recipe"))


def censored_text(thresholds: pl.DataFrame) -> str:
    """'3 of 24 seed thresholds censored (2 not defeated in range, 1 ...)' or ''."""
    lost = thresholds.filter(pl.col("threshold").is_null())
    if lost.is_empty():
        return ""
    kinds = ", ".join(f"{n} {c}" for c, n in sorted(lost.group_by("censored").len().iter_rows(),
                                                      key=lambda t: str(t[0])))  # fmt: skip
    return f"{lost.height} of {thresholds.height} seed thresholds censored ({kinds})"


__all__ = [
    "FRONTIER_CHART", "FRONTIER_TITLE", "NOT_ENOUGH", "Crossing", "Frontier", "FrontierPart",
    "cell_configs", "censored_text", "crossing", "frontier_chart", "frontier_claims",
    "frontier_findings", "frontier_table", "seed_thresholds", "sweep_frontier", "unit_of",
    "with_recipe",
]  # fmt: skip
