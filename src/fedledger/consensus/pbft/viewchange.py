"""View change and new view (Castro and Liskov, OSDI 1999, section 4.4).

:func:`compute_new_view` is the pure rule every replica applies to a set V of 2f+1
view-changes for view v: min-s is the highest stable checkpoint in V, max-s the highest
sequence number prepared in V; each sequence number in (min-s, max-s] gets the batch of
the prepared certificate from the highest view (the null batch where none prepared). The
new primary signs pre-prepares for these (the set O) and every backup recomputes O from
V and compares before it enters the view. A re-proposed batch keeps its original
timestamp, so every honest replica that executes a sequence number puts the same block
timestamp on it, whichever view it committed in; a null batch takes the highest timestamp
seen in V.
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.consensus.pbft.messages import (
    NULL_DIGEST,
    Batch,
    Checkpoint,
    PreparedCert,
    ViewChange,
)


@dataclass(frozen=True)
class Reproposal:
    """One entry of O: what the new primary proposes again at ``seq``."""

    seq: int
    digest: bytes
    timestamp: float
    batch: Batch


@dataclass(frozen=True)
class NewViewPlan:
    """What V implies: the stable checkpoint to start from and the set O."""

    min_s: int
    stable_proof: tuple[Checkpoint, ...]
    stable_state: bytes | None
    entries: tuple[Reproposal, ...]

    @property
    def max_s(self) -> int:
        return self.entries[-1].seq if self.entries else self.min_s


def compute_new_view(view_changes: tuple[ViewChange, ...]) -> NewViewPlan:
    """O and min-s for a set V of (already verified) view-change messages."""
    if not view_changes:
        raise ValueError("compute_new_view needs at least one view-change")
    best_vc = max(view_changes, key=lambda vc: vc.stable_seq)
    min_s = best_vc.stable_seq
    proof = best_vc.stable_proof
    state = proof[0].state if proof else None
    best: dict[int, PreparedCert] = {}
    latest = 0.0
    for vc in view_changes:
        for cert in vc.prepared:
            pp = cert.preprepare
            latest = max(latest, pp.timestamp)
            if pp.seq <= min_s:
                continue
            old = best.get(pp.seq)
            if old is None or (pp.view, old.preprepare.digest) > (old.preprepare.view, pp.digest):
                best[pp.seq] = cert
    max_s = max(best, default=min_s)
    entries = []
    for seq in range(min_s + 1, max_s + 1):
        cert = best.get(seq)
        if cert is None:
            entries.append(Reproposal(seq, NULL_DIGEST, latest, ()))
        else:
            pp = cert.preprepare
            entries.append(Reproposal(seq, pp.digest, pp.timestamp, cert.batch))
    return NewViewPlan(min_s, proof, state, tuple(entries))


def choose_view_changes(received: dict[int, ViewChange], quorum: int) -> tuple[ViewChange, ...]:
    """The V a new primary uses: the first ``quorum`` view-changes by sender index."""
    return tuple(received[i] for i in sorted(received)[:quorum])
