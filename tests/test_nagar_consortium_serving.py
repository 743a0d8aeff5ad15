"""Consortium mode: a storage member serves what it stores only to the nodes that read whole
sealed blobs (devices; the decryption committee when updates are encrypted), so a curious
member cannot gather every chunk and t key shares from the others (``vault_snoop``)."""

from __future__ import annotations

from pathlib import Path

from fedledger.assembly.build import build_experiment
from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment, simulator_for
from fedledger.ledger.store import ChainStore
from fedledger.protocols.nagar.chainstate import submissions
from fedledger.protocols.nagar.faults import VAULT_SNOOP


def _cfg(malicious: list[dict]) -> dict:
    return {
        "name": "serving",
        "seed": 3,
        "rounds": 2,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": []},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "protocol": {
            "name": "nagar",
            "miners": 3,
            "optimizer": "fedavg",
            "local_batch_size": 1,
            "consensus": "pos",
            "consortium": {"threshold": 2},
        },
        "nodes": {"count": 7, "malicious": malicious},
        "output": {"plots": False},
    }


class _Quiet:
    def on_report(self, *args: object) -> None: ...

    def on_metric(self, *args: object) -> None: ...


def test_a_snooping_member_is_served_no_part_and_opens_no_blob(tmp_path: Path) -> None:
    snoop = [{"ids": ["m000"], "faults": [VAULT_SNOOP]}]
    exp = build_experiment(parse_config(_cfg(snoop)), tmp_path / "snoop")
    sim = simulator_for(exp, _Quiet())
    sim.run()
    snooper = exp.nodes["m000"]
    # it asked the other members for their parts; none was handed over
    assert sum(sim.stats.blobs_refused.values()) > 0
    assert not snooper.ciphers and not snooper.vectors
    assert snooper.gate.counts.get("vault_unreadable", 0) > 0
    # the devices were served and finished every round as in an honest run
    devices = [n for n in exp.nodes.values() if n.role == "device"]
    assert all(len(d.state.blocks) == len(devices[0].state.blocks) for d in devices)
    with ChainStore(tmp_path / "snoop" / "nodes" / "r000" / "ledger.sqlite") as chain:
        sealed = [i.sub.vault for b in chain.canonical_chain() for i in submissions(b)]
    assert sealed and all(v is not None for v in sealed)
    member, other, device = exp.nodes["m001"], "m002", devices[0].node_id
    part = sealed[0].chunks[0]
    assert member.may_serve(device, part)
    assert not member.may_serve(other, part) and not member.may_serve("r000", part)


def test_an_honest_consortium_run_refuses_no_fetch(tmp_path: Path) -> None:
    result = run_experiment(parse_config(_cfg([])), tmp_path / "honest")
    nagar = result.summary["nagar"]
    assert nagar["device_accuracy"] > 0.8 and not nagar["rejected"], nagar
