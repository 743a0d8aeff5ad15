"""The error type of the differential-privacy package."""

from __future__ import annotations

from fedledger.errors import FedledgerError


class PrivacyError(FedledgerError, ValueError):
    """A DP mechanism, accountant or DP-SGD run got a parameter outside its allowed range."""
