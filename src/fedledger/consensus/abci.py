"""The boundary between consensus and the application, in the spirit of CometBFT's ABCI.

Consensus orders and decides; the application says what is admissible and what a
decision does. Four calls, each with a typed, frozen answer:

==========================  =====================================  =====================
call                        CometBFT's                             when
==========================  =====================================  =====================
``check(request)``          CheckTx                                a request (transaction)
                                                                   arrives: admit it to
                                                                   the pool, or refuse
``propose(ProposeRequest)`` PrepareProposal                        this node proposes at
                                                                   a height: build it
``validate(proposal)``      ProcessProposal                        a proposal arrives:
                                                                   vote for it or refuse
``apply(decided)``          FinalizeBlock + Commit                 consensus decided: the
                                                                   state moves on
==========================  =====================================  =====================

``check`` and ``validate`` answer a :class:`Verdict`: accepted, or refused with a reason
(a short counter name, e.g. ``wrong_role``) and a detail for the log; they never raise
for a bad input. ``propose`` may only be called on a node that may propose at that
height. ``apply`` is called once per decided proposal, in height order, with a proposal
that ``validate`` accepted; it returns what the application wants to report (events).

The engines call an :class:`Application` and nothing else of a protocol: PBFT executes
a committed batch with ``apply``; a PoS or PoW chain validates each candidate, picks one
with :mod:`fedledger.consensus.selection` and applies it. A protocol implements the four
calls over its own records (PoS-BFL: ``protocols.posbfl.app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

from fedledger.errors import FedledgerError

RequestT = TypeVar("RequestT", contravariant=True)
ProposalT = TypeVar("ProposalT")
HeadT = TypeVar("HeadT", contravariant=True)
H = TypeVar("H")
AppliedT = TypeVar("AppliedT", covariant=True)


class AbciError(FedledgerError, ValueError):
    """A call across the boundary broke its contract (e.g. propose on a non-proposer)."""


@dataclass(frozen=True)
class Verdict:
    """The answer of ``check`` and ``validate``: ``reason`` is empty when accepted."""

    reason: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return not self.reason

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def accept(cls) -> Verdict:
        return ACCEPTED

    @classmethod
    def refuse(cls, reason: str, detail: str = "") -> Verdict:
        if not reason:
            raise AbciError("a refusal needs a non-empty reason")
        return cls(reason, detail)


ACCEPTED = Verdict()


@dataclass(frozen=True)
class ProposeRequest(Generic[H]):
    """What ``propose`` is asked for: a proposal at ``height`` on ``parent`` at ``time``."""

    height: int
    time: float
    parent: H


@runtime_checkable
class Application(Protocol[RequestT, ProposalT, HeadT, AppliedT]):
    """The four calls consensus makes into an application (module doc)."""

    def check(self, request: RequestT) -> Verdict:
        """Admit a request to the pool, or refuse it with a reason."""
        ...

    def propose(self, request: ProposeRequest[HeadT]) -> ProposalT:
        """Build this node's proposal for ``request.height`` on ``request.parent``."""
        ...

    def validate(self, proposal: ProposalT) -> Verdict:
        """Accept a proposal (it may be decided) or refuse it with a reason."""
        ...

    def apply(self, decided: ProposalT) -> AppliedT:
        """Move the state by a decided proposal; what it did, for the caller to report."""
        ...


def decide(
    app: Application[object, ProposalT, object, AppliedT],
    candidates: list[ProposalT],
    choose: _Chooser[ProposalT],
) -> tuple[ProposalT, AppliedT] | None:
    """Validate every candidate, let ``choose`` pick among the valid ones (a selection
    rule) and apply the pick: the whole decision of a one-shot PoS or PoW slot."""
    valid = [c for c in candidates if app.validate(c).ok]
    chosen = choose(valid)
    if chosen is None:
        return None
    return chosen, app.apply(chosen)


class _Chooser(Protocol[ProposalT]):
    def __call__(self, candidates: list[ProposalT], /) -> ProposalT | None: ...
