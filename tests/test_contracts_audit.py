"""``fedledger chain verify``'s contract audit: a history recorded from a JSON-RPC chain
replays clean, and each kind of tampering with it is reported."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from web3 import Web3

from fedledger.contracts import eth
from fedledger.contracts.dflbcb import SOURCE, Stage
from fedledger.contracts.effects import ContractSpec
from fedledger.contracts.localchain import start_chain
from fedledger.contracts.rpc import RpcBackend, compile_source
from fedledger.experiment.audit_contract import audit_history
from fedledger.runtime.node.chain_rpc import record_history
from test_contracts_dflbcb import ETH, World, _world


@pytest.fixture(scope="module")
def history() -> Iterator[dict[str, Any]]:
    """Two iterations (elect_times 1: Elect, Pledge, Commit, Work, Elect, ...) plus one
    refused call, recorded as a localnet records it."""
    with start_chain("devchain") as node:
        make: Callable[[], Any] = lambda: RpcBackend(node.url)  # noqa: E731
        w: World = _world(make, elect_times=1)
        assert w.elect(w.nodes[:4]).status  # the committee changes hands: nodes[:4]
        w.members = w.nodes[:4]
        assert w.pledge(w.nodes[4:]).status and w.commit(w.nodes[4:]).status
        assert w.work([(w.nodes[4], 900), (w.nodes[5], 880)]).status
        assert not w.pledge(w.nodes[4:]).status  # wrong stage: Elect comes first
        assert w.elect(w.nodes[:4]).status
        backend = RpcBackend(node.url)
        backend.use_source(SOURCE)
        yield record_history(backend, ContractSpec(SOURCE))


def audit(h: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.field, p.reason) for p in audit_history(h, SOURCE).problems]


def test_a_recorded_history_replays_clean(history):
    found = audit_history(history, SOURCE)
    assert found.problems == []
    assert found.transitions == 5 and found.iterations == 1 and found.reverted == 1
    assert found.signatures == 10  # two signatures (F+1 of 4) per transition


CONTRACT = Web3().eth.contract(abi=list(compile_source(SOURCE.name, SOURCE.text())[0]))


def _stage_tx(h: dict[str, Any], fn: str, nth: int = 0) -> dict[str, Any]:
    found = [t for t in h["transactions"] if t["status"] and t["to"] and
             CONTRACT.decode_function_input(bytes.fromhex(t["input"][2:]))[0].fn_name == fn]
    return found[nth]


def _rewrite(tx: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    fn, args = CONTRACT.decode_function_input(bytes.fromhex(tx["input"][2:]))
    args = dict(args)
    change(args)
    names = [i["name"] for i in fn.abi["inputs"]]
    tx["input"] = CONTRACT.encode_abi(fn.fn_name, args=[args[n] for n in names])


def _log(h: dict[str, Any], tx: dict[str, Any], event: str) -> dict[str, Any]:
    return next(lg for lg in h["logs"] if lg["event"] == event and
                (lg["block"], lg["tx_index"]) == (tx["block"], tx["tx_index"]))


def test_a_forged_signature_is_caught(history):
    h = copy.deepcopy(history)
    stranger = eth.EthKey.from_seed(5, "stranger")

    def forge(args: dict[str, Any]) -> None:
        digest = eth.proof_digest(h["chain_id"], "0x" + "00" * 20, 1, 1, b"\x00" * 32)
        forged = dict(zip("vrs", stranger.sign_digest(digest).as_tuple(), strict=True))
        args["sigs"] = [forged, *args["sigs"][1:]]

    _rewrite(_stage_tx(h, "submit_pledge"), forge)
    problems = audit(h)
    assert any("outside the committee" in r for _, r in problems)
    assert any("F+1 = 2 needed" in r for _, r in problems)


def test_a_payload_that_does_not_hash_to_the_signed_result_is_caught(history):
    h = copy.deepcopy(history)

    def inflate(args: dict[str, Any]) -> None:
        first = dict(args["reqs"][0])  # web3 decodes a struct as a mapping
        first["value"] += 1
        args["reqs"] = [first, *args["reqs"][1:]]

    _rewrite(_stage_tx(h, "submit_pledge"), inflate)
    assert ("result hash", "submit_pledge's payload does not hash to its result hash") in audit(h)


def test_log_signers_and_stage_order_are_checked(history):
    h = copy.deepcopy(history)
    tx = _stage_tx(h, "submit_commit")
    ev = _log(h, tx, "StageChanged")
    args = dict(ev["args"])
    args["signers"] = list(reversed(args["signers"]))
    args["to_stage"] = int(Stage.PLEDGE)
    ev["args"] = [[k, v] for k, v in args.items()]
    problems = audit(h)
    assert any("are not those the StageChanged log names" in r for _, r in problems)
    assert any("submit_commit moved to stage 1; expected WORK" in r for _, r in problems)


def test_a_dropped_call_leaves_an_orphan_transition_and_breaks_the_order(history):
    h = copy.deepcopy(history)
    tx = _stage_tx(h, "submit_pledge")
    h["transactions"].remove(tx)
    problems = audit(h)
    assert ("StageChanged", "a stage transition without an accepted stage call") in problems
    assert any(f == "order" and "submit_commit accepted at iteration 1 stage 2" in r
               for f, r in problems)


def test_the_old_committee_cannot_sign_after_the_handover(history):
    """The second Elect's proof is re-signed by the first committee: the replay knows
    the committee changed hands at the first Elect and refuses it."""
    h = copy.deepcopy(history)
    tx = _stage_tx(h, "submit_elect", 1)
    old = [eth.EthKey.from_seed(1, f"member{i}") for i in range(2)]

    def resign(args: dict[str, Any]) -> None:
        contract = _stage_tx(h, "submit_pledge")["to"]
        sigs = eth.make_proof(old, h["chain_id"], contract, 2, 0, bytes(args["result_hash"]))
        args["sigs"] = [dict(zip("vrs", s.as_tuple(), strict=True)) for s in sigs]

    _rewrite(tx, resign)
    problems = audit(h)
    assert sum("outside the committee" in r for _, r in problems) == 2
    assert ETH  # (the World's unit, imported with it)
