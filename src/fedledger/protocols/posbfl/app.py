"""PoS-BFL behind the consensus boundary (:mod:`fedledger.consensus.abci`).

=============  =============================================================
``check``      a worker-transaction as a validator takes it (``RecordChecks.worker_tx``)
``propose``    the miner's candidate block (``MinerRole.build``)
``validate``   a candidate block, every rule re-checked on the ledger's head
               (``RecordChecks.block``)
``apply``      the legal block credited to stakes, streaks and blacklist
               (``LedgerState.apply``)
=============  =============================================================

Refusals are counted in the device's gate exactly as before (by the check that refuses,
or by the ledger's verifier for signature-level reasons); the verdict names the reason.
One :class:`PosBflApp` lives per device; :meth:`PosBflApp.begin_round` gives it the
round's roles, the device's ledger state and, on a miner, its miner role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fedledger.consensus.abci import AbciError, ProposeRequest, Verdict
from fedledger.ledger.records import Block
from fedledger.ledger.verify import Rejected
from fedledger.protocols.kit.gate import Reject
from fedledger.protocols.posbfl.chainstate import LedgerState
from fedledger.protocols.posbfl.checks import RecordChecks
from fedledger.protocols.posbfl.messages import RoundRecord
from fedledger.protocols.posbfl.miner import MinerRole
from fedledger.protocols.posbfl.roles import RoundRoles


@dataclass(frozen=True)
class BlockApplied:
    """What applying a legal block did: its height and round, the workers it newly
    blacklisted (addresses, in outcome order)."""

    height: int
    round: int
    newly_blacklisted: tuple[bytes, ...]


def _refusal(err: Rejected | Reject) -> Verdict:
    if isinstance(err, Rejected):
        return Verdict.refuse(err.reason.value, err.detail)
    return Verdict.refuse(err.reason, err.detail)


class PosBflApp:
    """PoS-BFL's :class:`~fedledger.consensus.abci.Application` over
    (Transaction, Block, Block, BlockApplied)."""

    def __init__(self, checks: RecordChecks, head: Callable[[], Block]) -> None:
        self.checks = checks
        self.head = head
        self.roles: RoundRoles | None = None
        self.state: LedgerState | None = None
        self.miner: MinerRole | None = None

    def begin_round(
        self, roles: RoundRoles, state: LedgerState, miner: MinerRole | None = None
    ) -> None:
        self.roles, self.state, self.miner = roles, state, miner

    def _round(self) -> tuple[RoundRoles, LedgerState]:
        if self.roles is None or self.state is None:
            raise AbciError("PoS-BFL's application has no round yet: call begin_round first")
        return self.roles, self.state

    def check(self, request: object) -> Verdict:
        """A worker-transaction of this round from a worker that is not blacklisted."""
        roles, state = self._round()
        try:
            self.checks.worker_tx(request, roles, state)
        except (Rejected, Reject) as err:
            return _refusal(err)
        return Verdict.accept()

    def propose(self, request: ProposeRequest[Block]) -> Block:
        """The miner's signed candidate block on ``request.parent``."""
        if self.miner is None:
            raise AbciError("propose on a device that is not this round's miner")
        if request.height != request.parent.height + 1:
            raise AbciError(
                f"proposal height {request.height} is not parent height "
                f"{request.parent.height} + 1"
            )
        return self.miner.build(request.time, request.parent)

    def validate(self, proposal: object) -> Verdict:
        """A candidate block of this round on the ledger's head."""
        roles, state = self._round()
        try:
            self.checks.block(proposal, self.head().header, roles, state)
        except (Rejected, Reject) as err:
            return _refusal(err)
        return Verdict.accept()

    def apply(self, decided: Block) -> BlockApplied:
        """Credit a legal block to the ledger state."""
        _, state = self._round()
        newly = state.apply(decided)
        extra = decided.header.extra
        rnd = extra.round if isinstance(extra, RoundRecord) else state.round
        return BlockApplied(decided.height, rnd, newly)
