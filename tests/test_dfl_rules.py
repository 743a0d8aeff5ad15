"""DFL update rules (eq. 2, eq. 3-4, ours), the rule SDK, topology, data arrival, eq. 5."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.errors import ConfigError
from fedledger.protocols.dfl import rules  # noqa: F401  (registers the rules)
from fedledger.protocols.dfl.arrival import DataArrival
from fedledger.protocols.dfl.report import difference_metrics, model_difference
from fedledger.protocols.dfl.reputation import ReceivedModel, build_rule
from fedledger.protocols.dfl.topology import neighbours


def rm(values, accuracy, generator):
    return ReceivedModel(np.array(values, dtype=np.float32), accuracy, generator)


def test_halffedavg_is_eq2():
    rule = build_rule({"name": "halffedavg"})
    own = np.array([1.0, 2.0], np.float32)
    got, rep = rule.update_model(own, 0.5, [rm([3, 4], 0.1, "a"), rm([5, 0], 0.9, "b")], {"a": 0.3})
    # ((3+5)/2 + 1) / 2 = 2.5 ; ((4+0)/2 + 2) / 2 = 2
    assert np.allclose(got, [2.5, 2.0])
    assert rep == {"a": 0.3}


def test_reputation_005_is_eq3_eq4_and_punishes_the_least_accurate():
    rule = build_rule({"name": "reputation-0.05"})
    own = np.array([0.0, 0.0], np.float32)
    received = [rm([1, 0], 0.8, "a"), rm([0, 1], 0.4, "b")]
    got, rep = rule.update_model(own, 0.5, received, {"a": 0.5, "b": 1.0})
    wa, wb = 0.5 * 0.8, 1.0 * 0.4  # eq. 3
    expected = (np.array([wa, wb]) / (wa + wb) + 0.0) / 2  # eq. 4
    assert np.allclose(got, expected)
    assert rep == {"a": 0.5, "b": pytest.approx(0.95)}
    # all reputations 0: HalfFedAvg
    got, _ = rule.update_model(own, 0.5, received, {"a": 0.0, "b": 0.0})
    assert np.allclose(got, [0.25, 0.25])


def test_filtered_refuses_random_and_copied_models_and_rewards_the_rest():
    rng = np.random.default_rng(0)
    own = rng.normal(0, 1, 200).astype(np.float32)
    honest = (own + rng.normal(0, 0.1, 200)).astype(np.float32)
    random_model = rng.uniform(0, 0.001, 200).astype(np.float32)
    rule = build_rule({"name": "filtered", "own_weight": 0.5, "accuracy_margin": 0.3})
    first = [
        ReceivedModel(honest, 0.9, "h"),
        ReceivedModel(random_model, 0.9, "r"),  # as accurate locally, but of another scale
    ]
    got, rep = rule.update_model(own, 0.9, first, {})
    assert rep["h"] > 0.5 > rep["r"]
    assert np.allclose(got, 0.5 * own + 0.5 * honest, atol=1e-6)
    stolen = (honest + 1e-7).astype(np.float32)  # the duplication attack: h's model re-sent
    got2, rep2 = rule.update_model(own, 0.9, [ReceivedModel(stolen, 0.9, "thief")], rep)
    assert rep2["thief"] == 0.0
    assert np.allclose(got2, own)  # nothing accepted: the own model stays
    low = [ReceivedModel(honest, 0.9, "h"), ReceivedModel(-honest, 0.1, "bad")]
    _, rep3 = rule.update_model(own, 0.9, low, rep2)
    assert rep3["bad"] < 0.5 < rep3["h"]


def test_a_rule_is_plugged_in_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_rules.py").write_text(
        "import numpy as np\n"
        "class KeepBest:\n"
        "    def __init__(self, bonus=0.1):\n"
        "        self.bonus = bonus\n"
        "    def update_model(self, current, own_accuracy, received, reputation):\n"
        "        best = max(received, key=lambda m: m.accuracy)\n"
        "        table = dict(reputation)\n"
        "        table[best.generator] = table.get(best.generator, 0.0) + self.bonus\n"
        "        return best.weights, table\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rule = build_rule({"name": "my_rules:KeepBest", "bonus": 0.5})
    got, rep = rule.update_model(np.zeros(2, np.float32), 0.1, [rm([1, 2], 0.3, "x")], {})
    assert np.allclose(got, [1, 2]) and rep == {"x": 0.5}
    with pytest.raises(ConfigError, match="registered rules"):
        build_rule({"name": "nope"})
    with pytest.raises(ConfigError, match="cannot import"):
        build_rule({"name": "no_such_module_xyz:Rule"})
    with pytest.raises(ConfigError, match="cannot build"):
        build_rule({"name": "my_rules:KeepBest", "oops": 1})


def test_topologies():
    full = neighbours(4, "full", 0, (), 0)
    assert full[0] == (1, 2, 3)
    rand = neighbours(10, "random", 4.0, (), 7)
    assert sum(len(n) for n in rand) == 2 * 20  # 10 * 4 / 2 edges
    assert rand == neighbours(10, "random", 4.0, (), 7)
    assert rand != neighbours(10, "random", 4.0, (), 8)
    seen, todo = {0}, [0]
    while todo:  # connected
        for j in rand[todo.pop()]:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    assert seen == set(range(10))
    assert neighbours(3, "edges", 0, ((0, 1), (1, 2)), 0) == [(1,), (0, 2), (1,)]
    with pytest.raises(ConfigError, match="edge"):
        neighbours(3, "edges", 0, ((0, 5),), 0)


def test_data_arrives_over_time_and_batches_wrap():
    arrival = DataArrival(0, "n0", (8, 12), 32, 64, 100)
    delays = [arrival.next_delay() for _ in range(50)]
    assert min(delays) >= 8 and max(delays) <= 12 and len(set(delays)) > 1
    arrival.arrive()
    assert arrival.take_batch() is None
    arrival.arrive()
    assert arrival.take_batch() == (0, 64)
    arrival.arrive()
    arrival.arrive()
    assert arrival.take_batch() == (0, 64)  # 64 + 64 > 100: back to the start


def test_model_difference_is_eq5():
    sums = np.array([[1.0, 0.0], [3.0, 1.0], [2.0, 1.0]])
    # layer 0: |3-1| + |2-3| + |1-2| = 4 -> 4/3 ; layer 1: 1 + 0 + 1 = 2 -> 2/3
    assert np.allclose(model_difference(sums), [4 / 3, 2 / 3])
    measure = difference_metrics((("a", (2,)), ("b", (1,))))
    models = {"x": np.array([1, 0, 0], np.float32), "y": np.array([2, 1, 1], np.float32)}
    sums = {node: measure.summarize(w) for node, w in models.items()}
    rows = {tags["layer"]: v for _name, v, tags in measure.combine(10, sums)}
    # sums x: (1, 0), y: (3, 1); ring over 2 nodes: 2*|3-1|/2 = 2, 2*|1-0|/2 = 1
    assert rows == {"a": 2.0, "b": 1.0, "all": 3.0}


def test_params_are_validated_with_the_allowed_values():
    from fedledger.assembly.config import parse_config

    base = {"protocol": {"name": "dfl"}, "model": {"name": "mlp", "hidden": [4]}}
    parse_config(base)
    for bad, match in (
        ({"train_interval": [12, 8]}, "train_interval"),
        ({"topology": "ring"}, "topology"),
        ({"topology": "edges"}, "edges"),
        ({"update_rule": {"bonus": 1}}, "update_rule"),
        ({"buffer": 4}, "buffer"),
    ):
        with pytest.raises(ConfigError, match=match):
            parse_config({**base, "protocol": {"name": "dfl", **bad}})
