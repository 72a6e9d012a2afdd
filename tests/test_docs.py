"""The docs site: `mkdocs build --strict` passes, its reference pages name every trial field,
spec key, CLI option, row column and preset the code declares, a broken link fails the build,
the README stays short, and no file of the project cites a contract outside it."""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]  # no -q: it hides warnings


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [*MKDOCS, "-f", str(config), "-d", str(site)],
        capture_output=True, text=True, timeout=300, env=env, cwd=config.parent,
    )  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = _build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def _text(site: Path, page: str) -> str:
    raw = (site / page / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def test_reference_names_every_trial_field(site: Path) -> None:
    from workloads.config import CHOICES, TrialConfig

    text = _text(site, "reference/trial")
    for f in fields(TrialConfig):
        assert re.search(rf"\b{f.name}\b", text), f.name
    for name, allowed in CHOICES.items():
        for value in allowed:
            assert value in text, (name, value)


def test_reference_names_every_spec_key(site: Path) -> None:
    from store.search import SEARCH_KEYS
    from store.spec import RESOURCE_KEYS, TOP_LEVEL_KEYS
    from workloads.recipes import RECIPES

    text = _text(site, "reference/spec")
    for key in (*TOP_LEVEL_KEYS, *RESOURCE_KEYS, *SEARCH_KEYS, "recipe", *RECIPES):
        assert re.search(rf"\b{key}\b", text), key


def test_reference_names_every_cli_command_and_option(site: Path) -> None:
    from dlgsweep.cli import build_parser

    text = _text(site, "reference/cli")
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    seen = 0
    for name, command in sub.choices.items():
        assert f"dlgsweep {name}" in text, name
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert option in text, (name, option)
                    seen += 1
    assert seen > 50  # the walk found the options (attack alone has one per trial field)


def test_reference_names_every_column_and_preset(site: Path) -> None:
    from store.schema import SCHEMA
    from store.spec import preset_names

    columns = _text(site, "reference/schema")
    for name in SCHEMA.names:
        assert re.search(rf"\b{name}\b", columns), name
    presets = _text(site, "reference/presets")
    assert preset_names() and all(name in presets for name in preset_names())


def test_a_broken_link_fails_the_strict_build(tmp_path: Path) -> None:
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    page = copy / "docs" / "how-to" / "sweeps.md"
    page.write_text(page.read_text() + "\nSee [the missing page](no-such-page.md).\n")
    done = _build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-page.md" in done.stdout + done.stderr


def test_readme_is_short_and_its_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (ROOT / target).exists(), target


def test_no_file_cites_a_contract_outside_the_project() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    citing = [
        path
        for path in tracked
        if path != "tests/test_docs.py"
        and Path(ROOT / path).is_file()
        and Path(path).suffix in (".py", ".md", ".yaml", ".yml", ".sh", ".toml")
        and "DESIGN.md" in (ROOT / path).read_text(errors="replace")
    ]
    assert citing == []
