"""μDFL records (on chain) and messages (between nodes).

On chain:

- a block's ``header.extra`` is a :class:`PocClaim`: the slot, dynasty, the proposer's
  claimed credit (checked against the dynasty's credit table) and the fallback flag of
  rule iii;
- transactions (ledger ``Transaction``, signed by their sender) of kind
  :data:`GLOBAL_TX` (the FL server's global model and its authenticator),
  :data:`MODEL_TX` (a worker's encrypted model reference, the paper's ``swarm_hash``)
  and :data:`FAULT_TX` (the aggregator's evidence that a worker's model failed its
  check);
- :class:`LinkVote` (a validator's signed checkpoint vote, Section VI) and
  :class:`ArbitratorDecision` (the administrator's signed Rule-3 decision).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fedledger.codec import record
from fedledger.ledger.records import Block, BlockHeader, ModelRef, Transaction
from fedledger.protocols.base import Message
from fedledger.protocols.mudfl.dynasty import DynastyRecord

GLOBAL_TX = "mudfl.global"
MODEL_TX = "mudfl.model"
FAULT_TX = "mudfl.fault"
SLASH_TX = "mudfl.slash"
SCORE_TX = "mudfl.score"
LOAD_TX = "mudfl.data"  # the load generator's data transactions (load.py)
EQUIVOCATION = "equivocation"
DOUBLE_VOTE = "double_vote"
FORGED_CREDIT = "forged_credit"
INVALID_PROOF = "invalid_proof"
HEADER_OFFENCES = (EQUIVOCATION, FORGED_CREDIT, INVALID_PROOF)


@record("mudfl.PocClaim")
@dataclass(frozen=True)
class PocClaim:
    """``header.extra`` of a μDFL block; the block at a switch height carries the next
    dynasty's ``record``."""

    slot: int
    dynasty: int
    credit: int
    fallback: bool = False
    record: DynastyRecord | None = None


@record("mudfl.GlobalModel")
@dataclass(frozen=True)
class GlobalModel:
    """The FL server's global model of ``round`` and H(training program, model)."""

    round: int
    model: ModelRef
    authenticator: bytes


@record("mudfl.ModelUpdate")
@dataclass(frozen=True)
class ModelUpdate:
    """A worker's trained model of ``round``: the ciphertext's reference, the plaintext's
    SHA-256 and the model key sealed to the aggregator."""

    round: int
    model: ModelRef
    plain_sha256: bytes
    sealed_key: bytes


@record("mudfl.Fault")
@dataclass(frozen=True)
class Fault:
    """Evidence that ``offender`` misbehaved: ``reason`` about the record ``evidence``."""

    round: int
    offender: bytes
    reason: str
    evidence: bytes


@record("mudfl.Scores")
@dataclass(frozen=True)
class Scores:
    """The aggregator's record of round ``round``: each worker's model accuracy on the
    aggregator's test set (address, thousandths), the s_i of gamma_i = s_i / sum(s) * R;
    a model that failed its checks scores 0."""

    round: int
    scores: tuple[tuple[bytes, int], ...]


@record("mudfl.LoadData")
@dataclass(frozen=True)
class LoadData:
    """A load-generator transaction's payload (:data:`LOAD_TX`): when its emitter made it
    (``ctx.now()``; a localnet's processes share one clock), its number at that emitter
    and padding up to the configured transaction size."""

    created: float
    seq: int
    pad: bytes = b""


@record("mudfl.LinkVote")
@dataclass(frozen=True)
class LinkVote:
    """A checkpoint vote ``source -> target`` (Section VI-A), signed by ``voter``."""

    SIGNER: ClassVar[str] = "voter"

    voter: bytes
    source: bytes
    source_height: int
    target: bytes
    target_height: int
    dynasty: int
    slot: int
    signature: bytes = b""


@record("mudfl.ArbitratorDecision")
@dataclass(frozen=True)
class ArbitratorDecision:
    """Rule 3: the administrator commits ``target`` (linked from ``source``)."""

    SIGNER: ClassVar[str] = "admin"

    admin: bytes
    source: bytes
    source_height: int
    target: bytes
    target_height: int
    slot: int
    signature: bytes = b""


