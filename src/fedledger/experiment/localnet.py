"""``fedledger localnet``: a whole network of node processes on 127.0.0.1.

The launcher resolves the config (file + overrides) into ``RUN_DIR/config.yaml`` and
starts one ``fedledger node`` per planned node with that file, free loopback ports and
``--data-dir RUN_DIR``, so each node keeps its ledger, blobs, log and metrics under
``RUN_DIR/nodes/<id>/`` (the layout ``fedledger chain verify RUN_DIR`` reads). Of two
neighbours, the node with the smaller id dials the other.

The network's epoch (network time 0): by default every node gets ``--epoch-file
RUN_DIR/epoch``, and a watcher thread writes that file (atomically: temp file, rename)
once every started node says ``ready`` in its status (peers connected, chains synced)
or has exited, with the time ``EPOCH_MARGIN`` seconds later, so every node starts its
protocol at time 0 however long the machine took to start them; a node started or
restarted afterwards reads the file at once and sees the network's current time. With
``start_delay`` every node, a restarted one too, gets a fixed ``--epoch`` instead,
``start_delay`` seconds after the launch (nodes not ready by then begin late). The
launcher then watches the nodes' status files, and ends when every node has exited;
once one node has halted the others get ``grace`` seconds, and the whole run gets
``timeout`` seconds, after which the rest are stopped (SIGTERM, then SIGKILL). Finally
it gathers the nodes' metric lines into the run directory with the simulator's
``finish_run`` (metrics.csv, metrics.jsonl, summary.json, plots); reading the journals
back is ``localnet_journals``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fedledger.assembly.build import NodeRole, assign_roles, build_protocol
from fedledger.assembly.config import ExperimentConfig, load_config
from fedledger.assembly.metrics import MetricNames, combine_steps
from fedledger.experiment.localnet_journals import read_node_journals
from fedledger.experiment.rundir import LocalnetCounters, RunDir, RunSummary, finish_run
from fedledger.experiment.runner import default_run_dir
from fedledger.runtime.node.chain_rpc import RunChain, start_run_chain
from fedledger.runtime.node.journal import read_status
from fedledger.runtime.node.launch import ProcessSet, free_ports, node_argv
from fedledger.storage.layout import RunLayout


@dataclass(frozen=True)
class NodeView:
    """What the progress view shows of one node."""

    node_id: str
    role: str
    state: str
    step: int
    accuracy: float | None
    sent: int
    received: int
    dropped: int
    connected: int


@dataclass
class LocalnetResult:
    run_dir: Path
    summary: RunSummary
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    interrupted: bool = False


#: longest start delay accepted (seconds between the launch and the network's epoch);
#: also how long the epoch waits at most for every node to be ready
MAX_START_DELAY = 600.0

#: seconds from the moment every node is ready to the epoch the launcher writes (room
#: for each node to see the file: nodes look every 50 ms)
EPOCH_MARGIN = 1.0

#: seconds between two looks at the nodes' status files before the epoch is written
READY_POLL = 0.05

#: a node's states from "ready" on (it is ready, or has its epoch already)
READY_STATES = frozenset({"ready", "waiting", "running", "draining", "halted", "stopped"})


def default_start_delay(processes: int, cpus: int | None = None) -> float:
    """A fixed start delay (``--start-delay``) that suits an idle machine: 5 s plus 4
    CPU-seconds per node process spread over the machine's cores (a node spends about
    that importing torch and building its share of the experiment before it listens).
    Without a start delay the epoch follows the nodes' readiness instead."""
    cores = max(1, cpus if cpus is not None else os.cpu_count() or 1)
    return round(5.0 + 4.0 * processes / cores, 1)


def dial_plan(roles: list[NodeRole]) -> dict[str, list[str]]:
    """Who dials whom: for every pair of neighbours, the smaller id dials."""
    pairs = set()
    for r in roles:
        for peer in r.plan.peers:
            pairs.add((min(r.plan.node_id, peer), max(r.plan.node_id, peer)))
    out: dict[str, list[str]] = {r.plan.node_id: [] for r in roles}
    for a, b in sorted(pairs):
        out[a].append(b)
    return out


