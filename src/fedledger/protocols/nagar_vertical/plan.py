"""The FL plan of Nagar's party modes (vertical, transfer, sharing) and how a node checks it.

Nagar puts "the FL plan" on chain, signed by the requester, and nodes refuse work for an
unknown or inconsistent plan (issue 17). For the party modes the plan is one
:class:`PartyPlan`: the mode, the requester (who signs it), the sequencer (who seals
every block), every party by role and address, the rounds, a digest of the data layout
and ``terms``: the mode's settings as sorted ``(name, scalar)`` pairs (model and layout,
optimiser and its parameters, key bits, fixed-point bits, decryptor and threshold,
privacy). Each mode builds its plan from its own params with :func:`make_plan`, so a node
holds the plan it expects (``own``) before it sees the one on chain.

:class:`PlanGate` checks the plan transaction a node receives, in this order, counting
each refusal in the node's gate (never raising past the node):

- not a ``nagar_parties.plan`` transaction, or its payload is no ``PartyPlan``, or it is
  signed by someone other than this run's requester: ``unknown_plan``;
- an unsigned or forged signature, an unknown signer: the ledger verifier's own reasons
  (``bad_signature``, ``unknown_sender``);
- the plan breaks a rule (:func:`plan_problems`, plus the mode's own rules): ``bad_plan``;
- a field differs from the node's own plan: ``plan_mismatch``, naming every such field
  (``key_bits``, ``terms.lr``, ``parties``...) in the refusal's detail and in
  :attr:`PlanGate.refusals` (the node emits them as the ``plan_refused`` metric).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedledger.codec import encode, record
from fedledger.crypto.keys import KeyPair
from fedledger.ledger.records import Transaction, record_id, short, sign
from fedledger.ledger.verify import Rejected
from fedledger.protocols.kit.gate import Gate, Reject

PLAN_TX = "nagar_parties.plan"
MODES = ("vertical", "transfer", "sharing")
#: What a plan term may hold.
Scalar = str | int | float | bool
#: A mode's own consistency rules: the problems of a plan (empty: none).
ModeRules = Callable[["PartyPlan"], list[str]]

UNKNOWN_PLAN = "unknown_plan"
BAD_PLAN = "bad_plan"
PLAN_MISMATCH = "plan_mismatch"


@record("nagar_parties.PartyPlan")
@dataclass(frozen=True)
class PartyPlan:
    """The FL plan of a party mode; one ``nagar_parties.plan`` transaction holds it."""

    mode: str
    requester: bytes  # address that signs the plan
    sequencer: bytes  # address that seals every block of the run
    parties: tuple[tuple[str, bytes], ...]  # (role, address), sorted by role
    rounds: int
    data: bytes  # SHA-256 of the data layout (data_digest)
    terms: tuple[tuple[str, Scalar], ...]  # the mode's settings, sorted by name

    def term(self, name: str) -> Scalar | None:
        return dict(self.terms).get(name)

    def address_of(self, role: str) -> bytes | None:
        return dict(self.parties).get(role)

    def role_of(self, address: bytes) -> str | None:
        return next((r for r, a in self.parties if a == address), None)


def data_digest(**layout: Scalar) -> bytes:
    """SHA-256 of a data layout (dataset, columns per party, overlap...), by key order."""
    data = encode(tuple(sorted(layout.items())))
    return hashlib.sha256(b"nagar_parties/data\x00" + data).digest()


def make_plan(
    mode: str,
    requester: bytes,
    sequencer: bytes,
    parties: Mapping[str, bytes],
    rounds: int,
    data: bytes,
    terms: Mapping[str, Scalar],
) -> PartyPlan:
    """A plan with its parties and terms in canonical (sorted) order."""
    return PartyPlan(
        mode=mode,
        requester=requester,
        sequencer=sequencer,
        parties=tuple(sorted(parties.items())),
        rounds=int(rounds),
        data=data,
        terms=tuple(sorted(terms.items())),
    )


def plan_id(tx: Transaction) -> bytes:
    """The plan's id: the id of the signed transaction that holds it."""
    return record_id(tx)


def sign_plan(plan: PartyPlan, keys: KeyPair, now: float) -> Transaction:
    """The requester's signed plan transaction."""
    return sign(Transaction(keys.address, now, PLAN_TX, plan), keys)


