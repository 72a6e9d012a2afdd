"""Attackers compared, per cell: does the stronger attack rebuild more than the seed's?

The seed's claims (`claims.CLAIMS`) are judged per attack recipe, never pooled over recipes
(`GROUP_COLUMNS`). The claims here compare recipes instead, so they read every row of a sweep:
a trial of one recipe is paired with the trial of the other that equals it in every config
field but the attack's own (`workloads.recipes.RECIPE_FIELDS` and the budget: same seed,
model, batch, images, init, activation, defense), and the difference of their scores is the
unit. A cell is one combination of the other fields that vary, the seed left out; each cell
gets its own verdict, with Holm over the cells of one comparison (a family per comparison), and
an overall row must hold in every cell (intersection-union: `mixed` names the cells that
disagree).

  ig_vs_seed   Inverting Gradients rebuilds more than the seed's attack: IG - seed > 2 dB
"""

from __future__ import annotations

import polars as pl

from analysis.findings.claims import MARGIN_DB, Claim, Compare
from analysis.findings.finding import Finding, with_holm
from analysis.findings.finding import frame as findings_frame
from analysis.findings.rows import CONFIG_FIELDS, DERIVED, prepare
from analysis.stats import Rule
from workloads.recipes import BUDGET_FIELDS, RECIPE_FIELDS

# every field that belongs to the attacker: a pair of trials may differ in all of them
ATTACK_COLUMNS = tuple(dict.fromkeys((*RECIPE_FIELDS, *BUDGET_FIELDS)))
# derived columns that restate a config field (cells are named by the fields themselves)
_RESTATED = ("family", "distribution", "network", "strength")


def _comparison(key: str, a: str, b: str, labels: tuple[str, str], text: str) -> Claim:
    part = Compare(
        "recipe", a, b, labels, Rule("exceeds", MARGIN_DB), (), (), ATTACK_COLUMNS + ("variant",)
    )
    return Claim(key, text, (part,), f"{labels[0]} - {labels[1]} > {MARGIN_DB:g} dB, per cell")


COMPARISONS: dict[str, Claim] = {
    claim.key: claim
    for claim in (
        _comparison(
            "ig_vs_seed", "inverting-gradients", "seed-study", ("IG", "seed's attack"),
            "Inverting Gradients rebuilds more than the seed's attack (by more than "
            f"{MARGIN_DB:g} dB)",
        ),
    )
}  # fmt: skip


def cell_fields(rows: pl.DataFrame) -> list[str]:
    """The config fields that vary among `rows` besides the attacker's and the seed."""
    skip = {*ATTACK_COLUMNS, "seed", *DERIVED, *_RESTATED}
    return [
        c for c in CONFIG_FIELDS if c in rows.columns and c not in skip and rows[c].n_unique() > 1
    ]


def comparisons(frame: pl.DataFrame, value: str = "psnr_mean") -> pl.DataFrame | None:
    """One row per (comparison, cell) and an overall row per comparison (cell `all`), for the
    comparisons whose two recipes both have rows; None when no comparison has both."""
    from analysis.findings import check

    if "recipe" not in frame.columns:
        return None
    rows = prepare(frame)
    present = set(rows["recipe"].drop_nulls().unique().to_list())
    out = []
    for claim in COMPARISONS.values():
        part = claim.parts[0]
        if not {part.a, part.b} <= present:
            continue
        pair = rows.filter(pl.col("recipe").is_in([part.a, part.b]))
        fields = cell_fields(pair)
        cells: list[tuple[str, Finding]] = []
        for values, cell in pair.group_by(fields, maintain_order=True) if fields else []:
            name = ", ".join(f"{f}={v}" for f, v in zip(fields, values))
            cells.append((name, check(claim, cell, value)))
        if not fields:
            cells.append(("all", check(claim, pair, value)))
        cells = list(zip([n for n, _ in cells], with_holm([f for _, f in cells])))
        if fields:  # the overall row: every cell as a stratum, must hold in each
            strata = tuple(f for f in fields)
            overall = Claim(
                claim.key, claim.text,
                (Compare(part.column, part.a, part.b, part.labels, part.rule, strata, (),
                         part.ignore),),
                claim.test.replace("per cell", "in every cell"),
            )  # fmt: skip
            cells.append(("all", check(overall, pair, value)))
        table = findings_frame([f for _, f in cells])
        out.append(table.insert_column(0, pl.Series("cell", [n for n, _ in cells])))
    return pl.concat(out) if out else None


def describe(frame: pl.DataFrame) -> list[str]:
    """The attackers of `frame`'s rows in words, one line per distinct attack (its recipe name
    and the fields that make it): what a verdict on these rows holds against."""
    present = [c for c in ATTACK_COLUMNS if c in frame.columns]
    if not present or frame.is_empty():
        return []
    columns = (["recipe"] if "recipe" in frame.columns else []) + present
    lines = []
    for row in frame.select(columns).unique(maintain_order=True).iter_rows(named=True):
        lines.append(_attack_text(row))
    return sorted(set(lines), key=lines.index)


def _attack_text(row: dict) -> str:
    name = row.get("recipe") or "unknown recipe (rows written before recipes)"
    if any(row.get(k) is None for k in ("loss", "optimizer", "lr", "iterations")):
        return f"{name}: attack fields not recorded"
    words = [f"{row['loss']} distance", f"{row['optimizer']} lr {row['lr']:g}"]
    if row.get("signed") == "hard":
        words.append("signed steps")
    if row.get("lr_schedule") not in (None, "none"):
        words.append(f"{row['lr_schedule']} schedule")
    if row.get("boxed"):
        words.append("boxed")
    priors = [f"{label} {row[k]:g}" for k, label in
              (("tv_weight", "TV"), ("l2_weight", "L2"), ("bn_prior", "BN prior"))
              if row.get(k)]  # fmt: skip
    if priors:
        words.append(", ".join(priors))
    words.append(f"labels {row.get('label_strategy')}")
    restarts = row.get("restarts") or 1
    words.append(f"{row['iterations']} iterations" + (f" x {restarts} restarts" if restarts > 1
                                                        else ""))  # fmt: skip
    return f"{name}: " + ", ".join(words)
