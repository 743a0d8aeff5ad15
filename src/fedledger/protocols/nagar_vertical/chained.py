"""What every ``nagar-vertical`` node shares, in any mode: its copy of the chain, the plan
check before any work, the blocks and results it handles, and a stall watchdog.

A node checks the plan on chain before it works: a party starts PSI only once it has
accepted the plan block, and the coordinator and key holders decrypt nothing before (a
work message before the plan is refused as ``unknown_plan``). The watchdog: a node arms
``stall`` on ``Start`` for :data:`STALL_SECONDS`; when it fires and the node has made no
progress since (plan, round on chain, steps, decryptions), the node halts with the reason
(what it waits for, and the last plan it refused), else it arms it again.
"""

from __future__ import annotations

from typing import Any

from fedledger.protocols.base import Effect, EmitMetric, Halt, MessageReceived, SetTimer, TimerFired
from fedledger.protocols.kit import KitNode, handles
from fedledger.protocols.nagar_vertical.ledger import PartyLedger, PartyResult, RoundRecord
from fedledger.protocols.nagar_vertical.messages import LedgerBlock, ResultTx
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.plan import ModeRules, PartyPlan

STALL = "stall"
#: virtual (or wall-clock) seconds without progress after which a node gives up
STALL_SECONDS = 300.0


class ChainedNode(KitNode[NagarVerticalParams]):
    """A node with the run's chain (``self.ledger``) and the stall watchdog."""

    ledger: PartyLedger

    def init_ledger(
        self, own: PartyPlan, reporters: tuple[str, ...], rules: ModeRules | None = None
    ) -> None:
        """Open the ledger with the plan this node expects (built from its own params and
        data) and the roles whose signed results each round block holds."""
        self.ledger = PartyLedger(self.setup, own, self.gate, reporters, rules)
        self._seen: tuple[Any, ...] = ()

    def start_ledger(self, now: float) -> list[Effect]:
        effects = self.ledger.start(now)
        self._seen = self.progress()
        return [*effects, SetTimer(STALL, STALL_SECONDS)]

    # ------------------------------------------------------------ hooks

    def progress(self) -> tuple[Any, ...]:
        return (self.ledger.plan_id, self.ledger.round)

    def waiting_for(self) -> str:
        if self.ledger.plan is None:
            return f"a valid plan (last refused: {self.ledger.last_refusal()})"
        return f"round {self.ledger.round + 1} of {self.ledger.plan.rounds}"

    def plan_accepted(self) -> list[Effect]:
        return []

    def block_stored(self, rec: RoundRecord) -> list[Effect]:
        return []

    def decryptions(self, results: tuple[PartyResult, ...], final: bool) -> int:
        """The sequencer's count of decryptions up to the end of a round."""
        return sum(r.openings for r in results)

    # ------------------------------------------------------------ handlers

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key != STALL:
            return []
        now = self.progress()
        if now != self._seen:
            self._seen = now
            return [SetTimer(STALL, STALL_SECONDS)]
        return self.halt(f"stalled for {STALL_SECONDS:g} s waiting for {self.waiting_for()}")

    @handles(LedgerBlock)
    def on_ledger_block(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, LedgerBlock)
        had = self.ledger.plan is not None
        rec = self.ledger.on_block(event.sender, msg.block)
        out: list[Effect] = [self.ledger.block_metric(rec)]
        if not had and self.ledger.plan is not None:
            out += self.plan_accepted()
        return [*out, *self.block_stored(rec)]

    @handles(ResultTx)
    def on_result_tx(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, ResultTx)
        self.ledger.on_result(event.sender, msg.tx)
        return self.seal()

    def seal(self) -> list[Effect]:
        """The sequencer seals what it can; a hook sees the last block sealed."""
        before = self.ledger.round
        effects = self.ledger.seal(self.now, self.decryptions)
        if self.ledger.round == before:
            return effects
        return [*effects, *self.block_stored(self.ledger.records[self.ledger.round])]

    def halt(self, reason: str = "done", extra: tuple[EmitMetric, ...] = ()) -> list[Effect]:
        epochs = self.setup.horizon.length
        return [
            *extra,
            *self.ledger.refusal_metrics(epochs),
            *self.gate.new_metrics(epochs),
            Halt(reason),
        ]
