"""DFLBCB end to end in the simulator: the initiator deploys and initializes the state
contract, the committee orders requests with PBFT and advances every stage with F+1
proofs, participants train on digits, members score on the shared split and aggregate;
every Elect installs the elected committee (a new PBFT instance, a new term)."""

from __future__ import annotations

import numpy as np
import pytest

from dflbcb_sim import INITIAL, ROUNDS, captured_run, config, contract_of, terms, transitions
from fedledger.assembly.build import build_experiment, sample_root_set
from fedledger.assembly.jobs import JobRunner, NodeLearning
from fedledger.contracts.dflbcb import Kind
from fedledger.learning.jobs import EvalJob
from fedledger.protocols.dflbcb import Dflbcb
from fedledger.protocols.dflbcb.roles import eth_key
from fedledger.storage import BlobStore
from fedledger.storage.cid import cid_from_sha256


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return captured_run(config("dflbcb-e2e"), tmp_path_factory.mktemp("dflbcb") / "run")


def test_every_stage_call_is_accepted_and_the_iteration_advances(run):
    _, host = run
    address = contract_of(host)
    calls = [(n, r.fn, r.status) for n, r in host.receipts if r.fn.startswith("submit_")]
    assert all(ok for _, _, ok in calls), calls
    # Elect once per term (elect_times 2): E P C W P C W E P C W
    fns = [fn for _, fn, _ in calls]
    assert fns == ["submit_elect", "submit_pledge", "submit_commit", "submit_work",
                   "submit_pledge", "submit_commit", "submit_work",
                   "submit_elect", "submit_pledge", "submit_commit", "submit_work"]
    assert host.backend.call(address, "it", ()) == ROUNDS + 1

def test_each_election_hands_the_stages_over_to_the_elected_committee(run):
    _, host = run
    committees = terms(host)
    # term 1: no accuracy history yet, equal pledges: the 4 lowest addresses, p00 and p01
    # among them; term 2 (after two iterations) weighs the members' accuracy
    assert len(committees) == 3 and committees[1] != INITIAL
    assert {"p00", "p01"} <= set(committees[1])
    term = 0
    for submitter, fn, _, signers in transitions(host):
        # each proof is signed by F+1 members of the committee of its term, and the
        # submitter belongs to it (the old committee's proof installs the new one)
        assert submitter in committees[term] and set(signers) <= set(committees[term])
        assert len(signers) >= 2
        term += fn == "submit_elect"


def test_the_global_model_hash_on_chain_is_the_members_model(run):
    result, host = run
    address = contract_of(host)
    committees = terms(host)
    for it in range(1, ROUNDS + 1):
        on_chain = bytes(host.backend.call(address, "global_model", (it,)))
        cid = cid_from_sha256(on_chain)
        for member in committees[1 if it <= 2 else 2]:
            store = BlobStore(result.run_dir / "nodes" / member / "blobs")
            assert store.has(cid), (it, member)
        acc = host.backend.call(address, "global_acc", (it,))
        assert 0 < acc <= 1000


def test_honest_accuracy_is_well_above_chance(run):
    result, _ = run
    assert result.summary.final_accuracy > 0.6  # ten classes: chance is 0.1
    last = [r for r in result.rows if r.step == ROUNDS]
    assert {r.node for r in last} == {"m00", "m01", "m02", "m03", "p00", "p01"}
    assert len({r.accuracy for r in last}) == 1  # every node holds the same model


def test_the_shared_split_is_one_set_for_every_node(tmp_path):
    exp = build_experiment(config("dflbcb-shared"), tmp_path)
    try:
        shared = exp.jobs.shared
        assert shared is not None and len(shared.train.y) == 150
        w = exp.learner.init_weights(1)
        a = exp.jobs.run("m00", EvalJob(w, split="shared"))
        b = exp.jobs.run("m03", EvalJob(w, split="shared"))
        assert a == b and a.num_samples == 150
        again = sample_root_set(exp.data, 150, 1, "shared")
        assert np.array_equal(again.train.x, shared.train.x)
    finally:
        exp.close()


