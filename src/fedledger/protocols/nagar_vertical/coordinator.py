"""Hardy et al.'s coordinator C: the decryptor, and in coordinator mode the requester and
the sequencer of the run's chain (it signs the plan and seals every round's block).

C decrypts each masked cipher once and returns it to its sender, but only once the plan
is on its chain (it sealed it itself on ``Start``). It seals round ``r`` once both
parties' signed results of ``r`` are in, recording the decryptions it made for the steps
those results cover (and the evaluation in the last round), and halts after the last.
"""

from __future__ import annotations

from fedledger.privacy.he.errors import HeError
from fedledger.protocols.base import Effect, EmitMetric, MessageReceived, NodeSetup, Send, Start
from fedledger.protocols.kit import handles
from fedledger.protocols.nagar_vertical.chained import ChainedNode
from fedledger.protocols.nagar_vertical.hemat import KeyHolder
from fedledger.protocols.nagar_vertical.ledger import PartyResult, RoundRecord
from fedledger.protocols.nagar_vertical.messages import MaskedCipher, Opening
from fedledger.protocols.nagar_vertical.node_ids import A_ID, B_ID
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.party import MAX_STEP, Shared
from fedledger.protocols.nagar_vertical.vplan import REPORTERS, vertical_plan, vertical_rules
from fedledger.protocols.nagar_vertical.wire import cipher_from, opened_bytes


class Coordinator(ChainedNode):
    """Hardy et al.'s C: decrypts each masked cipher once and returns it to its sender."""

    def __init__(self, setup: NodeSetup[NagarVerticalParams], shared: Shared) -> None:
        super().__init__(setup)
        assert shared.private_key is not None, "coordinator mode deals a whole key"
        self.key = KeyHolder(shared.private_key)
        self.n = shared.n
        self.opened: set[tuple[str, str, int]] = set()
        self.init_ledger(vertical_plan(setup), REPORTERS, vertical_rules)

    def on_start(self, event: Start) -> list[Effect]:
        out = self.start_ledger(event.time)
        return self.block_stored(None) if self.ledger.done else out

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), len(self.opened))

    @handles(MaskedCipher)
    def on_masked(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, MaskedCipher)
        if event.sender not in (A_ID, B_ID):
            raise self.gate.fail("not_a_party", f"masked cipher from {event.sender}")
        self.ledger.require_plan("a decryption")
        if msg.phase not in ("train", "eval") or not 0 <= msg.step < MAX_STEP:
            raise self.gate.fail("wrong_step", f"{msg.phase!r} step {msg.step}")
        if msg.phase == "eval" and (event.sender != B_ID or msg.step != 0):
            raise self.gate.fail("wrong_step", f"eval opening for {event.sender}")
        key = (event.sender, msg.phase, msg.step)
        if key in self.opened:
            raise self.gate.fail("repeated_decryption", f"{key}")
        try:
            arr = cipher_from(msg.cipher, self.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        self.opened.add(key)
        opening = self.key.open(arr)
        return [Send(event.sender, Opening(msg.phase, msg.step, opened_bytes(opening, self.n)))]

    def decryptions(self, results: tuple[PartyResult, ...], final: bool) -> int:
        """The decryptions C made for the steps the round's results cover (and, in the
        last round, the evaluation)."""
        steps = results[0].steps if results else 0
        train = sum(1 for _, phase, step in self.opened if phase == "train" and step < steps)
        return train + (sum(1 for _, phase, _ in self.opened if phase == "eval") if final else 0)

    def block_stored(self, rec: RoundRecord | None) -> list[Effect]:
        if not self.ledger.done:
            return []
        epochs = self.setup.horizon.length
        count = EmitMetric("decryptions", float(self.key.decryptions), epochs)
        return self.halt(extra=(count,))
