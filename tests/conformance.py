"""The protocol conformance kit: checks that every registered protocol must pass.

A protocol joins by adding a small, fast config to :data:`CONFORMANCE_CONFIGS` (and, if
its nodes keep a chain, a :class:`Restart` entry to :data:`RESTARTS`);
``tests/test_conformance.py`` runs every check on every built-in protocol and fails for
one without an entry. The checks:

1. determinism: two simulator runs with one seed write identical metrics and ledgers
   (:func:`run_fingerprint`);
2. hostile input never raises and is counted (in ``conformance_hostile``): every
   message type of every protocol with garbage fields, unknown senders, the node itself
   as sender, other protocols' messages, unknown timers, jobs and blobs;
3. a node rebuilt from its stores resumes (:func:`simulate`, :func:`drive_fetches`,
   :class:`Restart`);
4. ``fedledger chain verify`` passes on the run directory and fails once a stored block
   is tampered with (:func:`tamper_one_block`).

Known gaps (a class of bad input a protocol ignores without counting it, or that makes
it raise) are listed in ``conformance_hostile.KNOWN_GAPS`` and ``KNOWN_RAISES`` and run
as strict xfails, so a protocol that closes one is told to remove its entry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.assembly.build import Experiment, build_experiment
from fedledger.assembly.config import ExperimentConfig, parse_config
from fedledger.assembly.plugins import registries
from fedledger.experiment.runner import simulator_for
from fedledger.protocols.base import BlobReceived, EmitMetric, FetchBlob, ProtocolNode
from fedledger.storage.blobs import BlobStore
from fedledger.storage.layout import RunLayout

# ---------------------------------------------------------------- the table

#: Settings every conformance run shares: digits, a small MLP, one local epoch.
BASE: dict[str, Any] = {
    "seed": 5,
    "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.2},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "output": {"plots": False},
}

#: One small, fast experiment per registered protocol (a few seconds each). A new
#: protocol adds itself here; ``test_every_protocol_has_a_conformance_config`` says so.
CONFORMANCE_CONFIGS: dict[str, dict[str, Any]] = {
    "vanilla": {
        "rounds": 3,
        "protocol": {"name": "vanilla", "fraction": 1.0},
        "nodes": {"count": 4},
    },
    "posbfl": {
        "rounds": 3,
        "protocol": {
            "name": "posbfl",
            "workers": 3,
            "validators": 2,
            "miners": 1,
            "local_epochs": 1,
        },
        "nodes": {"count": 6},
    },
    "dfl": {
        "protocol": {
            "name": "dfl",
            "topology": "full",
            "buffer_size": 2,
            "samples_per_interval": 32,
            "batch_size": 32,
            "train_interval": [4, 6],
            "block_txs": 2,
            "ticks": 40,
            "report_every": 10,
        },
        "nodes": {"count": 4},
    },
    "nagar": {
        # one round (plan, stats, grad, update: every phase), softmax regression and half
        # of digits held out for testing keep its runs to a few seconds
        "rounds": 1,
        "data": {
            "dataset": "digits",
            "partition": "iid",
            "val_fraction": 0.2,
            "test_fraction": 0.5,
        },
        "model": {"name": "mlp", "hidden": []},
        "protocol": {
            "name": "nagar",
            "miners": 2,
            "devices_per_round": 2,
            "optimizer": "fsvrg",
            "step_size": 0.5,
            "consensus": "pow",
            "pow_difficulty": 4,
            "dp": "laplace",
            "dp_clip": 5.0,
            "epsilon_round": 50.0,
            "epsilon_total": 200.0,
        },
        "nodes": {"count": 6},
    },
    "mudfl": {
        "rounds": 2,
        "protocol": {"name": "mudfl", "committee": 4, "epoch_size": 2, "round_slots": 20},
        "nodes": {"count": 7},
    },
    "dflbcb": {
        "rounds": 2,  # contract iterations
        "protocol": {"name": "dflbcb", "committee": 4, "shared_eval": 100},
        "nodes": {"count": 6},
    },
    "pbft-ledger": {
        "rounds": 6,  # requests per client
        "protocol": {"name": "pbft-ledger", "clients": 2, "rate": 20.0, "checkpoint_interval": 4},
        "nodes": {"count": 4},
        "max_time": 60.0,
    },
    "nagar-vertical": {
        "rounds": 1,  # one epoch over the aligned rows; the plan and round blocks on chain
        "protocol": {
            "name": "nagar-vertical",
            "overlap": 0.3,
            "batch_size": 128,
            "key_bits": 256,
        },
        "nodes": {"count": 3},
    },
    "nagar-transfer": {
        "rounds": 2,  # epochs: full-batch steps over the overlap; the plan and epochs on chain
        "protocol": {
            "name": "nagar-transfer",
            "mode": "transfer",
            "overlap": 0.1,
            "key_bits": 256,
            "lr": 0.05,
        },
        "nodes": {"count": 3},
    },
    "nagar-transfer-committee": {
        # transfer mode with a 2-of-3 key-holder committee instead of a coordinator
        "rounds": 2,
        "protocol": {
            "name": "nagar-transfer",
            "mode": "transfer",
            "overlap": 0.1,
            "key_bits": 256,
            "lr": 0.05,
            "decryptor": "committee",
            "committee": 3,
            "threshold": 2,
        },
        "nodes": {"count": 5},
    },
    "nagar-sharing": {
        "rounds": 6,  # hours of readings: 3 IoT devices, 3 gateways (2 of 3), a trainer
        "protocol": {"name": "nagar-sharing", "mode": "sharing", "devices": 3},
        "nodes": {"count": 7},
    },
    "nagar-consortium": {
        # Nagar's consortium mode (a VARIANT): PoS among 3 permissioned miners that store
        # every blob sealed in parts (key 2 of 3); every member trains every step
        "rounds": 1,
        "data": {
            "dataset": "digits",
            "partition": "iid",
            "val_fraction": 0.2,
            "test_fraction": 0.5,
        },
        "model": {"name": "mlp", "hidden": []},
        "protocol": {
            "name": "nagar",
            "miners": 3,
            "optimizer": "fsvrg",
            "step_size": 0.5,
            "consensus": "pos",
            "consortium": {"threshold": 2},
        },
        "nodes": {"count": 6},
    },
}

#: Modes of a registered protocol that take code paths of their own, checked as entries
#: of their own: entry name -> the registered protocol it runs.
VARIANTS: dict[str, str] = {
    "nagar-consortium": "nagar",
    "nagar-transfer-committee": "nagar-transfer",
}


def protocol_of(entry: str) -> str:
    """The registered protocol an entry of :data:`CONFORMANCE_CONFIGS` runs."""
    return VARIANTS.get(entry, entry)


def builtin_protocols() -> list[str]:
    """Registered protocols that fedledger itself ships (test-only ones, registered by
    test modules, are left out), and their :data:`VARIANTS`."""
    reg = registries()["protocol"]
    names = [n for n in reg.names() if reg.get(n).factory.__module__.startswith("fedledger.")]
    return sorted([*names, *(v for v, p in VARIANTS.items() if p in names)])


def conformance_config(protocol: str, **updates: Any) -> ExperimentConfig:
    """The protocol's conformance experiment, with top-level keys replaced by ``updates``."""
    try:
        entry = CONFORMANCE_CONFIGS[protocol]
    except KeyError:
        raise KeyError(
            f"protocol {protocol!r} has no entry in tests/conformance.py CONFORMANCE_CONFIGS; "
            f"entries: {sorted(CONFORMANCE_CONFIGS)}"
        ) from None
    return parse_config({"name": f"conformance-{protocol}", **BASE, **entry, **updates})


