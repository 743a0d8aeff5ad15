"""Building an experiment from its config: the protocol, its nodes and their roles,
the partitioned data, the learner, the job runner, and each node's keys and the chains,
blob store and root data its protocol declares (``Protocol.resources``).

The simulator builds every node; a real node process builds the same experiment and
takes only its own node (``only=``), so both hosts run identical protocol objects on
identical data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fedledger.assembly.config import ExperimentConfig, to_yaml
from fedledger.assembly.jobs import JobRunner, NodeLearning
from fedledger.assembly.member_keys import MemberExtras
from fedledger.assembly.plugins import registries
from fedledger.assembly.services import (
    Membership,
    address_book,
    make_genesis,
    node_keys,
    open_node_services,
)
from fedledger.contracts.effects import ContractSpec
from fedledger.crypto import KeyPair, PublicKey
from fedledger.errors import ConfigError
from fedledger.learning.attacks.base import Attack
from fedledger.learning.data import Dataset, FederatedData, NodeData, prepare_federated_data
from fedledger.learning.partition import make_partitioner
from fedledger.learning.train import Learner
from fedledger.ledger.records import Genesis
from fedledger.ledger.sigmemo import SignatureMemo
from fedledger.protocols.base import (
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
    TrainSettings,
)
from fedledger.protocols.meter import CpuMeter
from fedledger.protocols.resources import NodeServices
from fedledger.seeding import derive_seed
from fedledger.storage.layout import RunLayout


@dataclass(frozen=True)
class NodeRole:
    """Who a node is in an experiment: its plan, and its misbehaviour if any."""

    plan: NodePlan
    attack: Attack | None = None
    faults: tuple[str, ...] = ()

    @property
    def honest(self) -> bool:
        return self.attack is None and not self.faults


@dataclass
class Experiment:
    """Everything a host needs to run an experiment's nodes.

    nodes: the protocol state machines built (all, or only the one asked for);
    meters: each built node's CPU meter (``NodeSetup.meter``);
    services: their keys, chains and blob stores as the protocol declared, to be closed
    with :meth:`close`;
    memo: the run-wide signature memo the simulator's nodes share (None for a real node,
    or when built without one): see ``fedledger.ledger.sigmemo``.
    """

    config: ExperimentConfig
    protocol: Protocol
    plans: list[NodePlan]
    roles: list[NodeRole]
    data: FederatedData
    learner: Learner
    jobs: JobRunner
    nodes: dict[str, ProtocolNode]
    services: dict[str, NodeServices]
    meters: dict[str, CpuMeter]
    memo: SignatureMemo | None = None

    def role(self, node_id: str) -> NodeRole:
        for r in self.roles:
            if r.plan.node_id == node_id:
                return r
        raise KeyError(node_id)

    def close(self) -> None:
        for svc in self.services.values():
            svc.close()


def build_protocol(config: ExperimentConfig) -> Protocol:
    comp = registries()["protocol"].get(config.protocol.name, "protocol.name")
    params = registries()["protocol"].params(
        config.protocol.name, config.protocol.params, "protocol"
    )
    return comp.factory(params)


def assign_roles(
    config: ExperimentConfig, plans: list[NodePlan], protocol: Protocol
) -> list[NodeRole]:
    """Attach each malicious group's attack and faults to its nodes."""
    attacks = registries()["attack"]
    by_id = {p.node_id: p for p in plans}
    candidates = [p.node_id for p in plans if p.holds_data]
    rng = np.random.default_rng([config.seed, 11])
    taken: dict[str, tuple[Attack | None, tuple[str, ...]]] = {}
    for i, group in enumerate(config.nodes.malicious):
        where = f"nodes.malicious.{i}"
        unknown = [f for f in group.faults if f not in protocol.faults]
        if unknown:
            allowed = ", ".join(protocol.faults) or "(none)"
            raise ConfigError(
                f"{where}.faults", f"unknown faults {unknown}; {protocol.name} knows: {allowed}"
            )
        if group.ids:
            missing = [n for n in group.ids if n not in by_id]
            if missing:
                raise ConfigError(
                    f"{where}.ids", f"no such nodes {missing}; nodes are {sorted(by_id)}"
                )
            chosen = list(group.ids)
        else:
            free = [n for n in candidates if n not in taken]
            if group.count > len(free):
                raise ConfigError(
                    f"{where}.count", f"{group.count} malicious nodes asked, {len(free)} available"
                )
            chosen = sorted(free[j] for j in rng.choice(len(free), group.count, replace=False))
        for node_id in chosen:
            attack = None
            if group.attack is not None:
                attack = attacks.build(group.attack.name, group.attack.params, f"{where}.attack")
            taken[node_id] = (attack, tuple(group.faults))
    return [NodeRole(p, *taken.get(p.node_id, (None, ()))) for p in plans]


