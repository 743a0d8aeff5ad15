"""The permissioned chain of Nagar's party modes: the plan in block 1, one block per round.

Every party keeps the chain (``NodeServices.chains[MAIN]``; a node built without stores,
as in unit tests, keeps it in memory). One party is the **sequencer**, named in the plan:
it alone seals blocks, each signed by it and chained to its own previous block. A
permissioned run with fixed, known parties needs no leader election or fork choice: the
parties verify, the sequencer orders, and a sequencer that lies is caught by the
parties' own signed records (it cannot forge them) or by omission (a block without a
party's result is refused by that party).

- height 1: the requester's signed plan (``nagar_parties.plan``), header ``extra`` a
  :class:`RoundRecord` of round 0 naming the plan id;
- height ``r + 1``: round ``r``: one signed ``nagar_parties.result`` transaction per
  reporting role (a :class:`PartyResult`: the digest of that party's own weights, the
  steps done, the accuracy it measured, the openings it received), ``extra`` a
  :class:`RoundRecord` with the sequencer's count of decryptions and ``final`` on the last.

Refusals (counted in the node's gate, never raised past the node): ``not_the_sequencer``
(a block or result routed by or to the wrong node), ``unknown_plan`` (no plan yet, or a
record naming another plan id), ``wrong_round``, ``bad_block`` (not a block, a wrong
``extra``), ``bad_result`` (a result that is missing, altered, of a role that does not
report, signed by another party, or whose steps disagree), ``repeated_result``,
``repeated_block``, plus the plan gate's and the ledger verifier's reasons.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedledger.codec import record
from fedledger.ledger.records import Block, Transaction, record_id, short, sign
from fedledger.ledger.store import ChainStore
from fedledger.protocols.base import Effect, EmitMetric, NodeSetup, Send
from fedledger.protocols.kit.gate import REFUSED, Gate
from fedledger.protocols.nagar_vertical.messages import LedgerBlock, ResultTx
from fedledger.protocols.nagar_vertical.plan import (
    UNKNOWN_PLAN,
    ModeRules,
    PartyPlan,
    PlanGate,
    plan_id,
    sign_plan,
)
from fedledger.protocols.resources import MAIN

RESULT_TX = "nagar_parties.result"
NO_ACCURACY = -1.0
#: metric: the height of a block this node appended (the audit compares it with the store)
BLOCK_METRIC = "block"
PLAN_REFUSED = "plan_refused"


@record("nagar_parties.PartyResult")
@dataclass(frozen=True)
class PartyResult:
    """One party's signed result of a round."""

    plan_id: bytes
    round: int
    role: str
    steps: int  # training steps done so far
    weights: bytes  # SHA-256 of this party's own weights after the round (weights_digest)
    accuracy: float  # what this party measured (NO_ACCURACY: nothing this round)
    openings: int  # decryptions this party received so far


@record("nagar_parties.RoundRecord")
@dataclass(frozen=True)
class RoundRecord:
    """A block's ``header.extra``: its plan, round (0: the plan block), the decryptions
    made up to the end of the round as the sequencer counts them, and the last round."""

    plan_id: bytes
    round: int
    decryptions: int
    final: bool


def weights_digest(weights: np.ndarray) -> bytes:
    """SHA-256 of the weights as little-endian float64."""
    return hashlib.sha256(np.asarray(weights, dtype="<f8").tobytes()).digest()


#: The sequencer's count of decryptions up to the end of a round: (its results, final).
DecryptionCount = Callable[[tuple[PartyResult, ...], bool], int]


