"""``fedledger chain verify``: the contract's history beside the nodes' ledgers.

A localnet whose protocol declares a contract records its chain's history at the end
(``RUN_DIR/contract/history.json``: every transaction with its input and status, every
decoded log; :mod:`fedledger.runtime.node.chain_rpc`). This audit replays it without
trusting the chain's own checks:

- one contract, deployed once, initialized once (its ``Initialized`` log gives the first
  committee and ``elect_times``);
- every accepted stage call (``submit_elect``, ``submit_pledge``, ``submit_commit``,
  ``submit_work``) has exactly one ``StageChanged`` log whose iteration, stage and next
  stage follow the order Elect -> Pledge -> Commit -> Work -> (Elect after
  ``elect_times`` iterations of a term, else Pledge), and no ``StageChanged`` log lacks
  such a call; one accepted proof per (iteration, stage);
- each proof: the result hash recomputed from the call's own payload (keccak of its ABI
  encoding) matches the one signed; at least F+1 signatures, F = (n-1)//3 of the
  committee then in office, each recovered with ``ecrecover`` (eth-keys) over
  (chain id, contract, iteration, stage, result hash) to a distinct member; the signers
  equal those the log names; a new committee (``CommitteeElected``) takes office only
  after the Elect proof that installs it was checked against the old one.

Problems are reported as the ledger audit's (node ``contract``, the block as height).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedledger.contracts import eth
from fedledger.contracts.backend import ContractSource
from fedledger.contracts.dflbcb import Stage
from fedledger.ledger.audit import AuditReport
from fedledger.ledger.audit_node import Problem
from fedledger.storage.layout import RunLayout

STAGE_CALLS = {"submit_elect": Stage.ELECT, "submit_pledge": Stage.PLEDGE,
               "submit_commit": Stage.COMMIT, "submit_work": Stage.WORK}
NEXT = {Stage.ELECT: Stage.PLEDGE, Stage.PLEDGE: Stage.COMMIT, Stage.COMMIT: Stage.WORK}
WHERE = "contract"


def history_path(run: RunLayout) -> Path:
    return run.root / "contract" / "history.json"


@dataclasses.dataclass
class ContractAudit:
    """What the replay found."""

    problems: list[Problem] = dataclasses.field(default_factory=list)
    transactions: int = 0
    reverted: int = 0
    transitions: int = 0
    signatures: int = 0
    iterations: int = 0

    def fail(self, block: int | None, field: str, reason: str) -> None:
        self.problems.append(Problem(WHERE, block, field, reason))

    def note(self) -> str:
        return (
            f"contract history: {self.transactions} transactions ({self.reverted} reverted), "
            f"{self.transitions} stage transitions over {self.iterations} iteration(s), "
            f"{self.signatures} proof signatures recovered with ecrecover"
        )


def with_contract(report: AuditReport, run: RunLayout) -> AuditReport:
    """``report`` with the contract-history findings added (unchanged without a history)."""
    path = history_path(run)
    if not path.is_file():
        return report
    found = audit_history(json.loads(path.read_text(encoding="utf-8")), _source(run))
    return dataclasses.replace(
        report, problems=(*report.problems, *found.problems), notes=(*report.notes, found.note())
    )


def _source(run: RunLayout) -> ContractSource | None:
    from fedledger.assembly.build import build_protocol, declared_contract
    from fedledger.assembly.config import load_config

    config = load_config(run.config)
    protocol = build_protocol(config)
    spec, _ = declared_contract(protocol, list(protocol.plan(config.nodes.count, config.seed)))
    return None if spec is None else spec.source


def _values(item: Any) -> tuple[Any, ...]:
    """A struct's values whether decoded as a tuple, a mapping or (field, value) pairs."""
    if isinstance(item, Mapping):
        return tuple(item.values())
    seq = tuple(item)
    if seq and all(isinstance(p, tuple | list) and len(p) == 2 and isinstance(p[0], str)
                   for p in seq):
        return tuple(v for _, v in seq)
    return seq


def _request(item: Any) -> eth.SignedRequest:
    node, value, v, r, s = _values(item)
    return eth.SignedRequest(str(node), int(value), eth.EcdsaSig(int(v), bytes(r), bytes(s)))


def _sig(item: Any) -> eth.EcdsaSig:
    v, r, s = _values(item)
    return eth.EcdsaSig(int(v), bytes(r), bytes(s))


def _bytes(value: Any) -> bytes:
    return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)


def payload_hash(fn: str, args: dict[str, Any]) -> bytes:
    """The result hash a stage call's own payload gives (what the committee signs)."""
    if fn == "submit_elect":
        return eth.elect_result_hash(list(args["members"]),
                                     [_request(c) for c in args["cands"]])
    if fn == "submit_pledge":
        return eth.requests_result_hash([_request(r) for r in args["reqs"]])
    if fn == "submit_commit":
        return eth.requests_result_hash([_request(r) for r in args["subs"]])
    scores = [eth.ScoreEntry(str(n), int(s)) for n, s in (_values(x) for x in args["scores"])]
    return eth.work_result_hash(scores, bytes(args["global_hash"]), int(args["global_acc"]),
                                list(args["alive"]))


def _decoder(source: ContractSource | None, evm_version: str | None) -> Any:
    from web3 import Web3

    from fedledger.contracts.rpc import compile_source

    if source is None:
        return None
    abi, _ = compile_source(source.name, source.text(), evm_version)
    return Web3().eth.contract(abi=list(abi))


