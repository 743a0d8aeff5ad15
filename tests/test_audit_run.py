"""``fedledger chain verify`` on real run directories, with what the run says must be there.

Small PoS-BFL and DFL runs are made once with ``fedledger run``; each test tampers with a
copy and checks the verdict and its message:

- one PoS-BFL device's directory verified alone passes (each device stores only the
  models it produced) and notes the references that only other devices hold, while a
  model the device produced and lost fails;
- a DFL run missing one node's ledger fails, naming the node and the configured count;
- a head rolled back consistently in every table fails against the node's own journal,
  and the node is noted as behind the others; a node whose shared chain forked fails.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

import chainkit as ck
from fedledger.cli import app
from fedledger.crypto import KeyPair
from fedledger.crypto.keys import derive_seed
from fedledger.experiment.audit_run import verify
from fedledger.ledger.audit import AuditReport
from fedledger.ledger.refs import model_refs
from fedledger.ledger.store import ChainStore
from fedledger.storage import BlobStore

REPO = Path(__file__).resolve().parents[1]
BFL_ROUNDS = 3
BFL = (
    "rounds=3", "nodes.count=8", "protocol.workers=4", "protocol.validators=2",
    "protocol.miners=2", "nodes.malicious=[]",
)
DFL = ("protocol.ticks=60", "nodes.count=5", "protocol.degree=2")

runner = CliRunner()


def fedledger(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "400"})
    return result.exit_code, result.output


def make_run(config: str, overrides: tuple[str, ...], out: Path) -> Path:
    args = ["run", str(REPO / "configs" / config), "-q", "--out", str(out)]
    for o in overrides:
        args += ["-o", o]
    code, output = fedledger(*args)
    assert code == 0, output
    return out


@pytest.fixture(scope="module")
def bfl_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run("quickstart-bfl.yaml", BFL, tmp_path_factory.mktemp("bfl") / "run")


@pytest.fixture(scope="module")
def dfl_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run("dfl-quick.yaml", DFL, tmp_path_factory.mktemp("dfl") / "run")


@pytest.fixture
def bfl(bfl_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bfl_template, tmp_path / "bfl"))


@pytest.fixture
def dfl(dfl_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dfl_template, tmp_path / "dfl"))


def first(report: AuditReport) -> str:
    assert not report.ok, "expected the audit to fail"
    return str(report.problems[0])


def node_key(node: str) -> KeyPair:
    return KeyPair.generate("ed25519", derive_seed(0, node))  # the runs' seed is 0


def produced(run: Path, node: str) -> list[str]:
    """CIDs of the models cited on ``node``'s chain in transactions ``node`` signed."""
    address = node_key(node).address
    with ChainStore(run / "nodes" / node / "ledger.sqlite") as store:
        return [
            ref.cid
            for block in store.canonical_chain()
            for tx in block.transactions
            if tx.sender == address
            for ref in model_refs(tx.payload)
        ]


def a_worker(run: Path) -> str:
    """The device that cited most models it produced (roles rotate with stake)."""
    ids = sorted(p.name for p in (run / "nodes").iterdir())
    return max(ids, key=lambda n: len(produced(run, n)))


