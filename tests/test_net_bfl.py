"""The BFL protocols as real node processes on loopback: a PoS-BFL localnet and a DFL
localnet run to the end with every chain verified, and a PoS-BFL device killed with
SIGKILL mid-run and restarted from its data dir.

Every node gets the network's epoch (``--epoch``) a start delay after the launch, so the
devices that are up by then start round 1 together at network time 0; the delay follows
the machine's load (each node spends several CPU-seconds importing torch and building its
share of the experiment before it is ready). A device up only after the epoch would start
its rounds late (posbfl does not yet place rounds by the network time), so the PoS-BFL
test first checks that none was late. The phases of
a PoS-BFL round are scaled down to seconds. Processes are stopped and checked by the
``nets`` fixture of test_net_processes.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fedledger.cli import app
from fedledger.experiment.config import load_config
from fedledger.experiment.setup import build_protocol
from fedledger.ledger.store import ChainStore
from fedledger.protocols.dfl.state import STATE_KEY, ReputationState, decode_state
from fedledger.protocols.posbfl.roles import assign_roles, role_counts
from fedledger.runtime.node.localnet import Localnet
from fedledger.runtime.services import node_keys
from test_net_processes import journal, nets, wait_until  # noqa: F401  (nets: a fixture)

pytestmark = pytest.mark.slow


def start_delay() -> float:
    """Seconds from the launch to the epoch: five node processes take 16 s to be ready on
    an idle 2-core machine and over 30 s at a load average of 10 (another localnet
    starting beside them), so the delay follows the load."""
    return min(60.0, 20.0 + 2.5 * os.getloadavg()[0])


ROUND = 3.0  # seconds per PoS-BFL round

POSBFL = {
    "name": "net-posbfl",
    "seed": 3,
    "rounds": 3,
    "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.25},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "protocol": {
        "name": "posbfl",
        "workers": 2,
        "validators": 1,
        "miners": 2,
        "local_epochs": 1,
        # a round of ROUND s; blocks go out at 1.8 s and are picked at 2.6 s (training and
        # validating take a few tens of ms)
        "tx_window": 1.0,
        "vote_at": 1.4,
        "mine_at": 1.8,
        "select_at": 2.6,
        "round_length": ROUND,
    },
    "nodes": {"count": 5},
    "output": {"plots": False},
}

DFL = {
    "name": "net-dfl",
    "seed": 1,
    "data": {"dataset": "digits", "partition": "iid", "val_fraction": 0.15},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "protocol": {
        "name": "dfl",
        "topology": "random",
        "degree": 2.5,
        "samples_per_interval": 32,
        "train_interval": [1, 2],
        "batch_size": 32,
        "buffer_size": 2,
        "block_txs": 2,
        "receipt_wait": 1.0,
        "confirm_timeout": 3.0,
        "ticks": 30,
        "report_every": 10,
    },
    "nodes": {"count": 5},
    "output": {"plots": False},
}


def write(tmp_path: Path, tree: dict, **top: object) -> Path:
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({**json.loads(json.dumps(tree)), **top}))
    return path


def chain(net: Localnet, node_id: str) -> list[bytes]:
    with ChainStore(net.node_dir(node_id) / "ledger.sqlite") as store:
        return [b.hash for b in store.canonical_chain()]


def verify(run_dir: Path) -> None:
    result = CliRunner().invoke(app, ["chain", "verify", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok:"), result.output


def begins(net: Localnet, node_id: str) -> list[dict]:
    return [r for r in journal(net, node_id) if r["kind"] == "begin"]


def since_last_begin(net: Localnet, node_id: str) -> list[dict]:
    """The node's journal lines since it last began (its current life)."""
    rows = journal(net, node_id)
    starts = [i for i, r in enumerate(rows) if r["kind"] == "begin"]
    return rows[starts[-1] :] if starts else []


def metric_rows(rows: list[dict], name: str) -> list[dict]:
    return [r for r in rows if r["kind"] == "metric" and r["name"] == name]


def launch(running: list, config: Path, out: Path, timeout: float, start_delay: float) -> Localnet:
    """Start a localnet (stopped and checked by the ``nets`` fixture)."""
    net = Localnet(
        config,
        out=out,
        node_args=("--start-wait", "10"),
        timeout=timeout,
        grace=10,
        start_delay=start_delay,
    )
    running.append(net)
    net.start()
    return net


def kill9(net: Localnet, node_id: str) -> None:
    proc = net.procs.procs[node_id]
    proc.signal(signal.SIGKILL)
    assert proc.wait(5) == -signal.SIGKILL


def finish(net: Localnet):  # type: ignore[no-untyped-def]
    """Wait for every node to halt; the gathered result, every exit code 0."""
    assert net.wait(tick=0.2), f"not all nodes halted: {net.procs.alive()}"
    result = net.gather()
    assert set(result.exit_codes.values()) == {0}, result.exit_codes
    return result


