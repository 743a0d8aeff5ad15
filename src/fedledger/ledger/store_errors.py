"""The errors of the chain store (``ledger.store``), in a module of their own so that
the store's parts can raise them."""

from __future__ import annotations

from fedledger.errors import FedledgerError


class ChainStoreError(FedledgerError):
    """Base class of chain store errors."""


class InvalidBlockError(ChainStoreError, ValueError):
    """A block does not fit the stored tree (height, second genesis, ...)."""


class UnknownParentError(InvalidBlockError):
    """A block's parent is not stored; the caller may keep it until the parent arrives."""


class ForkChoiceError(ChainStoreError):
    """The fork choice picked a head that is unknown or off the finalized chain."""


class StateKeyError(ChainStoreError, ValueError):
    """A node state key or value is not allowed (see ``ChainStore.put_state``)."""
