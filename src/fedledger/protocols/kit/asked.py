"""What a node asked its host for, so host events nobody asked for can be told apart.

A :class:`~fedledger.protocols.kit.node.KitNode` notes the effects it returns: the
timers it armed (``SetTimer``), the jobs it started (``RunJob``) and the blobs it
fetched (``FetchBlob``). Each host answers each of these once (a timer fires once per
arming, a job finishes once, a fetch is answered once, with or without data), so an
answer is matched against what is outstanding and then forgotten: the bookkeeping holds
only what is still outstanding. An event that matches nothing (a timer never set, a job
id never asked for, a blob never fetched, or a second answer to one request) is one the
kit counts and drops before it reaches the protocol's hooks.

:func:`result_problem` says what is wrong with a finished job's result for the job that
asked for it: a result of the other kind, or trained weights that are not a finite
floating-point vector of the job's shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from fedledger.learning.jobs import EvalJob, EvalResult, Job, TrainJob, TrainResult
from fedledger.protocols.base import FetchBlob, RunJob, SetTimer


class Asked:
    """A node's outstanding timers, jobs and blob fetches."""

    def __init__(self) -> None:
        self.timers: set[str] = set()
        self.jobs: dict[str, Job] = {}
        self.blobs: Counter[str] = Counter()

    def note(self, effects: Iterable[object]) -> None:
        """Remember the requests among ``effects`` (the node's answer to one event)."""
        for effect in effects:
            if isinstance(effect, SetTimer):
                self.timers.add(effect.key)
            elif isinstance(effect, RunJob):
                self.jobs[effect.job_id] = effect.job
            elif isinstance(effect, FetchBlob):
                self.blobs[effect.cid] += 1

    def fired(self, key: object) -> bool:
        """Whether ``key`` is an armed timer (then no longer armed)."""
        if not isinstance(key, str) or key not in self.timers:
            return False
        self.timers.discard(key)
        return True

    def finished(self, job_id: object) -> Job | None:
        """The job ``job_id`` names if it is outstanding (then no longer), else None."""
        if not isinstance(job_id, str):
            return None
        return self.jobs.pop(job_id, None)

    def received(self, cid: object) -> bool:
        """Whether a fetch of ``cid`` is outstanding (then one fewer)."""
        if not isinstance(cid, str) or self.blobs[cid] <= 0:
            return False
        self.blobs[cid] -= 1
        if not self.blobs[cid]:
            del self.blobs[cid]
        return True


def result_problem(job: Job, result: Any) -> str | None:
    """None if ``result`` is a proper answer to ``job``, else what is wrong with it."""
    if isinstance(job, TrainJob):
        if not isinstance(result, TrainResult):
            return f"a train job answered with {type(result).__name__}"
        weights = result.weights
        if (
            not isinstance(weights, np.ndarray)
            or weights.dtype.kind != "f"
            or weights.shape != np.shape(job.weights)
        ):
            shape = getattr(weights, "shape", None)
            return f"trained weights of shape {shape}, the job's are {np.shape(job.weights)}"
        if not np.isfinite(weights).all():
            return "trained weights are not finite"
        return None
    if isinstance(job, EvalJob) and not isinstance(result, EvalResult):
        return f"an eval job answered with {type(result).__name__}"
    return None
