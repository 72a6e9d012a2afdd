"""Rows for the findings: the result rows with derived columns, the conditions a claim speaks
of, and its units (matched pairs, slopes) with every row that could not be used counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from store.load import result_rows
from store.schema import CONFIG_COLUMNS

CONFIG_FIELDS = [name for name, _ in CONFIG_COLUMNS]
# columns derived from config fields, used as comparison fields and as pairing keys
DERIVED = ("family", "distribution", "network", "strength")
SOURCES = {"family": ("init_method",), "distribution": ("init_method",), "network": ("model",),
           "strength": ("prune", "prune_ratio")}  # fmt: skip


def prepare(frame: pl.DataFrame) -> pl.DataFrame:
    """The ok/diverged rows plus the derived columns (scores untouched: a null score is counted
    where a claim would have used the row, not dropped here).

    family: xavier | kaiming | default (from init_method); distribution: normal | uniform;
    network: mcmahan (both McMahan CNN variants) | resnet18 | lenet_zhu; strength: the pruned
    share (0 when prune is none, prune_ratio otherwise).
    """
    rows = result_rows(frame)
    derived = []
    if "init_method" in rows.columns:
        method = pl.col("init_method")
        derived += [
            method.str.split("_").list.first().alias("family"),
            pl.when(method.str.ends_with("_uniform")).then(pl.lit("uniform"))
            .when(method.str.ends_with("_normal")).then(pl.lit("normal"))
            .otherwise(method).alias("distribution"),
        ]  # fmt: skip
    if "model" in rows.columns:
        derived.append(
            pl.when(pl.col("model").str.starts_with("mcmahan"))
            .then(pl.lit("mcmahan"))
            .otherwise(pl.col("model"))
            .alias("network")
        )
    if {"prune", "prune_ratio"} <= set(rows.columns):
        derived.append(
            pl.when(pl.col("prune") == "none")
            .then(0.0)
            .when(pl.col("prune").is_null())
            .then(None)
            .otherwise(pl.col("prune_ratio").round(6))
            .alias("strength")
        )
    return rows.with_columns(derived)


def keys(rows: pl.DataFrame, exclude: Sequence[str]) -> list[str]:
    """The pairing keys: every config field (and derived column) present but `exclude`."""
    return [k for k in (*CONFIG_FIELDS, *DERIVED) if k in rows.columns and k not in exclude]


def levels_text(values: list[Any]) -> str:
    shown = sorted((v for v in values if v is not None), key=lambda v: (str(type(v)), v))
    text = ", ".join(str(v) for v in shown[:6]) + (", ..." if len(shown) > 6 else "")
    return text + (", unknown" if None in values else "")


def bounds_of(value: str) -> tuple[str, str]:
    """The columns bounding `value` where it is censored (known only as an interval)."""
    return f"{value}_low", f"{value}_high"


def scored(rows: pl.DataFrame, value: str) -> tuple[pl.DataFrame, list[str]]:
    """(the rows with a finite score, or where the score is censored, with its bounds; a note
    counting those without either)."""
    if value not in rows.columns:
        return rows.clear(), [f"{value} not recorded in these rows"]
    column = pl.col(value).cast(pl.Float64)
    ok = column.is_not_null() & column.is_finite()
    low, high = bounds_of(value)
    if {low, high} <= set(rows.columns):
        ok = ok.fill_null(False) | (pl.col(low).is_not_null() & pl.col(high).is_not_null())
    dropped = rows.filter(~ok.fill_null(False)).height
    note = [f"{dropped} trials without a score ({value} null or not finite) left out"]
    return rows.filter(ok.fill_null(False)), note if dropped else []


# -- selecting rows: the conditions a claim speaks of ------------------------------------------


@dataclass(frozen=True)
class Where:
    """Rows with `column` in `levels`; rows where it is null are unknown, left out, counted."""

    column: str
    levels: tuple[Any, ...]
    label: str = ""  # how the evidence says it

    def text(self) -> str:
        return self.label or f"{self.column} = {' or '.join(str(v) for v in self.levels)}"


def condition(rows: pl.DataFrame, where: Sequence[Where]) -> pl.Expr:
    """The rows meeting every condition (null values never match)."""
    expr = pl.lit(True)
    for cond in where:
        if cond.column not in rows.columns:
            return pl.lit(False)
        expr = expr & pl.col(cond.column).is_in(list(cond.levels)).fill_null(False)
    return expr


def select(rows: pl.DataFrame, where: Sequence[Where]) -> tuple[pl.DataFrame, list[str]]:
    """(rows meeting every condition, notes on rows left out because a value was unknown)."""
    notes = []
    for cond in where:
        if cond.column not in rows.columns:
            notes.append(f"{cond.column} not recorded in these rows")
            continue
        unknown = rows.filter(pl.col(cond.column).is_null()).height
        if unknown:
            notes.append(f"{unknown} rows with unknown {cond.column} left out")
    return rows.filter(condition(rows, where)), notes


def missing_levels(rows: pl.DataFrame, column: str, levels: Sequence[Any]) -> list[Any]:
    if column not in rows.columns:
        return list(levels)
    present = set(rows[column].unique().to_list())
    return [level for level in levels if level not in present]


# -- units ---------------------------------------------------------------------------------------


def paired(
    rows: pl.DataFrame,
    column: str,
    a: Any,
    b: Any,
    value: str,
    ignore: Sequence[str] = (),
    names: tuple[str, str] = ("", ""),
) -> tuple[pl.DataFrame, list[str]]:
    """(one row per matched pair: the keys, seed included, and `effect` = value(a) - value(b);
    notes counting the trials without a score and those that found no twin, and why). Where
    the rows bound a censored value (`bounds_of(value)` columns), the pairs also carry
    `effect_low` and `effect_high`, the bounds of the difference.

    Trials sharing a key are averaged first. A key with a null value matches only a twin with
    the same null (an older row's unknown field is never read as the default)."""
    rows, notes = scored(rows.filter(pl.col(column).is_in([a, b])), value)
    pair_keys = keys(rows, (column, *ignore))
    if not pair_keys:
        return pl.DataFrame({"effect": []}, schema={"effect": pl.Float64}), notes

    low, high = bounds_of(value)
    bounded = {low, high} <= set(rows.columns)

    def side(level: Any, name: str) -> pl.DataFrame:
        known = [pl.col(c).cast(pl.Float64).mean().alias(name + tag)
                 for c, tag in ((low, "lo"), (high, "hi"))] if bounded else []  # fmt: skip
        return (
            rows.filter(pl.col(column) == level)
            .group_by(pair_keys)
            .agg(
                pl.col(value).cast(pl.Float64).mean().alias(name),
                pl.len().alias(name + "n"),
                *known,
            )  # fmt: skip
        )

    left, right = side(a, "_a"), side(b, "_b")
    pairs = left.join(right, on=pair_keys, how="inner", nulls_equal=True)
    for lone, level, label in (
        (left.join(right, on=pair_keys, how="anti", nulls_equal=True), b, names[0] or a),
        (right.join(left, on=pair_keys, how="anti", nulls_equal=True), a, names[1] or b),
    ):
        if lone.height:
            count = int(lone.select(pl.col("^_[ab]n$")).to_series().sum())
            why = _why_unmatched(lone, column, level)
            notes.append(f"{count} {label} trials found no twin{why}")
    effect = (pl.col("_a") - pl.col("_b")).alias("effect")
    if bounded:  # censored sides: the difference is known as an interval
        pairs = pairs.with_columns(
            (pl.col("_alo") - pl.col("_bhi")).alias("effect_low"),
            (pl.col("_ahi") - pl.col("_blo")).alias("effect_high"),
        ).drop("_alo", "_ahi", "_blo", "_bhi")
    return pairs.with_columns(effect).drop("_a", "_b", "_an", "_bn"), notes


def _why_unmatched(lone: pl.DataFrame, column: str, level: Any) -> str:
    unknown = [
        c for c in lone.columns
        if c in CONFIG_FIELDS and lone[c].null_count() and not c.startswith("_")
    ]  # fmt: skip
    if unknown:
        return ": " + ", ".join(f"{c} unknown" for c in unknown)
    return f" with {column} = {level}"


def slopes(rows: pl.DataFrame, x: str, value: str, by: Sequence[str] = ()) -> pl.DataFrame:
    """Least-squares slope of value on log2(x) per group of every other key, over groups that
    hold every level of x seen within their stratum `by` (a group missing a level would
    measure another slope; those are dropped, and the caller counts them)."""
    group = keys(rows, (x,))
    lx = pl.col(x).cast(pl.Float64).log(2)
    y = pl.col(value).cast(pl.Float64)
    usable = rows.filter(pl.col(x).is_not_null() & (pl.col(x) > 0))
    stratum = [c for c in by if c in usable.columns]
    full = (
        usable.with_columns(pl.col(x).n_unique().over(stratum).alias("_all"))
        if stratum
        else usable.with_columns(pl.lit(usable[x].n_unique()).alias("_all"))
    )
    centred = full.with_columns(
        (lx - lx.mean().over(group)).alias("_x"), (y - y.mean().over(group)).alias("_y")
    )
    return (
        centred.group_by(group)
        .agg(
            ((pl.col("_x") * pl.col("_y")).sum() / (pl.col("_x") ** 2).sum()).alias("effect"),
            pl.col(x).n_unique().alias("_levels"),
            pl.col("_all").first(),
        )
        .filter((pl.col("_levels") >= 2) & (pl.col("_levels") == pl.col("_all")))
        .drop("_levels", "_all")
    )
