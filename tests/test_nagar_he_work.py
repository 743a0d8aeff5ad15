"""Nagar's homomorphic work costs virtual time: encryption, the aggregate, partial
decryptions and their checks are declared with ``meter.work`` from the per-ciphertext
model of fedledger.privacy.he.cost, so ``work_seconds`` shows in summary.json and
``compute.work_scale`` scales it (0: off)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.ledger.records import ModelRef
from fedledger.privacy.he.config import EncryptionSettings
from fedledger.privacy.he.cost import paillier_seconds
from fedledger.privacy.he.paillier import CipherVector
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.meter import CpuMeter
from fedledger.protocols.nagar.chainstate import Included
from fedledger.protocols.nagar.decrypt import Decryption
from fedledger.protocols.nagar.messages import UPDATE, Submission
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.secure import layout_of, nagar_dealer

ENC = {"scheme": "paillier", "key_bits": 512, "threshold": 2, "committee": 3}
LENGTH = 40


def _decryption(node: str, meter: CpuMeter) -> Decryption:
    params = NagarParams(miners=3, encryption=ENC, optimizer="fedavg")
    gate = Gate(None)  # type: ignore[arg-type]  # the decryption verifies no signature
    committee = ("m000", "m001", "m002")
    return Decryption(params, nagar_dealer(), 7, node, committee, gate, LENGTH, (), meter)


def _item(cid: str, n: int) -> Included:
    sub = Submission(b"p" * 32, 2, UPDATE, ModelRef(cid, b"\x00" * 32, n), 1.0, 0.0)
    return Included(cid.encode(), b"a" * 20, sub)


def test_each_piece_of_homomorphic_work_is_declared_by_the_cost_model() -> None:
    bits = ENC["key_bits"]
    devices = [CpuMeter() for _ in range(3)]
    blobs = {}
    for i, meter in enumerate(devices):
        dec = _decryption(f"d{i:03d}", meter)
        blobs[f"c{i}"] = dec.encrypt(np.full(LENGTH, 0.1 * i), 2)
    cts = len(CipherVector.from_bytes(blobs["c0"]).ciphertexts)
    assert cts > 1
    for meter in devices:
        assert meter.modelled["crypto"] == pytest.approx(paillier_seconds("encrypt", cts, bits))
    items = [_item(f"c{i}", 10 + i) for i in range(3)]
    member_meter, device_meter = CpuMeter(), CpuMeter()
    member = _decryption("m001", member_meter)
    agg = member.aggregate(b"p" * 32, 2, UPDATE, items, blobs)
    member.aggregate(b"p" * 32, 2, UPDATE, items, blobs)  # cached: declared once
    summed = paillier_seconds("scale", 3 * cts, bits) + paillier_seconds("add", 2 * cts, bits)
    assert member_meter.modelled["crypto"] == pytest.approx(summed)
    partial = member.decrypt(b"p" * 32, 2, agg, agg.agg_id)
    assert partial is not None
    assert member_meter.modelled["crypto"] == pytest.approx(
        summed + paillier_seconds("partial", cts, bits)
    )
    device = _decryption("d000", device_meter)
    device.aggregate(b"p" * 32, 2, UPDATE, items, blobs)
    other = _decryption("m002", CpuMeter())
    other.aggregate(b"p" * 32, 2, UPDATE, items, blobs)
    device.receive(2, "m001", partial)
    assert device.total(2) is None  # one of t = 2: checked once, not again below
    device.receive(2, "m002", other.decrypt(b"p" * 32, 2, other.aggs[2], other.aggs[2].agg_id))
    total = device.total(2)
    assert total is not None
    want = sum((10 + i) * np.full(LENGTH, 0.1 * i) for i in range(3))
    assert np.allclose(total, want, atol=1e-3)
    checks = 2 * paillier_seconds("verify", cts, bits) + paillier_seconds("combine", cts, bits)
    assert device_meter.modelled["crypto"] == pytest.approx(summed + checks)


def _cfg(work_scale: float) -> dict:
    return {
        "name": "nagar-he-time",
        "seed": 3,
        "rounds": 2,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": []},
        "train": {"epochs": 1, "lr": 0.05, "batch_size": 16},
        "compute": {"work_scale": work_scale},
        "protocol": {
            "name": "nagar",
            "miners": 3,
            "optimizer": "fedavg",
            "local_batch_size": 1,
            "consensus": "pos",
            "encryption": ENC,
        },
        "nodes": {"count": 7},
        "output": {"plots": False},
    }


def _summary(tmp_path: Path, work_scale: float) -> dict:
    run_experiment(parse_config(_cfg(work_scale)), tmp_path / f"w{work_scale}")
    return json.loads((tmp_path / f"w{work_scale}" / "summary.json").read_text())


def test_an_encrypted_run_declares_its_work_and_learns_the_same(tmp_path: Path) -> None:
    free, timed, double = (_summary(tmp_path, s) for s in (0.0, 1.0, 2.0))
    assert free["work_seconds"] == 0.0
    assert timed["work_seconds"] > 0.0
    assert double["work_seconds"] == pytest.approx(2 * timed["work_seconds"], rel=1e-5)
    for s in (timed, double):  # timing only: within the step, the same model
        assert s["nagar"]["device_accuracy"] == free["nagar"]["device_accuracy"]
        assert s["nagar"]["rejected"] == {}


def test_work_longer_than_the_mining_window_costs_the_submissions(tmp_path: Path) -> None:
    """The timeline holds the work: encryption that ends after ``mine_at`` leaves the
    step's block without the device's update."""
    timed = _summary(tmp_path, 1.0)
    layout = layout_of(EncryptionSettings(**ENC))
    cts = -(-(64 * 10 + 10) // layout.slots)  # digits softmax regression: 650 weights
    encrypt = paillier_seconds("encrypt", cts, ENC["key_bits"])
    late = _summary(tmp_path, 2 * NagarParams().mine_at / encrypt)  # 60 s per encryption
    assert late["work_seconds"] > 2 * NagarParams().mine_at
    assert timed["nagar"]["blocks"] == late["nagar"]["blocks"]  # the plan and empty blocks
    assert late["nagar"]["device_accuracy"] < timed["nagar"]["device_accuracy"] - 0.3