def prepare_data(config: ExperimentConfig, num_holders: int) -> FederatedData:
    reg = registries()
    spec = config.data.dataset
    source = reg["dataset"].build(spec.name, spec.params, "data.dataset")
    part = config.data.partition
    partitioner = make_partitioner(part.name, part.params, where="data.partition")
    return prepare_federated_data(
        source,
        num_holders,
        partitioner,
        test_fraction=config.data.test_fraction,
        val_fraction=config.data.val_fraction,
        seed=config.seed,
    )


def sample_root_set(data: FederatedData, count: int, seed: int, node_id: str) -> NodeData:
    """``count`` samples drawn with the seed, uniformly without replacement, from the union
    of the data holders' clean local training sets (before any data poisoning). They are
    copies: the holders keep all their data, and the global test set is never touched.
    The root set has no validation split."""
    sizes = np.array([len(node.train) for node in data.nodes], dtype=np.int64)
    total = int(sizes.sum())
    if not 0 < count <= total:
        raise ConfigError(
            "protocol.root_samples",
            f"{node_id}'s root set of {count} samples must be drawn from the clients' "
            f"{total} training samples; allowed 1..{total}",
        )
    rng = np.random.default_rng(derive_seed(seed, "root-set", node_id))
    chosen = np.sort(rng.choice(total, size=count, replace=False))
    owner = np.searchsorted(np.cumsum(sizes), chosen, side="right")
    offset = chosen - (np.cumsum(sizes) - sizes)[owner]
    x = np.stack([data.nodes[o].train.x[i] for o, i in zip(owner, offset, strict=True)])
    y = np.array([data.nodes[o].train.y[i] for o, i in zip(owner, offset, strict=True)])
    name = f"{data.test.name.removesuffix('-test')}-root"
    root = Dataset(name, x, y.astype(np.int64), data.num_classes)
    return NodeData(root, root.subset(np.arange(0), f"{name}-val"))


def open_services(
    protocol: Protocol,
    plans: list[NodePlan],
    wanted: list[NodePlan],
    config: ExperimentConfig,
    run_dir: Path,
    durable: bool = True,
    membership: Membership | None = None,
) -> dict[str, NodeServices]:
    """Keys of all nodes, the shared genesis block, and the ``wanted`` nodes' declared
    chains and blob stores under ``run_dir/nodes/<id>/`` (``durable``: fsync every
    commit, as a real node must; the simulator's whole run is its unit of durability).
    Keys are derived from the seed, or come from ``membership`` (a real network)."""
    keys: Mapping[str, KeyPair | PublicKey]
    if membership is None:
        keys = node_keys(plans, config.seed)
        genesis = make_genesis(keys, to_yaml(config), protocol.committees(plans))
        schemes = {p.node_id: protocol.resources(p, plans).extra_schemes for p in plans}
        extras = MemberExtras.derived(config.seed, schemes)  # VRF, secp256k1: if declared
    else:
        keys, genesis = membership.resolve([p.node_id for p in plans], to_yaml(config))
        extras = membership.extras()
    book = address_book(keys)  # one for all the nodes opened here
    assert isinstance(genesis.header.extra, Genesis)
    directory = genesis.header.extra.directory()  # parsed once; each node gets a view
    return {
        p.node_id: open_node_services(
            p.node_id,
            RunLayout(run_dir).node(p.node_id).root,
            keys,
            genesis,
            protocol.resources(p, plans),
            durable=durable,
            extras=extras,
            book=book,
            directory=directory.view(),
        )
        for p in wanted
    }


