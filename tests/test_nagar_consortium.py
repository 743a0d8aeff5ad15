"""Nagar's consortium mode (Sec. III-B): blobs sealed with AES-GCM, the ciphertext in
chunks on the storage members (miners), the key Shamir-shared t of m, so no single member
holds a whole blob or its key; PoS among permissioned miners; every device every round."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from pydantic import ValidationError

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.ledger.store import ChainStore
from fedledger.protocols.nagar.chainstate import submissions
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.vault import (
    Reassembly,
    VaultError,
    digest,
    holders,
    member_parts,
    seal,
    unseal,
)
from fedledger.storage.blobs import BlobStore

BLOB = bytes(range(256)) * 40


def _parts(sealed, chunks, shares, members) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for i in members:
        for part in member_parts(sealed, chunks, shares, i):
            out[digest(part)] = part
    return out


@pytest.mark.parametrize(("t", "m"), [(2, 3), (3, 5), (4, 4)])
def test_no_member_holds_every_chunk_or_the_key(t: int, m: int) -> None:
    sealed, chunks, shares = seal(BLOB, t, m, random.Random(1))
    for i in range(m):
        own = _parts(sealed, chunks, shares, [i])
        assert sum(c in own for c in sealed.chunks) == len(holders(0, m)) < m
        assert sum(s in own for s in sealed.shares) == 1
        assert BLOB not in b"".join(own.values())
        with pytest.raises(VaultError):
            unseal(sealed, own)
    # each chunk is on two members: losing any one member (t <= m - 1) loses nothing
    for lost in range(m):
        rest = _parts(sealed, chunks, shares, [i for i in range(m) if i != lost])
        if t <= m - 1:
            assert unseal(sealed, rest) == BLOB
        else:
            with pytest.raises(VaultError, match="key shares"):
                unseal(sealed, rest)


def test_t_minus_one_shares_do_not_open_a_blob_even_with_every_chunk() -> None:
    sealed, chunks, shares = seal(BLOB, 3, 4, random.Random(2))
    have = {digest(c): c for c in chunks}
    have.update({digest(s): s for s in shares[:2]})
    with pytest.raises(VaultError, match="key shares"):
        unseal(sealed, have)
    have[digest(shares[3])] = shares[3]
    assert unseal(sealed, have) == BLOB


def test_a_tampered_chunk_or_share_is_refused() -> None:
    sealed, chunks, shares = seal(BLOB, 2, 3, random.Random(3))
    have = _parts(sealed, chunks, shares, range(3))
    bad = dict(have)
    bad[sealed.chunks[1]] = b"\x00" + chunks[1][1:]
    with pytest.raises(VaultError, match="does not open"):
        unseal(sealed, bad)
    forged = dict(have)
    for s in sealed.shares:
        forged[s] = forged[s][:2] + bytes(66)
    with pytest.raises(VaultError):
        unseal(sealed, forged)


def test_reassembly_waits_then_opens_or_gives_up() -> None:
    sealed, chunks, shares = seal(BLOB, 2, 3, random.Random(4))
    r = Reassembly()
    r.want("blob", sealed)
    parts = [*sealed.chunks, *sealed.shares]
    for p in parts:
        r.pending[p] = ("blob", 0, 0)
    data = {digest(c): c for c in (*chunks, *shares)}
    results = []
    for p in parts:
        del r.pending[p]
        results.append(r.add("blob", p, data[p]))
    assert results[:4] == [None] * 4 and results[4] == BLOB  # 3 chunks + 2 shares
    lost = Reassembly()
    lost.want("blob", sealed)
    lost.pending[sealed.chunks[0]] = ("blob", 0, 1)
    del lost.pending[sealed.chunks[0]]
    assert isinstance(lost.add("blob", sealed.chunks[0], None), VaultError)


def test_consortium_params_are_checked() -> None:
    con = {"consortium": {"threshold": 2}}
    assert NagarParams(miners=3, consensus="pos", **con).consortium is not None
    with pytest.raises(ValidationError, match="consensus pos"):
        NagarParams(miners=3, consensus="pow", **con)
    with pytest.raises(ValidationError, match="miners >= 3"):
        NagarParams(miners=2, consensus="pos", **con)
    with pytest.raises(ValidationError, match="devices_per_round 0"):
        NagarParams(miners=3, consensus="pos", devices_per_round=2, **con)


def test_a_consortium_run_stores_only_parts_on_each_member(tmp_path: Path) -> None:
    cfg = {
        "name": "consortium",
        "seed": 2,
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
        "nodes": {"count": 7},
        "output": {"plots": False},
    }
    run = tmp_path / "run"
    result = run_experiment(parse_config(cfg), run)
    nagar = result.summary["nagar"]
    assert nagar["device_accuracy"] > 0.8 and not nagar["rejected"], nagar
    with ChainStore(run / "nodes" / "r000" / "ledger.sqlite") as chain:
        items = [i for b in chain.canonical_chain() for i in submissions(b)]
    sealed = [i.sub for i in items if i.sub.vault is not None]
    assert sealed and len(sealed) == len(items)  # every vector travels sealed
    for m in ("m000", "m001", "m002"):
        store = BlobStore(run / "nodes" / m / "blobs")
        for sub in sealed:
            vault = sub.vault
            assert not store.has(sub.model.cid)  # never the whole blob
            assert sum(store.has(c) for c in vault.chunks) == 2  # two of the three chunks
            assert sum(store.has(s) for s in vault.shares) == 1  # one key share of t = 2
            own = {c: store.get(c) for c in (*vault.chunks, *vault.shares) if store.has(c)}
            with pytest.raises(VaultError):
                unseal(vault, own)


def test_miners_refuse_a_submission_whose_vault_does_not_fit_the_plan() -> None:
    import dataclasses

    from fedledger.ledger.records import Transaction, sign
    from fedledger.protocols.kit.gate import REFUSED
    from fedledger.protocols.nagar.messages import SUBMIT_TX
    from fedledger.protocols.nagar.rules import selected, steps_of
    from test_nagar_rules import _sub, _world

    _, keys, plan, _, gate, checks, state = _world(
        miners=3, consensus="pos", consortium={"threshold": 2}
    )
    assert plan.vault_threshold == 2 and len(plan.miners) == 3
    grad = steps_of(NagarParams(), 3)[2]
    addr = selected(plan, state.rnd_seed, grad)[0]
    node = next(n for n in keys if keys[n].address == addr)
    bare = _sub(keys, node, state, grad)  # no manifest: refused in consortium mode
    with pytest.raises(REFUSED):
        checks.submission(bare, state, grad)
    good, _, _ = seal(b"vector", 2, 3, random.Random(0))
    for vault, ok in ((good, True), (dataclasses.replace(good, threshold=3), False)):
        sub = dataclasses.replace(bare.payload, vault=vault)
        tx = sign(Transaction(addr, 1.0, SUBMIT_TX, sub), keys[node])
        if ok:
            assert checks.submission(tx, state, grad).vault == good
        else:
            with pytest.raises(REFUSED):
                checks.submission(tx, state, grad)
    assert gate.protocol_counts() == {"bad_vault": 2}
