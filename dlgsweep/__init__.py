"""dlgsweep's shared vocabulary: what every layer (workloads, orchestrator, analysis) may import.

Nothing here imports the layers; they import it. See errors.py (bad input) and extras.py (the
optional installs).
"""
