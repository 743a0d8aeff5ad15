"""How a sans-IO node talks to a chain: two effects out, two events in.

A node never holds a backend. It returns :class:`ContractDeploy` (deploy the contract
its protocol declared in ``NodeResources.contract``) or :class:`ContractCall` (one
transaction) and its host answers with a :class:`ContractReceipt` (status, gas, the
transaction's logs, the deployed address) to the sender and one :class:`ContractLog`
per log to every node that declared the contract (the subscribers), in log order.
A protocol lists the two effects in ``Protocol.effects`` so a host without a chain
refuses the run before it starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedledger.contracts.backend import ContractSource, LogRecord

BLOCK_MODES = ("fixed", "exponential")


@dataclass(frozen=True)
class ContractSpec:
    """A contract a protocol runs on one chain shared by the experiment.

    source: the Vyper source the initiator deploys (``ContractDeploy``);
    accounts: (address, wei) each account holds at genesis (a dev-chain faucet);
    chain_id: the chain's EIP-155 id; block_time: seconds between blocks, 0 for
    instant blocks (a call is mined at once and answered at the same virtual time);
    block_mode: ``fixed`` (a block every ``block_time`` seconds) or ``exponential``
    (gaps drawn with mean ``block_time``: a PoW chain such as the paper's Geth, ~13 s).
    Every node that declares the same spec shares the one chain and receives its logs.
    """

    source: ContractSource
    accounts: tuple[tuple[str, int], ...] = ()
    chain_id: int = 1337
    block_time: float = 0.0
    block_mode: str = "fixed"

    def __post_init__(self) -> None:
        if not self.block_time >= 0.0:  # also refuses NaN
            raise ValueError(f"block_time must be >= 0 seconds, got {self.block_time}")
        if self.block_mode not in BLOCK_MODES:
            raise ValueError(f"block_mode {self.block_mode!r}: allowed {BLOCK_MODES}")
        if self.chain_id < 1:
            raise ValueError(f"chain_id must be >= 1, got {self.chain_id}")
        bad = [a for a, wei in self.accounts if wei < 0]
        if bad:
            raise ValueError(f"accounts {bad} have a negative balance")


@dataclass(frozen=True)
class ContractDeploy:
    """Effect: deploy the declared contract from ``sender`` (an Ethereum address)."""

    call_id: str
    sender: str
    args: tuple[Any, ...] = ()
    value: int = 0


@dataclass(frozen=True)
class ContractCall:
    """Effect: a transaction ``function(*args)`` to ``address`` from ``sender``."""

    call_id: str
    address: str
    function: str
    args: tuple[Any, ...]
    sender: str
    value: int = 0


@dataclass(frozen=True)
class ContractReceipt:
    """Event to the sender: the outcome of its call (``status`` False: reverted, with
    ``error`` the reason; ``address``: the contract called or deployed)."""

    time: float
    call_id: str
    status: bool
    gas: int
    logs: tuple[LogRecord, ...]
    address: str = ""
    error: str = ""
    block: int = 0


@dataclass(frozen=True)
class ContractLog:
    """Event to every subscriber: one contract log of a mined block."""

    time: float
    log: LogRecord


CHAIN_EFFECTS: tuple[type, ...] = (ContractDeploy, ContractCall)
