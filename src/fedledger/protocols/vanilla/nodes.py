"""Server and client state machines of vanilla FedAvg."""

from __future__ import annotations

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
from fedledger.protocols.vanilla.messages import ClientUpdate, Finish, GlobalModel
from fedledger.protocols.vanilla.params import VanillaParams
from fedledger.seeding import derive_seed

TIMEOUT = "round-timeout"


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

    def on_start(self, event: Start) -> list[Effect]:
        return self._next_round()

    @handles(ClientUpdate)
    def on_update(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, ClientUpdate)
        if msg.round != self.round or event.sender not in self.sampled or self.closing:
            return []  # late or unsolicited
        if not isinstance(msg.weights, np.ndarray) or msg.weights.shape != self.weights.shape:
            self.gate.fail("wrong_shape", f"update of {event.sender}")
            return [EmitMetric("rejected_updates", 1.0, self.round)]
        self.updates[event.sender] = msg
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

    def _next_round(self) -> list[Effect]:
        self.round += 1
        self.updates = {}
        self.trusted = None
        self.closing = False
        k = max(self.params.min_clients, round(self.params.fraction * len(self.clients)))
        k = min(k, len(self.clients))
        rng = np.random.default_rng(derive_seed(self.setup.seed, "vanilla-sample", self.round))
        chosen = rng.choice(len(self.clients), size=k, replace=False)
        self.sampled = tuple(sorted(self.clients[i] for i in chosen))
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
            self.weights = np.asarray(self.aggregate(updates, context), dtype=np.float32)
        effects.append(ReportModel(self.round, self.weights))
        effects.append(EmitMetric("participants", float(len(self.updates)), self.round))
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

    @handles(GlobalModel)
    def on_model(self, event: MessageReceived) -> list[Effect]:
        msg = event.message
        assert isinstance(msg, GlobalModel)
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        self.round = msg.round
        job = TrainJob(
            weights=msg.weights,
            settings=self.setup.train,
            seed=derive_seed(self.setup.seed, self.node_id, msg.round),
            tag=f"round-{msg.round}",
        )
        return [RunJob(str(JobId("train", msg.round)), job)]

    @handles(Finish)
    def on_finish(self, event: MessageReceived) -> list[Effect]:
        if event.sender != self.server:
            raise self.gate.fail("not_the_server", event.sender)
        return [Halt()]

    def on_job(self, job_id: JobId | None, result: JobResult, event: JobFinished) -> list[Effect]:
        if not isinstance(result, TrainResult):
            return []
        update = ClientUpdate(self.round, result.weights, result.num_samples, result.loss)
        return [
            Send(self.server, update),
            EmitMetric("train_loss", result.loss, self.round),
            *self.gate.new_metrics(self.round),
        ]
