"""MkDocs hook: a page's `<!-- reference: NAME -->` becomes the reference block NAME, written
from the code's declarations by dlgsweep.reference (cli, trial, spec, schema, presets)."""

from __future__ import annotations

import re

from dlgsweep import reference

MARKER = re.compile(r"<!-- reference: (\w+) -->")


def on_page_markdown(markdown: str, **_: object) -> str:
    return MARKER.sub(lambda found: reference.page(found.group(1)), markdown)
