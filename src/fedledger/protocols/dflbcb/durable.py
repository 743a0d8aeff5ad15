"""What a DFLBCB node keeps across a restart, and how it resumes.

The contract is the authority; a node's view of it is what its logs said. Each node that
holds data keeps a main chain of its own (``CatchUp.OWN``): one self-signed block per
contract log it acts on (:class:`Mirror`: the event and the fields it reads) and, for a
member, one per accepted Work result it scored (the accuracy history Alg. 1 weighs). Its
PBFT client's last nonce is kept in the chain store's state, so a restarted client never
reuses one. On ``Start`` with blocks on its chain the node replays them (no effects), then
resumes: a member builds a fresh replica of the current term and asks its peers for the
batches it missed (the engine's catch-up, which re-executes them into the ordered log),
re-arms its stage timer and, in Work, scores the sub-models again; every node re-sends
its request of the current stage (a repeat is ignored by the committee and the
contract), retrains in Commit, and reloads (or fetches) the global model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fedledger.codec import record
from fedledger.contracts.backend import LogRecord
from fedledger.contracts.dflbcb import Stage
from fedledger.ledger.records import Block, sign
from fedledger.protocols.base import Effect, EmitMetric, FetchBlob, RunJob
from fedledger.protocols.dflbcb.ordered import CAND, PLEDGE
from fedledger.protocols.kit import JobId

#: The contract logs a node mirrors, and the fields it reads from each.
MIRRORED: dict[str, tuple[str, ...]] = {
    "Initialized": ("committee",),
    "Registered": ("node",),
    "CommitteeElected": ("term", "members"),
    "ParticipantsAnnounced": ("it", "nodes"),
    "SubmissionsAnnounced": ("it", "nodes", "model_hashes"),
    "GlobalModel": ("it", "model_hash", "acc"),
    "StageChanged": ("it", "from_stage", "to_stage", "result_hash"),
}
SCORES = "Scores"  # a member's accepted Work scores: (("it", it), ("scores", pairs))
NONCE = "dflbcb/client-nonce"


@record("dflbcb.Mirror")
@dataclass(frozen=True)
class Mirror:
    """One contract log as this node acted on it (or a member's accepted scores)."""

    event: str
    address: str
    fields: tuple[tuple[str, Any], ...]


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, bool | int | str | bytes):
        return value
    return str(value)


class DurableMixin:
    """Mixed into :class:`~fedledger.protocols.dflbcb.node.DflbcbNode`; uses its state."""

    replaying = False

    def _keeps(self) -> bool:
        return bool(self.setup.services.chains)

    def _mirror(self, event: str, address: str, fields: tuple[tuple[str, Any], ...]) -> None:
        if self.replaying or not self._keeps():
            return
        store = self.setup.services.ledger
        head = store.head()
        block = Block.create(head.hash, head.height + 1, self.setup.services.keys.address,
                             self.now, (), Mirror(event, address, fields))
        with self.setup.meter.section("blockchain"):
            store.append(sign(block, self.setup.services.keys))

    def _mirror_log(self, log: LogRecord) -> None:
        names = MIRRORED.get(log.event)
        if names is not None:
            self._mirror(log.event, log.address,
                         tuple((n, _plain(log.arg(n))) for n in names))

    def _mirror_scores(self, it: int) -> None:
        pairs = tuple(sorted(self.acc_hist[it].items()))
        self._mirror(SCORES, self.contract, (("it", it), ("scores", pairs)))

    def _save_nonce(self) -> None:
        if self.client is not None and self._keeps() and not self.replaying:
            self.setup.services.ledger.put_state(NONCE, str(self.client.nonce).encode())

    # ------------------------------------------------------------ restart

    def _restore(self) -> list[Effect]:
        """Replays this node's mirror blocks; the effects that resume it (none when its
        chain is empty: a first start)."""
        if not self._keeps():
            return []
        store = self.setup.services.ledger
        kept = [b.header.extra for b in store.canonical_chain()
                if b.height > 0 and isinstance(b.header.extra, Mirror)]
        if not kept:
            return []
        self.replaying = True
        try:
            for m in kept:
                if m.event == SCORES:
                    fields = dict(m.fields)
                    self.acc_hist[int(fields["it"])] = {a: int(s) for a, s in fields["scores"]}
                else:
                    self._on_log_event(LogRecord(m.address, m.event, m.fields, 0, 0))
        finally:
            self.replaying = False
        saved = store.get_state(NONCE)
        if saved is not None and self.client is not None:
            self.client.nonce = max(self.client.nonce, int(saved.decode()))
        return [EmitMetric("restored_blocks", float(len(kept)), max(self.it, 0)),
                *self._resume()]

    def _resume(self) -> list[Effect]:
        out: list[Effect] = []
        if self.global_it:  # the last global model: from its own store, else fetched
            w = self.blobs.own(self.global_ref)
            source = self.node_of_eth.get(self.committee[0]) if self.committee else None
            if w is not None:
                self.global_w, self.global_it = w, 0
            elif source is not None and source != self.node_id:
                out.append(FetchBlob(self.global_ref.cid, source))
        if self.engine is not None and self.boundary is not None:
            engine = self.engine
            out += self._replica_effects(self.boundary.call(
                lambda: engine.restore(self.now, [])))
            out += self._arm()
            if self.stage == Stage.WORK and self.subs_log is not None \
                    and int(self.subs_log.arg("it")) == self.it:
                out += self._fetch_submissions(self.it, self.subs_log)
        if self.stage == Stage.ELECT:
            out += self._request(CAND, self.elect_factor * self.cparams.min_elect_pledge)
        elif self.stage == Stage.PLEDGE:
            out += self._request(PLEDGE, self.cparams.min_pledge)
        elif self.stage == Stage.COMMIT and not self.silent_trainer \
                and self.key.address in self.participants.get(self.it, ()):
            out.append(RunJob(str(JobId("train", self.it)), self._train_job()))
        return out + self._flush()
