"""Sweep spec -> Ray Tune grid -> trials; the Parquet store; the CLI."""

from collections.abc import Callable

# where the orchestrator's progress lines and warnings go (print, or a test's list)
Say = Callable[[str], None]
