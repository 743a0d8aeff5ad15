"""A DFLBCB node's learning: training a sub-model (participants), and in Work fetching
every sub-model, scoring it on the shared split, Alg. 6 and averaging (members)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fedledger.contracts import eth
from fedledger.contracts.dflbcb import Stage
from fedledger.contracts.eth import ScoreEntry
from fedledger.learning.jobs import EvalJob, EvalResult, JobResult, TrainResult
from fedledger.ledger.records import ModelRef
from fedledger.protocols.base import (
    BlobReceived,
    Effect,
    EmitMetric,
    FetchBlob,
    Halt,
    JobFinished,
    ReportModel,
    RunJob,
)
from fedledger.protocols.dflbcb import rewards
from fedledger.protocols.dflbcb.ordered import (
    ALIVE,
    SUB,
)
from fedledger.protocols.kit import JobId
from fedledger.storage.cid import cid_from_sha256


class WorkMixin:
    """Mixed into :class:`~fedledger.protocols.dflbcb.node.DflbcbNode`; uses its state."""

    # ------------------------------------------------------------ work: score, aggregate

    def _fetch_submissions(self, it: int, log: Any) -> list[Effect]:
        nodes = [eth.checksum(a) for a in log.arg("nodes")]
        hashes = [bytes(h) for h in log.arg("model_hashes")]
        self.subs[it] = list(zip(nodes, hashes, strict=True))
        self.models[it], self.scores[it] = {}, {}
        out: list[Effect] = []
        for node, h in self.subs[it]:
            ref = ModelRef(cid_from_sha256(h), h, 0)
            own = self.blobs.own(ref)
            source = self.node_of_eth.get(node)
            if own is not None or source is None or source == self.node_id:
                out += self._got_model(it, node, own)
            else:
                out.append(FetchBlob(ref.cid, source))
        if not self.subs[it]:
            out += self._aggregate(it)
        return out

    def on_blob(self, event: BlobReceived) -> list[Effect]:
        for it, subs in self.subs.items():
            for node, h in subs:
                if cid_from_sha256(h) == event.cid and node not in self.models.get(it, {}):
                    w = self.blobs.load(event.data, ModelRef(event.cid, h, 0))
                    return self._got_model(it, node, w)
        if event.cid == self.global_ref.cid and self.global_it:
            it, self.global_it = self.global_it, 0
            w = self.blobs.load(event.data, self.global_ref)
            out: list[Effect] = []
            if w is not None:
                self.global_w = w
                out.append(ReportModel(it, w))
            if it >= self.setup.rounds:
                out.append(Halt(f"{it} iterations on chain"))
            return out
        return []

    def _got_model(self, it: int, node: str, w: np.ndarray | None) -> list[Effect]:
        self.models[it][node] = w
        if w is None:
            self.scores[it][node] = 0  # unavailable or of an unknown layout
            return self._scored(it)
        job = JobId("score", it, node[2:].lower())
        return [RunJob(str(job), EvalJob(w, split="shared"))]

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        if job_id is None:
            raise self.gate.fail("unexpected_job", event.job_id)
        if job_id.kind == "train" and isinstance(result, TrainResult):
            if self.bad_layout:  # T11: raw float32 bytes of another size, no declared layout
                raw = np.asarray(result.weights[:-1], np.float32).tobytes()
                ref = self.blobs.put(raw, result.num_samples)
            else:
                ref = self.blobs.store(result.weights, result.num_samples)
            return self._request(SUB, int.from_bytes(ref.sha256, "big"))
        if not isinstance(result, EvalResult):
            raise self.gate.fail("unexpected_job", event.job_id)
        permille = round(result.accuracy * 1000)
        if job_id.kind == "score":
            self.scores[job_id.index][eth.checksum("0x" + job_id.key)] = permille
            return self._scored(job_id.index)
        if job_id.kind == "gacc":
            it = job_id.index
            scores, ghash, _, w = self.pending.pop(it)
            self.work[it] = (scores, ghash, permille, w)
            self._check_ends(it, Stage.WORK)
            out = self._queue(ALIVE, (it, int(Stage.WORK))) + self._flush()
            return out + self._maybe_end()
        raise self.gate.fail("unexpected_job", event.job_id)

    def _scored(self, it: int) -> list[Effect]:
        if len(self.scores[it]) < len(self.subs[it]):
            return []
        return self._aggregate(it)

    def _aggregate(self, it: int) -> list[Effect]:
        result = rewards.alg6(self.scores[it], self.p.malicious_permille)
        kept = sorted((a for a in result.kept if self.models[it].get(a) is not None),
                      key=lambda a: int(a, 16))
        if kept:
            stack = np.stack([self.models[it][a] for a in kept]).astype(np.float32)
            w = stack.mean(axis=0, dtype=np.float32)
        else:
            w = self.global_w
        ref = self.blobs.store(w, 0)
        scores = [ScoreEntry(a, s) for a, s in result.ranked]
        self.pending[it] = (scores, ref.sha256, -1, w)
        out: list[Effect] = [RunJob(str(JobId("gacc", it)), EvalJob(w, split="shared")),
                             EmitMetric("flagged", float(len(result.malicious)), it)]
        own = self.scores[it].get(self.key.address)
        if own is not None:  # E3: this member's own sub-model beside the global model
            out.append(EmitMetric("local_acc_permille", float(own), it))
        return out