@record("mudfl.SlashEvidence")
@dataclass(frozen=True)
class SlashEvidence:
    """Proof that ``offender`` misbehaved: two signed headers of one slot
    (:data:`EQUIVOCATION`), two signed votes for one target height (:data:`DOUBLE_VOTE`,
    Rule 2), one signed header whose claimed credit is not the dynasty's table entry
    (:data:`FORGED_CREDIT`) or whose PoC proof is over its threshold
    (:data:`INVALID_PROOF`, with the block's transaction ids to recompute ``hc``).
    Anyone holding the chain can check it (contents.evidence_problem)."""

    kind: str
    offender: bytes
    headers: tuple[BlockHeader, ...] = ()
    votes: tuple[LinkVote, ...] = ()
    tx_ids: tuple[bytes, ...] = ()

    @property
    def key(self) -> tuple[str, bytes, int]:
        """One offence: (kind, offender, slot or target height)."""
        if self.kind in HEADER_OFFENCES and self.headers:
            claim = self.headers[0].extra
            return (self.kind, self.offender, getattr(claim, "slot", -1))
        return (self.kind, self.offender, self.votes[0].target_height if self.votes else -1)

    @property
    def dynasty(self) -> int:
        """The dynasty the offence was committed in (-1 if the records name none)."""
        if self.headers:
            return int(getattr(self.headers[0].extra, "dynasty", -1))
        return self.votes[0].dynasty if self.votes else -1


# ---------------------------------------------------------------- messages


@record("mudfl.TxMsg")
@dataclass(frozen=True)
class TxMsg(Message):
    """A signed transaction for the committee's pools."""

    tx: Transaction


@record("mudfl.TxsMsg")
@dataclass(frozen=True)
class TxsMsg(Message):
    """Several signed transactions for the committee's pools in one message (the load
    generator's batch of one timer tick); each is checked on its own."""

    txs: tuple[Transaction, ...]


@record("mudfl.BlockMsg")
@dataclass(frozen=True)
class BlockMsg(Message):
    """A proposer's block of ``slot``, to every node."""

    slot: int
    block: Block


@record("mudfl.VoteMsg")
@dataclass(frozen=True)
class VoteMsg(Message):
    vote: LinkVote


@record("mudfl.DecisionMsg")
@dataclass(frozen=True)
class DecisionMsg(Message):
    decision: ArbitratorDecision


@record("mudfl.TaskMsg")
@dataclass(frozen=True)
class TaskMsg(Message):
    """Server -> aggregator -> clients: round ``round``'s global model, its
    authenticator and (from the aggregator) its public key for sealing model keys."""

    round: int
    model: ModelRef
    authenticator: bytes
    box_key: bytes = b""


@record("mudfl.AggregateMsg")
@dataclass(frozen=True)
class AggregateMsg(Message):
    """Aggregator -> server: the aggregated model of ``round`` from ``count`` updates."""

    round: int
    model: ModelRef
    count: int


@record("mudfl.FinishMsg")
@dataclass(frozen=True)
class FinishMsg(Message):
    """Server -> every node: the last round is done."""

    round: int


@record("mudfl.VotesRequest")
@dataclass(frozen=True)
class VotesRequest(Message):
    """A node that restarted or caught its chain up asks for the checkpoint votes and
    Rule-3 decisions it may have missed: those with a target above ``above``."""

    above: int


@record("mudfl.VotesReply")
@dataclass(frozen=True)
class VotesReply(Message):
    """Signed votes and decisions a node counted (each is checked again on arrival)."""

    votes: tuple[LinkVote, ...]
    decisions: tuple[ArbitratorDecision, ...]


@record("mudfl.BlocksWanted")
@dataclass(frozen=True)
class BlocksWanted(Message):
    """A node missed the parent of block ``tip``: send ``tip`` and its ancestors above
    height ``above`` (fetch.py)."""

    tip: bytes
    above: int


@record("mudfl.BlocksGiven")
@dataclass(frozen=True)
class BlocksGiven(Message):
    """Blocks of the sender's store (oldest first), checked again on arrival."""

    blocks: tuple[Block, ...]


@record("mudfl.TicketMsg")
@dataclass(frozen=True)
class TicketMsg(Message):
    """A client's own VRF ticket for dynasty ``number`` (its proof over
    ``committee_alpha(seed, number)``), sent to the running committee once the seed is
    fixed on chain; the sender is the ticket's owner, checked against its registered key."""

    number: int
    proof: bytes