def plan_problems(plan: PartyPlan, rules: ModeRules | None = None) -> list[str]:
    """What makes ``plan`` inconsistent (empty: nothing), each naming the value and rule."""
    out: list[str] = []
    if plan.mode not in MODES:
        out.append(f"mode {plan.mode!r}; allowed {', '.join(MODES)}")
    roles = [r for r, _ in plan.parties]
    addresses = [a for _, a in plan.parties]
    if not plan.parties or len(set(roles)) != len(roles) or len(set(addresses)) != len(roles):
        out.append("parties: each role and each address must appear exactly once")
    if plan.requester not in addresses or plan.sequencer not in addresses:
        out.append("the requester and the sequencer must be parties of the plan")
    if isinstance(plan.rounds, bool) or plan.rounds < 1:
        out.append(f"rounds {plan.rounds}; allowed >= 1")
    if not isinstance(plan.data, bytes) or len(plan.data) != 32:
        out.append("data must be the 32-byte digest of the data layout")
    names = [n for n, _ in plan.terms]
    if names != sorted(set(names)):
        out.append("terms must be sorted by name, each name once")
    for name, value in plan.terms:
        if not isinstance(value, Scalar) or (isinstance(value, float) and not math.isfinite(value)):
            out.append(f"term {name} = {value!r}; allowed a finite number, a string or a bool")
    if not out and rules is not None:
        out += rules(plan)
    return out


def mismatches(plan: PartyPlan, own: PartyPlan) -> list[tuple[str, str]]:
    """``(field, detail)`` for every field in which ``plan`` differs from ``own``; a term
    is named ``terms.<name>``."""
    out: list[tuple[str, str]] = []
    for name in ("mode", "requester", "sequencer", "parties", "rounds", "data"):
        got, want = getattr(plan, name), getattr(own, name)
        if got != want:
            out.append((name, f"{name}: the plan says {_show(got)}, this node {_show(want)}"))
    theirs, mine = dict(plan.terms), dict(own.terms)
    for name in sorted(set(theirs) | set(mine)):
        got, want = theirs.get(name), mine.get(name)
        if got != want or type(got) is not type(want):
            key = f"terms.{name}"
            out.append((key, f"{key}: the plan says {_show(got)}, this node {_show(want)}"))
    return out


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return short(value)
    if isinstance(value, tuple):
        return "(" + ", ".join(_show(v) for v in value) + ")"
    return repr(value)


@dataclass(frozen=True)
class Refusal:
    """One refused plan: the reason, the fields at fault (for ``plan_mismatch``), detail."""

    reason: str
    fields: tuple[str, ...]
    detail: str


@dataclass
class PlanGate:
    """Checks a plan transaction against the node's own plan; counts every refusal."""

    own: PartyPlan
    gate: Gate
    rules: ModeRules | None = None
    refusals: list[Refusal] = field(default_factory=list)

    def _fail(self, reason: str, detail: str, fields: tuple[str, ...] = ()) -> Reject:
        self.refusals.append(Refusal(reason, fields, detail))
        return self.gate.fail(reason, detail)

    def check(self, tx: object) -> PartyPlan:
        """The plan in ``tx`` if it is this run's plan; else a counted refusal (raised)."""
        if not isinstance(tx, Transaction) or tx.kind != PLAN_TX:
            raise self._fail(UNKNOWN_PLAN, f"expected a {PLAN_TX} transaction")
        plan = tx.payload
        if not isinstance(plan, PartyPlan):
            raise self._fail(UNKNOWN_PLAN, f"plan payload is {type(plan).__name__}")
        if tx.sender != plan.requester or plan.requester != self.own.requester:
            raise self._fail(
                UNKNOWN_PLAN, f"plan signed by {short(tx.sender)}, not this run's requester"
            )
        try:
            self.gate.verifier.check(tx)
        except Rejected as exc:  # counted by the verifier
            self.refusals.append(Refusal(str(exc.reason), (), str(exc)))
            raise
        problems = plan_problems(plan, self.rules)
        if problems:
            raise self._fail(BAD_PLAN, "; ".join(problems))
        diff = mismatches(plan, self.own)
        if diff:
            fields = tuple(f for f, _ in diff)
            raise self._fail(PLAN_MISMATCH, "; ".join(d for _, d in diff), fields)
        return plan
