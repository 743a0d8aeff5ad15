"""The ``committee`` decryptor: t of m key holders instead of Hardy et al.'s coordinator.

A party sends its masked cipher to every holder. Each holder answers with its partial
decryption and a Chaum-Pedersen proof (:mod:`fedledger.privacy.he.threshold`). The party
verifies each partial, and once it holds ``t`` valid ones it combines them itself, so no
single node ever sees even a masked plaintext. Fewer than ``t`` holders learn nothing.

A holder opens each (party, phase, step) at most once (``repeated_decryption``), serves
only the two parties (``not_a_party``) and nothing before the plan is on its chain
(``unknown_plan``); it halts once the last round's block is. The fault ``wrong_partial``
makes a holder answer with the partial of a wrong share: its proof fails, the party
counts ``bad_partial`` and waits for the others, so with ``t < m`` the run completes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import (
    KeyShare,
    PartialDecryption,
    ThresholdPublicKey,
    combine,
    partial_decrypt,
    verify_partial,
)
from fedledger.protocols.base import Effect, EmitMetric, MessageReceived, NodeSetup, Send, Start
from fedledger.protocols.kit import handles
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.nagar_vertical.chained import ChainedNode
from fedledger.protocols.nagar_vertical.hemat import EncArray, Opened
from fedledger.protocols.nagar_vertical.ledger import RoundRecord
from fedledger.protocols.nagar_vertical.messages import MaskedCipher, PartialOpening
from fedledger.protocols.nagar_vertical.node_ids import (  # noqa: F401  (re-exported)
    HOLDER_PREFIX,
    holder_ids,
    holder_index,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.vplan import REPORTERS, vertical_plan, vertical_rules
from fedledger.protocols.nagar_vertical.wire import cipher_from
from fedledger.seeding import derive_seed

ROLE_HOLDER = "key_holder"
WRONG_PARTIAL = "wrong_partial"
MAX_STEP = 1 << 20


@dataclass
class Collector:
    """A party's outstanding requests to the committee and the partials received."""

    public: ThresholdPublicKey
    gate: Gate
    pending: dict[tuple[str, int], tuple[EncArray, dict[int, PartialDecryption]]] = field(
        default_factory=dict
    )

    def request(self, phase: str, step: int, masked: EncArray) -> None:
        self.pending[(phase, step)] = (masked, {})

    def receive(self, sender: str, msg: PartialOpening) -> tuple[str, int, Opened] | None:
        """The opened values once ``t`` valid partials are in; None before. Refusals raise
        the gate's counted :class:`~fedledger.protocols.kit.gate.Reject`."""
        index = holder_index(sender, self.public.m)
        if index is None:
            raise self.gate.fail("not_a_holder", f"partial from {sender}")
        entry = self.pending.get((msg.phase, msg.step))
        if entry is None:
            raise self.gate.fail("wrong_step", f"partial for {msg.phase!r} step {msg.step}")
        masked, partials = entry
        if index in partials:
            raise self.gate.fail("repeated_partial", f"holder {index}")
        cts = [int(c) for c in masked.values.flat]
        try:
            part = PartialDecryption.from_bytes(msg.partial, self.public.n)
        except HeError as exc:
            raise self.gate.fail("bad_partial", str(exc)) from None
        if part.index != index or not verify_partial(self.public, cts, part):
            raise self.gate.fail("bad_partial", f"holder {index}: proof of decryption fails")
        partials[index] = part
        if len(partials) < self.public.t:
            return None
        del self.pending[(msg.phase, msg.step)]
        values = np.empty(len(cts), dtype=object)
        values[:] = combine(self.public, cts, list(partials.values()), verify=False)
        return msg.phase, msg.step, Opened(masked.scale, values.reshape(masked.shape))


class KeyHolderNode(ChainedNode):
    """One committee member: partially decrypts each masked cipher once, with a proof,
    once the plan is on its chain; halts when the last round's block is."""

    def __init__(
        self,
        setup: NodeSetup[NagarVerticalParams],
        public: ThresholdPublicKey,
        share: KeyShare,
        parties: tuple[str, str],
    ) -> None:
        super().__init__(setup)
        self.public = public
        self.share = share
        if WRONG_PARTIAL in setup.faults:  # a lying holder: another (wrong) exponent
            self.share = KeyShare(share.index, share.secret + 1)
        self.parties = parties
        self.rng = SeededRandom(derive_seed(setup.seed, "nagar-vertical", setup.node_id), "pd")
        self.served: set[tuple[str, str, int]] = set()
        self.init_ledger(vertical_plan(setup), REPORTERS, vertical_rules)

    def on_start(self, event: Start) -> list[Effect]:
        out = self.start_ledger(event.time)
        return self.block_stored(None) if self.ledger.done else out

    def progress(self) -> tuple[object, ...]:
        return (*super().progress(), len(self.served))

    def block_stored(self, rec: RoundRecord | None) -> list[Effect]:
        if not self.ledger.done:
            return []
        epochs = self.setup.horizon.length
        return self.halt(extra=(EmitMetric("decryptions", float(len(self.served)), epochs),))

    @handles(MaskedCipher)
    def on_masked(self, event: MessageReceived) -> list:  # type: ignore[type-arg]
        msg = event.message
        assert isinstance(msg, MaskedCipher)
        if event.sender not in self.parties:
            raise self.gate.fail("not_a_party", f"masked cipher from {event.sender}")
        self.ledger.require_plan("a partial decryption")
        if msg.phase not in ("train", "eval") or not 0 <= msg.step < MAX_STEP:
            raise self.gate.fail("wrong_step", f"{msg.phase!r} step {msg.step}")
        key = (event.sender, msg.phase, msg.step)
        if key in self.served:
            raise self.gate.fail("repeated_decryption", f"{key}")
        try:
            arr = cipher_from(msg.cipher, self.public.n)
        except HeError as exc:
            raise self.gate.fail("bad_cipher", str(exc)) from None
        self.served.add(key)
        part = partial_decrypt(self.public, self.share, [int(c) for c in arr.values.flat], self.rng)
        return [
            Send(event.sender, PartialOpening(msg.phase, msg.step, part.to_bytes(self.public.n)))
        ]
