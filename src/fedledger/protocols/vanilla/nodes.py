"""Server and client state machines of vanilla FedAvg."""

from __future__ import annotations

import math

import numpy as np

from fedledger.learning.aggregate import AGGREGATORS, AggregationContext, Update
from fedledger.learning.jobs import JobResult
from fedledger.protocols.base import (
    Broadcast,
    CancelTimer,
    Effect,
    EmitMetric,
    Halt,
    JobFinished,
    MessageReceived,
    NodeSetup,
    ReportModel,
    RunJob,
    Send,
    SetTimer,
    Start,
    TimerFired,
    TrainJob,
    TrainResult,
)
from fedledger.protocols.kit import JobId, KitNode, handles
from fedledger.protocols.vanilla.dp import ClientPrivacy, ServerDP
from fedledger.protocols.vanilla.messages import ClientUpdate, Finish, GlobalModel
from fedledger.protocols.vanilla.params import VanillaParams
from fedledger.seeding import derive_seed

TIMEOUT = "round-timeout"
#: The most samples an update may claim: a count beyond 64 bits is no honest count, and
#: a big enough one overflows the float64 weights of weighted aggregation.
MAX_SAMPLES = 2**63 - 1


class Server(KitNode[VanillaParams]):
    """Samples clients, sends the global model, aggregates their updates, repeats.

    With a rule that needs a trusted update (FLTrust), the server also trains the global
    model on its root dataset each round (started with the round, job ``root:<round>``)
    and aggregates once both that job and the clients' updates (or the timeout) are in.
    """

    def __init__(self, setup: NodeSetup[VanillaParams]) -> None:
        super().__init__(setup)
        params = setup.params
        self.params = params
        spec = dict(params.aggregator)
        name = spec.pop("name", "weighted_fedavg")
        self.aggregate = AGGREGATORS.build(name, spec, where="protocol.aggregator")
        self.clients = tuple(sorted(p.node_id for p in setup.all_nodes if p.role == "client"))
        self.weights = setup.initial_weights
        self.round = 0
        self.sampled: tuple[str, ...] = ()
        self.updates: dict[str, ClientUpdate] = {}
        self.trusted: np.ndarray | None = None  # this round's update on the root set
        self.closing = False  # round over, waiting for the trusted update
        self.dp = (
            None
            if params.dp is None
            else ServerDP(params.dp, setup.seed, setup.rounds, len(self.clients), self._per_round())
        )

    def on_start(self, event: Start) -> list[Effect]:
        return self._next_round()

    @handles(ClientUpdate)
    def on_update(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, ClientUpdate)
        sender = event.sender
        if 1 <= msg.round < self.round:
            raise self.gate.fail("late_update", f"{sender}'s update of round {msg.round}")
        if msg.round != self.round:
            raise self.gate.fail("wrong_round", f"{sender}'s update of round {msg.round}")
        if sender not in self.sampled:
            raise self.gate.fail("not_sampled", f"update from {sender!r}")
        if self.closing:
            return []  # the round's timeout has passed: too late
        if sender in self.updates:
            raise self.gate.fail("duplicate", f"second update of {sender}")
        if msg.weights.shape != self.weights.shape:
            self.gate.fail("wrong_shape", f"update of {sender}")
            return [EmitMetric("rejected_updates", 1.0, self.round)]
        if not np.isfinite(msg.weights).all():
            self.gate.fail("bad_weights", f"update of {sender}: non-finite weights")
            return [EmitMetric("rejected_updates", 1.0, self.round)]
        if not 1 <= msg.num_samples <= MAX_SAMPLES or not math.isfinite(msg.loss):
            self.gate.fail("bad_update", f"update of {sender}: {msg.num_samples} samples")
            return [EmitMetric("rejected_updates", 1.0, self.round)]
        self.updates[sender] = msg
        if len(self.updates) == len(self.sampled):
            return [CancelTimer(TIMEOUT), *self._close_round()]
        return []

    def on_timer(self, key: str, event: TimerFired) -> list[Effect]:
        if key == TIMEOUT and not self.closing:
            return self._close_round()
        return []

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        if job_id != JobId("root", self.round) or not isinstance(result, TrainResult):
            return []
        self.trusted = result.weights
        metric = EmitMetric("root_loss", result.loss, self.round)
        return [metric, *self._close_round()] if self.closing else [metric]

    def _per_round(self) -> int:
        k = max(self.params.min_clients, round(self.params.fraction * len(self.clients)))
        return min(k, len(self.clients))

    def _next_round(self) -> list[Effect]:
        eligible = self.clients if self.dp is None else self.dp.eligible(self.clients)
        if not eligible:  # DP budget spent: the run ends here
            return [Broadcast(Finish(self.round), to=self.clients), Halt()]
        self.round += 1
        self.updates = {}
        self.trusted = None
        self.closing = False
        k = min(self._per_round(), len(eligible))
        rng = np.random.default_rng(derive_seed(self.setup.seed, "vanilla-sample", self.round))
        chosen = rng.choice(len(eligible), size=k, replace=False)
        self.sampled = tuple(sorted(eligible[i] for i in chosen))
        if self.dp is not None:
            self.dp.sampled(self.sampled)
        message = GlobalModel(round=self.round, weights=self.weights)
        effects: list[Effect] = [
            Broadcast(message, to=self.sampled),
            SetTimer(TIMEOUT, self.params.round_timeout),
        ]
        if self.params.needs_trusted_update:
            job = TrainJob(
                weights=self.weights,
                settings=self.setup.train,
                seed=derive_seed(self.setup.seed, "vanilla-root", self.round),
                tag=f"root-{self.round}",  # not "round-k": omniscient attacks never see it
            )
            effects.append(RunJob(str(JobId("root", self.round)), job))
        return effects

    def _close_round(self) -> list[Effect]:
        if self.params.needs_trusted_update and self.trusted is None:
            self.closing = True  # aggregate when the root job finishes
            return []
        effects: list[Effect] = []
        if self.updates:
            updates = [
                Update(u.weights, num_samples=u.num_samples, sender=s)
                for s, u in sorted(self.updates.items())
            ]
            context = AggregationContext(
                current=self.weights,
                trusted_update=self.trusted,
                seed=derive_seed(self.setup.seed, "agg", self.round),
            )
            if self.dp is not None:
                updates = self.dp.clip(self.weights, updates)
            self.weights = np.asarray(self.aggregate(updates, context), dtype=np.float32)
        if self.dp is not None:
            self.weights = self.dp.noise(self.weights, len(self.sampled), self.round)
            effects += self.dp.metrics(self.round)
        return effects + self._end_round(len(self.updates))

    def _end_round(self, participants: int) -> list[Effect]:
        """Report the round's model and start the next round (or finish); the secure
        variants (vanilla/secagg.py, vanilla/encrypted.py) call it with their sum's model."""
        effects: list[Effect] = [ReportModel(self.round, self.weights)]
        effects.append(EmitMetric("participants", float(participants), self.round))
        effects += self.gate.new_metrics(self.round)
        if self.round >= self.setup.rounds:
            return [*effects, Broadcast(Finish(self.round), to=self.clients), Halt()]
        return effects + self._next_round()


