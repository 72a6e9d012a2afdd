"""dlgsweep: the top and the bottom of the package's layers.

At the bottom, the shared vocabulary every layer (workloads, store, orchestrator, analysis) may
import: errors.py (bad input) and extras.py (the optional installs); these import no layer.
At the top, the CLI: cli.py and commands/, one argparse front per command, each calling one
function of `orchestrator`, `analysis` or `store`; no layer imports the CLI.
"""
