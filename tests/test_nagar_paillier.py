"""Nagar with Paillier aggregation and a threshold committee: the committee's rules,
forged partials, and an encrypted run against a plaintext run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.privacy.he.config import EncryptionSettings
from fedledger.privacy.he.encoding import decode_sum
from fedledger.privacy.he.errors import HeError
from fedledger.privacy.he.paillier import encrypt_vector
from fedledger.privacy.he.rand import SeededRandom
from fedledger.privacy.he.threshold import combine, partial_decrypt_vector
from fedledger.protocols.nagar.secure import (
    REPEATED_DECRYPTION,
    SINGLE_UPDATE,
    UNDER_MIN_UPDATES,
    DecryptionGuard,
    aggregate,
    layout_of,
    nagar_dealer,
    parse_blob,
)

SETTINGS = EncryptionSettings(
    scheme="paillier", key_bits=512, threshold=2, committee=3, max_total_samples=5000
)
ENC = {
    "scheme": "paillier",
    "key_bits": 512,
    "threshold": 2,
    "committee": 3,
    "max_total_samples": 5000,
}


@pytest.fixture(scope="module")
def keys():
    return nagar_dealer().paillier(7, SETTINGS)


def test_guard_refuses_single_repeated_and_small_aggregates() -> None:
    guard = DecryptionGuard(min_updates=3)
    key = (b"p" * 32, 4, "update")
    assert guard.refusal(key, b"a", b"a", 1) == SINGLE_UPDATE
    assert guard.refusal(key, b"a", b"a", 2) == UNDER_MIN_UPDATES
    assert guard.refusal(key, b"x", b"a", 5) == "not_canonical"
    assert guard.refusal(key, b"a", b"a", 3) is None
    assert guard.record(key, b"a")
    assert guard.refusal(key, b"a", b"a", 3) is None  # the same aggregate: republished
    assert not guard.record(key, b"a")
    assert guard.refusal(key, b"b", b"b", 3) == REPEATED_DECRYPTION


def test_aggregate_decrypts_to_the_weighted_sum_within_the_bound(keys) -> None:
    pub, shares, enc = keys
    layout = layout_of(SETTINGS)
    rng = np.random.default_rng(0)
    xs = [rng.normal(0, 1, 40) for _ in range(3)]
    ws = [17, 5, 30]
    blobs = [
        encrypt_vector(enc, x, layout, SeededRandom(i, "t")).to_bytes() for i, x in enumerate(xs)
    ]
    vecs = [parse_blob(b, pub, layout, 40) for b in blobs]
    agg = aggregate(vecs, ws)
    parts = [partial_decrypt_vector(pub, s, agg, SeededRandom(9, "p")) for s in shares[1:]]
    plain = combine(pub, agg.ciphertexts, parts)

    total = decode_sum(plain, agg.layout, agg.length, agg.weight)
    want = sum(w * x for w, x in zip(ws, xs, strict=True))
    assert np.max(np.abs(total - want)) <= layout.error_bound(sum(ws)) + 1e-12
    # t - 1 partials decrypt nothing
    with pytest.raises(HeError):
        combine(pub, agg.ciphertexts, parts[:1])


def test_tampered_and_foreign_ciphertexts_are_refused(keys) -> None:
    pub, _, enc = keys
    layout = layout_of(SETTINGS)
    blob = encrypt_vector(enc, np.zeros(10), layout, SeededRandom(1, "t")).to_bytes()
    with pytest.raises(HeError):
        parse_blob(blob[:-3], pub, layout, 10)
    with pytest.raises(HeError):
        parse_blob(blob, pub, layout, 11)
    _, _, enc2 = nagar_dealer().paillier(8, SETTINGS)
    foreign = encrypt_vector(enc2, np.zeros(10), layout, SeededRandom(1, "t")).to_bytes()
    with pytest.raises(HeError):
        parse_blob(foreign, pub, layout, 10)


def _cfg(enc: bool, malicious=()) -> dict:
    protocol = {
        "name": "nagar",
        "miners": 3,
        "devices_per_round": 0,
        "optimizer": "fsvrg",
        "step_size": 1.0,
        "l2": 0.001,
        "consensus": "pow",
        "pow_difficulty": 4,
    }
    if enc:
        protocol["encryption"] = ENC
    return {
        "name": "n",
        "seed": 3,
        "rounds": 2,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": []},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "protocol": protocol,
        "nodes": {"count": 7, "malicious": list(malicious)},
        "output": {"plots": False},
    }


def _summary(tmp_path: Path, name: str, cfg: dict) -> dict:
    run_experiment(parse_config(cfg), tmp_path / name)
    return json.loads((tmp_path / name / "summary.json").read_text())


def test_encrypted_run_matches_plaintext_and_survives_a_forged_partial(tmp_path: Path) -> None:
    plain = _summary(tmp_path, "plain", _cfg(False))
    enc = _summary(tmp_path, "enc", _cfg(True))
    assert plain["nagar"]["device_accuracy"] > 0.5
    assert abs(enc["nagar"]["device_accuracy"] - plain["nagar"]["device_accuracy"]) <= 0.001
    assert enc["nagar"]["rejected"] == {}
    # one committee member (m000 or whichever holds share 1..3) forges its partials: t=2 of
    # m=3 still decrypt; every device detects and counts the forgery
    liar = {"ids": ["m000"], "faults": ["wrong_partial"]}
    forged = _summary(tmp_path, "forged", _cfg(True, [liar]))
    assert forged["nagar"]["rejected"].get("invalid_partial", 0) >= 4
    assert abs(forged["nagar"]["device_accuracy"] - plain["nagar"]["device_accuracy"]) <= 0.001
