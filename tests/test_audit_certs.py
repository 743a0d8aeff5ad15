"""``fedledger chain verify`` checks each pbft-ledger block's 2f+1 commit certificate
against the replica committee the genesis records.

A Byzantine replica signs the blocks of its own chain, so it can rewrite that chain with
every header signature and link intact; only the certificates show that a batch did
not commit. Each forgery below is such a rewrite: the ledger audit alone passes it, the
certificate check reports it with the block's height.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.assembly.build import build_protocol
from fedledger.assembly.config import parse_config
from fedledger.assembly.services import node_keys
from fedledger.cli import app
from fedledger.experiment.audit_run import verify
from fedledger.experiment.runner import run_experiment
from fedledger.ledger.audit import audit_path
from fedledger.ledger.records import Block, sign
from fedledger.ledger.roster import roster_of
from fedledger.ledger.store import ChainStore
from fedledger.storage.layout import RunLayout

N, F = 4, 1
VICTIM = "r02"  # a Byzantine replica rewriting its own chain


def experiment() -> dict:
    return {
        "name": "pbft-certs",
        "seed": 4,
        "rounds": 4,
        "data": {"dataset": "digits"},
        "model": {"name": "mlp", "hidden": [8]},
        "protocol": {"name": "pbft-ledger", "clients": 1, "rate": 20.0,
                     "view_timeout": 0.5, "client_retry": 0.5, "linger": 1.0},
        "nodes": {"count": N},
        "network": {"latency": 0.01},
        "max_time": 60.0,
        "output": {"plots": False},
    }  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs") / "run"
    run_experiment(parse_config(experiment()), out=out)
    return out


def _blocks(path: Path) -> list[Block]:
    with ChainStore(path) as store:
        return list(store.canonical_chain())


def _rewrite(run_dir: Path, target: Path, change) -> None:  # type: ignore[no-untyped-def]
    """Copy ``run_dir`` to ``target`` with VICTIM's chain re-signed by VICTIM after
    ``change(height, certificate, previous certificate)`` replaced the certificate of
    each block (links follow: every header is rebuilt on its new parent)."""
    shutil.copytree(run_dir, target)
    ledger = RunLayout(target).node(VICTIM).ledger
    for suffix in ("", "-wal", "-shm"):
        Path(f"{ledger}{suffix}").unlink(missing_ok=True)
    blocks = _blocks(RunLayout(run_dir).node(VICTIM).ledger)
    cfg = parse_config(experiment())
    key = node_keys(list(build_protocol(cfg).plan(N, cfg.seed)), cfg.seed)[VICTIM]
    with ChainStore(ledger) as store:
        store.append(blocks[0])
        parent = blocks[0].hash
        for prev, block in itertools.pairwise(blocks):
            h = block.header
            cert = change(block.height, h.extra, prev.header.extra)
            new = sign(
                Block.create(parent, h.height, h.proposer, h.timestamp, block.transactions, cert),
                key,
            )
            store.append(new)
            parent = new.hash


def test_an_honest_pbft_run_verifies_with_every_certificate_checked(run_dir):
    blocks = _blocks(RunLayout(run_dir).node("r00").ledger)
    roster = roster_of(blocks[0])
    assert roster is not None and len(roster.committee("pbft")) == N  # the genesis records it
    report = verify(run_dir)
    assert report.ok, report.describe()
    checked = sum(len(_blocks(RunLayout(run_dir).node(f"r{i:02d}").ledger)) - 1 for i in range(N))
    assert checked >= N
    assert f"{checked} commit certificate(s) checked" in " ".join(report.notes)


@pytest.mark.parametrize(
    ("forgery", "reason"),
    [
        ("short", f"{2 * F} commits, need {2 * F + 1}"),
        ("duplicate", "counted twice"),
        ("other_batch", "the certificate is for sequence"),
    ],
)
def test_a_forged_or_short_certificate_is_reported(run_dir, tmp_path, forgery, reason):
    height = 2

    def change(h, cert, previous):  # type: ignore[no-untyped-def]
        if h != height:
            return cert
        quorum = cert.commits[: 2 * F + 1]
        if forgery == "short":
            return dataclasses.replace(cert, commits=quorum[:-1])
        if forgery == "duplicate":  # 2f+1 entries, 2f distinct signers
            return dataclasses.replace(cert, commits=(*quorum[:-1], quorum[0]))
        return previous  # a valid certificate of another batch

    forged = tmp_path / "forged"
    _rewrite(run_dir, forged, change)
    assert audit_path(forged).ok, "the rewrite must pass the ledger audit on its own"
    report = verify(forged)
    assert not report.ok
    found = [p for p in report.problems if p.field == "certificate"]
    assert [(p.node, p.height) for p in found] == [(VICTIM, height)], report.problems
    assert reason in found[0].reason
    result = CliRunner().invoke(app, ["chain", "verify", str(forged)])
    assert result.exit_code == 1
    assert f"node {VICTIM}, height {height}" in result.output