class Client(KitNode[VanillaParams]):
    """Trains the global model it receives and sends the result back."""

    def __init__(self, setup: NodeSetup[VanillaParams]) -> None:
        super().__init__(setup)
        self.server = setup.plan.peers[0]
        self.round = 0
        self.current = setup.initial_weights  # the global model of the round
        self.privacy = ClientPrivacy(setup.params.dp, setup.seed, self.node_id, setup.rounds)

    @handles(GlobalModel)
    def on_model(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, GlobalModel)
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        if not self.round < msg.round <= self.setup.rounds:
            raise self.gate.fail("wrong_round", f"model of round {msg.round} at {self.round}")
        if msg.weights.shape != self.current.shape or not np.isfinite(msg.weights).all():
            raise self.gate.fail("bad_weights", f"model of round {msg.round}")
        self.round = msg.round
        self.current = msg.weights
        if self.privacy.exhausted():  # the next round would exceed its privacy budget
            return [Halt()]
        job = TrainJob(
            weights=msg.weights,
            settings=self.setup.train,
            seed=derive_seed(self.setup.seed, self.node_id, msg.round),
            tag=f"round-{msg.round}",
        )
        return [RunJob(str(JobId("train", msg.round)), job)]

    @handles(Finish)
    def on_finish(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, Finish)
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        # the server's last round; 0 only when a DP budget is spent before round 1
        first = 0 if self.setup.params.dp is not None else 1
        if not max(self.round, first) <= msg.rounds <= self.setup.rounds:
            raise self.gate.fail("wrong_round", f"finish after round {msg.rounds}")
        return [Halt()]

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        if not isinstance(result, TrainResult):
            return []
        weights, privacy = self.privacy.release(self.current, result, self.round)
        update = ClientUpdate(self.round, weights, result.num_samples, result.loss)
        return [
            *self._send_update(update),
            EmitMetric("train_loss", result.loss, self.round),
            *privacy,
            *self.gate.new_metrics(self.round),
        ]

    def _send_update(self, update: ClientUpdate) -> list[Effect]:
        """How the update leaves the client: in the clear here; masked or encrypted in
        the secure variants (vanilla/secagg.py, vanilla/encrypted.py)."""
        return [Send(self.server, update)]
