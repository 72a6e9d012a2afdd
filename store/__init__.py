"""The results store between the writer (`orchestrator`) and the reader (`analysis`).

- `schema`: the row, derived from the trial's declarations (workloads.config, workloads.result);
- `spec` and `presets/`: a sweep spec, checked; `search`: its `search:` section and lattice;
  `replay`: a search replayed from a sweep's rows;
- `uri`: local paths, NFS and object-store URIs, as pyarrow filesystems;
- `rows`: the one row reader (every data file under `trials/`); `load`: polars frames of it;
- `sweep_store`: `SweepStore`, one sweep's folder: its spec, rows, expected keys, writes and
  compaction; `status`: a sweep's counts; `opened`: a sweep opened for reading (rows read and
  spec parsed once, its expected keys and search replay derived from them).

Imports `workloads` (the declarations) and `dlgsweep.errors`, never `orchestrator` or
`analysis`; no torch, no Ray: the reader's install uses all of it.
"""
