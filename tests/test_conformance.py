"""Every registered protocol passes the conformance kit (tests/conformance.py).

A new protocol adds a small config to ``CONFORMANCE_CONFIGS`` (and, if its nodes keep a
chain, a ``Restart`` to ``RESTARTS``); the first two tests fail until it does.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import conformance as kit
import conformance_hostile as hostile
from fedledger.assembly.build import build_experiment
from fedledger.cli import app
from fedledger.experiment.runner import run_experiment
from fedledger.protocols.base import Halt, RunJob, SetTimer, Start

#: Registered protocols with a conformance entry (one without fails the first test).
PROTOCOLS = [p for p in kit.builtin_protocols() if p in kit.CONFORMANCE_CONFIGS]


def test_every_protocol_has_a_conformance_config():
    missing = [p for p in kit.builtin_protocols() if p not in kit.CONFORMANCE_CONFIGS]
    assert not missing, (
        f"protocols {missing} have no entry in tests/conformance.py CONFORMANCE_CONFIGS: "
        "add a small, fast config for each"
    )
    stale = [p for p in kit.CONFORMANCE_CONFIGS if p not in kit.builtin_protocols()]
    assert not stale, f"CONFORMANCE_CONFIGS names unregistered protocols {stale}"
    assert {"vanilla", "posbfl", "dfl"} <= set(PROTOCOLS)


def test_every_chain_keeping_protocol_declares_how_it_restarts():
    chained = [p for p in PROTOCOLS if kit.keeps_chain(kit.conformance_config(p))]
    missing = [p for p in chained if p not in kit.RESTARTS]
    assert not missing, (
        f"protocols {missing} keep a chain but have no Restart in tests/conformance.py RESTARTS"
    )
    assert {"posbfl", "dfl"} <= set(chained)


def test_every_known_gap_names_a_protocol_and_an_input_class():
    for protocol, kind in (*hostile.KNOWN_GAPS, *hostile.KNOWN_RAISES):
        assert protocol in PROTOCOLS and kind in hostile.INPUT_CLASSES, (protocol, kind)


# ---------------------------------------------------------------- 1. determinism


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """Each protocol's conformance experiment, run twice with one seed."""
    root = tmp_path_factory.mktemp("conformance")
    runs = {}
    for protocol in PROTOCOLS:
        config = kit.conformance_config(protocol)
        a = run_experiment(config, out=root / f"{protocol}-a").run_dir
        b = run_experiment(config, out=root / f"{protocol}-b").run_dir
        runs[protocol] = (a, b)
    return runs


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_one_seed_gives_the_same_metrics_and_ledgers_twice(twin_runs, protocol):
    a, b = twin_runs[protocol]
    first, second = kit.run_fingerprint(a), kit.run_fingerprint(b)
    assert first.metrics, "the run emitted no metric"
    assert first.metrics_csv == second.metrics_csv
    assert first.metrics == second.metrics
    assert sorted(first.ledgers) == sorted(second.ledgers)
    for key in first.ledgers:
        assert first.ledgers[key] == second.ledgers[key], f"ledger {key} differs"
    if kit.keeps_chain(kit.conformance_config(protocol)):
        assert first.ledgers, "a chain-keeping protocol wrote no ledger"
        heights = [len(f["canonical"]) for f in first.ledgers.values()]
        assert max(heights) > 1, f"no block beyond the genesis: {heights}"


# ---------------------------------------------------------------- 2. hostile input


@pytest.fixture(scope="module")
def benches(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    built = {p: hostile.hostile_bench(p, root / p) for p in PROTOCOLS}
    yield built
    for bench in built.values():
        bench.exp.close()


@pytest.fixture(scope="module")
def outcomes(benches) -> dict[str, list[hostile.Outcome]]:
    """Every hostile input fed to every node of each protocol, once."""
    out = {}
    for protocol, bench in benches.items():
        seen = []
        for node_id in sorted(bench.exp.nodes):
            node = bench.exp.nodes[node_id]
            seen += [hostile.feed(node, item) for item in bench.inputs(node_id)]
        out[protocol] = seen
    return out


def _case(protocol: str, kind: str, known: dict[tuple[str, str], str]):
    reason = known.get((protocol, kind))
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(protocol, kind, marks=marks, id=f"{protocol}-{kind}")


def _of(outcomes, protocol: str, kind: str) -> list[hostile.Outcome]:
    found = [o for o in outcomes[protocol] if o.input.kind == kind]
    if not found:
        pytest.skip(f"no {kind} input applies to {protocol}'s nodes")
    return found


def test_every_protocol_meets_every_class_of_hostile_input(outcomes):
    for protocol in PROTOCOLS:
        kinds = {o.input.kind for o in outcomes[protocol]}
        # wrong-results need a job asked for on Start; forged-records a message with records
        assert kinds >= set(hostile.INPUT_CLASSES) - {"wrong-results", "forged-records"}, protocol
        assert len(outcomes[protocol]) > 100, protocol


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [_case(p, k, hostile.KNOWN_RAISES) for p in PROTOCOLS for k in hostile.INPUT_CLASSES],
)
def test_hostile_input_never_raises(outcomes, protocol, kind):
    found = _of(outcomes, protocol, kind)
    raised = [f"{o.input.label}: {o.raised!r}" for o in found if o.raised is not None]
    assert not raised, f"{len(raised)} of {len(found)} raised, e.g. {raised[:5]}"


