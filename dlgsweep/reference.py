"""The docs site's reference pages, written from the code's own declarations.

`docs/hooks/reference.py` (a MkDocs hook) puts each page's text where the page says
`<!-- reference: NAME -->`; nothing in them is typed twice, so they cannot drift:

- `cli`: every command and option, read from `dlgsweep.cli.build_parser()`;
- `trial`: every `TrialConfig` field: type, default, allowed values (`CHOICES`) and the comment
  beside its declaration in workloads/config.py;
- `spec`: every top-level key of a sweep spec (`store.spec.TOP_LEVEL_KEYS`), the `resources`
  and `search` keys;
- `schema`: every column of the row (`store.schema.SCHEMA`), with the dataclass it comes from;
- `presets`: every preset under store/presets, its description and its axes.

A key, field or option without a description here or in its declaration fails the build
(`ReferenceError`), so a new one cannot land undocumented.
"""

from __future__ import annotations

import argparse
import ast
import inspect
from dataclasses import MISSING, fields
from typing import Any

PAGES = ("cli", "trial", "spec", "schema", "presets")

# What each top-level spec key is for (store.spec.TOP_LEVEL_KEYS is the list; every key there
# needs a line here, and nothing here may name a key that is not there)
SPEC_KEYS = {
    "name": "the sweep's name: rows go to `<results>/<name>` (letters, digits, `-`, `_`, `.`)",
    "description": "free text, kept in the saved spec.yaml",
    "grid": "trial field -> list of values; the trials are the cartesian product",
    "fixed": "trial field -> one value, the same for every trial",
    "attack": "attack fields (optimizer, lr, iterations, ...) -> one value, for every trial",
    "variants": "variant name -> field overrides; every variant is crossed with the whole grid, "
    "and the report judges each apart",
    "resources": "per trial: `cpu` and `gpu` (fractions pack several trials on one GPU)",
    "retries": "how often Tune reruns a trial whose worker died (FailureConfig max_failures)",
    "report_every": "a live report every N attack iterations (default: about 20 a trial)",
    "search": "search one defense axis per cell instead of gridding it (see Defense frontier)",
}
RESOURCE_KEYS = {
    "cpu": "CPUs per trial (> 0)",
    "gpu": "GPUs per trial: 0, a fraction (0.25: four trials share one GPU) or a whole number",
}
SEARCH_KEYS = {
    "axis": "the defense axis searched: `noise_scale` (with noise gaussian | laplacian) or "
    "`prune_ratio` (with prune small)",
    "range": "[weakest, strongest]",
    "scale": "`log` (default for noise_scale) or `linear` (default for prune_ratio)",
    "resolution": "stop when the bracket is one step: decades (log) or axis units",
    "target": "defeated when the seeds' mean score is below this many dB; `auto`: the "
    "failed-attack floor of the dataset plus 2 dB",
    "score": "the column the target is read on: `psnr_mean` (default) or `psnr_raw_mean`",
}


class ReferenceError(Exception):
    """A declaration the reference cannot describe (a key without a description, ...)."""


def page(name: str) -> str:
    """The markdown of one reference block."""
    makers = {"cli": cli, "trial": trial, "spec": spec, "schema": schema, "presets": presets}
    if name not in makers:
        raise ReferenceError(f"unknown reference block {name!r}; known: {', '.join(PAGES)}")
    return makers[name]()


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- the CLI -------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse exposes no public walk
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def _option_row(action: argparse.Action) -> tuple[str, str, str]:
    names = (
        ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
    )
    what = action.help or ""
    if action.choices:
        what += (" " if what else "") + "one of: " + ", ".join(f"`{c}`" for c in action.choices)
    default = action.default
    shown = (
        ""
        if default in (None, False, argparse.SUPPRESS) or not action.option_strings
        else f"`{default}`"
    )
    if not what:
        raise ReferenceError(f"option {names} has no help text")
    return names, what, shown


def cli() -> str:
    from dlgsweep.cli import build_parser

    parser = build_parser()
    out = [f"`dlgsweep COMMAND ...`: {parser.description}\n"]
    for name, sub in _subparsers(parser).items():
        text = (sub.description or "").strip()
        out.append(f"## `dlgsweep {name}`\n")
        out.append(f"```\n{sub.format_usage().strip()}\n```\n")
        if text:
            out.append(text + "\n")
        rows = [
            _option_row(action)
            for action in sub._actions  # noqa: SLF001
            if not isinstance(action, argparse._HelpAction)  # noqa: SLF001
        ]
        out.append(_table(("argument", "what", "default"), rows))
    return "\n".join(out)


# -- the trial -----------------------------------------------------------------------------------


def _field_comments(cls: type) -> dict[str, str]:
    """field name -> the comment on its declaration line (and the comment lines above it)."""
    source = inspect.getsource(cls)
    lines = source.splitlines()
    tree = ast.parse(source)
    out = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node in body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        line = lines[node.lineno - 1]
        parts = []
        above = node.lineno - 2
        while above >= 0 and lines[above].strip().startswith("#"):
            parts.insert(0, lines[above].strip()[1:].strip())
            above -= 1
        if "  # " in line:
            parts.append(line.split("  # ", 1)[1].strip())
        out[node.target.id] = " ".join(parts)
    return out


def _default(f: Any) -> str:
    if f.default is not MISSING:
        return f"`{f.default!r}`" if not isinstance(f.default, str) else f"`{f.default}`"
    if f.default_factory is not MISSING:  # type: ignore[misc]
        return f"`{f.default_factory()!r}`"  # type: ignore[misc]
    return "required"


