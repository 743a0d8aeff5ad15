"""Nagar's consortium mode (configs/nagar-consortium.yaml, 3 rounds) as real node
processes on loopback, with one storage member (a miner, t = 2 < m = 3) killed by
SIGKILL after the first round's blocks: the PoS backups keep every later step's block
coming, the devices read every sealed blob from the other members' chunks and key
shares, every live node's ledger is the same chain (the dead member's a prefix of it),
`fedledger chain verify` passes, and no member's store holds a whole blob or the parts
to open one.

Processes are stopped and checked by the ``nets`` fixture of test_net_processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fedledger.ledger.store import ChainStore
from fedledger.protocols.nagar.chainstate import submissions
from fedledger.protocols.nagar.vault import VaultError, unseal
from fedledger.storage.blobs import BlobStore
from test_net_bfl import STARTUP, chain, kill9, launch, metric_rows, verify, write
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

pytestmark = pytest.mark.long  # 80-95 s: run by make test-long, not make test

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "nagar-consortium.yaml"
ROUNDS = 3  # plan, stats, then grad and update per round: 8 steps of 8 s
MEMBERS = ("m000", "m001", "m002")
DEVICES = ("d000", "d001", "d002", "d003")
KILLED = "m002"


def test_consortium_localnet_survives_sigkill_of_a_member(tmp_path: Path, nets) -> None:  # noqa: F811
    tree = yaml.safe_load(CONFIG.read_text())
    tree.update(rounds=ROUNDS, output={"plots": False})
    run = tmp_path / "run"
    net = launch(nets, write(tmp_path, tree), run, STARTUP + 150)

    def height() -> int:
        blocks = metric_rows(journal(net, "r000"), "block")
        return int(max((r["value"] for r in blocks), default=0))

    wait_until(lambda: height() >= 3, STARTUP + 60, "the plan, stats and a first block")
    kill9(net, KILLED)
    killed_at = height()
    assert net.wait(tick=0.2), f"not all nodes halted: {net.procs.alive()}"
    result = net.gather()
    codes = {n: c for n, c in result.exit_codes.items() if n != KILLED}
    assert set(codes.values()) == {0}, result.exit_codes

    # every step has its block, the ones after the kill from the live members
    blocks = metric_rows(journal(net, "r000"), "block")
    assert sorted(int(r["value"]) for r in blocks) == list(range(1, 2 * ROUNDS + 3))
    late = {r["tags"]["miner"] for r in blocks if r["value"] > killed_at + 1}
    assert late and KILLED not in late
    for device in DEVICES:
        reported = [r for r in journal(net, device) if r["kind"] == "model"]
        assert reported and max(r["step"] for r in reported) == ROUNDS, device
    live = [n for n in ("r000", *MEMBERS, *DEVICES) if n != KILLED]
    chains = {n: chain(net, n) for n in live}
    assert len({tuple(c) for c in chains.values()}) == 1, "the live ledgers differ"
    dead = chain(net, KILLED)
    assert dead == chains["r000"][: len(dead)]
    verify(run)

    with ChainStore(net.node_dir("r000") / "ledger.sqlite") as store:
        subs = [i.sub for b in store.canonical_chain() for i in submissions(b)]
    assert subs and all(s.vault is not None for s in subs)
    for member in MEMBERS:
        own = BlobStore(net.node_dir(member) / "blobs")
        for sub in subs:
            vault = sub.vault
            assert vault is not None and not own.has(sub.model.cid)
            held = {c: own.get(c) for c in (*vault.chunks, *vault.shares) if own.has(c)}
            assert sum(s in held for s in vault.shares) <= 1
            with pytest.raises(VaultError):
                unseal(vault, held)