def build_experiment(
    config: ExperimentConfig,
    run_dir: Path,
    only: str | None = None,
    membership: Membership | None = None,
    signature_memo: bool | None = None,
) -> Experiment:
    """Build the experiment; with ``only``, create just that node (and its services);
    ``membership``: a real network's genesis file and that node's key (default: keys
    derived from the seed); ``signature_memo``: give the nodes one run-wide memo of valid
    signatures, each node still charged its own checks (default: when building every
    node, i.e. for the simulator; a real node keeps its per-node cache only)."""
    protocol = build_protocol(config)
    plans = list(protocol.plan(config.nodes.count, config.seed))
    if only is not None and only not in {p.node_id for p in plans}:
        raise ConfigError("node", f"no node {only!r}; nodes are {[p.node_id for p in plans]}")
    roles = assign_roles(config, plans, protocol)
    holders = [r for r in roles if r.plan.holds_data]
    # a protocol with no data holders (pbft-ledger) still gets one partition: the test set
    # and the model's input shape come from it, and no node is given it
    data = prepare_data(config, max(1, len(holders)))
    model = config.model
    learner = Learner(model.name, model.params, data.test.x.shape[1:], data.test.num_classes)
    initial = learner.init_weights(config.seed)
    num_attackers = max(1, sum(1 for r in holders if r.attack is not None))
    learning = {
        r.plan.node_id: NodeLearning(node_data, r.attack, num_attackers)
        for r, node_data in zip(holders, data.nodes[: len(holders)], strict=True)
        if only is None or r.plan.node_id == only
    }
    for plan in plans:
        count = protocol.resources(plan, plans).root_samples
        if not count:
            continue
        node_id = plan.node_id
        if plan.holds_data:
            raise ConfigError("protocol", f"{node_id} holds a partition and cannot hold a root set")
        if only is None or node_id == only:
            learning[node_id] = NodeLearning(sample_root_set(data, count, config.seed, node_id))
    # a shared evaluation split (DFLBCB's pre-agreed test set): one root set for all nodes
    shared_count = protocol.shared_split_samples()
    shared = sample_root_set(data, shared_count, config.seed, "shared") if shared_count else None
    jobs = JobRunner(learner, learning, config.seed, shared=shared)
    horizon = protocol.horizon(config.rounds)
    train = config.train.model_dump(exclude={"solver"})
    solver_spec = config.train.solver
    settings = TrainSettings(
        **train, solver=solver_spec.name, solver_params=solver_spec.params, horizon=horizon.length
    )
    wanted = [p for p in plans if only is None or p.node_id == only]
    # a real node (only=...) fsyncs every commit; the simulator (every node) need not
    services = open_services(
        protocol, plans, wanted, config, run_dir, durable=only is not None, membership=membership
    )
    nodes = {}
    meters: dict[str, CpuMeter] = {}
    memo = None
    if signature_memo if signature_memo is not None else only is None:
        # every node's directory holds the same members (the genesis block's): one serves
        shared = next(iter(services.values())).directory
        memo = SignatureMemo.calibrated(k.scheme for k in shared.values())
    all_plans = tuple(plans)  # one tuple for every node (a copy each is N squared)
    for r in roles:
        if only is not None and r.plan.node_id != only:
            continue
        if memo is not None:
            svc = services[r.plan.node_id]
            meter = meters.setdefault(r.plan.node_id, CpuMeter())
            directory = memo.directory_for(shared, meter)
            services[r.plan.node_id] = replace(svc, directory=directory)
        setup = NodeSetup(
            plan=r.plan,
            all_nodes=all_plans,
            seed=config.seed,
            train=settings,
            initial_weights=initial,
            num_train_samples=jobs.num_samples(r.plan.node_id),
            params=protocol.params,
            horizon=horizon,
            services=services[r.plan.node_id],
            faults=r.faults,
            meter=meters.setdefault(r.plan.node_id, CpuMeter()),
        )
        nodes[r.plan.node_id] = protocol.create_node(setup)
    return Experiment(
        config, protocol, plans, roles, data, learner, jobs, nodes, services, meters, memo
    )


def declared_contract(
    protocol: Protocol, plans: list[NodePlan]
) -> tuple[ContractSpec | None, list[str]]:
    """The contract spec the nodes declare (``NodeResources.contract``) and the nodes that
    declared it, or (None, []); they must all declare the same spec (one chain per
    experiment). The host that runs the chain is the runtime's (``runtime.sim.chainhost``)."""
    declared = {p.node_id: protocol.resources(p, plans).contract for p in plans}
    specs = {spec for spec in declared.values() if spec is not None}
    if not specs:
        return None, []
    if len(specs) > 1:
        raise ConfigError(
            "protocol",
            f"{protocol.name}'s nodes declare {len(specs)} different contracts; "
            "one shared chain per experiment is allowed",
        )
    return specs.pop(), [n for n, spec in declared.items() if spec is not None]
