"""PoS-BFL records (on chain) and messages (between devices).

On chain (a block's transactions and ``header.extra``):

- a worker-transaction is a ledger ``Transaction`` of kind ``posbfl.worker`` signed by
  the worker, whose payload is a :class:`WorkerUpdate` (the update's ``ModelRef``: content
  id, SHA-256 and sample count; local epochs; the expected reward r_j^w of eq. 1);
- a validator-transaction is a ``Transaction`` of kind ``posbfl.validator`` whose payload
  is a :class:`ValidatorReport` (the worker-transactions whose signatures it verified:
  its verification reward of eq. 2);
- votes are ledger ``Vote`` records signed by validators: ``target`` is the
  worker-transaction's id, ``value`` +1 (positive) or -1 (negative), ``epoch`` the round;
- the block's ``header.extra`` is a :class:`RoundRecord`: the round, the verified votes,
  the aggregated outcome per update and all rewards of eq. 1-3 (and a PoW nonce).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.codec import record
from fedledger.ledger.records import Block, ModelRef, Transaction, Vote
from fedledger.protocols.base import Message

WORKER_TX = "posbfl.worker"
VALIDATOR_TX = "posbfl.validator"
POSITIVE = 1
NEGATIVE = -1

REWARD_WORKER = "worker"
REWARD_VERIFY = "validator-verify"
REWARD_VALIDATE = "validator-validate"
REWARD_MINER = "miner"


@record("posbfl.WorkerUpdate")
@dataclass(frozen=True)
class WorkerUpdate:
    """Payload of a worker-transaction: the local update L_j^w of ``round``."""

    round: int
    model: ModelRef
    epochs: int
    expected_reward: float


@record("posbfl.ValidatorReport")
@dataclass(frozen=True)
class ValidatorReport:
    """Payload of a validator-transaction: ids of the worker-transactions it verified."""

    round: int
    checked: tuple[bytes, ...]


@record("posbfl.Outcome")
@dataclass(frozen=True)
class Outcome:
    """The aggregated votes on one update (by worker-transaction id)."""

    update: bytes
    worker: bytes
    positive: int
    negative: int

    @property
    def accepted(self) -> bool:
        return self.positive >= self.negative


@record("posbfl.Reward")
@dataclass(frozen=True)
class Reward:
    """``amount`` of stake credited to ``address`` for ``kind`` of work (eq. 1-3)."""

    address: bytes
    kind: str
    amount: float


@record("posbfl.RoundRecord")
@dataclass(frozen=True)
class RoundRecord:
    """``header.extra`` of a PoS-BFL block."""

    round: int
    votes: tuple[Vote, ...]
    outcomes: tuple[Outcome, ...]
    rewards: tuple[Reward, ...]
    nonce: int = 0


# ---------------------------------------------------------------- messages


@record("posbfl.WorkerTxMsg")
@dataclass(frozen=True)
class WorkerTxMsg(Message):
    """Worker -> its associated validator, then validator -> the other validators."""

    round: int
    tx: Transaction
    forwarded: bool = False


@record("posbfl.VoteBatch")
@dataclass(frozen=True)
class VoteBatch(Message):
    """Validator -> miners: its signed report, its votes and the worker-transactions voted."""

    round: int
    report: Transaction
    votes: tuple[Vote, ...]
    worker_txs: tuple[Transaction, ...]


@record("posbfl.CandidateBlock")
@dataclass(frozen=True)
class CandidateBlock(Message):
    """Miner -> every device: its signed candidate block of ``round``."""

    round: int
    block: Block
