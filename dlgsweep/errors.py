"""Errors a user can fix. The CLI turns them into a one-line message and exit code 2.

Here, below every layer: the attack (`workloads`), the sweep (`orchestrator`) and the readers
(`analysis`) all raise it, and none of them has to reach into another for it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what is allowed."""
