"""Errors of the homomorphic aggregation package."""

from __future__ import annotations

from fedledger.errors import FedledgerError


class HeError(FedledgerError, ValueError):
    """A bad parameter, a bad ciphertext or mismatched operands."""


class HeadroomError(HeError):
    """A sum could overflow its fixed-width slot (it would carry into the next one)."""


class InvalidPartialError(HeError):
    """One or more partial decryptions failed their proof of correctness."""

    def __init__(self, indices: list[int], reason: str) -> None:
        self.indices = indices
        super().__init__(f"partial decryptions from key holders {indices} rejected: {reason}")
