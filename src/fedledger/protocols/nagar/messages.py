"""Nagar records (on chain) and messages (between nodes).

On chain: the FL plan is a ``Transaction`` of kind ``nagar.plan`` signed by the requester
(payload :class:`FLPlan`); every device submission is a ``Transaction`` of kind
``nagar.submit`` (payload :class:`Submission`: plan id, step, phase, the blob's
``ModelRef`` with n_k, the local computation time and the epsilon it spent); a block's
``header.extra`` is a :class:`StepRecord` (step, phase, plan id, rewards, PoW nonce).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.codec import record
from fedledger.ledger.records import Block, ModelRef, Transaction
from fedledger.protocols.base import Message
from fedledger.protocols.nagar.vault import Sealed

PLAN_TX = "nagar.plan"
SUBMIT_TX = "nagar.submit"

PLAN, STATS, GRAD, UPDATE = "plan", "stats", "grad", "update"
PHASES = (PLAN, STATS, GRAD, UPDATE)

REWARD_DATA = "data"
REWARD_BLOCK = "block"


@record("nagar.FLPlan")
@dataclass(frozen=True)
class FLPlan:
    """The FL plan, the rule book every node checks work against (spec M2)."""

    requester: bytes
    model: str
    num_weights: int
    initial_weights: bytes  # SHA-256 of the initial flat float32 weights
    rounds: int
    optimizer: str
    step_size: float
    l2: float
    local_epochs: int
    switches: tuple[bool, bool, bool, bool]  # local_step, weighted, s_scaling, a_scaling
    devices: tuple[bytes, ...]  # the checked-in devices (genesis members)
    miners: tuple[bytes, ...]
    devices_per_round: int
    min_updates: int
    dp: str
    dp_norm: str
    dp_clip: float
    epsilon_round: float
    epsilon_total: float
    consensus: str
    pow_difficulty: int
    retarget_every: int
    target_interval: float
    block_size: int
    reward_per_sample: float
    reward_block: float
    initial_stake: float
    he_scheme: str = "none"
    he_threshold: int = 0
    he_committee: tuple[bytes, ...] = ()
    he_key: bytes = b""  # SHA-256 of the committee's public key (secure.public_digest)
    max_sample_rate: float = 1e6  # n_k / t_local above this is implausible (BlockFL)
    local_batch_size: int = 0  # FedAvg's mini-batch (0: the train settings')
    dane: tuple[float, float, int] = (1.0, 0.0, 20)  # DANE's eta, mu, local steps
    vault_threshold: int = 0  # consortium mode: blobs sealed, key shared t of the miners


@record("nagar.Submission")
@dataclass(frozen=True)
class Submission:
    """A device's vector for one step: gradient sum, update or statistics (by ``phase``)."""

    plan_id: bytes
    step: int
    phase: str
    model: ModelRef
    t_local: float
    epsilon: float
    vault: Sealed | None = None  # consortium mode: where the sealed blob's parts are


@record("nagar.Reward")
@dataclass(frozen=True)
class Reward:
    address: bytes
    kind: str
    amount: float


@record("nagar.StepRecord")
@dataclass(frozen=True)
class StepRecord:
    """``header.extra`` of a Nagar block."""

    step: int
    phase: str
    plan_id: bytes
    rewards: tuple[Reward, ...]
    nonce: int = 0


@record("nagar.TxMsg")
@dataclass(frozen=True)
class TxMsg(Message):
    """Device -> its associated miner (or requester -> miners); miner -> miners forwarded."""

    step: int
    tx: Transaction
    forwarded: bool = False


@record("nagar.PartialMsg")
@dataclass(frozen=True)
class PartialMsg(Message):
    """Committee member -> devices: its partial decryption (with proof) of the canonical
    aggregate of ``step`` (``PartialDecryption.to_bytes``)."""

    step: int
    blob: bytes


@record("nagar.PartialRequest")
@dataclass(frozen=True)
class PartialRequest(Message):
    """A restarted device -> committee: resend the partials already published for these
    steps (never a new decryption)."""

    steps: tuple[int, ...]


@record("nagar.CandidateMsg")
@dataclass(frozen=True)
class CandidateMsg(Message):
    """Miner -> every node: its sealed (PoW) or elected (PoS) candidate block."""

    step: int
    block: Block


@record("nagar.VaultMsg")
@dataclass(frozen=True)
class VaultMsg(Message):
    """Device -> a storage member (miner), consortium mode: the parts of a sealed blob the
    member keeps (its ciphertext chunks and its key share)."""

    step: int
    parts: tuple[bytes, ...]
