"""The simulator's chain host: the DFLBCB contract deployed, initialized and called
by sans-IO toy nodes through effects, receipts and logs coming back as events."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.assembly.build import declared_contract
from fedledger.contracts import eth
from fedledger.contracts.dflbcb import SOURCE, Genesis
from fedledger.contracts.effects import (
    CHAIN_EFFECTS,
    ContractCall,
    ContractDeploy,
    ContractLog,
    ContractReceipt,
    ContractSpec,
)
from fedledger.errors import ConfigError
from fedledger.protocols.base import (
    EmitMetric,
    NodePlan,
    NodeSetup,
    ProtocolNode,
    SetTimer,
    Start,
    TimerFired,
    TrainSettings,
)
from fedledger.protocols.resources import NodeResources
from fedledger.runtime.effects import EffectError
from fedledger.runtime.sim import ComputeModel, LinkSpec, NetworkModel, Simulator
from fedledger.runtime.sim.chainhost import START_TIME, ChainHost
from setupkit import make_setup

ETH = 10**18
INIT = eth.EthKey.from_seed(0, "init")
PEER = eth.EthKey.from_seed(0, "peer")
MEMBERS = [eth.EthKey.from_seed(0, f"m{i}") for i in range(4)]


class Recorder:
    def __init__(self) -> None:
        self.metrics: list[tuple[str, float, str, float]] = []

    def on_report(self, node_id, time, step, weights):
        pass

    def on_metric(self, node_id, time, metric):
        self.metrics.append((node_id, time, metric.name, metric.value))


class NoJobs:
    def num_samples(self, node_id):
        return 0

    def num_eval(self, node_id):
        return 0

    def is_honest(self, node_id):
        return True

    def is_omniscient(self, node_id):
        return False

    def needs_honest(self, node_id, job):
        return False

    def run(self, node_id, job, honest=None):
        raise AssertionError("no jobs here")


def setup(node_id: str) -> NodeSetup:
    plan = NodePlan(node_id, "peer", False, ())
    return make_setup(
        plan=plan, all_nodes=(plan,), seed=0, train=TrainSettings(),
        initial_weights=np.zeros(3, np.float32), num_train_samples=0,
        params=None, rounds=1,  # type: ignore[arg-type]
    )


class Initiator(ProtocolNode):
    """Deploys, initializes at t=2.5 s, then tries to initialize again (reverts)."""

    def __init__(self, s: NodeSetup) -> None:
        super().__init__(s)
        self.address = ""
        self.seen: list[object] = []

    def _init(self, call_id: str) -> ContractCall:
        g = Genesis(committee=tuple(m.address for m in MEMBERS), model_hash=b"\x01" * 32)
        return ContractCall(
            call_id, self.address, "initialize",
            ([m.address for m in MEMBERS], g.model_hash, g.params.as_tuple(),
             list(g.curve_x), list(g.curve_y)),
            INIT.address,
        )

    def handle(self, event):
        self.seen.append(event)
        if isinstance(event, Start):
            return [ContractDeploy("deploy", INIT.address)]
        if isinstance(event, ContractReceipt) and event.call_id == "deploy":
            self.address = event.address
            return [SetTimer("init", 2.5)]
        if isinstance(event, TimerFired):
            return [self._init("init-1")]
        if isinstance(event, ContractReceipt) and event.call_id == "init-1":
            return [self._init("init-2")]
        if isinstance(event, ContractReceipt):
            return [EmitMetric(f"receipt-{event.call_id}", float(event.status), 0)]
        return []


class Peer(ProtocolNode):
    """Registers when it sees the Initialized log."""

    def __init__(self, s: NodeSetup) -> None:
        super().__init__(s)
        self.seen: list[object] = []

    def handle(self, event):
        self.seen.append(event)
        if isinstance(event, ContractLog) and event.log.event == "Initialized":
            return [ContractCall("reg", event.log.address, "register", (), PEER.address, ETH)]
        return []


def run_chain(**blocks: object) -> tuple[Initiator, Peer, ChainHost, Recorder]:
    spec = ContractSpec(SOURCE, accounts=((INIT.address, 10 * ETH), (PEER.address, 10 * ETH)),
                        **blocks)  # type: ignore[arg-type]
    host = ChainHost(spec, ["init", "peer"])
    init, peer = Initiator(setup("init")), Peer(setup("peer"))
    rec = Recorder()
    net = NetworkModel(LinkSpec(0.01, 1e6, 0.0))
    sim = Simulator({"init": init, "peer": peer}, {}, NoJobs(), net, ComputeModel(), rec,
                    declared_effects=CHAIN_EFFECTS, chain=host)
    sim.run()
    return init, peer, host, rec


def test_receipts_and_logs_arrive_at_the_call_time_in_order():
    init, peer, _, _ = run_chain()
    receipts = [e for e in init.seen if isinstance(e, ContractReceipt)]
    assert [r.call_id for r in receipts] == ["deploy", "init-1", "init-2"]
    deploy, first, second = receipts
    assert deploy.status and deploy.time == 0.0 and deploy.address
    assert first.status and first.time == 2.5 and first.gas > 21_000
    assert [log.event for log in first.logs] == ["Initialized"]
    assert not second.status and "already initialized" in second.error
    # both subscribers got every log (the peer's Registered too), at the call's time,
    # after the sender's receipt
    for node in (init, peer):
        logs = [e for e in node.seen if isinstance(e, ContractLog)]
        assert [(e.time, e.log.event) for e in logs] == [(2.5, "Initialized"),
                                                          (2.5, "Registered")]
    i_receipt = init.seen.index(first)
    assert init.seen.index(next(e for e in init.seen if isinstance(e, ContractLog))) > i_receipt


def test_the_contract_state_follows_the_calls_and_blocks_carry_virtual_time():
    _, peer, host, _ = run_chain()
    reg = next(e for e in peer.seen if isinstance(e, ContractReceipt))
    assert reg.status and reg.call_id == "reg"
    address = next(e for e in peer.seen if isinstance(e, ContractLog)).log.address
    assert host.backend.call(address, "pool", (PEER.address,)) == ETH
    assert host.backend.call(address, "stage", ()) == 0 and host.backend.call(address, "it", ())
    # the initiator's second call runs while it handles its receipt, before the peer
    # handles the log that makes it register
    assert [(n, r.fn, r.status) for n, r in host.receipts] == [
        ("init", "__init__", True), ("init", "initialize", True),
        ("init", "initialize", False), ("peer", "register", True)]
    assert host.backend.timestamp == START_TIME + 2  # mined at int(2.5) s of virtual time
    blocks = [r.block for _, r in host.receipts]
    assert blocks == sorted(set(blocks))  # one block per call


def test_runs_are_deterministic():
    a = [(type(e).__name__, e.time) for e in run_chain()[1].seen]
    b = [(type(e).__name__, e.time) for e in run_chain()[1].seen]
    assert a == b


def test_a_host_without_a_chain_refuses_a_protocol_with_chain_effects():
    net = NetworkModel(LinkSpec(0.01, 1e6, 0.0))
    with pytest.raises(EffectError, match="ContractCall"):
        Simulator({"peer": Peer(setup("peer"))}, {}, NoJobs(), net, ComputeModel(), Recorder(),
                  declared_effects=CHAIN_EFFECTS)


@pytest.mark.parametrize("bad", [{"block_time": -1.0}, {"block_time": float("nan")},
                                 {"block_mode": "poisson"}])
def test_spec_refuses_bad_block_times(bad):
    with pytest.raises(ValueError, match="block_"):
        ContractSpec(SOURCE, **bad)


def test_fixed_blocks_include_calls_in_the_next_block_at_its_time():
    init, peer, host, _ = run_chain(block_time=2.0)
    receipts = [e for e in init.seen if isinstance(e, ContractReceipt)]
    # deploy sent at 0 -> block at 2; initialize sent at 2 + 2.5 -> block at 6; the second
    # initialize sent on that receipt at 6 -> block at 8
    assert [(r.call_id, r.time) for r in receipts] == [("deploy", 2.0), ("init-1", 6.0),
                                                       ("init-2", 8.0)]
    assert receipts[1].status and not receipts[2].status
    # the peer registers on the Initialized log (delivered at 6, after the receipt): its
    # call shares the block at 8 with the initiator's second initialize
    reg = next(e for e in peer.seen if isinstance(e, ContractReceipt))
    assert reg.time == 8.0 and reg.block == receipts[2].block
    assert [(t, n) for t, _, n in host.blocks] == [(2.0, 1), (6.0, 1), (8.0, 2)]
    logs = [(e.time, e.log.event) for e in init.seen if isinstance(e, ContractLog)]
    assert logs == [(6.0, "Initialized"), (8.0, "Registered")]
    assert init.seen.index(receipts[1]) < next(
        i for i, e in enumerate(init.seen) if isinstance(e, ContractLog))
    assert host.backend.timestamp == START_TIME + 8  # block.timestamp is virtual time


def test_exponential_blocks_are_seeded_and_later_than_the_call():
    a = run_chain(block_time=13.0, block_mode="exponential")
    b = run_chain(block_time=13.0, block_mode="exponential")
    times = [e.time for e in a[0].seen if isinstance(e, ContractReceipt)]
    assert times == [e.time for e in b[0].seen if isinstance(e, ContractReceipt)]
    assert times[0] > 0.0 and times[1] > times[0] + 2.5 and times[2] > times[1]
    host = a[2]
    assert host.backend.timestamp == START_TIME + int(host.blocks[-1][0])


def test_exponential_gaps_have_the_configured_mean():
    spec = ContractSpec(SOURCE, block_time=13.0, block_mode="exponential")
    host = ChainHost(spec, ["n0"], seed=3)
    gaps = [host.next_block_time(100.0) - 100.0 for _ in range(20_000)]
    mean = sum(gaps) / len(gaps)
    assert min(gaps) > 0 and abs(mean - 13.0) < 0.4  # std error 13 / sqrt(20000) = 0.09
    other = ChainHost(spec, ["n0"], seed=4)
    assert other.next_block_time(0.0) != ChainHost(spec, ["n0"], seed=3).next_block_time(0.0)
    fixed = ChainHost(ContractSpec(SOURCE, block_time=13.0), ["n0"])
    assert [fixed.next_block_time(t) for t in (0.0, 12.9, 13.0, 30.0)] == [13, 13, 26, 39]


class Declares:
    """Stands in for a Protocol: node ``i`` declares ``specs[i]``."""

    name = "toy"

    def __init__(self, specs: list[ContractSpec | None]) -> None:
        self.specs = specs

    def resources(self, plan: NodePlan, plans: object) -> NodeResources:
        return NodeResources(contract=self.specs[int(plan.node_id[1:])])


def plans(n: int) -> list[NodePlan]:
    return [NodePlan(f"n{i}", "peer", False, ()) for i in range(n)]


def test_one_chain_for_the_nodes_that_declare_the_contract():
    spec = ContractSpec(SOURCE, accounts=((PEER.address, ETH),))
    found, subscribers = declared_contract(Declares([spec, None, spec]), plans(3))  # type: ignore[arg-type]
    assert found == spec and subscribers == ["n0", "n2"]
    host = ChainHost(found, subscribers)
    assert host.subscribers == ("n0", "n2")
    assert host.backend.balance(PEER.address) == ETH
    assert declared_contract(Declares([None, None]), plans(2)) == (None, [])  # type: ignore[arg-type]
    other = ContractSpec(SOURCE, chain_id=5)
    with pytest.raises(ConfigError, match="2 different contracts"):
        declared_contract(Declares([spec, other]), plans(2))  # type: ignore[arg-type]