@pytest.mark.parametrize(
    ("protocol", "kind"),
    [_case(p, k, hostile.KNOWN_GAPS) for p in PROTOCOLS for k in hostile.INPUT_CLASSES],
)
def test_hostile_input_is_counted(outcomes, protocol, kind):
    found = _of(outcomes, protocol, kind)
    missed = [o.input.label for o in found if o.raised is None and not o.counted]
    assert not missed, f"{len(missed)} of {len(found)} not counted, e.g. {missed[:6]}"


# ---------------------------------------------------------------- 3. restart


def _chain_protocols() -> list[str]:
    return [p for p in PROTOCOLS if kit.keeps_chain(kit.conformance_config(p))]


@pytest.mark.parametrize("protocol", _chain_protocols())
def test_a_node_rebuilt_from_its_stores_resumes(tmp_path, protocol):
    restart = kit.RESTARTS[protocol]
    config = kit.conformance_config(protocol)
    run_dir = tmp_path / "run"
    first = kit.simulate(config, run_dir, restart.cut)
    try:
        heads = kit.chain_heads(first)
        durable = {
            n: restart.durable(node)
            for n, node in sorted(first.nodes.items())
            if first.services[n].chains
        }
    finally:
        first.close()
    assert max(h for h, _ in heads.values()) >= 1, f"no block before the cut: {heads}"

    fresh = build_experiment(config, tmp_path / "fresh")
    again = build_experiment(config, run_dir)
    try:
        assert kit.chain_heads(again) == heads  # the stores kept every chain
        for node_id, node in sorted(again.nodes.items()):
            if not again.services[node_id].chains:
                continue  # keeps nothing to resume from
            effects = node.handle(Start(restart.cut))
            effects = kit.drive_fetches(node, effects, run_dir, restart.cut)
            assert restart.durable(node) == durable[node_id], f"{node_id} lost state"
            assert not any(isinstance(e, Halt) for e in effects), f"{node_id} halted"
            assert any(isinstance(e, SetTimer | RunJob) for e in effects), (
                f"{node_id} did nothing after restarting: {effects}"
            )
            empty = fresh.nodes[node_id]
            kit.drive_fetches(empty, empty.handle(Start(restart.cut)), tmp_path / "fresh", 0.0)
            assert restart.durable(empty) != durable[node_id], (
                f"{node_id}: a node with empty stores has the same durable state; "
                "the check proves nothing"
            )
        assert kit.chain_heads(again) == heads  # restarting appended and dropped nothing
    finally:
        again.close()
        fresh.close()


# ---------------------------------------------------------------- 4. chain verify


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_chain_verify_passes_and_catches_a_tampered_block(twin_runs, tmp_path, protocol):
    if not kit.keeps_chain(kit.conformance_config(protocol)):
        pytest.skip(f"{protocol} keeps no chain: nothing for chain verify to check")
    run_dir, _ = twin_runs[protocol]
    result = CliRunner().invoke(app, ["chain", "verify", str(run_dir)])
    assert result.exit_code == 0, result.output
    copy = tmp_path / "tampered"
    shutil.copytree(run_dir, copy)
    (node_id, _), db = next(
        (k, v) for k, v in sorted(kit.ledgers(copy).items()) if k[1] == "ledger.sqlite"
    )
    kit.tamper_one_block(db)
    result = CliRunner().invoke(app, ["chain", "verify", str(copy)])
    assert result.exit_code == 1, result.output
    assert node_id in result.output, result.output
