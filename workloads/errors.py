"""Errors a user can fix. The CLI turns them into a one-line message and exit code 2."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input from the user: the message says what is wrong and what is allowed."""


class ConfigError(UserError, ValueError):
    """A field holds a value outside its allowed set."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        if value is None:
            message = f"unknown key {key!r}: allowed keys are {allowed}"
        else:
            message = f"{key}: {value!r} is not allowed; expected {allowed}"
        super().__init__(message)
