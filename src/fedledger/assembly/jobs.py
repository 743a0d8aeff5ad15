"""Running a node's learning jobs on its local data, with its attack wrapped around.

Hosts (the simulator, a real node process) hand every ``RunJob`` effect to a
``JobRunner``. The runner owns each node's data and its configured attack, so a
malicious node runs exactly the honest protocol code: its data is poisoned once when it
is set up, and each trained model passes through the attack before the protocol sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from fedledger.learning.attacks.base import Attack, AttackContext
from fedledger.learning.data import NodeData
from fedledger.learning.train import Learner
from fedledger.protocols.base import (
    EvalJob,
    EvalResult,
    Job,
    JobResult,
    NodeId,
    TrainJob,
    TrainResult,
)
from fedledger.seeding import stable_int

#: Given a job's tag, the honest trained weights of that tag known so far.
HonestSource = Callable[[str], tuple[np.ndarray, ...]]


@dataclass(frozen=True)
class NodeLearning:
    """One node's local data and its attack (None for an honest node)."""

    data: NodeData
    attack: Attack | None = None
    num_attackers: int = 1


class JobRunner:
    """Executes train and evaluation jobs for the nodes of one host."""

    def __init__(
        self, learner: Learner, nodes: Mapping[NodeId, NodeLearning], seed: int,
        shared: NodeData | None = None,
    ) -> None:
        """``shared``: one evaluation set every node may score on (``EvalJob(split=
        "shared")``), drawn once per experiment, so that a committee's members score a
        model on identical data (DFLBCB's pre-agreed test set); None for none."""
        self.learner = learner
        self.seed = seed
        self.shared = shared
        self._nodes: dict[NodeId, NodeLearning] = {}
        for node_id, spec in nodes.items():
            self._nodes[node_id] = self._poisoned(node_id, spec)

    def _poisoned(self, node_id: NodeId, spec: NodeLearning) -> NodeLearning:
        if spec.attack is None:
            return spec
        train = spec.data.train
        rng = np.random.default_rng([self.seed, stable_int(node_id), 1])
        x, y = spec.attack.poison_data(train.x, train.y, train.num_classes, rng)
        if x is train.x and y is train.y:
            return spec
        data = NodeData(train=replace(train, x=x, y=y), val=spec.data.val)
        return NodeLearning(data, spec.attack, spec.num_attackers)

    def is_honest(self, node_id: NodeId) -> bool:
        node = self._nodes.get(node_id)
        return node is None or node.attack is None

    def is_omniscient(self, node_id: NodeId) -> bool:
        """Whether the node's attack reads the honest updates of its round."""
        node = self._nodes.get(node_id)
        return node is not None and node.attack is not None and node.attack.omniscient

    def needs_honest(self, node_id: NodeId, job: Job) -> bool:
        return isinstance(job, TrainJob) and job.shared and self.is_omniscient(node_id)

    def num_samples(self, node_id: NodeId) -> int:
        node = self._nodes.get(node_id)
        return 0 if node is None else len(node.data.train.y)

    def num_eval(self, node_id: NodeId) -> int:
        node = self._nodes.get(node_id)
        return 0 if node is None else len(node.data.val.y)

    def run(self, node_id: NodeId, job: Job, honest: HonestSource | None = None) -> JobResult:
        node = self._nodes[node_id]
        if isinstance(job, EvalJob):
            return self._evaluate(node, job)
        return self._train(node_id, node, job, honest)

    def _evaluate(self, node: NodeLearning, job: EvalJob) -> EvalResult:
        if job.split == "shared":
            if self.shared is None:
                raise ValueError("EvalJob.split 'shared': this experiment has no shared split")
            data = self.shared.train
            return self.learner.evaluate(job.weights, data.x, data.y)
        if job.split not in ("val", "train"):
            raise ValueError(
                f"EvalJob.split must be 'val', 'train' or 'shared', got {job.split!r}"
            )
        data = node.data.val if job.split == "val" else node.data.train
        return self.learner.evaluate(job.weights, data.x, data.y)

    def _train(
        self, node_id: NodeId, node: NodeLearning, job: TrainJob, honest: HonestSource | None
    ) -> TrainResult:
        train = node.data.train
        x, y = train.x, train.y
        if job.samples is not None:
            start, stop = job.samples
            x, y = x[start:stop], y[start:stop]
        result = self.learner.train(
            job.weights, x, y, job.settings, job.seed, momentum_buffer=job.momentum_buffer
        )
        if node.attack is None or not job.shared:
            return result
        context = AttackContext(
            start=job.weights,
            honest=honest(job.tag) if (honest and node.attack.omniscient) else (),
            num_attackers=node.num_attackers,
            seed=job.seed,
        )
        poisoned = node.attack.poison_model(result.weights, context)
        weights = np.asarray(poisoned, dtype=np.float32)
        return replace(result, weights=weights)