def test_posbfl_localnet_of_five_devices_agrees_on_one_chain(tmp_path, nets):  # noqa: F811
    delay = start_delay()
    net = launch(nets, write(tmp_path, POSBFL), tmp_path / "run", 120, delay)
    result = finish(net)
    assert result.summary["nodes_halted"] == 5
    late = result.summary["late_starts"]
    assert late == {}, f"the machine is too slow for a start delay of {delay} s: late {late}"
    for node_id in net.ids:  # the shared epoch: every device began round 1 at time 0
        assert [round(b["time"], 1) for b in begins(net, node_id)] == [0.0], node_id
        selects = _select_times(net, node_id)
        assert sorted(selects) == [1, 2, 3] and not _off_grid(selects), (node_id, selects)
    chains = {n: chain(net, n) for n in net.ids}
    assert len(chains["d000"]) == 1 + 3, chains  # genesis + one legal block per round
    assert all(c == chains["d000"] for c in chains.values()), "ledgers disagree"
    verify(net.run_dir)
    assert result.summary["last_step"] == 3


def test_dfl_localnet_runs_thirty_ticks_and_every_chain_verifies(tmp_path, nets):  # noqa: F811
    # DFL is asynchronous: nodes need not start together, so the epoch comes early and a
    # node that is up only after it begins at the network's current time
    net = launch(nets, write(tmp_path, DFL), tmp_path / "run", 120, 10.0)
    finish(net)
    ticks = DFL["protocol"]["ticks"]
    for node_id in net.ids:
        rows = journal(net, node_id)
        # the shared clock: every node halts at network time `ticks`, however late it began
        (begin,) = [r for r in rows if r["kind"] == "begin"]
        assert begin["time"] == pytest.approx(max(0.0, begin["late"]), abs=0.5), begin
        halt = [r for r in rows if r["kind"] == "halt"]
        assert len(halt) == 1 and ticks <= halt[0]["time"] < ticks + 3, (node_id, halt)
        updates = metric_rows(rows, "dfl_updates")
        assert updates, f"{node_id} never updated its model from received ones"
    # one chain per node: each confirmed blocks of its own and every chain verifies
    blocks = {n: len(chain(net, n)) - 1 for n in net.ids}
    assert min(blocks.values()) >= 1, f"a node confirmed no block in {ticks} ticks: {blocks}"
    verify(net.run_dir)


def _worker_rounds(config: Path, device: str, rounds: int) -> tuple[bytes, list[int]]:
    """The device's address and the rounds in which it is a worker (roles are seeded)."""
    cfg = load_config(config)
    protocol = build_protocol(cfg)
    plans = protocol.plan(cfg.nodes.count, cfg.seed)
    devices = tuple(p.node_id for p in plans)
    counts = role_counts(protocol.params, len(devices))
    works = [
        r
        for r in range(1, rounds + 1)
        if device in assign_roles(devices, counts, cfg.seed, r).workers
    ]
    return node_keys(plans, cfg.seed)[device].address, works


def _select_times(net: Localnet, node_id: str, since: float = 0.0) -> dict[int, float]:
    """Round -> network time at which the device picked that round's legal block."""
    return {
        r["step"]: r["time"]
        for r in journal(net, node_id)
        if r["kind"] == "metric" and r["name"] == "candidate_blocks" and r["time"] >= since
    }


def _off_grid(selects: dict[int, float]) -> dict[int, float]:
    """Rounds whose block was picked more than 0.2 s away from the network's round grid
    (round j picks at (j - 1) * ROUND + select_at), with the distance."""
    select_at = POSBFL["protocol"]["select_at"]
    off = {j: t - ((j - 1) * ROUND + select_at) for j, t in selects.items()}
    return {j: round(d, 2) for j, d in off.items() if abs(d) > 0.2}


