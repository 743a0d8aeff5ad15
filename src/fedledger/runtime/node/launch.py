"""Child node processes and their clean-up: no orphans, whatever happens.

Each node runs in its own session (process group), so stopping it reaches anything it
started too. ``ProcessSet.stop`` sends SIGTERM to every group, waits up to ``grace``
seconds for a clean exit (nodes write their final metrics on SIGTERM), then SIGKILLs the
groups that remain. A ``ProcessSet`` is a context manager and also registers itself with
``atexit``; nodes started with ``--exit-with-parent`` stop by themselves when the
launcher dies without cleaning up (kill -9 of the launcher).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

LOOPBACK = "127.0.0.1"


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """``n`` distinct ports free on ``host`` right now (bound together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def node_argv(
    config: Path,
    node_id: str,
    port: int,
    peers: Sequence[int],
    data_dir: Path,
    extra: Sequence[str] = (),
    host: str = LOOPBACK,
    epoch: float | None = None,
    epoch_file: Path | None = None,
) -> list[str]:
    """The command line of ``fedledger node`` for one local node (``epoch``: the
    network's, UNIX seconds; ``epoch_file``: where the launcher will write it once every
    node is ready; neither: the node counts from its own start)."""
    if epoch is not None and epoch_file is not None:
        raise ValueError(f"epoch {epoch!r} and epoch file {epoch_file}: give one, not both")
    argv = [
        sys.executable,
        "-m",
        "fedledger.cli",
        "node",
        "--config",
        str(config),
        "--node",
        node_id,
        "--listen",
        f"{host}:{port}",
        "--data-dir",
        str(data_dir),
        "--exit-with-parent",
    ]
    if peers:
        argv += ["--peers", ",".join(f"{host}:{p}" for p in peers)]
    if epoch is not None:
        argv += ["--epoch", f"{epoch:.6f}"]
    if epoch_file is not None:
        argv += ["--epoch-file", str(epoch_file)]
    return argv + list(extra)


class NodeProcess:
    """One ``fedledger node`` child, its output appended to ``log_path``."""

    def __init__(self, node_id: str, argv: list[str], log_path: Path) -> None:
        self.node_id = node_id
        self.argv = argv
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        with log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the node's process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


class ProcessSet:
    """The node processes of one launcher; stops them all on exit."""

    def __init__(self) -> None:
        self.procs: dict[str, NodeProcess] = {}
        self._history: list[NodeProcess] = []
        atexit.register(self.stop, 2.0)

    def start(self, node_id: str, argv: list[str], log_path: Path) -> NodeProcess:
        old = self.procs.get(node_id)
        if old is not None and old.alive():
            raise RuntimeError(f"node {node_id} is still running (pid {old.pid})")
        proc = NodeProcess(node_id, argv, log_path)
        self.procs[node_id] = proc
        self._history.append(proc)
        return proc

    def alive(self) -> list[str]:
        return sorted(n for n, p in self.procs.items() if p.alive())

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM every live group, wait up to ``grace`` s, SIGKILL what is left."""
        live = [p for p in self._history if p.alive()]
        for proc in live:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in live:
            proc.wait(max(0.0, deadline - time.monotonic()))
        for proc in self._history:
            # the group too: a node's leftovers die with it even if the node exited
            proc.signal(signal.SIGKILL)
            proc.wait(5.0)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        atexit.unregister(self.stop)
