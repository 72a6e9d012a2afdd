"""The reader: charts, findings, the frontier readout, the report and SQL over the rows.

Imports `store` (the row reader, the schema, the spec), never `orchestrator`; the CLI
(`dlgsweep.cli`) sits above it. `from analysis import load` in a notebook is the row reader,
`store.load`.
"""

from store import load

__all__ = ["load"]