def audit_history(history: dict[str, Any], source: ContractSource | None) -> ContractAudit:
    found = ContractAudit()
    chain_id = int(history["chain_id"])
    txs = sorted(history["transactions"], key=lambda t: (t["block"], t["tx_index"]))
    logs = history["logs"]
    found.transactions = len(txs)
    found.reverted = sum(1 for t in txs if not t["status"])
    deployed = [t for t in txs if t["status"] and t.get("contract_address")]
    if len(deployed) != 1:
        found.fail(None, "deploy", f"{len(deployed)} contracts deployed; the run uses one")
        return found
    contract = eth.checksum(deployed[0]["contract_address"])
    stray = sorted({lg["address"] for lg in logs if eth.checksum(lg["address"]) != contract})
    if stray:
        found.fail(None, "logs", f"logs from addresses other than the contract: {stray}")
    by_tx: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for lg in logs:
        by_tx.setdefault((lg["block"], lg["tx_index"]), []).append(lg)
    inits = [lg for lg in logs if lg["event"] == "Initialized"]
    if len(inits) != 1:
        found.fail(None, "initialize", f"{len(inits)} Initialized logs; exactly one expected")
        return found
    init_args = dict(inits[0]["args"])
    committee = [eth.checksum(a) for a in init_args["committee"]]
    elect_times = int(dict(_pairs(init_args["params"]))["elect_times"])
    decoder = _decoder(source, history.get("evm_version"))
    if decoder is None:
        found.fail(None, "source", "the run's protocol declares no contract to decode with")
        return found
    it, stage, term_rounds = 1, Stage.ELECT, 0
    seen: set[tuple[int, int]] = set()
    accounted: set[tuple[int, int]] = set()
    for tx in txs:
        if not tx["status"] or tx.get("to") is None or eth.checksum(tx["to"]) != contract:
            continue
        fn_obj, args = decoder.decode_function_input(_bytes(tx["input"]))
        fn = fn_obj.fn_name
        if fn not in STAGE_CALLS:
            continue
        key = (tx["block"], tx["tx_index"])
        block = int(tx["block"])
        changed = [lg for lg in by_tx.get(key, []) if lg["event"] == "StageChanged"]
        if len(changed) != 1:
            found.fail(block, fn, f"{len(changed)} StageChanged logs for an accepted {fn}")
            continue
        accounted.add(key)
        ev = dict(changed[0]["args"])
        want = STAGE_CALLS[fn]
        if int(ev["it"]) != it or int(ev["from_stage"]) != want or want != stage:
            found.fail(block, "order", f"{fn} accepted at iteration {ev['it']} stage "
                       f"{ev['from_stage']}; the replay expects iteration {it} stage {stage.name}")
        if (it, int(want)) in seen:
            found.fail(block, "first proof", f"a second proof accepted for ({it}, {want.name})")
        seen.add((it, int(want)))
        result_hash = bytes(args["result_hash"])
        if _bytes(ev["result_hash"]) != result_hash:
            found.fail(block, "result hash", "the log's result hash is not the call's")
        if payload_hash(fn, args) != result_hash:
            found.fail(block, "result hash", f"{fn}'s payload does not hash to its result hash")
        _check_proof(found, block, chain_id, contract, it, want, result_hash,
                     [_sig(s) for s in args["sigs"]], committee,
                     [eth.checksum(a) for a in ev["signers"]])
        found.transitions += 1
        elected = [lg for lg in by_tx.get(key, []) if lg["event"] == "CommitteeElected"]
        if want == Stage.ELECT:
            if elected:
                committee = [eth.checksum(a) for a in dict(elected[-1]["args"])["members"]]
            term_rounds = 0
        if want == Stage.WORK:
            term_rounds += 1
            found.iterations += 1
            nxt = Stage.ELECT if term_rounds >= elect_times else Stage.PLEDGE
            it += 1
        else:
            nxt = NEXT[want]
        if int(ev["to_stage"]) != nxt:
            found.fail(block, "order", f"{fn} moved to stage {ev['to_stage']}; expected "
                       f"{nxt.name} (elect_times {elect_times})")
        stage = nxt
    orphans = sorted(k for k, lgs in by_tx.items()
                     if any(lg["event"] == "StageChanged" for lg in lgs) and k not in accounted)
    for block, _ in orphans:
        found.fail(block, "StageChanged", "a stage transition without an accepted stage call")
    return found


def _pairs(value: Any) -> list[tuple[str, Any]]:
    return [(str(k), v) for k, v in value]


def _check_proof(found: ContractAudit, block: int, chain_id: int, contract: str, it: int,
                 stage: Stage, result_hash: bytes, sigs: list[eth.EcdsaSig],
                 committee: list[str], named: list[str]) -> None:
    need = (len(committee) - 1) // 3 + 1
    digest = eth.proof_digest(chain_id, contract, it, int(stage), result_hash)
    signers = []
    for sig in sigs:
        who = eth.recover(digest, sig)
        found.signatures += 1
        if who is None:
            found.fail(block, "proof", f"an unrecoverable signature on ({it}, {stage.name})")
        elif who not in committee:
            found.fail(block, "proof", f"{who} signed ({it}, {stage.name}) outside the "
                       f"committee {committee}")
        else:
            signers.append(who)
    if len(set(signers)) < need:
        found.fail(block, "proof", f"({it}, {stage.name}): {len(set(signers))} distinct "
                   f"member signatures; F+1 = {need} needed")
    if len(set(signers)) != len(signers):
        found.fail(block, "proof", f"({it}, {stage.name}): a member signed twice")
    if signers != named:
        found.fail(block, "proof", f"({it}, {stage.name}): recovered signers {signers} are not "
                   f"those the StageChanged log names {named}")