def rollback(db_path: Path, keep: int) -> None:
    """Remove every block above height ``keep`` from every table, consistently."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    gone = [h for (h,) in conn.execute("SELECT hash FROM blocks WHERE height > ?", (keep,))]
    conn.execute("BEGIN")
    for h in gone:
        for table, column in (("txs", "block"), ("blocks", "hash"), ("tips", "hash"),
                              ("marks", "hash")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (h,))
    conn.execute("DELETE FROM canonical WHERE height > ?", (keep,))
    (top,) = conn.execute("SELECT hash FROM canonical WHERE height = ?", (keep,)).fetchone()
    conn.execute("INSERT OR REPLACE INTO tips(hash, height) VALUES (?, ?)", (top, keep))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head'", (top,))
    conn.execute("COMMIT")
    conn.close()


# ---------------------------------------------------------------- what a node holds


def test_clean_runs_pass(bfl: Path, dfl: Path) -> None:
    for run, count in ((bfl, 8), (dfl, 5)):
        report = verify(run)
        assert report.ok, report.describe()
        assert report.nodes == count
        assert not report.notes, report.notes
    assert set(verify(bfl).head_height.values()) == {BFL_ROUNDS}


def test_one_posbfl_device_alone_passes_and_names_what_others_hold(bfl: Path) -> None:
    worker = a_worker(bfl)
    node = bfl / "nodes" / worker
    own = produced(bfl, worker)
    assert own, f"{worker} should have trained and cited its own models"
    for path in (node, node / "ledger.sqlite"):
        report = verify(path)
        assert report.ok, report.describe()
        assert report.nodes == 1
        (note,) = report.notes
        others = report.model_refs - len(own)
        assert others > 0
        assert note.startswith(f"node {worker}: {others} model reference(s) name models that ")
        assert "held only elsewhere" in note
    code, output = fedledger("chain", "verify", str(node))
    assert code == 0, output
    assert output.startswith("ok: ") and f"note: node {worker}:" in output


def test_a_device_missing_a_model_it_produced_fails(bfl: Path) -> None:
    worker = a_worker(bfl)
    cid = produced(bfl, worker)[0]
    BlobStore(bfl / "nodes" / worker / "blobs").path(cid).unlink()
    alone = first(verify(bfl / "nodes" / worker))
    assert alone.startswith(f"node {worker}, height ")
    assert f"model blob {cid}, which this node produced (it signed the transaction), is not " \
           "in its own blob store" in alone
    # the whole run: every device citing it fails to find it, naming who produced it
    problems = [str(p) for p in verify(bfl).problems]
    assert f"model blob {cid} (produced by node {worker}) not found" in problems[0]
    assert sum(p.startswith(f"node {worker}, ") and "which this node produced" in p
               for p in problems) == 1


# ---------------------------------------------------------------- missing ledgers


def test_a_missing_node_directory_fails_against_the_config(dfl: Path) -> None:
    shutil.rmtree(dfl / "nodes" / "n003")
    report = verify(dfl)
    assert report.nodes == 4
    message = first(report)
    assert message.startswith("node n003, ledger: ledger is missing: ")
    assert "config.yaml has 5 nodes and this one keeps a chain" in message
    code, output = fedledger("chain", "verify", str(dfl))
    assert code == 1
    assert "FAILED" in output and "ok" not in output.split(":")[0]


def test_a_missing_ledger_file_fails_also_for_the_node_directory(dfl: Path) -> None:
    for f in (dfl / "nodes" / "n001").glob("ledger.sqlite*"):
        f.unlink()
    for path in (dfl, dfl / "nodes" / "n001"):
        report = verify(path)
        assert first(report).startswith("node n001, ledger: ledger is missing: "), path
        assert len(report.problems) == 1


def test_an_unusable_config_is_reported_and_the_ledgers_still_audited(dfl: Path) -> None:
    (dfl / "config.yaml").write_text("protocol: {name: no-such-protocol}\n")
    report = verify(dfl)
    assert first(report).startswith(f"node {dfl}, config: {dfl / 'config.yaml'} cannot be used")
    assert report.nodes == 5 and len(report.problems) == 1


# ---------------------------------------------------------------- heads


def test_a_consistent_rollback_fails_against_the_journal(bfl: Path) -> None:
    rollback(bfl / "nodes" / "d005" / "ledger.sqlite", 1)
    for path in (bfl, bfl / "nodes" / "d005"):
        report = verify(path)
        message = first(report)
        assert message.startswith("node d005, height 1 "), message
        assert (f"head: durable head is at height 1, but the metrics journal "
                f"(posbfl.legal_block) recorded this node appending a block at height "
                f"{BFL_ROUNDS}") in message
        assert len(report.problems) == 1
    notes = verify(bfl).notes
    assert notes == (
        f"node d005 is behind: its head is at height 1, node d000's at {BFL_ROUNDS} (more "
        "than 1 block(s) apart on the shared chain)",
    )


def test_a_rollback_of_one_block_fails_against_the_journal_without_a_note(bfl: Path) -> None:
    rollback(bfl / "nodes" / "d002" / "ledger.sqlite", BFL_ROUNDS - 1)
    report = verify(bfl)
    assert "durable head is at height 2" in first(report)
    assert not report.notes  # one block behind is within the tolerance


def test_a_dfl_rollback_fails_against_the_journal(dfl: Path) -> None:
    db = dfl / "nodes" / "n002" / "ledger.sqlite"
    with ChainStore(db) as store:
        height = store.head().height
    assert height >= 1, "n002 should have made a block in 60 ticks"
    rollback(db, height - 1)
    message = first(verify(dfl))
    assert message.startswith(f"node n002, height {height - 1} ")
    assert "the metrics journal (dfl.block) recorded this node appending a block" in message


def test_a_forked_shared_chain_fails(bfl: Path) -> None:
    db = bfl / "nodes" / "d006" / "ledger.sqlite"
    rollback(db, BFL_ROUNDS - 1)
    with ChainStore(db) as store:
        parent = store.head()
        other = ck.block(parent, node_key("d006"), (), salt=7)
        assert store.append(other)
        assert store.head().hash == other.hash
    report = verify(bfl)
    message = first(report)
    assert message.startswith(f"node d006, height {BFL_ROUNDS} "), message
    assert "its canonical chain is not a prefix of node d000's" in message
    assert "the shared chain forked" in message


def test_a_run_whose_protocol_keeps_no_chain_has_nothing_to_verify(tmp_path: Path) -> None:
    run = make_run("quickstart.yaml", ("rounds=1", "nodes.count=3"), tmp_path / "vanilla")
    report = verify(run)
    assert report.ok and report.nodes == 0
    assert report.notes == (f"{run / 'config.yaml'}: no node of this run keeps a chain; "
                            "nothing to verify",)
    # a node directory the config does not know is named
    (run / "nodes" / "x9").mkdir(parents=True)
    (run / "nodes" / "x9" / "ledger.sqlite").write_bytes(b"")
    assert first(verify(run)).startswith("node x9, node: ")
