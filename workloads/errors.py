"""The trial config's error: a field holding a value outside its allowed set."""

from __future__ import annotations

from typing import Any

from dlgsweep.errors import UserError

# UserError lives in dlgsweep.errors; named here too for code written before it moved
__all__ = ["ConfigError", "UserError"]


class ConfigError(UserError, ValueError):
    """A field holds a value outside its allowed set."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        if value is None:
            message = f"unknown key {key!r}: allowed keys are {allowed}"
        else:
            message = f"{key}: {value!r} is not allowed; expected {allowed}"
        super().__init__(message)
