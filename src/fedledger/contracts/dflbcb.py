"""A typed client for the DFLBCB state contract (``dflbcb_state.vy``) over any backend.

It turns frozen Python records into the contract's ABI arguments, so a caller (a test,
the simulator's chain host, a benchmark) never builds tuples by hand and the stage enum,
the request layout and the proof order live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

from fedledger.contracts.backend import ChainBackend, ContractSource, Receipt
from fedledger.contracts.eth import EcdsaSig, ScoreEntry, SignedRequest, checksum

SOURCE = ContractSource("dflbcb_state", Path(__file__).with_name("dflbcb_state.vy"))
POINT = 10**18


class Stage(IntEnum):
    ELECT = 0
    PLEDGE = 1
    COMMIT = 2
    WORK = 3


class Kind(IntEnum):
    """Reward and penalty kinds: the rows of the paper's Section 5.1 table."""

    WORK = 1
    SUBMIT = 3
    MASTER = 4
    SILENT = 5
    ALIVE = 6
    NO_MODEL = 7
    LOW_QUALITY = 8
    QUALITY = 9


class Skip(IntEnum):
    """Why the contract skipped a participant's request (RequestSkipped.reason)."""

    UNREGISTERED = 1
    BAD_SIGNATURE = 2
    DUPLICATE = 3
    SHORT_POOL = 4
    BELOW_MINIMUM = 5
    NOT_PARTICIPANT = 6


@dataclass(frozen=True)
class ContractParams:
    """The offline-agreed parameters ``initialize`` stores and broadcasts (Section 3.2)."""

    p_bps: int = 3000
    elect_ratio_bps: int = 2000
    elect_times: int = 5
    min_elect_pledge: int = 10**18
    min_pledge: int = 10**17
    malicious_permille: int = 500
    linear_bps: int = 800
    exp_unit: int = 10**15
    gas_price: int = 10**9
    test_set_hash: bytes = b"\x00" * 32
    layout_hash: bytes = b"\x00" * 32
    dp_eps_milli: int = 0
    dp_delta_exp: int = 5

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.p_bps, self.elect_ratio_bps, self.elect_times, self.min_elect_pledge,
            self.min_pledge, self.malicious_permille, self.linear_bps, self.exp_unit,
            self.gas_price, self.test_set_hash, self.layout_hash, self.dp_eps_milli,
            self.dp_delta_exp,
        )


@dataclass(frozen=True)
class Genesis:
    """What the project initiator passes to ``initialize``."""

    committee: tuple[str, ...]
    model_hash: bytes
    params: ContractParams = field(default_factory=ContractParams)
    curve_x: tuple[int, ...] = (0, 500, 800, 900, 950)
    curve_y: tuple[int, ...] = (0, 10**17, 5 * 10**17, 10**18, 2 * 10**18)
    prize_fund: int = 0


def _sigs(sigs: list[EcdsaSig]) -> list[tuple[int, bytes, bytes]]:
    return [s.as_tuple() for s in sigs]


class DflbcbContract:
    """One deployed state contract on one backend."""

    def __init__(self, backend: ChainBackend, address: str) -> None:
        self.backend = backend
        self.address = checksum(address)

    @classmethod
    def deploy(cls, backend: ChainBackend, initiator: str) -> DflbcbContract:
        receipt = backend.deploy(SOURCE, initiator)
        return cls(backend, receipt.contract_address)

    def _tx(self, sender: str, fn: str, *args: Any, value: int = 0) -> Receipt:
        return self.backend.transact(sender, self.address, fn, args, value=value)

    def view(self, fn: str, *args: Any) -> Any:
        return self.backend.call(self.address, fn, args)

    # --- start and funds
    def initialize(self, initiator: str, g: Genesis) -> Receipt:
        return self._tx(
            initiator, "initialize", [checksum(c) for c in g.committee], g.model_hash,
            g.params.as_tuple(), list(g.curve_x), list(g.curve_y), value=g.prize_fund,
        )

    def register(self, node: str, value: int) -> Receipt:
        return self._tx(node, "register", value=value)

    def deposit(self, node: str, value: int) -> Receipt:
        return self._tx(node, "deposit", value=value)

    def withdraw(self, node: str, amount: int) -> Receipt:
        return self._tx(node, "withdraw", amount)

    # --- stages
    def submit_elect(
        self, sender: str, members: list[str], cands: list[SignedRequest], result_hash: bytes,
        sigs: list[EcdsaSig],
    ) -> Receipt:
        return self._tx(
            sender, "submit_elect", [checksum(m) for m in members],
            [c.as_tuple() for c in cands], result_hash, _sigs(sigs),
        )

    def submit_pledge(
        self, sender: str, reqs: list[SignedRequest], result_hash: bytes, sigs: list[EcdsaSig]
    ) -> Receipt:
        return self._tx(
            sender, "submit_pledge", [r.as_tuple() for r in reqs], result_hash, _sigs(sigs)
        )

    def submit_commit(
        self, sender: str, subs: list[SignedRequest], result_hash: bytes, sigs: list[EcdsaSig]
    ) -> Receipt:
        return self._tx(
            sender, "submit_commit", [r.as_tuple() for r in subs], result_hash, _sigs(sigs)
        )

    def submit_work(
        self, sender: str, scores: list[ScoreEntry], global_hash: bytes, global_acc: int,
        alive: list[str], result_hash: bytes, sigs: list[EcdsaSig],
    ) -> Receipt:
        return self._tx(
            sender, "submit_work", [s.as_tuple() for s in scores], global_hash, global_acc,
            [checksum(a) for a in alive], result_hash, _sigs(sigs),
        )

    # --- state
    def iteration(self) -> int:
        return int(self.view("it"))

    def stage(self) -> Stage:
        return Stage(int(self.view("stage")))

    def committee(self) -> list[str]:
        return list(self.view("committee_members"))

    def pool(self, node: str) -> int:
        return int(self.view("pool", checksum(node)))
