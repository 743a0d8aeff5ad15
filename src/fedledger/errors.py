"""Exception types shared by every layer.

Every error says what was wrong, with what value, and what is allowed.
"""

from __future__ import annotations


class FedledgerError(Exception):
    """Base class of every error fedledger raises on purpose."""


class ConfigError(FedledgerError, ValueError):
    """A configuration key has a bad value, or an unknown key was given."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class UnknownComponentError(ConfigError):
    """A registry was asked for a name it does not hold."""

    def __init__(self, kind: str, name: str, available: list[str], where: str = "") -> None:
        self.kind = kind
        self.name = name
        self.available = available
        super().__init__(
            where,
            f"unknown {kind} {name!r}; available: {', '.join(available) or '(none)'}",
        )


class DataError(FedledgerError, ValueError):
    """A dataset file is missing or malformed."""
