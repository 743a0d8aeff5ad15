"""Real node processes on loopback: a localnet run, kill -9 and restart, hostile bytes,
and a partitioned (stopped) peer. Every test stops its process groups and checks that
no node process is left behind.

Pacing trick: the configs plan one client more than is started, so the vanilla server
waits ``round_timeout`` for it every round; rounds then take a known wall time, long
enough to kill, stop and restart nodes in the middle of a run. Those runs get a round
budget far above what they need and are stopped once what they wait for is seen, so a
loaded machine (slow restarts) cannot run them out of rounds; the six-process run is
the one that runs to the end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from fedledger.assembly.build import build_protocol
from fedledger.assembly.config import load_config, to_yaml
from fedledger.assembly.services import make_genesis, node_keys
from fedledger.cli import app
from fedledger.codec import encode
from fedledger.crypto import KeyPair
from fedledger.experiment.localnet import Localnet
from fedledger.protocols.vanilla.messages import ClientUpdate
from fedledger.runtime.node.framing import NetCounters
from fedledger.runtime.node.handshake import FramedStream, Identity, dial_handshake
from fedledger.runtime.node.journal import read_journal, read_status
from fedledger.runtime.node.options import network_text
from fedledger.runtime.node.wire import Envelope, Hello, network_digest, seal

pytestmark = pytest.mark.slow

TINY = {
    "name": "net",
    "seed": 3,
    "rounds": 3,
    "data": {"dataset": "digits", "partition": "iid"},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 1, "lr": 0.1, "batch_size": 16},
    "protocol": {"name": "vanilla", "fraction": 1.0, "round_timeout": 30.0},
    "nodes": {"count": 5},
    "output": {"plots": True},
}


def write_config(tmp_path: Path, **changes: object) -> Path:
    tree = json.loads(json.dumps(TINY))
    for key, value in changes.items():
        node = tree
        *parents, last = key.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def journal(net: Localnet, node_id: str) -> list[dict]:
    return read_journal(net.node_dir(node_id) / "metrics.jsonl")


def metric_values(net: Localnet, node_id: str, name: str) -> dict[int, float]:
    return {
        m["step"]: m["value"]
        for m in journal(net, node_id)
        if m["kind"] == "metric" and m["name"] == name
    }


def server_step(net: Localnet) -> int:
    return max((r["step"] for r in journal(net, "server") if r["kind"] == "model"), default=0)


def server_halted(net: Localnet) -> bool:
    return any(r["kind"] == "halt" for r in journal(net, "server"))


def stop_running(net: Localnet) -> int:
    """Stop a network still inside its round budget (SIGTERM: every node journals its
    counters and exits 0); the server's last round."""
    assert not server_halted(net), "the round budget ran out: raise it"
    codes = net.stop()
    assert set(codes.values()) == {0}, codes
    return server_step(net)


#: seconds a localnet may take to start under load; only a bound for waiting
STARTUP = 120.0


@pytest.fixture
def nets() -> Iterator[list[Localnet]]:
    """Localnets made by a test; all their process groups are stopped afterwards, and
    no node process may outlive the test."""
    made: list[Localnet] = []
    yield made
    for net in made:
        net.stop()
    for net in made:
        for proc in net.procs._history:
            assert proc.popen.poll() is not None, f"{proc.node_id} (pid {proc.pid}) left behind"
            with pytest.raises(ProcessLookupError):
                os.killpg(proc.pid, 0)


# ---------------------------------------------------------------- a whole localnet


def test_localnet_of_six_processes_runs_vanilla_to_the_end(tmp_path, nets):
    out = tmp_path / "run"
    config = write_config(tmp_path)
    result = CliRunner().invoke(
        app, ["localnet", str(config), "--out", str(out), "-q", "--timeout", "120"]
    )
    assert result.exit_code == 0, result.output
    assert "final accuracy" in result.output
    for name in ("config.yaml", "metrics.csv", "metrics.jsonl", "summary.json"):
        assert (out / name).exists(), name
    assert (out / "plots" / "accuracy.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nodes"] == 6 and summary["nodes_halted"] == 6
    assert summary["last_step"] == 3 and summary["final_accuracy"] > 0.3
    assert set(summary["exit_codes"].values()) == {0}
    assert summary["drops"] == {} and summary["messages"] >= 3 * 5 * 2
    rows = (out / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[3] for r in rows] == ["1", "2", "3"]  # the server's three rounds
    emitted = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    participants = [m["value"] for m in emitted if m["name"] == "vanilla.participants"]
    assert participants == [5.0, 5.0, 5.0]
    for node_id in ("server", "c000", "c004"):
        assert (out / "nodes" / node_id / "metrics.jsonl").exists()
    # the very same protocol objects: the simulator reaches the same models, round by round
    sim = CliRunner().invoke(app, ["run", str(config), "--out", str(tmp_path / "sim"), "-q"])
    assert sim.exit_code == 0, sim.output
    sim_rows = (tmp_path / "sim" / "metrics.csv").read_text().splitlines()[1:]
    assert [r.split(",")[5] for r in rows] == [r.split(",")[5] for r in sim_rows]


