"""Where records enter a device: signatures through the ledger's Verifier, then the
protocol's own rules. A record that fails is counted by reason in the device's kit
:class:`~fedledger.protocols.kit.gate.Gate` and dropped; nothing here raises past the
caller's ``except REFUSED``.

Signature-level reasons are the Verifier's (``RejectReason``); protocol reasons are:
wrong_round, wrong_role (signer has no such role this round), blacklisted, bad_payload,
bad_reward (claimed reward differs from eq. 1-3), bad_outcome (aggregated votes differ
from the votes), duplicate (a second vote or block from one signer), unknown_update (a
vote on an update the receiver does not hold), bad_blob (model bytes do not match the
reference), bad_seal (PoW nonce), no_votes (a block update nobody voted on).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from fedledger.ledger.records import Block, BlockHeader, Transaction, Vote, record_id, short
from fedledger.ledger.verify import Verifier
from fedledger.protocols.kit.gate import Gate, Reject
from fedledger.protocols.posbfl.chainstate import LedgerState, validator_txs, worker_txs
from fedledger.protocols.posbfl.messages import (
    NEGATIVE,
    POSITIVE,
    VALIDATOR_TX,
    WORKER_TX,
    Outcome,
    RoundRecord,
    ValidatorReport,
    WorkerUpdate,
)
from fedledger.protocols.posbfl.params import PosBflParams
from fedledger.protocols.posbfl.rewards import (
    Credit,
    expected_worker_reward,
    shared_credit,
    tally,
    with_miner,
)
from fedledger.protocols.posbfl.roles import RoundRoles
from fedledger.protocols.posbfl.selection import seal_ok


@dataclass(frozen=True)
class _PassedVotes:
    """The records of a candidate block that passed every transaction and vote rule,
    with what those rules read: a later candidate of the round holding the same vote,
    update and report objects, under the same roles and blacklist, passes them too (the
    rules are pure)."""

    roles: RoundRoles
    blacklist: frozenset[bytes]
    votes: tuple[Vote, ...]
    updates: tuple[Transaction, ...]
    reports: tuple[Transaction, ...]
    outcomes: tuple[Outcome, ...]
    credit: Credit  # the block's rewards but the miner's (eq. 1-2)


@dataclass
class RecordChecks:
    """PoS-BFL's rules for the records a device receives; refusals are counted in
    ``gate`` (the Verifier's signature-level ones by the verifier behind it).

    Every candidate block of a round is checked in full, but the candidates of one round
    usually hold the same votes (each miner collects the same validators' batches): the
    records of the last candidate that passed are kept, and a candidate that holds the
    very same vote, update and report objects (same roles and blacklist) is not walked
    record by record again. Only votes that passed are kept, so a refused candidate is refused (and
    counted) as before, and verdicts, rejection counts and rewards are unchanged."""

    gate: Gate
    params: PosBflParams
    node_of: Callable[[bytes], str | None]
    _passed: _PassedVotes | None = field(default=None, init=False, repr=False)

    @property
    def verifier(self) -> Verifier:
        return self.gate.verifier

    def fail(self, reason: str, detail: str) -> Reject:
        return self.gate.fail(reason, detail)

    # ------------------------------------------------------------ records

    def worker_tx(
        self, tx: object, roles: RoundRoles, state: LedgerState, tx_id: bytes | None = None
    ) -> WorkerUpdate:
        """A worker-transaction of this round from a worker that is not blacklisted."""
        if not isinstance(tx, Transaction) or tx.kind != WORKER_TX:
            raise self.fail("bad_payload", f"expected a {WORKER_TX} transaction")
        self.verifier.check(tx, tx_id)
        update = tx.payload
        sender = self.node_of(tx.sender)
        if sender not in roles.worker_set:
            raise self.fail("wrong_role", f"{sender or short(tx.sender)} is no worker")
        if tx.sender in state.blacklist:
            raise self.fail("blacklisted", f"worker {sender} is blacklisted")
        if not isinstance(update, WorkerUpdate):
            raise self.fail("bad_payload", f"payload is {type(update).__name__}")
        if update.round != roles.round:
            raise self.fail("wrong_round", f"update of round {update.round}")
        if update.epochs != self.params.local_epochs or update.model.num_samples < 1:
            raise self.fail(
                "bad_payload",
                f"epochs {update.epochs} (allowed {self.params.local_epochs}), "
                f"samples {update.model.num_samples} (allowed >= 1)",
            )
        want = expected_worker_reward(
            update.epochs, update.model.num_samples, self.params.unit_reward
        )
        if update.expected_reward != want:
            raise self.fail("bad_reward", f"claims {update.expected_reward}, eq. 1 gives {want}")
        return update

    def report(self, tx: object, roles: RoundRoles, state: LedgerState) -> ValidatorReport:
        if not isinstance(tx, Transaction) or tx.kind != VALIDATOR_TX:
            raise self.fail("bad_payload", f"expected a {VALIDATOR_TX} transaction")
        self.verifier.check(tx)
        self._validator(tx.sender, roles, state)
        report = tx.payload
        if not isinstance(report, ValidatorReport):
            raise self.fail("bad_payload", f"payload is {type(report).__name__}")
        if report.round != roles.round:
            raise self.fail("wrong_round", f"report of round {report.round}")
        return report

    def vote(self, vote: object, roles: RoundRoles, state: LedgerState, known: set[bytes]) -> Vote:
        if not isinstance(vote, Vote):
            raise self.fail("bad_payload", f"expected a Vote, got {type(vote).__name__}")
        self.verifier.check(vote)
        self._validator(vote.voter, roles, state)
        if vote.epoch != roles.round:
            raise self.fail("wrong_round", f"vote of round {vote.epoch}")
        if vote.value not in (POSITIVE, NEGATIVE):
            raise self.fail("bad_payload", f"vote value {vote.value} (allowed -1, 1)")
        if vote.target not in known:
            raise self.fail("unknown_update", f"vote on {short(vote.target)}")
        return vote

    def _validator(self, address: bytes, roles: RoundRoles, state: LedgerState) -> None:
        node = self.node_of(address)
        if node not in roles.validator_set:
            raise self.fail("wrong_role", f"{node or short(address)} is no validator")
        if address in state.blacklist:
            raise self.fail("blacklisted", f"validator {node} is blacklisted")

    # ------------------------------------------------------------ blocks

    def block(
        self, block: object, parent: BlockHeader, roles: RoundRoles, state: LedgerState
    ) -> RoundRecord:
        """A candidate block of this round on ``parent``, every rule re-checked."""
        if not isinstance(block, Block):
            raise self.fail("bad_payload", f"expected a Block, got {type(block).__name__}")
        self.verifier.check_block(block, parent)
        proposer = self.node_of(block.header.proposer)
        if proposer not in roles.miner_set:
            raise self.fail("wrong_role", f"block proposer {proposer} is no miner")
        if block.header.proposer in state.blacklist:
            raise self.fail("blacklisted", f"miner {proposer} is blacklisted")
        record = block.header.extra
        if not isinstance(record, RoundRecord):
            raise self.fail("bad_payload", "block extra is not a RoundRecord")
        if record.round != roles.round:
            raise self.fail("wrong_round", f"block of round {record.round}")
        if self.params.consensus == "pow" and not seal_ok(block, self.params.pow_difficulty):
            raise self.fail("bad_seal", f"nonce {record.nonce} misses the difficulty")
        updates = worker_txs(block)
        reports = validator_txs(block)
        if len(updates) + len(reports) != len(block.transactions):
            raise self.fail("bad_payload", "block holds transactions of another kind")
        ids = [record_id(tx) for tx in block.transactions]
        if ids != sorted(ids):
            raise self.fail("bad_payload", "transactions are not in id order")
        passed = self._passed_before(record.votes, updates, reports, roles, state)
        if passed is None:
            known = set()
            for tx in updates:
                self.worker_tx(tx, roles, state, record_id(tx))
                known.add(record_id(tx))
            for tx in reports:
                self.report(tx, roles, state)
            if len({tx.sender for tx in reports}) != len(reports):
                raise self.fail("duplicate", "two reports from one validator")
            self._votes(record.votes, roles, state, known)
            outcomes = tally(updates, record.votes)
        else:
            outcomes = passed.outcomes
        if any(o.positive + o.negative == 0 for o in outcomes):
            raise self.fail("no_votes", "the block holds an update nobody voted on")
        if outcomes != record.outcomes:
            raise self.fail("bad_outcome", "recorded outcomes differ from the votes")
        if passed is None:
            unit = self.params.unit_reward
            credit = shared_credit(updates, reports, record.votes, outcomes, unit)
            passed = _PassedVotes(
                roles,
                frozenset(state.blacklist),
                tuple(record.votes),
                tuple(updates),
                tuple(reports),
                outcomes,
                credit,
            )
            self._passed = passed
        rewards = with_miner(
            passed.credit, block.header.proposer, len(record.votes), self.params.unit_reward
        )
        if rewards != record.rewards:
            raise self.fail("bad_reward", "recorded rewards differ from eq. 1-3")
        return record

    def _passed_before(
        self,
        votes: Sequence[Vote],
        updates: Sequence[Transaction],
        reports: Sequence[Transaction],
        roles: RoundRoles,
        state: LedgerState,
    ) -> _PassedVotes | None:
        """The kept votes if this candidate holds the very same vote, update and report
        objects (see the class doc; in the simulator the candidates share them), else
        None."""
        passed = self._passed
        if passed is None or passed.roles != roles:
            return None
        if passed.blacklist != state.blacklist:
            return None
        same = _same(updates, passed.updates) and _same(reports, passed.reports)
        return passed if same and _same(votes, passed.votes) else None

    def _votes(
        self, votes: Sequence[Vote], roles: RoundRoles, state: LedgerState, known: set[bytes]
    ) -> None:
        seen = set()
        keys = []
        for vote in votes:
            self.vote(vote, roles, state, known)
            key = (vote.target, vote.voter)
            if key in seen:
                raise self.fail("duplicate", f"two votes of {short(vote.voter)} on one update")
            seen.add(key)
            keys.append(key)
        if keys != sorted(keys):
            raise self.fail("bad_payload", "votes are not in (update, voter) order")


def _same(records: Sequence[object], kept: tuple[object, ...]) -> bool:
    """The very same record objects, in order. Identity, not ``==``: two records can be
    equal as values (0.0 and -0.0) yet encode, hash and sign differently."""
    return len(records) == len(kept) and all(map(operator.is_, records, kept))
