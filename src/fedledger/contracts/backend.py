"""The chain-backend seam: deploy, transact, call, logs, mine.

A backend is one Ethereum chain seen by one process. The in-process backend
(:mod:`fedledger.contracts.pyevm`, py-evm through titanoboa) executes a transaction at the
current block and ``mine`` closes that block; the JSON-RPC backend
(:mod:`fedledger.contracts.rpc`, any node through web3) does the same over the wire.
Results come back as plain frozen records so no caller sees a backend's types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fedledger.errors import FedledgerError

INTRINSIC_GAS = 21_000


class ChainError(FedledgerError, RuntimeError):
    """A backend could not do what was asked (unknown contract, bad function, no funds)."""


@dataclass(frozen=True)
class LogRecord:
    """One decoded contract event; ``args`` keeps the ABI order of the event's fields."""

    address: str
    event: str
    args: tuple[tuple[str, Any], ...]
    block: int
    tx_index: int

    def arg(self, name: str) -> Any:
        for key, value in self.args:
            if key == name:
                return value
        raise KeyError(f"event {self.event} has no field {name!r}; fields: {self.fields()}")

    def fields(self) -> list[str]:
        return [key for key, _ in self.args]


@dataclass(frozen=True)
class Receipt:
    """The outcome of one transaction. ``gas_used`` includes the intrinsic and calldata gas."""

    fn: str
    status: bool
    gas_used: int
    logs: tuple[LogRecord, ...]
    block: int
    tx_index: int
    error: str = ""
    contract_address: str = ""
    value: Any = None


@dataclass(frozen=True)
class ContractSource:
    """A Vyper source file to compile; ``name`` is how receipts and errors refer to it."""

    name: str
    path: Path

    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def calldata_gas(data: bytes) -> int:
    """EIP-2028 calldata cost: 4 gas per zero byte, 16 per non-zero byte."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


class ChainBackend(Protocol):
    """What a protocol's chain host needs from a chain."""

    @property
    def chain_id(self) -> int: ...

    @property
    def block_number(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    def fund(self, address: str, wei: int) -> None:
        """Sets an account's balance (a dev-chain faucet; a live node refuses)."""
        ...

    def balance(self, address: str) -> int: ...

    def deploy(
        self, source: ContractSource, sender: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Receipt: ...

    def transact(
        self, sender: str, address: str, fn: str, args: tuple[Any, ...] = (), value: int = 0
    ) -> Receipt:
        """Runs ``fn`` as a transaction in the current block; a revert gives status False."""
        ...

    def call(self, address: str, fn: str, args: tuple[Any, ...] = ()) -> Any:
        """A read-only call; nothing is recorded."""
        ...

    def logs(
        self, address: str, from_block: int = 0, to_block: int | None = None
    ) -> list[LogRecord]: ...

    def mine(self, timestamp: int | None = None) -> int:
        """Closes the current block, opens the next at ``timestamp`` (seconds); its number."""
        ...
