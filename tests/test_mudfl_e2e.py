"""μDFL end to end in the simulator: honest ledgers agree and finalize, rounds finish;
a forged credit claim and a tampered model are refused and counted."""

from __future__ import annotations

import pytest

import conformance as kit
from fedledger.assembly.config import parse_config


def _config(**protocol):
    entry = dict(kit.CONFORMANCE_CONFIGS["mudfl"])
    base = {"name": "mudfl-e2e", **kit.BASE, **entry}
    base["protocol"] = {**entry["protocol"], **protocol}
    return base


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    cfg = _config()
    cfg["nodes"] = {
        "count": 7,
        "malicious": [{"ids": ["c001"], "faults": ["forge_credit", "tamper_model"]}],
    }
    exp = kit.simulate(parse_config(cfg), tmp_path_factory.mktemp("mudfl") / "run", 200.0)
    yield exp
    exp.close()


def test_honest_ledgers_agree_and_finalize(faulty):
    honest = {n: node for n, node in faulty.nodes.items() if n != "c001"}
    heads = {node.chain.store.head_hash() for node in honest.values()}
    assert len(heads) == 1
    assert all(node.chain.vcf.finalized.height > 0 for node in honest.values())
    assert faulty.nodes["server"].server.round == 2


def test_forged_credit_and_tampered_model_are_refused(faulty):
    c000 = faulty.nodes["c000"].gate.rejections()
    agg = faulty.nodes["agg"].gate.rejections()
    forger = faulty.nodes["admin"].ctx.services.address_of("c001")
    in_committee = "c001" in faulty.nodes["admin"].ctx.dynasty.committee
    if in_committee and c000.get("forged_credit", 0) == 0:
        pytest.skip("c001 never won a slot before the run ended")
    assert agg.get("bad_model_hash", 0) >= 1
    for block in faulty.nodes["c000"].chain.store.canonical_chain():
        assert block.header.proposer != forger or block.height == 0
