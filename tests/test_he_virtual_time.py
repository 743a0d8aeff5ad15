"""Homomorphic work costs virtual time in the simulator (issue 14): the cost model, the
meter's declared work, and an encrypted vanilla run whose rounds take longer by it."""

from __future__ import annotations

import json
import math

import pytest

from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.privacy.he.cost import PAILLIER_COSTS, ckks_seconds, paillier_seconds
from fedledger.privacy.he.errors import HeError
from fedledger.protocols.meter import CpuMeter
from fedledger.runtime.sim.compute import ComputeModel


def test_paillier_costs_pass_through_both_measured_points_and_grow_with_the_key():
    for op, cost in PAILLIER_COSTS.items():
        assert math.isclose(paillier_seconds(op, 1, 1024), cost.at_1024, rel_tol=1e-12)
        assert math.isclose(paillier_seconds(op, 1, 2048), cost.at_2048, rel_tol=1e-12)
        assert paillier_seconds(op, 1, 3072) > cost.at_2048
        assert paillier_seconds(op, 10, 2048) == pytest.approx(10 * cost.at_2048)


def test_ckks_costs_count_4096_slot_ciphertexts():
    assert ckks_seconds("encrypt", 1) == ckks_seconds("encrypt", 4096)
    assert ckks_seconds("encrypt", 4097) == 2 * ckks_seconds("encrypt", 4096)
    assert ckks_seconds("add", 0) == 0.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: paillier_seconds("multiply", 1, 2048), "unknown Paillier operation"),
        (lambda: paillier_seconds("encrypt", -1, 2048), "ciphertexts=-1"),
        (lambda: ckks_seconds("rotate", 5), "unknown CKKS operation"),
    ],
)
def test_cost_model_refuses_bad_input_by_name(call, match):
    with pytest.raises(HeError, match=match):
        call()


def test_meter_work_is_summed_and_turned_into_a_delay():
    meter = CpuMeter()
    model = ComputeModel(work_scale=2.0)
    mark = model.work_mark(meter)
    assert model.work_delay(meter, mark) == 0.0
    meter.work("crypto", 0.25)
    meter.work("crypto", 0.5)
    assert model.work_delay(meter, mark) == pytest.approx(1.5)
    assert meter.modelled["crypto"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="modelled work must be >= 0"):
        meter.work("crypto", -1.0)
    with pytest.raises(ValueError, match="work_scale must be >= 0"):
        ComputeModel(work_scale=-1.0)


def test_measured_mode_charges_the_cpu_of_the_working_section():
    meter = CpuMeter()
    model = ComputeModel(mode="measured", measured_scale=1.0)
    mark = model.work_mark(meter)
    with meter.section("crypto"):
        sum(i * i for i in range(200_000))
    meter.work("crypto", 0.0)
    assert model.work_delay(meter, mark) == pytest.approx(meter.seconds["crypto"])


def _tiny(work_scale: float, scheme: dict) -> dict:
    return {
        "name": "he-time",
        "seed": 3,
        "rounds": 2,
        "data": {"dataset": "digits", "partition": "iid"},
        "model": {"name": "mlp", "hidden": [16]},
        "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
        "compute": {"work_scale": work_scale},
        "protocol": {"name": "vanilla", "round_timeout": 600.0, "encryption": scheme},
        "nodes": {"count": 4},
        "output": {"plots": False},
    }


def _run(tmp_path, work_scale: float, scheme: dict) -> dict:
    result = run_experiment(parse_config(_tiny(work_scale, scheme)), tmp_path / f"w{work_scale}")
    return json.loads((result.run_dir / "summary.json").read_text())


PAILLIER = {"scheme": "paillier", "key_bits": 512, "threshold": 2, "committee": 3}


def test_encrypted_rounds_take_their_modelled_crypto_time_and_learn_the_same(tmp_path):
    free = _run(tmp_path, 0.0, PAILLIER)
    timed = _run(tmp_path, 1.0, PAILLIER)
    double = _run(tmp_path, 2.0, PAILLIER)
    assert free["work_seconds"] == 0.0
    assert timed["work_seconds"] > 0.0
    assert double["work_seconds"] == pytest.approx(2 * timed["work_seconds"], rel=1e-9)
    assert timed["virtual_seconds"] > free["virtual_seconds"]
    assert timed["final_accuracy"] == free["final_accuracy"]  # timing only, same model