def test_posbfl_device_killed_with_sigkill_restarts_catches_up_and_takes_part(tmp_path, nets):  # noqa: F811
    rounds = 16
    config = write(tmp_path, POSBFL, rounds=rounds)
    victim = "d000"  # it dials all the others: back on the network as soon as it listens
    address, worker_rounds = _worker_rounds(config, victim, rounds)
    delay = start_delay()
    net = launch(nets, config, tmp_path / "run", 150, delay)

    def since_begin(name: str) -> int:
        return len(metric_rows(since_last_begin(net, victim), name))

    durable: list[list[bytes]] = []
    wait_until(lambda: since_begin("legal_block") >= 2, delay + 60, f"blocks on {victim}")
    # kill -9 it twice: each time it must come back in step with the others (twice, so that
    # a device that ignores the network time cannot land on the round grid by chance)
    for cycle in (1, 2):
        kill9(net, victim)
        durable.append(chain(net, victim))  # what was durable when it died
        assert len(durable[-1]) >= 3
        net.start_node(victim)  # same data dir, port and epoch
        wait_until(lambda n=cycle: len(begins(net, victim)) > n, 60, f"{victim} to begin again")
        wait_until(lambda: since_begin("candidate_blocks") >= 1, 3 * ROUND, "a round")
        restarted = begins(net, victim)[-1]["time"]
        off = _off_grid(_select_times(net, victim, since=restarted))
        assert not off, f"{victim}, restarted at {restarted:.2f} s, is out of step: {off}"
    finish(net)

    after = chain(net, victim)
    for before in durable:
        assert after[: len(before)] == before, "a durable block was lost"
    syncs = [r for r in journal(net, victim) if r["kind"] == "sync"]
    assert len(syncs) == 3 and all(s["appended"] >= 1 for s in syncs[1:]), syncs  # caught up
    for node_id in net.ids:
        assert not _off_grid(_select_times(net, node_id)), node_id
    chains = {n: chain(net, n) for n in net.ids}
    assert all(c == chains["d001"] for c in chains.values()), "ledgers disagree"
    assert len(chains["d001"]) == 1 + rounds
    verify(net.run_dir)

    # it takes part again: in a round after its first restart in which it is a worker,
    # its update is in the legal block that every device appended
    restarted = begins(net, victim)[1]["time"]
    later = [r for r in worker_rounds if (r - 1) * ROUND > restarted]
    assert later, f"restart at {restarted:.1f} s left no round where {victim} works"
    with ChainStore(net.node_dir(victim) / "ledger.sqlite") as store:
        senders = {
            b.header.extra.round: {tx.sender for tx in b.transactions}
            for b in store.canonical_chain()
            if b.height > 0
        }
    took_part = [r for r in later if address in senders.get(r, set())]
    assert took_part, f"{victim}'s updates of rounds {later} are in no legal block"


def _state(net: Localnet, node_id: str) -> ReputationState | None:
    """The node's persisted reputation state, read from its store (node not running)."""
    with ChainStore(net.node_dir(node_id) / "ledger.sqlite") as store:
        data = store.get_state(STATE_KEY)
    return None if data is None else decode_state(data)


def test_dfl_node_killed_with_sigkill_resumes_with_its_reputation_table(tmp_path, nets):  # noqa: F811
    # four nodes, 30 ticks; the victim dials all its neighbours (smallest id), so it is
    # back on the network as soon as it listens again. It updates every second or two and
    # a restart takes 5-10 s; one that begins only after the last tick still restores its
    # table on Start (and halts at once), so a slow machine delays the test, never fails it
    ticks = 30
    config = write(
        tmp_path,
        {**DFL, "protocol": {**DFL["protocol"], "ticks": ticks}, "nodes": {"count": 4}},
    )
    victim = "n000"
    delay = min(30.0, 8.0 + 1.5 * os.getloadavg()[0])  # DFL nodes may begin late
    net = launch(nets, config, tmp_path / "run", 150, delay)
    wait_until(
        lambda: metric_rows(since_last_begin(net, victim), "dfl_updates"),
        delay + ticks,
        f"a model update on {victim}",
    )
    kill9(net, victim)
    journaled = max(r["value"] for r in metric_rows(journal(net, victim), "dfl_updates"))
    durable = chain(net, victim)
    saved = _state(net, victim)
    # (a) persisted: the table after its last update, written before that update's metric
    assert saved is not None and saved.reputation, f"{victim} persisted no reputation"
    assert journaled <= saved.updates <= journaled + 1, (journaled, saved)

    net.start_node(victim)  # same data dir, port and epoch
    wait_until(lambda: len(begins(net, victim)) == 2, 90, f"{victim} to begin again")
    finish(net)  # (c) it finished

    # (a) it resumed with the persisted table: on Start it emits what it restored
    after = since_last_begin(net, victim)
    restored: dict[str, float] = {}
    for r in after[1:]:  # the lines Start wrote, right after the begin line
        if r["kind"] != "metric" or r["name"] != "dfl_reputation":
            break
        restored[r["tags"]["peer"]] = r["value"]
    assert restored == saved.reputation, (restored, saved)
    counted = [r["value"] for r in metric_rows(after, "dfl_updates")]
    assert all(c > saved.updates for c in counted), (saved.updates, counted)  # counts on
    # (b) its own chain kept every durable block and verifies
    own = chain(net, victim)
    assert own[: len(durable)] == durable, "a durable block was lost"
    me = node_keys([r.plan for r in net.roles], net.config.seed)[victim].address
    with ChainStore(net.node_dir(victim) / "ledger.sqlite") as store:
        proposers = {b.header.proposer for b in store.canonical_chain() if b.height > 0}
    assert proposers <= {me}, "another node's blocks are on its chain"
    verify(net.run_dir)
