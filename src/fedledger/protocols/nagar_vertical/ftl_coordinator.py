"""Transfer mode's decryptors (:mod:`.ftl_node` has the parties and the message flow):
coordinator C, or the committee's key holders (:class:`TransferHolder`).

C is the plan's requester and sequencer and holds the one Paillier key. It opens each
masked cipher once (``repeated_decryption``), only from A and B (``not_a_party``): A's
and B's gradients of steps 0..epochs-1 and B's scores of steps 0..epochs, nothing before
the plan is on chain (``unknown_plan``), and halts once the last round is on chain.
"""

from __future__ import annotations

from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.threshold import KeyShare, ThresholdPublicKey
from fedledger.protocols.base import EmitMetric, MessageReceived, NodeSetup, Send, Start
from fedledger.protocols.kit import handles
from fedledger.protocols.nagar_vertical.chained import ChainedNode
from fedledger.protocols.nagar_vertical.committee import KeyHolderNode
from fedledger.protocols.nagar_vertical.ftl_party import A_ID, B_ID, Effects, FtlShared
from fedledger.protocols.nagar_vertical.hemat import KeyHolder
from fedledger.protocols.nagar_vertical.ledger import RoundRecord
from fedledger.protocols.nagar_vertical.messages import MaskedCipher, Opening
from fedledger.protocols.nagar_vertical.mode_plans import (
    TRANSFER_REPORTERS,
    transfer_plan,
    transfer_rules,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.wire import cipher_from, opened_bytes


class FtlCoordinator(ChainedNode):
    """C: the plan's requester and sequencer; opens each masked cipher once and returns it
    to the party that masked it; halts once the last round is on chain."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: FtlShared) -> None:
        super().__init__(setup)
        self.key = KeyHolder(shared.private_key)
        self.n = shared.n
        self.epochs = setup.horizon.length
        self.opened: set[tuple[str, str, int]] = set()
        self.init_ledger(transfer_plan(setup), TRANSFER_REPORTERS, transfer_rules)

    def on_start(self, event: Start) -> Effects:
        out = self.start_ledger(event.time)
        return self.block_stored(None) if self.ledger.done else out

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), len(self.opened))

    def block_stored(self, rec: RoundRecord | None) -> Effects:
        if not self.ledger.done:
            return []
        count = EmitMetric("decryptions", float(self.key.decryptions), self.epochs)
        return self.halt(extra=(count,))

    @handles(MaskedCipher)
    def on_masked(self, event: MessageReceived) -> Effects:
        msg = event.message
        assert isinstance(msg, MaskedCipher)
        if event.sender not in (A_ID, B_ID):
            raise self.gate.fail("not_a_party", f"masked cipher from {event.sender}")
        self.ledger.require_plan("a decryption")
        train = msg.phase == "train" and 0 <= msg.step < self.epochs
        evaluate = msg.phase == "eval" and event.sender == B_ID and 0 <= msg.step <= self.epochs
        if not (train or evaluate):
            raise self.gate.fail("wrong_step", f"{msg.phase!r} step {msg.step} of {event.sender}")
        key = (event.sender, msg.phase, msg.step)
        if key in self.opened:
            raise self.gate.fail("repeated_decryption", f"{key}")
        try:
            arr = cipher_from(msg.cipher, self.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        self.opened.add(key)
        reply = Opening(msg.phase, msg.step, opened_bytes(self.key.open(arr), self.n))
        return [Send(event.sender, reply)]


class TransferHolder(KeyHolderNode):
    """A committee member in transfer mode: vertical mode's key holder (one proven partial
    decryption per masked cipher, once) that checks the transfer plan instead."""

    def __init__(
        self, setup: NodeSetup[NagarVerticalParams], public: ThresholdPublicKey, share: KeyShare
    ) -> None:
        super().__init__(setup, public, share, (A_ID, B_ID))
        self.init_ledger(transfer_plan(setup), TRANSFER_REPORTERS, transfer_rules)
