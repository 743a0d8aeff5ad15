"""Smoke test of benchmarks/robust_matrix.py: a 1 x 2 table of 2-round runs."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def matrix() -> ModuleType:
    path = REPO / "benchmarks" / "robust_matrix.py"
    spec = importlib.util.spec_from_file_location("robust_matrix", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["robust_matrix"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_table_of_one_rule_and_two_attacks(matrix: ModuleType, tmp_path: Path):
    spec = matrix.MatrixSpec(
        aggregators=("fedavg",),
        attacks=("none", "sign_flip"),
        fractions=(0.2,),
        partitions=("iid",),
        seeds=(0,),
        rounds=2,
        clients=5,
    )
    seen = []
    cells = matrix.build_table(spec, lambda cell, seconds: seen.append(cell))
    assert seen == cells
    assert [(c.aggregator, c.attack, c.malicious) for c in cells] == [
        ("fedavg", "none", 1),
        ("fedavg", "sign_flip", 1),
    ]
    assert all(len(c.accuracies) == 1 and 0.0 <= c.mean <= 1.0 and not c.note for c in cells)
    table = matrix.format_table(spec, cells)
    assert "1 of 5 clients malicious (20%)" in table
    assert "FedAvg" in table and "sign flip" in table and f"{cells[1].mean:.3f}" in table
    matrix.write_csv(tmp_path / "m.csv", spec, cells)
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert [r["attack"] for r in rows] == ["none", "sign_flip"]
    assert float(rows[0]["seed_0"]) == pytest.approx(cells[0].mean, abs=1e-6)
    matrix.plot_heatmap(tmp_path / "m.png", spec, cells)
    assert (tmp_path / "m.png").stat().st_size > 0


def test_rules_that_refuse_n_show_what_they_need(matrix: ModuleType):
    assert matrix.refusal("bulyan", 2, 10) == "n/a (needs n >= 11)"
    assert matrix.refusal("krum", 4, 10) == "n/a (needs n >= 11)"
    assert matrix.refusal("krum", 2, 10) == ""
    assert matrix.refusal("fltrust", 4, 10) == ""
    spec = matrix.MatrixSpec(
        aggregators=("bulyan",),
        attacks=("alie",),
        fractions=(0.4,),
        partitions=("iid",),
        seeds=(0, 1),
        clients=10,
    )
    (cell,) = matrix.build_table(spec)
    assert cell.note == "n/a (needs n >= 19)" and cell.accuracies == ()
    assert "n/a (needs n >= 19)" in matrix.format_table(spec, [cell])


def test_bad_subset_names_what_is_allowed(matrix: ModuleType):
    with pytest.raises(ValueError, match=r"unknown attack \['nope'\]; allowed: none, noise"):
        matrix.MatrixSpec(attacks=("nope",))
    with pytest.raises(ValueError, match="0 < fraction < 1"):
        matrix.MatrixSpec(fractions=(0.5, 1.5))
