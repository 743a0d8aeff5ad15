"""A run-wide signature memo for the simulator, with each node charged its own checks.

Signature verification is a pure function of (public key, message, signature). In the
simulator every node lives in one process, so when a hundred devices each check the same
vote, the answer computed by the first holds for the other ninety-nine.
:class:`SignatureMemo` keeps the valid signatures of a run; each node reads it through
its own :class:`MemoDirectory` (its members' directory, the one its
:class:`~fedledger.ledger.verify.Verifier` asks through :meth:`KeyDirectory.verify`).

Accounting stays per node: a node's verifier counts every signature it checks
(``signatures_checked``) exactly as without the memo, and its CPU meter is charged for
each one under ``blockchain``: the CPU time really spent when the node computed the
check itself, or, when the memo answered, the modelled cost of one verification of that
key scheme, measured once when the memo is made (:func:`fedledger.crypto.bench.verify_rate`).
Virtual time does not depend on either (the simulator's compute model times jobs only).

Only valid signatures are remembered; a bad signature is computed in full every time.
Real nodes never get a memo: each keeps its own per-node verifier cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Protocol

from fedledger.crypto.bench import verify_rate
from fedledger.crypto.keys import KeyDirectory, PublicKey, SharedKeyDirectory

#: the activity a node's signature checks are charged to
ACTIVITY = "blockchain"
#: how many valid signatures a run's memo keeps (oldest forgotten first)
DEFAULT_MEMO_SIZE = 1 << 20
#: seconds spent measuring each key scheme's verification cost when a memo is made
CALIBRATION_SECONDS = 0.01


class CpuCharge(Protocol):
    """Where a node's CPU time goes (``fedledger.protocols.meter.CpuMeter`` is one)."""

    def section(self, activity: str) -> AbstractContextManager[None]: ...

    def add(self, activity: str, seconds: float) -> None: ...


class SignatureMemo:
    """Valid signatures of one simulated run, shared by all its nodes.

    costs: modelled CPU seconds of one verification per key scheme (measured on this
    machine by :meth:`calibrated`, or given); ``hits`` counts the checks it answered,
    ``computed`` those a node computed because the memo did not know the answer.
    """

    def __init__(self, costs: dict[str, float], size: int = DEFAULT_MEMO_SIZE) -> None:
        if size < 1:
            raise ValueError(f"memo size is {size}; allowed: 1 or more")
        bad = {s: c for s, c in costs.items() if not c >= 0.0}
        if bad:
            raise ValueError(f"verification costs must be >= 0 seconds, got {bad}")
        self.costs = dict(costs)
        self.size = size
        self._valid: dict[tuple[bytes, bytes, bytes], None] = {}
        self.hits = 0
        self.computed = 0

    @classmethod
    def calibrated(
        cls, schemes: Iterable[str], seconds: float = CALIBRATION_SECONDS
    ) -> SignatureMemo:
        """A memo whose per-scheme costs are measured now (``seconds`` per scheme)."""
        return cls({s: 1.0 / verify_rate(s, seconds) for s in sorted(set(schemes))})

    def directory_for(self, directory: KeyDirectory, meter: CpuCharge) -> MemoDirectory:
        """A node's view of ``directory`` that verifies through this memo and charges
        ``meter``. The keys are shared with ``directory``, not copied (at 1,000 nodes a
        copy per node is a million entries), until the view's :meth:`~MemoDirectory.add`."""
        missing = {k.scheme for k in directory.values()} - set(self.costs)
        if missing:
            raise ValueError(
                f"no verification cost for key schemes {sorted(missing)}; the memo knows "
                f"{sorted(self.costs)}"
            )
        return MemoDirectory(directory, self, meter)

    def verify(self, key: PublicKey, message: bytes, signature: bytes, meter: CpuCharge) -> bool:
        """``key.verify(message, signature)``, answered from the memo when it can be,
        with ``meter`` charged for one verification either way."""
        entry = (key.data, message, signature)
        if entry in self._valid:
            self.hits += 1
            meter.add(ACTIVITY, self.costs[key.scheme])
            return True
        self.computed += 1
        with meter.section(ACTIVITY):
            ok = key.verify(message, signature)
        if ok:
            if len(self._valid) >= self.size:
                del self._valid[next(iter(self._valid))]
            self._valid[entry] = None
        return ok

    def __len__(self) -> int:
        return len(self._valid)


class MemoDirectory(SharedKeyDirectory):
    """One node's view of the members' directory whose :meth:`verify` goes through a
    run's :class:`SignatureMemo` and charges that node's meter. It shares ``base``'s keys
    until a key is added to it (then it copies them first)."""

    def __init__(self, base: KeyDirectory, memo: SignatureMemo, meter: CpuCharge) -> None:
        super().__init__(base)
        self.memo = memo
        self.meter = meter

    def verify(self, key: PublicKey, msg: bytes, sig: bytes) -> bool:
        return self.memo.verify(key, msg, sig, self.meter)
