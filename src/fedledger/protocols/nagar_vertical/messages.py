"""Messages of ``nagar-vertical``: PSI, encrypted scores and residuals, masked gradients,
and the chain's blocks and signed results (:mod:`.ledger`)."""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.codec import record
from fedledger.ledger.records import Block, Transaction
from fedledger.protocols.base import Message


@record("nagar_vertical.PsiBlinded")
@dataclass(frozen=True)
class PsiBlinded(Message):
    """Party -> party: its ids, each H(id)^key, sorted (PSI message 1)."""

    points: tuple[bytes, ...]


@record("nagar_vertical.PsiReblinded")
@dataclass(frozen=True)
class PsiReblinded(Message):
    """Party -> party: the receiver's message 1 raised to the sender's key, in order."""

    points: tuple[bytes, ...]


@record("nagar_vertical.EncScores")
@dataclass(frozen=True)
class EncScores(Message):
    """A -> B: ``[[u]]`` for the rows of ``step`` (phase "train") or the test rows ("eval")."""

    phase: str
    step: int
    cipher: bytes


@record("nagar_vertical.EncResidual")
@dataclass(frozen=True)
class EncResidual(Message):
    """B -> A: ``[[u + v - 2y]]`` for the rows of ``step``."""

    step: int
    cipher: bytes


@record("nagar_vertical.MaskedCipher")
@dataclass(frozen=True)
class MaskedCipher(Message):
    """Party -> C: a masked encrypted gradient ("train") or masked test scores ("eval")."""

    phase: str
    step: int
    cipher: bytes


@record("nagar_vertical.Opening")
@dataclass(frozen=True)
class Opening(Message):
    """C -> the party that sent the masked cipher: its decryption (still masked)."""

    phase: str
    step: int
    values: bytes


@record("nagar_vertical.PartialOpening")
@dataclass(frozen=True)
class PartialOpening(Message):
    """Key holder -> the party that sent the masked cipher: its partial decryption with a
    Chaum-Pedersen proof (threshold Paillier; the party combines t verified ones)."""

    phase: str
    step: int
    partial: bytes


@record("nagar_vertical.LedgerBlock")
@dataclass(frozen=True)
class LedgerBlock(Message):
    """Sequencer -> every other party: a block of the run's chain (the plan block or a
    round's results), to verify and store (:mod:`.ledger`)."""

    block: Block


@record("nagar_vertical.ResultTx")
@dataclass(frozen=True)
class ResultTx(Message):
    """Party -> sequencer: its signed result of a round (a ``nagar_parties.result``)."""

    tx: Transaction