# ---------------------------------------------------------------- kill -9 and restart


def test_client_killed_with_sigkill_restarts_from_its_dir_and_rejoins(tmp_path, nets):
    # a budget, not a length: stopped once c001 took part again (a restart under load can
    # take 30 s, a round lasts 1 s)
    rounds = 600
    config = write_config(
        tmp_path, rounds=rounds, protocol__round_timeout=1.0, nodes__count=4
    )  # c003 is never started: each round lasts 1 s
    net = Localnet(
        config, out=tmp_path / "run", node_args=("--start-wait", "2"), timeout=900, grace=5
    )
    nets.append(net)
    net.start(only=["server", "c000", "c001", "c002"])
    # kill once every client has taken part in a round
    everyone = lambda: 3 in metric_values(net, "server", "participants").values()  # noqa: E731
    wait_until(everyone, STARTUP, "a round with all three clients")
    victim = net.procs.procs["c001"]
    victim.signal(signal.SIGKILL)
    assert victim.wait(5) == -signal.SIGKILL
    killed_at = max(metric_values(net, "server", "participants"))  # the last round closed
    net.start_node("c001")  # same data dir, same port and epoch

    def took_part_again() -> bool:
        # in a round begun after the kill (the one open at the kill may hold an update c001
        # sent before it died) whose model the server has measured
        step = server_step(net)
        after = metric_values(net, "server", "participants")
        return any(v == 3 and killed_at + 1 < s <= step for s, v in after.items())

    wait_until(took_part_again, STARTUP, "c001 to take part again")
    last = stop_running(net)
    starts = [r for r in journal(net, "c001") if r["kind"] == "start"]
    assert len(starts) == 2
    # the restarted node's clock is the network's: it began at the current network time
    begins = [r for r in journal(net, "c001") if r["kind"] == "begin"]
    assert len(begins) == 2 and begins[1]["time"] > starts[1]["time"] > begins[0]["time"]
    participants = metric_values(net, "server", "participants")
    after = range(killed_at + 1, last + 1)
    assert min(participants[s] for s in after) >= 2  # the others went on
    rejoined = [s for s in after if s > killed_at + 1 and participants[s] == 3]
    assert rejoined, f"c001 never took part again after round {killed_at}: {participants}"
    second = journal(net, "c001")
    second = second[second.index(starts[1]) :]
    assert any(r["kind"] == "metric" and r["name"] == "train_loss" for r in second)
    result = net.gather()
    assert result.summary["last_step"] == last


# ---------------------------------------------------------------- hostile bytes and a partition


def _raw(port: int, data: bytes, linger: float = 0.3) -> bytes:
    """Send ``data`` on a fresh connection, half-close, return what the node answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(linger + 3)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


async def _hang_up_after_the_node(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Half-close, then read (and discard) what the node sends until it closes its side.

    The node handles a connection's frames in order and closes only after the last one
    (at our FIN, or at a frame that closes), so when this returns every frame sent before
    has been counted. Closing without reading would not do: the node sends what its
    outbox to this member holds, and a write to a closed socket comes back as a reset,
    on which the node drops the connection with the frames it had not read yet (under
    load a replay went uncounted that way)."""
    writer.write_eof()
    try:
        while await asyncio.wait_for(reader.read(65536), 30.0):
            pass
    except ConnectionResetError:
        pass  # the node aborts the connections it ends
    writer.close()


async def _attack_as_member(port: int, me: Identity) -> None:
    """Authenticate as a real member, then replay, forge and garble frames."""
    update = encode(ClientUpdate(999, np.zeros(4, dtype=np.float32), 1, 0.0))
    old_session = None
    for attempt in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        stream = FramedStream(reader, writer, 1 << 22, NetCounters())
        session = await dial_handshake(me, stream, 30.0)
        if attempt == 0:
            old_session = session.session
            first = encode(seal(me.key, session.session, 1, update))
            await stream.write_frame(first)
            await stream.write_frame(first)  # replay within the session
            await _hang_up_after_the_node(reader, writer)
            continue
        await stream.write_frame(encode(seal(me.key, old_session, 1, update)))  # old session
        forged = seal(me.key, session.session, 1, update)
        bad = Envelope(forged.session, 1, forged.body, bytes(64))
        await stream.write_frame(encode(bad))  # bad signature
        await stream.write_frame(encode(seal(me.key, session.session, 1, update)))  # valid
        await stream.write_frame(b"\x00garbage")  # not an envelope: closes
        await _hang_up_after_the_node(reader, writer)