class Localnet:
    """Starts, watches, stops and gathers the node processes of one experiment."""

    def __init__(
        self,
        config_path: Path,
        overrides: tuple[str, ...] = (),
        out: Path | None = None,
        node_args: tuple[str, ...] = (),
        timeout: float = 900.0,
        grace: float = 20.0,
        start_delay: float | None = None,
    ) -> None:
        if start_delay is not None and not 0.0 <= start_delay <= MAX_START_DELAY:
            raise ValueError(f"start delay {start_delay!r} s: allowed 0 to {MAX_START_DELAY:.0f} s")
        self.config: ExperimentConfig = load_config(config_path, overrides)
        self.run_dir = out or default_run_dir(self.config)
        self.node_args = node_args
        self.timeout = timeout
        self.grace = grace
        protocol = build_protocol(self.config)
        self.protocol = protocol
        self.horizon = protocol.horizon(self.config.rounds)
        plans = list(protocol.plan(self.config.nodes.count, self.config.seed))
        self.roles = assign_roles(self.config, plans, protocol)
        self.ids = [r.plan.node_id for r in self.roles]
        # None: the epoch is written to epoch_file once every node is ready
        self.start_delay = start_delay
        self.procs = ProcessSet()
        self.ports: dict[str, int] = {}
        self.started = 0.0
        self.launched = 0.0  # UNIX time of start()
        # the network's epoch (UNIX seconds): set by start() for a fixed start delay, by
        # the watcher once every node is ready otherwise; None until then
        self.epoch: float | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.chain: RunChain | None = None  # the contract chain, when one is declared

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def config_file(self) -> Path:
        return self.layout.config

    def node_dir(self, node_id: str) -> Path:
        return self.layout.node(node_id).root

    @property
    def epoch_file(self) -> Path:
        """Where the launcher writes the network's epoch (``--epoch-file`` of every node)."""
        return self.run_dir / "epoch"

    def start(self, only: Iterable[str] | None = None) -> None:
        """Start every node (or the ``only`` ones; others can be started later)."""
        RunDir(self.run_dir).write_config(self.config)
        if self.chain is None:  # the protocol's contract chain, before any node (chain_rpc)
            self.chain = start_run_chain(self.protocol, [r.plan for r in self.roles], self.run_dir)
        self.ports = dict(zip(self.ids, free_ports(len(self.ids)), strict=True))
        self.dials = dial_plan(self.roles)
        self.started = time.perf_counter()
        self.launched = time.time()
        self.epoch_file.unlink(missing_ok=True)  # a new network, a new epoch
        if self.start_delay is not None:
            self.epoch = self.launched + self.start_delay
        wanted = set(self.ids if only is None else only)
        for node_id in self.ids:
            if node_id in wanted:
                self.start_node(node_id)
        if self.start_delay is None:
            self._stopping.clear()
            self._watcher = threading.Thread(
                target=self._write_epoch_when_ready, name="localnet-epoch", daemon=True
            )
            self._watcher.start()

    def start_node(self, node_id: str) -> None:
        """(Re)start one node with its port, peers, data dir and the network's epoch."""
        if not self.ports:
            raise RuntimeError(f"start node {node_id!r} after Localnet.start(), not before")
        argv = node_argv(
            self.config_file,
            node_id,
            self.ports[node_id],
            [self.ports[p] for p in self.dials[node_id]],
            self.run_dir,
            self.node_args,
            epoch=self.epoch if self.start_delay is not None else None,
            epoch_file=self.epoch_file if self.start_delay is None else None,
        )
        self.procs.start(node_id, argv, self.layout.node(node_id).log)

    def ready(self) -> bool:
        """Whether every started node is ready (or past it) or has exited."""
        for node_id, proc in list(self.procs.procs.items()):
            if not proc.alive():
                continue
            status = read_status(self.node_dir(node_id)) or {}
            # the pid: a status file left by an earlier process is not this one's
            if status.get("pid") != proc.pid or status.get("state") not in READY_STATES:
                return False
        return True

    def _write_epoch_when_ready(self) -> None:
        """The watcher thread: write the epoch file once every started node is ready
        (at the latest ``MAX_START_DELAY`` s after the launch)."""
        deadline = time.monotonic() + MAX_START_DELAY
        while not self._stopping.wait(READY_POLL):
            if self.ready() or time.monotonic() > deadline:
                epoch = time.time() + EPOCH_MARGIN
                tmp = self.epoch_file.with_name(f".{self.epoch_file.name}.tmp")
                with contextlib.suppress(OSError):  # run dir gone: the run is over
                    tmp.write_text(f"{epoch:.6f}\n")
                    os.replace(tmp, self.epoch_file)
                    self.epoch = epoch
                return

    def views(self) -> list[NodeView]:
        out = []
        for r in self.roles:
            node_id = r.plan.node_id
            status = read_status(self.node_dir(node_id)) or {}
            counters = status.get("counters", {})
            proc = self.procs.procs.get(node_id)
            state = status.get("state", "starting")
            if proc is not None and not proc.alive():
                code = proc.returncode
                state = state if code == 0 else f"exit {code}"
            out.append(
                NodeView(
                    node_id,
                    r.plan.role,
                    state,
                    int(status.get("step", 0)),
                    status.get("accuracy"),
                    int(counters.get("bytes_sent", 0)),
                    int(counters.get("bytes_received", 0)),
                    int(counters.get("dropped", 0)),
                    len(status.get("connected", [])),
                )
            )
        return out

    def wait(self, on_tick: Callable[[Localnet], None] | None = None, tick: float = 0.5) -> bool:
        """Until every node exits (True), or the timeout or grace ends (False)."""
        first_exit: float | None = None
        while True:
            if on_tick is not None:
                on_tick(self)
            alive = self.procs.alive()
            now = time.perf_counter()
            if not alive:
                return True
            if first_exit is None and any(
                p.returncode == 0 for p in self.procs.procs.values() if not p.alive()
            ):
                first_exit = now
            if now - self.started > self.timeout:
                return False
            if first_exit is not None and now - first_exit > self.grace:
                return False
            time.sleep(tick)

    def stop(self) -> dict[str, int | None]:
        self._stopping.set()
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(5.0)
        self.procs.stop()
        if self.chain is not None:  # records the contract's history, then stops the chain
            self.chain.stop()
        return {n: p.returncode for n, p in sorted(self.procs.procs.items())}

    def _start_delay_seen(self) -> float:
        """Seconds from the launch to the network's epoch (0 when it was never set)."""
        if self.epoch is None:
            return 0.0
        return round(self.epoch - self.launched, 3)

    def gather(self, interrupted: bool = False) -> LocalnetResult:
        """Write the run directory from the nodes' metric files."""
        names = MetricNames(self.protocol)
        got = read_node_journals(self.layout, self.ids, self.epoch, names)
        rows, metrics, totals, drops = list(got.rows), list(got.metrics), got.totals, got.drops
        step_metrics = None if got.layout is None else self.protocol.step_metrics(got.layout)
        if step_metrics is not None:
            metrics.extend(combine_steps(step_metrics, self.ids, got.summaries, names))
        rows.sort(key=lambda r: (r.time, r.node, r.step))
        metrics.sort(key=lambda m: (m.time, m.node, m.step))
        exit_codes = {n: p.returncode for n, p in sorted(self.procs.procs.items())}
        counters = LocalnetCounters(
            virtual_seconds=round(got.end, 3),
            messages=totals.get("messages_sent", 0),
            messages_lost=drops.get("queue_full", 0) + drops.get("send_failed", 0),
            bytes_sent=totals.get("bytes_sent", 0),
            bytes_received=totals.get("bytes_received", 0),
            payload_bytes_sent=totals.get("payload_bytes_sent", 0),
            frames_sent=totals.get("frames_sent", 0),
            connections=totals.get("connections", 0),
            drops=dict(sorted(drops.items())),
            nodes_halted=got.halted,
            start_delay=self._start_delay_seen(),
            late_starts=dict(sorted(got.late.items())),
            exit_codes=exit_codes,
            interrupted=interrupted,
        )
        summary = finish_run(
            self.config,
            self.protocol,
            self.run_dir,
            self.roles,
            rows,
            metrics,
            counters,
            got.cpu,
            time.perf_counter() - self.started,
        )
        return LocalnetResult(self.run_dir, summary, exit_codes, interrupted)


def run_localnet(
    net: Localnet, on_tick: Callable[[Localnet], None] | None = None
) -> LocalnetResult:
    """Start, wait, stop (also on Ctrl-C or an error) and gather."""
    interrupted = False

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        net.start()
        net.wait(on_tick)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        net.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return net.gather(interrupted)