def test_a_runner_without_a_shared_split_refuses_shared_jobs(tmp_path):
    exp = build_experiment(config("dflbcb-none"), tmp_path)
    try:
        plain = JobRunner(exp.learner, {"m00": NodeLearning(exp.data.nodes[0])}, 1)
        with pytest.raises(ValueError, match="no shared split"):
            plain.run("m00", EvalJob(exp.learner.init_weights(1), split="shared"))
    finally:
        exp.close()


def test_noisy_sub_models_are_flagged_dropped_and_slashed(tmp_path):
    noise = {"count": 2, "attack": {"name": "gaussian_noise", "sigma": 1.0}}
    result, host = captured_run(config("dflbcb-noise", 1, (noise,)), tmp_path / "run")
    slashed = [log for _, r in host.receipts if r.fn == "submit_work" for log in r.logs
               if log.event == "Slashed" and log.arg("kind") == Kind.LOW_QUALITY]
    assert len(slashed) == 2  # both noisy participants
    assert result.summary.final_accuracy > 0.6


# ---------------------------------------------------------------- the ordered log


def test_the_ordered_log_keeps_valid_first_requests_and_cuts_by_sequence():
    from fedledger.contracts import eth
    from fedledger.protocols.dflbcb.ordered import OrderedLog, parse_request, request_payload
    from fedledger.protocols.dflbcb.roles import eth_key

    contract = "0x" + "11" * 20
    log = OrderedLog(1337, contract)
    a, b = eth_key("a"), eth_key("b")
    ra = eth.sign_request(a, 1337, contract, 1, 1, 10**17)
    rb = eth.sign_request(b, 1337, contract, 1, 1, 10**17)
    assert parse_request(request_payload(1, 1, ra)) == (1, 1, ra)
    assert log.add(3, 1, 1, ra.node, ra)
    assert not log.add(4, 1, 1, ra.node, ra)  # a repeat
    other_stage = eth.sign_request(b, 1337, contract, 1, 2, 10**17)
    assert not log.add(5, 1, 1, rb.node, other_stage)  # signed for another stage
    assert not OrderedLog(1337, "0x" + "22" * 20).add(5, 1, 1, rb.node, rb)  # other contract
    assert log.add(7, 1, 1, rb.node, rb)
    assert log.requests(1, 1, 6) == [ra] and log.requests(1, 1, 7) == [ra, rb]
    hashes = {eth.requests_result_hash(log.requests(1, 1, c)) for c in (3, 6)}
    assert len(hashes) == 1  # the same cut, the same hash on every member
    with pytest.raises(ValueError):
        parse_request((1, 1, "x"))


def test_the_report_reads_the_contracts_history(run):
    result, host = run
    section = result.summary.protocol_report
    address = contract_of(host)
    assert section["iterations"] == ROUNDS
    assert section["accepted_proofs"] == {"elect": 2, "pledge": 3, "commit": 3, "work": 3}
    assert abs(sum(section["stage_share"].values()) - 1) < 1e-9
    assert set(section["gas_per_call"]) == {"submit_elect", "submit_pledge", "submit_commit",
                                            "submit_work"}
    for it in range(1, ROUNDS + 1):  # per iteration, as the contract recorded them
        assert section["price_wei"][it] == host.backend.call(address, "global_price", (it,))
        assert section["accuracy_permille"][it] == host.backend.call(address, "global_acc",
                                                                     (it,))
    assert section["rewarded_points"]["work"] > 0 and section["requests"] > 0
    # E3: each member's own sub-model as it scored it; where it was scored in every
    # iteration it was a member, the accepted scores on chain sum to the same
    local = section["local_accuracy_permille"]
    assert local and all(0 <= v <= 1000 for per in local.values() for v in per.values())
    assert {it for per in local.values() for it in per} == set(range(1, ROUNDS + 1))
    checked = 0
    for node, per_it in local.items():
        addr = eth_key(node).address
        if len(per_it) == host.backend.call(address, "acc_cnt", (addr,)):
            assert sum(per_it.values()) == host.backend.call(address, "acc_sum", (addr,))
            checked += 1
    assert checked >= 1
    lines = dict(Dflbcb.headline(None, section))  # type: ignore[arg-type]
    assert lines["accepted proofs"].startswith("commit 3")