def keeps_chain(config: ExperimentConfig) -> bool:
    """Whether any node of the experiment keeps a chain (``Protocol.resources``)."""
    from fedledger.assembly.build import build_protocol

    protocol = build_protocol(config)
    plans = list(protocol.plan(config.nodes.count, config.seed))
    return any(protocol.resources(p, plans).keeps_chain for p in plans)


# ---------------------------------------------------------------- 1. determinism

#: Metric rows that measure the host's CPU, not the protocol: they differ run to run.
WALL_CLOCK_METRICS = frozenset({"cpu_seconds"})
#: Fields of a metric row that hold wall-clock readings, if a host adds any.
WALL_CLOCK_FIELDS = frozenset({"wall_seconds", "wall_time", "wallclock"})


def metric_rows(run_dir: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl`` without wall-clock rows and fields, in file order."""
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("name") in WALL_CLOCK_METRICS:
            continue
        rows.append({k: v for k, v in row.items() if k not in WALL_CLOCK_FIELDS})
    return rows


def ledger_fingerprint(db: Path) -> dict[str, Any]:
    """Everything a chain store holds that a seeded run decides, read through a
    read-only SQLite connection: the head, the canonical chain, every stored block (by
    hash: parent, height, proposer, timestamp, body bytes), finality marks and votes,
    and the node's durable key/value state."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        def rows(query: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in con.execute(query).fetchall()]

        return {
            "head": rows("SELECT value FROM meta WHERE key = 'head'"),
            "canonical": rows("SELECT height, hash FROM canonical ORDER BY height"),
            "blocks": rows(
                "SELECT hash, parent, height, proposer, timestamp, body FROM blocks ORDER BY hash"
            ),
            "marks": rows("SELECT kind, hash, height FROM marks ORDER BY kind, hash"),
            "votes": rows(
                "SELECT voter, source_height, source, target_height, target FROM votes "
                "ORDER BY seq"
            ),
            "state": rows("SELECT key, value FROM node_state ORDER BY key"),
        }
    finally:
        con.close()


def ledgers(run_dir: Path) -> dict[tuple[str, str], Path]:
    """(node id, database file name) -> path, for every chain of every node of a run."""
    layout = RunLayout(run_dir)
    return {
        (node_id, db.name): db
        for node_id in layout.node_ids()
        for db in sorted(layout.node(node_id).root.glob("*.sqlite"))
    }


@dataclass(frozen=True)
class RunFingerprint:
    """What two runs with one seed must share."""

    metrics_csv: str
    metrics: tuple[str, ...]  # metrics.jsonl rows, canonical JSON
    ledgers: Mapping[tuple[str, str], Mapping[str, Any]]


def run_fingerprint(run_dir: Path) -> RunFingerprint:
    return RunFingerprint(
        (run_dir / "metrics.csv").read_text(),
        tuple(json.dumps(r, sort_keys=True) for r in metric_rows(run_dir)),
        {key: ledger_fingerprint(db) for key, db in ledgers(run_dir).items()},
    )


# ---------------------------------------------------------------- 3. restart


class _Quiet:
    """A simulator observer that keeps nothing (the restart check reads the stores)."""

    def on_report(self, node_id: str, time: float, step: int, weights: np.ndarray) -> None:
        pass

    def on_metric(self, node_id: str, time: float, metric: EmitMetric) -> None:
        pass


def simulate(config: ExperimentConfig, run_dir: Path, max_time: float) -> Experiment:
    """Build the experiment under ``run_dir`` and simulate it up to ``max_time`` virtual
    seconds; the returned experiment's nodes are as they were then, its stores still
    open (close them with ``exp.close()``)."""
    exp = build_experiment(config, run_dir)
    sim = simulator_for(exp, _Quiet(), max_time=max_time)
    sim.run()
    return exp


def drive_fetches(
    node: ProtocolNode, effects: Sequence[object], run_dir: Path, now: float, rounds: int = 8
) -> list[object]:
    """Answer the node's ``FetchBlob`` effects from the run's blob stores (what a peer
    would serve), repeatedly; returns every effect it produced, ``effects`` first."""
    seen: list[object] = list(effects)
    pending = [e for e in effects if isinstance(e, FetchBlob)]
    for _ in range(rounds):
        if not pending:
            break
        more: list[object] = []
        for fetch in pending:
            store = BlobStore(RunLayout(run_dir).node(fetch.source).blobs)
            data = store.get(fetch.cid) if store.has(fetch.cid) else None
            now += 0.01
            more += node.handle(BlobReceived(now, fetch.cid, fetch.source, data))
        seen += more
        pending = [e for e in more if isinstance(e, FetchBlob)]
    return seen


def chain_heads(exp: Experiment) -> dict[tuple[str, str], tuple[int, bytes]]:
    """(node, chain) -> (height, hash) of each open chain's head."""
    return {
        (node_id, name): (store.head().height, store.head_hash())
        for node_id, svc in sorted(exp.services.items())
        for name, store in sorted(svc.chains.items())
    }


@dataclass(frozen=True)
class Restart:
    """How to restart a chain-keeping protocol's nodes.

    cut: virtual seconds the first run lasts: well inside the horizon, so that every
        chain-keeping node still has work left (a restarted node must not halt);
    durable: the part of a chain-keeping node's state that must survive a restart, read
        from a node object (at the cut, and rebuilt after ``Start``): equal on both, and
        different from a node that starts with empty stores.
    """

    cut: float
    durable: Callable[[ProtocolNode], Mapping[str, Any]]


def _posbfl_durable(node: Any) -> dict[str, Any]:
    state = node.state
    return {
        "round": state.round,
        "height": state.height,
        "stakes": dict(state.stakes),
        "blacklist": sorted(state.blacklist),
        "global_weights": np.asarray(node.global_weights).tobytes(),
    }


def _nagar_durable(node: Any) -> dict[str, Any]:
    state = node.state
    return {
        "step": state.step,
        "plan_id": state.plan_id,
        "stakes": dict(state.stakes),
        "epsilon": dict(state.epsilon),
        "weights": np.asarray(node.model.weights).tobytes(),
        "full_grad": np.asarray(node.model.full_grad).tobytes(),
    }


def _dfl_durable(node: Any) -> dict[str, Any]:
    return {
        "updates": node.updates,
        "reputation": dict(node.reputation),
        "blocks_proposed": node.chain.blocks,
    }


def _dflbcb_durable(node: Any) -> dict[str, Any]:
    return {
        "contract": node.contract,
        "it_stage_term": (node.it, node.stage, node.term),
        "committee": (node.members, node.committee),
        "registered": node.registered,
        "participants": dict(node.participants),
        "acc_hist": dict(node.acc_hist),
        "accepted": dict(node.accepted),
        "global": node.global_ref.cid,
        "replica": node.engine is not None,
    }


def _pbft_ledger_durable(node: Any) -> dict[str, Any]:
    if not hasattr(node, "ledger"):  # a client: its request numbers
        return {"nonce": node.engine.nonce, "accepted": node.accepted}
    engine = node.engine
    return {
        "last_executed": engine.last_executed,
        "state": engine.state,
        "last_nonce": {c: r.nonce for c, r in sorted(engine.last_reply.items())},
    }


def _nagar_vertical_durable(node: Any) -> dict[str, Any]:
    ledger = node.ledger
    return {
        "plan_id": ledger.plan_id,
        "round": ledger.round,
        "records": dict(ledger.records),
        "kept": ledger.kept(f"weights/{ledger.round}"),
    }


def _nagar_sharing_durable(node: Any) -> dict[str, Any]:
    return {**_nagar_vertical_durable(node), "iot": node.ledger.kept("iot/state")}


def _mudfl_durable(node: Any) -> dict[str, Any]:
    chain = node.chain
    out: dict[str, Any] = {
        "head": chain.store.head().height,
        "finalized": chain.vcf.finalized.height,
        "committed": chain.vcf.highest_committed.height,
        "votes": len(chain.votes),
        "dynasty": (node.ctx.dynasty.number, node.ctx.dynasty.committee),
        "vcf_committee": chain.vcf.rule.committee,
    }
    if node.server is not None:
        out["round"] = node.server.round
        out["weights"] = np.asarray(node.server.weights).tobytes()
    return out


#: Every protocol whose nodes keep a chain restarts; a new one adds itself here.
RESTARTS: dict[str, Restart] = {
    "posbfl": Restart(cut=2 * 300.0 + 100.0, durable=_posbfl_durable),
    "dfl": Restart(cut=25.0, durable=_dfl_durable),
    "nagar": Restart(cut=2 * 60.0 + 40.0, durable=_nagar_durable),  # step 3 (grad), mined
    "nagar-consortium": Restart(cut=2 * 60.0 + 40.0, durable=_nagar_durable),  # as nagar
    "mudfl": Restart(cut=10.0, durable=_mudfl_durable),
    "pbft-ledger": Restart(cut=0.15, durable=_pbft_ledger_durable),
    "dflbcb": Restart(cut=1.0, durable=_dflbcb_durable),  # it 1, Commit: every node has work
    # 0.08 s: the plan block is on every chain, the epoch's exchange is under way
    "nagar-vertical": Restart(cut=0.08, durable=_nagar_vertical_durable),
    # 0.07 s: the plan block is on every chain, epoch 1's exchange is under way
    "nagar-transfer": Restart(cut=0.07, durable=_nagar_vertical_durable),
    "nagar-transfer-committee": Restart(cut=0.07, durable=_nagar_vertical_durable),
    # 2.7 s: hours 0-1 on chain, hour 2's readings sent (a device's budget is kept)
    "nagar-sharing": Restart(cut=2.7, durable=_nagar_sharing_durable),
}


# ---------------------------------------------------------------- 4. chain verify


def tamper_one_block(db: Path) -> bytes:
    """Flip one byte in the body of the highest stored block of ``db``; its hash."""
    con = sqlite3.connect(db)
    try:
        block_hash, body = con.execute(
            "SELECT hash, body FROM blocks ORDER BY height DESC, hash LIMIT 1"
        ).fetchone()
        data = bytearray(body)
        data[len(data) // 2] ^= 0x01
        con.execute("UPDATE blocks SET body = ? WHERE hash = ?", (bytes(data), block_hash))
        con.commit()
    finally:
        con.close()
    return bytes(block_hash)
