"""The writer: a sweep spec -> Ray Tune trials on a cluster, their rows into the store.

Imports `store` (the spec, the schema, the sweep's folder) and `workloads` (the attack), never
`analysis`; the CLI (`dlgsweep.cli`) sits above it.
"""

from collections.abc import Callable

# where the orchestrator's progress lines and warnings go (print, or a test's list)
Say = Callable[[str], None]
