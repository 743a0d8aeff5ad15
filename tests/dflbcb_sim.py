"""Shared helpers of the DFLBCB simulator tests: a small digits config, a run that
captures the chain host (and the nodes), and readers of the contract's history."""

from __future__ import annotations

import fedledger.experiment.runner as runner
from fedledger.assembly.config import parse_config
from fedledger.experiment.runner import run_experiment
from fedledger.protocols.dflbcb.roles import eth_key

ROUNDS = 3


def config(name: str, rounds: int = ROUNDS, malicious: tuple = (), epochs: int = 3,
           count: int = 7, **protocol):
    return parse_config({
        "name": name, "seed": 1, "rounds": rounds,
        "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.2},
        "model": {"name": "mlp", "hidden": [32]},
        "train": {"epochs": epochs, "lr": 0.1, "batch_size": 16, "momentum": 0.5},
        "protocol": {"name": "dflbcb", "committee": 4, "elect_times": 2, "shared_eval": 150,
                     **protocol},
        "nodes": {"count": count, "malicious": list(malicious)},
        "output": {"plots": False},
    })


def contract_of(host) -> str:
    return next(r.contract_address for n, r in host.receipts if r.fn == "__init__")


NODE_OF = {eth_key(n).address: n for n in
           ("init", "m00", "m01", "m02", "m03", "p00", "p01", "p02")}
INITIAL = ("m00", "m01", "m02", "m03")


def terms(host) -> list[tuple[str, ...]]:
    """The committee of each term, as node ids: the initial one, then each election's."""
    out = [INITIAL]
    for _, r in host.receipts:
        out += [tuple(NODE_OF[a] for a in log.arg("members")) for log in r.logs
                if log.event == "CommitteeElected"]
    return out


def transitions(host) -> list[tuple[str, str, int, tuple[str, ...]]]:
    """(submitter, function, iteration, signers) of every accepted stage call."""
    return [(n, r.fn, int(log.arg("it")), tuple(NODE_OF[a] for a in log.arg("signers")))
            for n, r in host.receipts if r.fn.startswith("submit_") and r.status
            for log in r.logs if log.event == "StageChanged"]


def captured_run(cfg, out, nodes: dict | None = None):
    """Runs ``cfg``; (result, chain host). ``nodes``, if given, receives the node objects
    as they are at the end of the run."""
    hosts, exps = [], []
    chain, sim = runner.simulated_chain, runner.simulator_for
    runner.simulated_chain = lambda exp: hosts.append(chain(exp)) or hosts[-1]
    runner.simulator_for = lambda exp, *a, **k: exps.append(exp) or sim(exp, *a, **k)
    try:
        result = run_experiment(cfg, out=out)
    finally:
        runner.simulated_chain, runner.simulator_for = chain, sim
    if nodes is not None:
        nodes.update(exps[0].nodes)
    return result, hosts[0]
