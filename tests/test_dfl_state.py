"""Durable node state: the chain store's key/value table, and a DFL node's reputation
table and update count kept in it across a restart (corrupt values counted, ignored)."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import cbor2
import pytest

from fedledger.codec import encode
from fedledger.ledger.store import MAX_STATE_KEY, ChainStore, StateKeyError
from fedledger.protocols.base import (
    EmitMetric,
    EvalResult,
    JobFinished,
    RunJob,
    Start,
    TimerFired,
)
from fedledger.protocols.dfl import state
from fedledger.protocols.dfl.messages import Gossip
from fedledger.protocols.dfl.node import END
from fedledger.protocols.dfl.state import STATE_KEY, ReputationState
from test_dfl_node import World, receive

# ---------------------------------------------------------------- the store


def test_state_survives_closing_and_reopening_the_store(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with ChainStore(path) as store:
        assert store.get_state("a") is None
        store.put_state("a", b"\x00first")
        store.put_state("b", b"")
    with ChainStore(path) as store:
        assert store.get_state("a") == b"\x00first"
        assert store.get_state("b") == b""
        assert store.get_state("c") is None


def test_put_state_overwrites_the_older_value(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with ChainStore(path) as store:
        store.put_state("k", b"old value, longer")
        store.put_state("k", b"new")
        assert store.get_state("k") == b"new"
    with ChainStore(path) as store:
        assert store.get_state("k") == b"new"
        rows = store._db.execute("SELECT COUNT(*) FROM node_state").fetchone()[0]
        assert rows == 1


@pytest.mark.parametrize("key", ["", "x" * (MAX_STATE_KEY + 1), 7, b"key", None])
def test_bad_state_keys_are_refused_with_the_key_and_the_rule(tmp_path, key):
    with ChainStore(tmp_path / "ledger.sqlite") as store:
        with pytest.raises(StateKeyError, match="non-empty str of at most 200") as err:
            store.put_state(key, b"v")
        assert repr(key)[:20] in str(err.value)
        with pytest.raises(ValueError, match="is not allowed"):
            store.get_state(key)
        assert store._db.execute("SELECT COUNT(*) FROM node_state").fetchone()[0] == 0
    with ChainStore(tmp_path / "ledger.sqlite") as store:
        store.put_state("x" * MAX_STATE_KEY, b"v")  # the longest allowed key


def test_a_state_value_must_be_bytes(tmp_path):
    with ChainStore(tmp_path / "ledger.sqlite") as store:
        with pytest.raises(StateKeyError, match=r"'k': value must be bytes, got str"):
            store.put_state("k", "text")  # type: ignore[arg-type]
        assert store.get_state("k") is None


def test_a_store_made_before_node_state_existed_still_opens(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ChainStore(path).close()
    db = sqlite3.connect(path)  # the file as an older fedledger wrote it
    db.execute("DROP TABLE node_state")
    db.commit()
    db.close()
    with ChainStore(path) as store:
        assert store.get_state("k") is None
        store.put_state("k", b"v")
    with ChainStore(path) as store:
        assert store.get_state("k") == b"v"


def test_a_put_state_that_returned_survives_sigkill(tmp_path):
    path = tmp_path / "ledger.sqlite"
    child = textwrap.dedent(
        f"""
        import sys, time
        from fedledger.ledger.store import ChainStore
        store = ChainStore({str(path)!r})  # never closed: the process is killed
        for i in range(50):
            store.put_state("k", b"value %d" % i)
        print("put", flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "put"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with ChainStore(path) as store:
        assert store.get_state("k") == b"value 49"


# ---------------------------------------------------------------- the DFL node


@pytest.fixture
def world(tmp_path: Path):
    w = World(tmp_path, buffer_size=2)
    yield w
    w.close()


def update(world: World, node, senders: tuple[str, str], accuracies, t: float) -> list:
    """Feed one model from each sender and the node's own evaluation: one model update."""
    effects = []
    for sender, value, acc in zip(senders, (0.2, 0.4), accuracies, strict=True):
        tx, data = world.model_tx(sender, value + t / 100, now=t)
        effects = receive(node, sender, Gossip(tx), data, acc, t)
    (run,) = [e for e in effects if isinstance(e, RunJob) and e.job_id.startswith("self:")]
    return node.handle(JobFinished(t, run.job_id, EvalResult(0.6, 0.5, 10)))


def reputation_metrics(effects) -> dict[str, float]:
    return {
        dict(e.tags)["peer"]: e.value
        for e in effects
        if isinstance(e, EmitMetric) and e.name == "reputation"
    }


def stored(world: World) -> ReputationState:
    data = world.svc["n000"].ledger.get_state(STATE_KEY)
    assert data is not None
    return state.decode_state(data)


def test_a_restarted_node_resumes_with_its_reputation_table_and_update_count(world):
    node = world.node()
    assert reputation_metrics(node.handle(Start(0.0))) == {}  # nothing stored yet
    assert node.reputation == {} and node.updates == 0
    update(world, node, ("n001", "n002"), (0.3, 0.9), t=1.0)
    assert node.reputation == {"n001": pytest.approx(0.95), "n002": 1.0}
    assert stored(world) == ReputationState(1, node.reputation)
    update(world, node, ("n003", "n001"), (0.1, 0.8), t=2.0)
    table = dict(node.reputation)
    assert table == {"n001": pytest.approx(0.95), "n002": 1.0, "n003": pytest.approx(0.95)}
    assert stored(world) == ReputationState(2, table)  # overwritten after each update

    again = world.node()  # a new process: same store, fresh memory
    assert again.reputation == {}
    effects = again.handle(Start(5.0))
    assert again.reputation == table and again.updates == 2
    assert reputation_metrics(effects) == table  # it says what it resumed with
    assert again.drops == {}
    # it carries on from there: the next update builds on the restored table
    effects = update(world, again, ("n002", "n003"), (0.2, 0.7), t=6.0)
    assert again.reputation["n002"] == pytest.approx(0.95)
    assert again.reputation["n003"] == pytest.approx(0.95)
    assert next(e.value for e in effects if isinstance(e, EmitMetric)) == 3.0  # dfl_updates
    assert stored(world).updates == 3


def _record_bytes(fields: dict, canonical: bool = True) -> bytes:
    """A ReputationState record written by hand (``encode`` refuses bad fields)."""
    return cbor2.dumps(cbor2.CBORTag(27, ["dfl.ReputationState", fields]), canonical=canonical)


CORRUPT = {
    "garbage": b"\xff\x00 not cbor",
    "trailing bytes": encode(ReputationState(1, {"n001": 0.5})) + b"\x00",
    "not canonical": _record_bytes({"updates": 1, "reputation": {"n001": 1.0}}, canonical=False),
    "a plain map": encode({"updates": 1, "reputation": {"n001": 0.5}}),
    "a score that is text": _record_bytes({"updates": 1, "reputation": {"n001": "high"}}),
    "a negative count": _record_bytes({"updates": -1, "reputation": {}}),
    "empty": b"",
}


@pytest.mark.parametrize("value", list(CORRUPT.values()), ids=list(CORRUPT))
def test_a_corrupt_stored_table_is_counted_and_the_node_starts_empty(world, value):
    world.svc["n000"].ledger.put_state(STATE_KEY, value)
    node = world.node()
    effects = node.handle(Start(0.0))
    assert node.reputation == {} and node.updates == 0
    assert reputation_metrics(effects) == {}
    assert node.drops == {"state_corrupt": 1}
    rejects = {
        dict(e.tags)["reason"]: e.value
        for e in node.handle(TimerFired(30.0, END))
        if isinstance(e, EmitMetric) and e.name == "rejected"
    }
    assert rejects == {"state_corrupt": 1.0}
    # the next update replaces the corrupt value with a good one
    update(world, node, ("n001", "n002"), (0.3, 0.9), t=1.0)
    assert stored(world) == ReputationState(1, node.reputation)
    again = world.node()
    again.handle(Start(2.0))
    assert again.reputation == node.reputation and again.drops == {}
