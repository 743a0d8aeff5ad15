"""A chain-keeping protocol in the runner: keys, genesis, per-node stores, chain verify."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from typer.testing import CliRunner

from fedledger.assembly.config import parse_config
from fedledger.cli import app
from fedledger.experiment.runner import run_experiment
from fedledger.learning.weights import Layout, to_safetensors
from fedledger.ledger.records import Block, ModelRef, Transaction, sign
from fedledger.protocols.base import (
    PROTOCOLS,
    Halt,
    NodePlan,
    NodeSetup,
    Protocol,
    ProtocolNode,
    ReportModel,
    Start,
)
from fedledger.protocols.resources import MAIN, BlobSpec, CatchUp, ChainSpec, NodeResources
from fedledger.registry import NoParams
from fedledger.storage import cid_of


class Notary(ProtocolNode):
    """On start: store its initial model as a blob, record it in a signed block, halt."""

    def handle(self, event):
        if not isinstance(event, Start):
            return []
        svc = self.setup.services
        assert svc is not None
        weights = self.setup.initial_weights
        blob = to_safetensors(weights, Layout((("w", weights.shape),)))
        cid = svc.blobs.put(blob)
        ref = ModelRef(cid=cid, sha256=hashlib.sha256(blob).digest())
        tx = sign(Transaction(svc.keys.address, event.time, "model", ref), svc.keys)
        head = svc.ledger.head()
        block = Block.create(head.hash, head.height + 1, svc.keys.address, event.time, (tx,))
        svc.ledger.append(sign(block, svc.keys))
        return [ReportModel(1, weights), Halt()]


class NotaryProtocol(Protocol):
    name = "test-notary"

    def resources(self, plan: NodePlan, plans: Sequence[NodePlan]) -> NodeResources:
        # each notary writes its own block: a chain of its own, not one shared chain
        return NodeResources(chains={MAIN: ChainSpec(catch_up=CatchUp.OWN)}, blobs=BlobSpec())

    def plan(self, num_nodes: int, seed: int) -> Sequence[NodePlan]:
        ids = [f"n{i}" for i in range(num_nodes)]
        return [NodePlan(i, "notary", True, tuple(p for p in ids if p != i)) for i in ids]

    def create_node(self, setup: NodeSetup) -> ProtocolNode:
        return Notary(setup)


if "test-notary" not in PROTOCOLS:
    PROTOCOLS.add("test-notary", NotaryProtocol, NoParams, "test only")


@pytest.fixture
def run_dir(tmp_path):
    config = parse_config(
        {"protocol": "test-notary", "nodes": {"count": 3}, "model": {"name": "mlp", "hidden": [4]}}
    )
    result = run_experiment(config, out=tmp_path / "run")
    return result.run_dir


def test_every_node_gets_its_own_ledger_and_blobs_with_one_genesis(run_dir):
    from fedledger.ledger.store import ChainStore

    geneses = set()
    for node in ("n0", "n1", "n2"):
        with ChainStore(run_dir / "nodes" / node / "ledger.sqlite") as store:
            assert store.head().height == 1
            geneses.add(store.genesis().hash)
            (tx,) = store.head().transactions
            assert (run_dir / "nodes" / node / "blobs").is_dir()
            assert cid_of(b"") != tx.payload.cid
    assert len(geneses) == 1


def test_chain_verify_passes_then_names_a_tampered_blob(run_dir):
    runner = CliRunner()
    result = runner.invoke(app, ["chain", "verify", str(run_dir)])
    assert result.exit_code == 0, result.output
    blob = next((run_dir / "nodes" / "n1" / "blobs").rglob("bafk*"))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = runner.invoke(app, ["chain", "verify", str(run_dir)])
    assert result.exit_code == 1
    assert "n1" in result.output and blob.name in result.output


def test_reopening_with_another_genesis_is_refused(run_dir, tmp_path):
    from fedledger.assembly.services import make_genesis, node_keys, open_node_services
    from fedledger.protocols.base import NodePlan as Plan

    keys = node_keys([Plan("n0", "x"), Plan("n1", "x"), Plan("n2", "x")], seed=99)
    other = make_genesis(keys, "another config")
    with pytest.raises(ValueError, match="belongs to another network"):
        open_node_services("n0", run_dir / "nodes" / "n0", keys, other)
