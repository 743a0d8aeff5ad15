"""consensus.abci: the four-call boundary, a toy application through ``decide``, and
PoS-BFL's application (check, propose, validate, apply) on real devices."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pytest

from fedledger.assembly.plugins import registries
from fedledger.assembly.services import make_genesis, node_keys, open_node_services
from fedledger.consensus.abci import (
    ACCEPTED,
    AbciError,
    Application,
    ProposeRequest,
    Verdict,
    decide,
)
from fedledger.ledger.records import Block, Transaction, sign
from fedledger.protocols.base import Start, TrainSettings
from fedledger.protocols.posbfl.app import BlockApplied, PosBflApp
from fedledger.protocols.posbfl.messages import WORKER_TX, Outcome, WorkerUpdate
from fedledger.protocols.posbfl.roles import assign_roles, role_counts
from setupkit import make_setup

DIM = 4
SAMPLES = 30


def test_verdicts():
    assert ACCEPTED.ok and bool(Verdict.accept()) and Verdict.accept() is ACCEPTED
    no = Verdict.refuse("wrong_role", "d003 is no worker")
    assert not no.ok and not no and no.reason == "wrong_role"
    with pytest.raises(AbciError, match="non-empty reason"):
        Verdict.refuse("")
    with pytest.raises(dataclasses.FrozenInstanceError):
        no.reason = "x"  # type: ignore[misc]


# ---------------------------------------------------------------- a toy application


@dataclass(frozen=True)
class Batch:
    height: int
    items: tuple[int, ...]


@dataclass
class Summer:
    """Requests are non-negative ints; a proposal batches the pool; apply adds it up."""

    height: int = 0
    total: int = 0
    pool: list[int] = field(default_factory=list)

    def check(self, request: object) -> Verdict:
        if not isinstance(request, int) or request < 0:
            return Verdict.refuse("bad_request", f"{request!r} is no int >= 0")
        self.pool.append(request)
        return ACCEPTED

    def propose(self, request: ProposeRequest[int]) -> Batch:
        return Batch(request.height, tuple(self.pool))

    def validate(self, proposal: Batch) -> Verdict:
        if proposal.height != self.height + 1:
            return Verdict.refuse("wrong_height", f"{proposal.height}")
        if any(i < 0 for i in proposal.items):
            return Verdict.refuse("bad_request", "negative item")
        return ACCEPTED

    def apply(self, decided: Batch) -> int:
        self.height = decided.height
        self.total += sum(decided.items)
        self.pool = [i for i in self.pool if i not in decided.items]
        return self.total


def test_a_toy_application_through_decide():
    app = Summer()
    assert isinstance(app, Application)
    assert app.check(3).ok and app.check(4).ok
    assert app.check(-1).reason == "bad_request"
    mine = app.propose(ProposeRequest(1, 0.0, 0))
    assert mine == Batch(1, (3, 4))
    forged = Batch(1, (3, -100, 200))
    stale = Batch(5, (1,))

    def smallest(candidates: list[Batch]) -> Batch | None:
        return min(candidates, key=lambda b: b.items, default=None)

    decided = decide(app, [forged, stale, mine], smallest)
    assert decided == (mine, 7) and app.height == 1 and app.pool == []
    assert decide(app, [forged, stale], smallest) is None and app.total == 7


# ---------------------------------------------------------------- PoS-BFL's application


class Net:
    """Ten PoS-BFL devices (5/3/2) with keys, one genesis and their stores."""

    def __init__(self, root) -> None:
        reg = registries()["protocol"]
        self.params = reg.params(
            "posbfl", {"workers": 5, "validators": 3, "miners": 2, "local_epochs": 2}
        )
        proto = reg.get("posbfl").factory(self.params)
        self.plans = list(proto.plan(10, 0))
        self.keys = node_keys(self.plans, 0)
        genesis = make_genesis(self.keys, "abci test")
        self.services = {
            p.node_id: open_node_services(p.node_id, root / p.node_id, self.keys, genesis)
            for p in self.plans
        }
        self.devices = {
            p.node_id: proto.create_node(
                make_setup(
                    plan=p,
                    all_nodes=tuple(self.plans),
                    seed=0,
                    train=TrainSettings(epochs=2, lr=0.05, batch_size=10),
                    initial_weights=np.zeros(DIM, np.float32),
                    num_train_samples=SAMPLES,
                    params=self.params,
                    rounds=3,
                    services=self.services[p.node_id],
                )
            )
            for p in self.plans
        }
        self.roles = assign_roles(tuple(sorted(self.devices)), role_counts(self.params, 10), 0, 1)
        for device in self.devices.values():
            device.handle(Start(0.0))

    def close(self) -> None:
        for svc in self.services.values():
            svc.ledger.close()

    def worker_tx(self, worker: str, sender: str | None = None) -> Transaction:
        ctx = self.devices[worker].ctx
        ref = ctx.blobs.store(np.ones(DIM, np.float32), SAMPLES)
        update = WorkerUpdate(1, ref, 2, float(2 * SAMPLES))
        signer = sender or worker
        tx = Transaction(self.keys[signer].address, 1.0, WORKER_TX, update, 1)
        return sign(tx, self.keys[signer])


@pytest.fixture
def net(tmp_path):
    n = Net(tmp_path)
    yield n
    n.close()


def test_posbfl_check_admits_a_worker_transaction_and_counts_a_refusal_once(net):
    device = net.devices[net.roles.validators[0]]
    app = device.app
    assert isinstance(app, Application)
    worker = net.roles.workers[0]
    assert app.check(net.worker_tx(worker)) == ACCEPTED
    intruder = net.roles.miners[0]
    verdict = app.check(net.worker_tx(intruder))
    assert verdict.reason == "wrong_role" and intruder in verdict.detail
    assert device.ctx.gate.counts["wrong_role"] == 1
    forged = dataclasses.replace(net.worker_tx(worker), timestamp=2.0)  # signature broken
    assert app.check(forged).reason == "bad_signature"
    assert device.ctx.gate.rejections()["bad_signature"] == 1
    assert app.check("not a transaction").reason == "bad_payload"


def test_posbfl_propose_validate_apply(net):
    miner = net.roles.miners[0]
    observer = net.devices[net.roles.workers[0]]
    head = net.services[miner].ledger.head()
    with pytest.raises(AbciError, match="not this round's miner"):
        observer.app.propose(ProposeRequest(head.height + 1, 130.0, head))
    app = net.devices[miner].app
    with pytest.raises(AbciError, match="height 5"):
        app.propose(ProposeRequest(5, 130.0, head))
    block = app.propose(ProposeRequest(head.height + 1, 130.0, head))
    assert isinstance(block, Block) and block.header.proposer == net.keys[miner].address
    assert observer.app.validate(block) == ACCEPTED
    # a block whose outcomes disagree with its (absent) votes, signed by the miner
    record = block.header.extra
    bogus = Outcome(b"\x01" * 32, net.keys[net.roles.workers[1]].address, 3, 0)
    forged_record = dataclasses.replace(record, outcomes=(bogus,))
    forged = sign(
        Block.create(head.hash, 1, block.header.proposer, 131.0, (), forged_record),
        net.keys[miner],
    )
    verdict = observer.app.validate(forged)
    assert not verdict.ok and verdict.reason in {"bad_outcome", "no_votes"}
    # an application that has not begun a round refuses to guess one
    worker_app = PosBflApp(net.devices[net.roles.workers[1]].ctx.checks, lambda: head)
    with pytest.raises(AbciError, match="begin_round"):
        worker_app.validate(block)
    # apply credits the block as LedgerState.apply does, on the same state object
    before = copy.deepcopy(observer.state)
    expected_newly = before.apply(block)
    applied = observer.app.apply(block)
    assert applied == BlockApplied(1, 1, expected_newly)
    assert observer.state.stakes == before.stakes and observer.state.round == 1
