"""A sweep's counts: finished / failed / missing trials of its saved spec, errors grouped.

Counts are over the trials of the saved spec.yaml; files that cannot be read as trial rows
(half-written, corrupt, foreign) are never counted, only listed. Reads four columns (trial_key,
status, error and finished_at, which picks one row per trial; a search's score beside them) of
the sweep's row and part files, once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dlgsweep.errors import UserError
from store.sweep_store import SweepStore, expected_keys

STATUS_ORDER = ("ok", "diverged", "error")


@dataclass
class SweepStatus:
    total: int
    counts: dict[str, int]
    missing: list[str]  # trial keys of the spec without a row
    errors: list[tuple[str, int]]  # (message, how many), most frequent first
    extra: int = 0  # rows of trials no longer in the spec
    skipped: list[str] = field(default_factory=list)
    spec_found: bool = True

    def as_json(self) -> dict[str, int]:
        out = {s: self.counts.get(s, 0) for s in STATUS_ORDER}
        out.update(missing=len(self.missing), total=self.total)
        return out


def sweep_status(store: SweepStore) -> SweepStatus:
    """The counts of one sweep, from one parse of its spec.yaml and one read of its rows (a
    search's replay takes its score from the same read)."""
    if not store.exists():
        raise UserError(f"DIR {store.uri!r} does not exist; expected <results>/<sweep>")
    spec = store.spec_if_saved()
    score = spec.search.score if spec is not None and spec.search is not None else None
    columns = list(dict.fromkeys(["trial_key", "status", "error", *([score] if score else [])]))
    rows = store.read_rows(columns=columns)
    by_key = {
        key: (status, error)
        for key, status, error in zip(
            rows.table.column("trial_key").to_pylist(),
            rows.table.column("status").to_pylist(),
            rows.table.column("error").to_pylist(),
        )
    }
    if spec is None:
        keys = None
    else:
        state = store.search_state(spec, rows.table) if score else None
        keys = expected_keys(spec, state)
    spec_found = keys is not None
    expected = list(keys) if keys is not None else list(by_key)
    counts = Counter(by_key[k][0] for k in expected if k in by_key)
    failed = [k for k in expected if k in by_key and by_key[k][0] == "error"]
    errors = Counter(by_key[k][1] or "(no message)" for k in failed)
    return SweepStatus(
        total=len(expected),
        counts=dict(counts),
        missing=[k for k in expected if k not in by_key],
        errors=errors.most_common(),
        extra=len(set(by_key).difference(expected)),
        skipped=rows.skipped,
        spec_found=spec_found,
    )