def test_hostile_bytes_are_dropped_and_counted_and_a_stopped_peer_resyncs(tmp_path, nets):
    # 600 rounds of 1 s: a budget, not a length (stopped once c001 is back after the partition)
    config = write_config(tmp_path, rounds=600, protocol__round_timeout=1.0, nodes__count=3)
    net = Localnet(
        config,
        out=tmp_path / "run",
        node_args=("--idle-timeout", "1.5", "--start-wait", "2"),
        timeout=900,
        grace=5,
    )
    nets.append(net)
    net.start(only=["server", "c000", "c001"])  # c002 is never started: the attacker uses its key
    wait_until(lambda: server_step(net) >= 1, STARTUP, "the first round")
    port = net.ports["server"]
    cfg = load_config(net.config_file)
    plans = build_protocol(cfg).plan(cfg.nodes.count, cfg.seed)
    keys = node_keys(plans, cfg.seed)
    members = {n: k.public for n, k in keys.items()}
    network = network_digest(network_text(cfg), make_genesis(keys, to_yaml(cfg)).hash)

    assert _raw(port, (5).to_bytes(4, "big") + b"hello") == b""  # garbage: closed
    assert _raw(port, (300).to_bytes(4, "big") + b"abc") == b""  # truncated frame
    assert _raw(port, b"\xff\xff\xff\xf0" + b"x" * 100) == b""  # oversized prefix
    stranger = KeyPair.generate("ed25519", b"\x05" * 32)
    fake = Hello(1, network, "c002", "ed25519", stranger.public.to_bytes(), b"n" * 32)
    assert _raw(port, len(encode(fake)).to_bytes(4, "big") + encode(fake)) == b""
    elsewhere = Hello(1, b"\x00" * 32, "c002", "ed25519", keys["c002"].public.to_bytes(), b"n" * 32)
    assert _raw(port, len(encode(elsewhere)).to_bytes(4, "big") + encode(elsewhere)) == b""
    asyncio.run(_attack_as_member(port, Identity("c002", keys["c002"], network, members)))

    def drops() -> dict[str, int]:
        status = read_status(net.node_dir("server")) or {}
        return status.get("counters", {}).get("drops", {})

    expected = {
        "malformed": 2,
        "truncated": 1,
        "oversized": 1,
        "unknown_key": 1,
        "wrong_network": 1,
        "replay": 2,
        "bad_signature": 1,
    }
    try:
        counted = lambda: all(drops().get(k, 0) >= v for k, v in expected.items())  # noqa: E731
        wait_until(counted, 30, f"drops {expected}")
    except AssertionError as err:  # say what was counted
        raise AssertionError(f"{err}; counted {drops()}") from None

    # partition: c001 stops answering (SIGSTOP) for a few rounds, then comes back; first
    # both clients take part
    both = lambda: 2 in metric_values(net, "server", "participants").values()  # noqa: E731
    wait_until(both, 60, "a round with both clients")
    stopped_at = server_step(net)
    net.procs.procs["c001"].signal(signal.SIGSTOP)
    wait_until(lambda: server_step(net) >= stopped_at + 3, 30, "rounds without c001")
    resumed_at = server_step(net)
    net.procs.procs["c001"].signal(signal.SIGCONT)

    def both_again() -> bool:  # in a round after the partition whose model was measured
        step = server_step(net)
        after = metric_values(net, "server", "participants")
        return any(v == 2 and resumed_at < s <= step for s, v in after.items())

    wait_until(both_again, 60, "a round with both clients after the partition")
    last = stop_running(net)
    participants = metric_values(net, "server", "participants")
    assert any(participants[s] == 1 for s in range(stopped_at + 1, resumed_at + 1)), participants
    assert any(participants[s] == 2 for s in range(resumed_at + 1, last + 1)), participants
    final = [r for r in journal(net, "server") if r["kind"] == "transport"][-1]
    for reason, n in expected.items():
        assert final["drops"][reason] >= n, (reason, final["drops"])
    assert all(p.returncode == 0 for p in net.procs.procs.values())