class PartyLedger:
    """One node's view of the run's chain: the plan check, results, blocks.

    ``own``: the plan this node expects (from its own params and data); ``reporters``:
    the roles whose signed result each round block must hold; ``rules``: the mode's own
    plan rules. A node calls :meth:`start` on ``Start``, :meth:`on_block` for every
    :class:`LedgerBlock`, :meth:`require_plan` before any work, :meth:`report` at the end
    of each round it reports; the sequencer also :meth:`on_result` and :meth:`seal`.
    """

    def __init__(
        self,
        setup: NodeSetup,  # type: ignore[type-arg]
        own: PartyPlan,
        gate: Gate,
        reporters: tuple[str, ...],
        rules: ModeRules | None = None,
    ) -> None:
        svc = setup.services
        self.setup = setup
        self.keys = svc.keys
        self.address = svc.keys.address
        self.gate = gate
        self.own = own
        self.reporters = reporters
        self.plans = PlanGate(own, gate, rules)
        self.role = own.role_of(self.address)
        self.is_sequencer = own.sequencer == self.address
        self.store = svc.chains.get(MAIN) or _memory_chain(svc.genesis)
        self.sequencer_id = svc.node_of(own.sequencer) or ""
        self.peers = tuple(
            sorted(n for _, a in own.parties if a != self.address and (n := svc.node_of(a)))
        )
        self.plan: PartyPlan | None = None
        self.plan_id = b""
        self.round = 0  # the last round on chain
        self.records: dict[int, RoundRecord] = {}
        self.pool: dict[int, dict[str, Transaction]] = {}  # sequencer: results by round
        self.sent: dict[int, bytes] = {}  # this node's own result ids by round
        self._refusals_emitted = 0

    # ------------------------------------------------------------ state

    @property
    def done(self) -> bool:
        """The last round's block is on this node's chain."""
        return self.plan is not None and self.round >= self.plan.rounds

    def require_plan(self, what: str) -> PartyPlan:
        """The accepted plan; work (``what``) before one is refused as ``unknown_plan``."""
        if self.plan is None:
            raise self.gate.fail(UNKNOWN_PLAN, f"{what} before a plan is on chain")
        return self.plan

    def keep(self, key: str, data: bytes) -> None:
        """Keep a private value with the chain (``node_state``): what a restart needs."""
        self.store.put_state(f"nagar_parties/{key}", data)

    def kept(self, key: str) -> bytes | None:
        return self.store.get_state(f"nagar_parties/{key}")

    def result(self, round_: int, role: str) -> PartyResult | None:
        """The result ``role`` signed for ``round_`` on this node's chain."""
        block = self.store.at_height(round_ + 1)
        if block is None:
            return None
        for tx in block.transactions:
            if isinstance(tx.payload, PartyResult) and tx.payload.role == role:
                return tx.payload
        return None

    # ------------------------------------------------------------ start

    def start(self, now: float) -> list[Effect]:
        """Rebuild from the stored chain; the sequencer without a plan block seals one."""
        self._rebuild()
        if not self.is_sequencer or self.store.head().height > 0:
            return []  # not the sequencer, or a plan block stored (accepted or refused)
        tx = sign_plan(self.own, self.keys, now)
        rec = RoundRecord(plan_id(tx), 0, 0, False)
        genesis = self.store.head()
        block = sign(Block.create(genesis.hash, 1, self.address, now, (tx,), rec), self.keys)
        self.store.append(block)
        self.plan, self.plan_id = self.own, rec.plan_id
        self.records[0] = rec
        return [*self._send(block), EmitMetric(BLOCK_METRIC, 1.0, 0)]

    def _rebuild(self) -> None:
        blocks = list(self.store.canonical_chain())[1:]
        if not blocks:
            return
        try:
            self.plan = self.plans.check(blocks[0].transactions[0])
        except REFUSED:  # a stored plan this node's params no longer accept (counted)
            self.plan = None
            return
        self.plan_id = plan_id(blocks[0].transactions[0])
        for block in blocks:
            rec = block.header.extra
            assert isinstance(rec, RoundRecord)
            self.records[rec.round] = rec
            self.round = rec.round

    # ------------------------------------------------------------ blocks

    def on_block(self, sender: str, block: object) -> RoundRecord:
        """Verify and store a block from the sequencer; its record. Refusals raise."""
        if not isinstance(block, Block):
            raise self.gate.fail("bad_block", f"expected a Block, got {type(block).__name__}")
        if sender != self.sequencer_id or block.header.proposer != self.own.sequencer:
            raise self.gate.fail(
                "not_the_sequencer",
                f"block from {sender} proposed by {short(block.header.proposer)}",
            )
        if block.hash in self.store:
            raise self.gate.fail("repeated_block", f"block {short(block.hash)} is stored")
        head = self.store.head()
        self.gate.verifier.check_block(block, head.header)
        rec = block.header.extra
        if not isinstance(rec, RoundRecord):
            raise self.gate.fail("bad_block", "block extra is not a RoundRecord")
        if block.height == 1:
            return self._plan_block(block, rec)
        plan = self.require_plan(f"block {block.height}")
        if rec.plan_id != self.plan_id:
            raise self.gate.fail(UNKNOWN_PLAN, f"block for plan {short(rec.plan_id)}")
        if rec.round != self.round + 1 or rec.final != (rec.round == plan.rounds):
            raise self.gate.fail("wrong_round", f"round {rec.round} after {self.round}")
        self._check_results(block.transactions, rec)
        self._append(block, rec)
        return rec

    def _plan_block(self, block: Block, rec: RoundRecord) -> RoundRecord:
        if len(block.transactions) != 1:
            raise self.gate.fail("bad_block", "a plan block holds exactly the plan")
        tx = block.transactions[0]
        self.plans.check(tx)
        if rec != RoundRecord(plan_id(tx), 0, 0, False):
            raise self.gate.fail(UNKNOWN_PLAN, "the plan block names another plan id")
        self.plan, self.plan_id = self.own, rec.plan_id
        self._append(block, rec)
        return rec

    def _check_results(self, txs: tuple[Transaction, ...], rec: RoundRecord) -> None:
        roles = []
        steps = set()
        for tx in txs:
            res = self._result_of(tx, rec.round)
            roles.append(res.role)
            steps.add(res.steps)
        if sorted(roles) != sorted(self.reporters) or len(steps) != 1:
            raise self.gate.fail("bad_result", f"results of {roles} with steps {sorted(steps)}")
        mine = self.sent.get(rec.round)
        if mine is not None and mine not in {record_id(tx) for tx in txs}:
            raise self.gate.fail("bad_result", f"round {rec.round}: this node's result altered")

    def _result_of(self, tx: object, round_: int) -> PartyResult:
        if not isinstance(tx, Transaction) or tx.kind != RESULT_TX:
            raise self.gate.fail("bad_result", f"expected a {RESULT_TX} transaction")
        self.gate.verifier.check(tx)
        res = tx.payload
        if not isinstance(res, PartyResult):
            raise self.gate.fail("bad_result", f"result payload is {type(res).__name__}")
        if res.plan_id != self.plan_id:
            raise self.gate.fail(UNKNOWN_PLAN, f"result for plan {short(res.plan_id)}")
        if res.round != round_:
            raise self.gate.fail("wrong_round", f"result of round {res.round}, not {round_}")
        assert self.plan is not None
        if res.role not in self.reporters or tx.sender != self.plan.address_of(res.role):
            raise self.gate.fail("bad_result", f"{res.role} result by {short(tx.sender)}")
        return res

    def _append(self, block: Block, rec: RoundRecord) -> None:
        self.store.append(block)
        self.records[rec.round] = rec
        self.round = rec.round

    def block_metric(self, rec: RoundRecord) -> EmitMetric:
        return EmitMetric(BLOCK_METRIC, float(rec.round + 1), rec.round)

    # ------------------------------------------------------------ results

    def report(
        self, round_: int, steps: int, weights: bytes, accuracy: float, openings: int, now: float
    ) -> list[Effect]:
        """Sign this party's result of ``round_`` and send it to the sequencer (the
        sequencer pools its own)."""
        self.require_plan("a result")
        assert self.role is not None
        res = PartyResult(self.plan_id, round_, self.role, steps, weights, accuracy, openings)
        tx = sign(Transaction(self.address, now, RESULT_TX, res), self.keys)
        self.sent[round_] = record_id(tx)
        if self.is_sequencer:
            self.pool.setdefault(round_, {})[self.role] = tx
            return []
        return [Send(self.sequencer_id, ResultTx(tx))]

    def on_result(self, sender: str, tx: object) -> None:
        """The sequencer pools a party's signed result. Refusals raise."""
        if not self.is_sequencer:
            raise self.gate.fail("not_the_sequencer", f"a result sent to {self.setup.node_id}")
        plan = self.require_plan("a result")
        payload = tx.payload if isinstance(tx, Transaction) else None
        if not isinstance(payload, PartyResult):
            raise self.gate.fail("bad_result", f"expected a result transaction, got {tx!r:.60}")
        if not self.round < payload.round <= plan.rounds:
            raise self.gate.fail("wrong_round", f"result of round {payload.round}")
        res = self._result_of(tx, payload.round)
        if self.setup.services.node_of(tx.sender) != sender:
            raise self.gate.fail("bad_result", f"{res.role}'s result relayed by {sender}")
        pooled = self.pool.setdefault(res.round, {})
        if res.role in pooled:
            raise self.gate.fail("repeated_result", f"{res.role} round {res.round}")
        pooled[res.role] = tx

    def seal(self, now: float, decryptions: DecryptionCount) -> list[Effect]:
        """The sequencer seals every round whose results are all in, in order."""
        effects: list[Effect] = []
        while self.plan is not None and not self.done:
            r = self.round + 1
            pooled = self.pool.get(r, {})
            if sorted(pooled) != sorted(self.reporters):
                break
            steps = {tx.payload.steps for tx in pooled.values()}
            if len(steps) != 1:  # parties that disagree on the steps: nothing to seal
                self.gate.fail("bad_result", f"round {r}: steps {sorted(steps)}")
                del self.pool[r]
                break
            final = r == self.plan.rounds
            txs = tuple(sorted(pooled.values(), key=record_id))
            count = decryptions(tuple(tx.payload for tx in txs), final)
            rec = RoundRecord(self.plan_id, r, count, final)
            head = self.store.head()
            block = Block.create(head.hash, head.height + 1, self.address, now, txs, rec)
            block = sign(block, self.keys)
            self._append(block, rec)
            del self.pool[r]
            effects += [*self._send(block), self.block_metric(rec)]
        return effects

    def _send(self, block: Block) -> list[Effect]:
        return [Send(peer, LedgerBlock(block)) for peer in self.peers]

    # ------------------------------------------------------------ metrics

    def refusal_metrics(self, step: int) -> list[EmitMetric]:
        """``plan_refused{reason, field}`` for each plan refused since the last call."""
        out = []
        for refusal in self.plans.refusals[self._refusals_emitted :]:
            for name in refusal.fields or ("",):
                tags = (("reason", refusal.reason), ("field", name))
                out.append(EmitMetric(PLAN_REFUSED, 1.0, step, tags))
        self._refusals_emitted = len(self.plans.refusals)
        return out

    def last_refusal(self) -> str:
        return self.plans.refusals[-1].detail if self.plans.refusals else "none received"


def _memory_chain(genesis: Block) -> ChainStore:
    store = ChainStore(Path(":memory:"), durable=False)
    store.append(genesis)
    return store
