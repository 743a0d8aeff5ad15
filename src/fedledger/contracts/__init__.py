"""Smart contracts on a real EVM: Vyper sources, the chain-backend seam, secp256k1 proofs.

Beside ledger, learning and privacy in the layer map (DESIGN.md): it imports only
crypto-level helpers and ``fedledger.errors``; protocols use it through the assembly
layer's chain host, never directly from a sans-IO node.
"""

from fedledger.contracts.backend import (
    ChainBackend,
    ChainError,
    ContractSource,
    LogRecord,
    Receipt,
)

__all__ = ["ChainBackend", "ChainError", "ContractSource", "LogRecord", "Receipt"]
