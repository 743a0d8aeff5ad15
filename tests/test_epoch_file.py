"""The network's epoch written once every node is ready (``--epoch-file``): the file
format a node reads, the exclusive options, and the localnet watcher that writes it
(with stand-in processes; the real nodes are in test_net_processes and test_net_bfl)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.assembly.config import load_config
from fedledger.cli import app
from fedledger.experiment.localnet import EPOCH_MARGIN, Localnet
from fedledger.runtime.node.launch import node_argv
from fedledger.runtime.node.options import NodeOptions, read_epoch_file
from fedledger.storage.layout import NodeLayout

NOW = 1_800_000_000.0


def test_an_epoch_file_is_read_once_it_holds_a_usable_epoch(tmp_path):
    path = tmp_path / "epoch"
    assert read_epoch_file(path, NOW) is None  # not written yet
    path.write_text("")
    assert read_epoch_file(path, NOW) is None  # created, not written yet
    path.write_text(f"{NOW + 0.5:.6f}\n")
    assert read_epoch_file(path, NOW) == NOW + 0.5
    path.write_text(f"{NOW - 3600:.6f}")  # a node restarted an hour into the run
    assert read_epoch_file(path, NOW) == NOW - 3600
    path.write_text("soon")
    with pytest.raises(ValueError, match=r"--epoch-file .*epoch: 'soon' is not a number"):
        read_epoch_file(path, NOW)
    path.write_text(str(NOW * 1000))
    with pytest.raises(ValueError, match=r"--epoch-file .*not milliseconds"):
        read_epoch_file(path, NOW)
    path.write_text("nan")
    with pytest.raises(ValueError, match="finite UNIX seconds >= 0"):
        read_epoch_file(path, NOW)


def vanilla(tmp_path: Path, clients: int = 2) -> Path:
    config = tmp_path / "v.yaml"
    config.write_text(f"name: v\nprotocol: {{name: vanilla}}\nnodes: {{count: {clients}}}\n")
    return config


def test_epoch_and_epoch_file_are_exclusive(tmp_path):
    config = vanilla(tmp_path)
    base = {
        "config": load_config(config),
        "node_id": "c000",
        "data_dir": tmp_path,
        "listen": ("127.0.0.1", 0),
    }
    with pytest.raises(ValueError, match=r"--epoch 1800000000\.0 and --epoch-file .*give one"):
        NodeOptions(**base, epoch=NOW, epoch_file=tmp_path / "epoch")
    assert NodeOptions(**base, epoch_file=tmp_path / "epoch").epoch is None
    with pytest.raises(ValueError, match="give one, not both"):
        node_argv(config, "c000", 7000, [], tmp_path, epoch=NOW, epoch_file=tmp_path / "e")
    argv = node_argv(config, "c000", 7000, [7001], tmp_path, epoch_file=tmp_path / "e")
    assert argv[argv.index("--epoch-file") + 1] == str(tmp_path / "e")
    assert "--epoch" not in argv
    bad = CliRunner().invoke(
        app,
        [
            *("node", "--config", str(config), "--node", "c000", "--listen", "127.0.0.1:0"),
            *("--data-dir", str(tmp_path), "--epoch", str(NOW)),
            *("--epoch-file", str(tmp_path / "epoch")),
        ],
    )
    assert bad.exit_code != 0 and "give one of them, not both" in " ".join(bad.output.split())


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_localnet_writes_the_epoch_once_every_started_node_is_ready(tmp_path):
    config = vanilla(tmp_path, clients=3)  # server, c000..c002; c002 is never started
    net = Localnet(config, out=tmp_path / "run")
    assert net.start_delay is None and net.epoch is None  # the default: readiness
    net.epoch_file.parent.mkdir(parents=True)
    net.epoch_file.write_text(f"{NOW:.6f}")  # left by an earlier network in this dir
    started: list[str] = []

    def stand_in(node_id: str) -> None:  # a process that stays up, never a node
        argv = node_argv(net.config_file, node_id, net.ports[node_id], [], net.run_dir,
                         epoch_file=net.epoch_file)
        assert argv[argv.index("--epoch-file") + 1] == str(net.epoch_file)
        started.append(node_id)
        sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
        net.procs.start(node_id, sleeper, net.layout.node(node_id).log)

    net.start_node = stand_in  # type: ignore[method-assign]
    try:
        net.start(only=["server", "c000", "c001"])
        assert started == ["server", "c000", "c001"]
        assert not net.epoch_file.exists()  # the earlier network's epoch is gone

        def say(node_id: str, state: str, pid: int | None = None) -> None:
            proc = net.procs.procs[node_id]
            status = {"pid": proc.pid if pid is None else pid, "state": state}
            NodeLayout(net.node_dir(node_id)).status.write_text(json.dumps(status))

        say("server", "ready")
        say("c000", "ready", pid=1)  # a status file of another process: not this one's
        say("c001", "starting")
        time.sleep(0.5)  # ten looks of the watcher
        assert not net.ready() and not net.epoch_file.exists() and net.epoch is None
        say("c000", "ready")
        net.procs.procs["c001"].signal(15)  # an exited node does not hold the network back
        net.procs.procs["c001"].wait(10)
        wait_for(net.epoch_file.exists, 30, "the epoch file")
        assert net.ready()
        written = read_epoch_file(net.epoch_file)
        assert written is not None and written == pytest.approx(net.epoch, abs=1e-6)
        assert written > net.launched + EPOCH_MARGIN * 0.99  # in the future when written
        assert not list(net.run_dir.glob(".epoch*"))  # the temp file was renamed
    finally:
        net.stop()
    assert net.procs.alive() == []