def trial() -> str:
    from workloads.config import CHOICES, TrialConfig

    comments = _field_comments(TrialConfig)
    rows = []
    for f in fields(TrialConfig):
        allowed = ", ".join(f"`{c}`" for c in CHOICES.get(f.name, ()))
        rows.append((f"`{f.name}`", f.type, _default(f), allowed, comments.get(f.name, "")))
    return _table(("field", "type", "default", "allowed values", "note"), rows)


# -- the spec ------------------------------------------------------------------------------------


def _check_described(kind: str, declared: tuple[str, ...], described: dict[str, str]) -> None:
    missing = [k for k in declared if k not in described]
    extra = [k for k in described if k not in declared]
    if missing or extra:
        raise ReferenceError(
            f"{kind}: keys without a description {missing}, descriptions of no key {extra} "
            "(dlgsweep/reference.py)"
        )


def spec() -> str:
    from store import search
    from store import spec as spec_module

    _check_described("spec keys", spec_module.TOP_LEVEL_KEYS, SPEC_KEYS)
    _check_described("resources keys", spec_module.RESOURCE_KEYS, RESOURCE_KEYS)
    _check_described("search keys", search.SEARCH_KEYS, SEARCH_KEYS)
    out = ["## Top-level keys\n"]
    out.append(
        _table(("key", "what"), [(f"`{k}`", SPEC_KEYS[k]) for k in spec_module.TOP_LEVEL_KEYS])
    )
    out.append("## `resources`\n")
    out.append(
        _table(("key", "what"), [(f"`{k}`", RESOURCE_KEYS[k]) for k in spec_module.RESOURCE_KEYS])
    )
    out.append("## `search`\n")
    out.append(_table(("key", "what"), [(f"`{k}`", SEARCH_KEYS[k]) for k in search.SEARCH_KEYS]))
    out.append("## `recipe` (in `attack` and in a variant)\n")
    out.append(
        "`recipe: NAME` fills the attack fields from a published attack's values; every field "
        "the spec or variant sets itself wins (workloads.recipes):\n"
    )
    out.append(_table(("recipe", "its fields"), _recipes()))
    axes = ", ".join(
        f"`{a}` (with `{on}`: {', '.join(v)}; {scale})" for a, (on, v, scale) in search.AXES.items()
    )
    out.append(f"Searchable axes: {axes}.\n")
    return "\n".join(out)


def _recipes() -> list[tuple[str, str]]:
    from workloads.recipes import RECIPES, recipe_fields

    return [
        (f"`{name}`", ", ".join(f"{k}={v}" for k, v in recipe_fields(name).items()))
        for name in RECIPES
    ]


# -- the row -------------------------------------------------------------------------------------


def schema() -> str:
    from store.schema import SCHEMA, Provenance, RowHead
    from workloads.config import TrialConfig
    from workloads.result import TrialResult

    origin: dict[str, tuple[str, str]] = {}
    for cls in (RowHead, TrialConfig, TrialResult, Provenance):
        comments = _field_comments(cls)
        for f in fields(cls):
            stored = f.metadata.get("column", "value")
            if stored is None:
                continue
            column = f"{f.name}_png" if stored == "png" else f.name
            how = {"png": "PNG bytes of the image batch", "timestamp": "UTC timestamp"}.get(
                stored, ""
            )
            note = "; ".join(p for p in (how, comments.get(f.name, "")) if p)
            origin[column] = (cls.__name__, note)
    rows = []
    for arrow_field in SCHEMA:
        if arrow_field.name not in origin:
            raise ReferenceError(f"column {arrow_field.name} comes from no declared field")
        cls_name, note = origin[arrow_field.name]
        rows.append((f"`{arrow_field.name}`", f"`{arrow_field.type}`", cls_name, note))
    return _table(("column", "Arrow type", "declared in", "note"), rows)


# -- the presets ---------------------------------------------------------------------------------


def presets() -> str:
    from importlib import resources

    import yaml

    from store.spec import load_spec, preset_names

    out = []
    for name in preset_names():
        text = resources.files("store").joinpath("presets", f"{name}.yaml").read_text()
        raw = yaml.safe_load(text)
        spec = load_spec(name)
        description = " ".join(str(raw.get("description", "")).split())
        if not description:
            raise ReferenceError(f"preset {name} has no description")
        out.append(f"## `{name}`\n")
        out.append(description + "\n")
        count = "a search" if spec.search is not None else f"{len(spec.trial_keys())} trials"
        rows = [(f"`{axis}`", ", ".join(map(str, values))) for axis, values in spec.grid.items()]
        if spec.search is not None:
            s = spec.search
            rows.append((f"`{s.axis}` (searched)", f"[{s.low:g}, {s.high:g}], {s.scale}"))
        for variant, overrides in spec.variants.items():
            rows.append(
                (f"variant `{variant}`", ", ".join(f"{k}={v}" for k, v in overrides.items()))
            )
        out.append(
            f"{count}; resources per trial: cpu {spec.resources.cpu:g}, "
            f"gpu {spec.resources.gpu:g}\n"
        )
        out.append(_table(("axis", "values"), rows))
        fixed = {**spec.fixed, **spec.attack}
        if fixed:
            out.append("Fixed: " + ", ".join(f"`{k}={v}`" for k, v in fixed.items()) + "\n")
        out.append(f"```yaml\n{text.strip()}\n```\n")
    return "\n".join(out)
