"""Limits on consortium vault traffic: a storage member takes per device and step only
the parts the plan gives it (its chunks and its key share), no part larger than the
plan's largest honest part, and no part twice; the rest is refused and counted
(``vault_flood``, ``vault_oversize``, ``vault_duplicate``)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.ledger.store import ChainStore
from fedledger.protocols.nagar.chainstate import submissions
from fedledger.protocols.nagar.traffic import (
    VAULT_DUPLICATE,
    VAULT_FLOOD,
    VAULT_OVERSIZE,
    VaultIntake,
    part_limit,
    parts_per_step,
)
from fedledger.protocols.nagar.vault import digest, member_parts, seal
from fedledger.storage.blobs import BlobStore


def _honest(blob: bytes, m: int, member: int, seed: int = 0) -> tuple[bytes, ...]:
    sealed, chunks, shares = seal(blob, 2, m, random.Random(seed))
    return member_parts(sealed, chunks, shares, member)


@pytest.mark.parametrize("m", [3, 4, 5])
@pytest.mark.parametrize("size", [1, 650, 2_663, 100_000])
def test_every_honest_part_fits_the_plan_and_one_byte_more_does_not(m: int, size: int) -> None:
    blob = bytes(size)
    limit = part_limit(size, m)
    for member in range(m):
        parts = _honest(blob, m, member)
        assert len(parts) == parts_per_step(m)
        assert max(len(p) for p in parts) <= limit
    # the largest honest chunk of a blob one byte over the bound's is over a smaller limit
    assert part_limit(size, m) <= part_limit(size + m, m)


def test_a_member_takes_one_message_of_parts_per_device_and_step() -> None:
    intake = VaultIntake(parts_per_step(3), part_limit(1000, 3))
    stored: set[str] = set()
    parts = _honest(bytes(1000), 3, 0)
    keep, refused = intake.admit(2, "d000", parts, stored.__contains__)
    assert keep == list(parts) and refused == []
    stored.update(digest(p) for p in keep)
    # the same message again, or any further part, in the same step: a flood
    for again in (parts, parts[:1], (b"x",)):
        keep, refused = intake.admit(2, "d000", again, stored.__contains__)
        assert keep == [] and [r for r, _ in refused] == [VAULT_FLOOD]
    # too many parts in one message: a flood, nothing taken
    fresh = VaultIntake(parts_per_step(3), part_limit(1000, 3))
    keep, refused = fresh.admit(2, "d001", (*parts, b"y"), stored.__contains__)
    assert keep == [] and [r for r, _ in refused] == [VAULT_FLOOD]
    # another device, and the next step, each get their own allowance
    other = _honest(bytes(1000), 3, 0, seed=1)
    assert intake.admit(2, "d001", other, stored.__contains__)[0] == list(other)
    nxt = _honest(bytes(1000), 3, 0, seed=2)
    assert intake.admit(3, "d000", nxt, stored.__contains__)[0] == list(nxt)


def test_an_oversized_part_is_refused_and_a_duplicate_part_is_not_stored_twice() -> None:
    limit = part_limit(1000, 3)
    intake = VaultIntake(parts_per_step(3), limit)
    keep, refused = intake.admit(1, "d000", (bytes(limit + 1),), lambda _: False)
    assert keep == [] and [r for r, _ in refused] == [VAULT_OVERSIZE]
    assert intake.admit(1, "d000", (bytes(limit),), lambda _: False)[0] == [bytes(limit)]
    parts = _honest(bytes(1000), 3, 1)
    held = {digest(parts[0])}
    keep, refused = VaultIntake(3, limit).admit(1, "d002", parts, held.__contains__)
    assert keep == list(parts[1:]) and [r for r, _ in refused] == [VAULT_DUPLICATE]
    twice = (parts[1], parts[1])
    keep, refused = VaultIntake(3, limit).admit(1, "d002", twice, lambda _: False)
    assert keep == [parts[1]] and [r for r, _ in refused] == [VAULT_DUPLICATE]


ROUNDS = 2


def _cfg(malicious: list) -> dict:
    return {
        "name": "consortium-flood",
        "seed": 2,
        "rounds": ROUNDS,
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


def test_a_flooding_device_is_refused_by_every_member_and_changes_nothing(tmp_path: Path) -> None:
    honest = run_experiment(parse_config(_cfg([])), tmp_path / "honest").summary["nagar"]
    flood = [{"ids": ["d000"], "faults": ["vault_flood"]}]
    run = tmp_path / "flood"
    nagar = run_experiment(parse_config(_cfg(flood)), run).summary["nagar"]
    # each of the 3 members refuses d000's second message in each of the ROUNDS steps
    assert nagar["rejected"] == {VAULT_FLOOD: 3 * ROUNDS}, nagar["rejected"]
    assert nagar["device_accuracy"] == honest["device_accuracy"] > 0.8
    with ChainStore(run / "nodes" / "r000" / "ledger.sqlite") as chain:
        subs = [i.sub for b in chain.canonical_chain() for i in submissions(b)]
    assert len(subs) == 3 * ROUNDS  # d000's update is still in every block
    wanted = {c for s in subs if s.vault is not None for c in (*s.vault.chunks, *s.vault.shares)}
    for member in ("m000", "m001", "m002"):
        store = BlobStore(run / "nodes" / member / "blobs")
        parts = set(store.iter_ids()) - {s.model.cid for s in subs}
        # only the parts of the sealed blobs on chain: no junk part of the flood was kept
        assert parts <= wanted and len(parts) == 3 * ROUNDS * parts_per_step(3)
