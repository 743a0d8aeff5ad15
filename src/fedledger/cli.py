"""The ``fedledger`` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedledger.errors import ConfigError, FedledgerError

if TYPE_CHECKING:
    from fedledger.experiment.rundir import RunSummary

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
chain_app = typer.Typer(no_args_is_help=True, help="Inspect and verify ledgers.")
app.add_typer(chain_app, name="chain")
console = Console()
err_console = Console(stderr=True)


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=2)


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="experiment YAML file")],
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value, e.g. -o rounds=5 (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/<name>-<time>)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")] = False,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="torch threads per job; 1 is fastest for the small models here "
            "(more threads only pay off for large models and batches)",
        ),
    ] = 1,
    executor: Annotated[
        str,
        typer.Option(help="where learning jobs run: inline (this process) or ray (same results)"),
    ] = "inline",
    ray_address: Annotated[
        str | None,
        typer.Option(help="Ray cluster (HOST:PORT of `ray start --head`); default: a local Ray"),
    ] = None,
    ray_cpus_per_job: Annotated[
        float, typer.Option(min=0.01, help="CPUs each Ray worker reserves")
    ] = 1.0,
    ray_workers: Annotated[
        int | None, typer.Option(min=1, help="Ray workers (default: cluster CPUs / per job)")
    ] = None,
    ray_max_in_flight: Annotated[
        int | None, typer.Option(min=1, help="jobs submitted ahead (default: 2 x workers)")
    ] = None,
    ray_retries: Annotated[
        int, typer.Option(min=0, help="times a job is sent again after its worker died")
    ] = 2,
) -> None:
    """Run an experiment in the simulator and write its run directory."""
    import torch

    from fedledger.assembly.build import build_protocol
    from fedledger.assembly.config import load_config
    from fedledger.experiment.runner import run_experiment
    from fedledger.runtime.ray import EXECUTOR_NAMES, RayOptions

    torch.set_num_threads(threads)

    try:
        cfg = load_config(config, tuple(override or ()))
        horizon = build_protocol(cfg).horizon(cfg.rounds)
        if executor not in EXECUTOR_NAMES:
            raise ConfigError(
                "--executor", f"unknown executor {executor!r}; allowed: {', '.join(EXECUTOR_NAMES)}"
            )
        ray_options = None
        if executor == "ray":
            ray_options = RayOptions(
                address=ray_address,
                cpus_per_job=ray_cpus_per_job,
                threads_per_job=threads,
                workers=ray_workers,
                max_in_flight=ray_max_in_flight,
                max_retries=ray_retries,
            )
    except FedledgerError as exc:
        raise _fail(exc) from None
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn(_step_label(horizon.unit) + " {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task(f"{cfg.name} [{executor}]", total=horizon.length, acc="")

        def on_row(row: object) -> None:
            step = getattr(row, "step", 0)
            acc = getattr(row, "accuracy", 0.0)
            progress.update(task, completed=min(step, horizon.length), acc=f"acc {acc:.3f}")

        try:
            result = run_experiment(cfg, out, on_row=on_row, executor=executor, ray=ray_options)
        except FedledgerError as exc:
            raise _fail(exc) from None
    _print_summary(result.summary, result.run_dir, time.perf_counter() - started)
    if executor != "inline" and result.executor is not None:
        usage = result.executor
        console.print(
            f"executor {usage['executor']}: {usage['jobs']} jobs on {usage['workers']} workers "
            f"({usage['machines']} machines), {usage['retries']} retries; job time "
            f"{usage['job_seconds']:.2f} s in {usage['wait_seconds']:.2f} s of waiting: "
            f"speedup {usage['speedup'] or 0:.2f}x (start-up {usage['startup_seconds']:.1f} s)",
            highlight=False,
        )


def _key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """The end-of-run summary layout: one bold key and its value per row."""
    table = Table(title=title, show_header=False, min_width=50)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    return table


def _step_label(unit: str) -> str:
    """The progress bar's word for one step of a horizon: round, tick or epoch."""
    return unit.removesuffix("s")


def _horizon_row(summary: RunSummary) -> tuple[str, str]:
    """E.g. ("ticks / last tick", "60 / 60") for a DFL run, rounds for FedAvg."""
    unit = summary.horizon.unit
    return f"{unit} / last {_step_label(unit)}", f"{summary.horizon.length} / {summary.last_step}"


def _print_summary(summary: RunSummary, run_dir: Path, wall: float) -> None:
    acc = summary.final_accuracy
    counters = summary.counters
    rows = [
        ("protocol", summary.protocol),
        ("seed", str(summary.seed)),
        ("nodes", f"{summary.nodes} ({len(summary.malicious)} malicious)"),
        _horizon_row(summary),
        ("final accuracy (honest mean)", "n/a" if acc is None else f"{acc:.4f}"),
        ("virtual time", f"{counters.virtual_seconds:.2f} s"),
        ("wall time", f"{wall:.2f} s"),
        ("messages (lost)", f"{counters.messages} ({counters.messages_lost})"),
        ("bytes sent", f"{counters.bytes_sent / 1e6:.2f} MB"),
        ("run directory", str(run_dir)),
    ]
    console.print(_key_value_table(f"fedledger run: {summary.name}", rows))


@app.command("list")
def list_components() -> None:
    """Show the registered protocols, models, datasets, partitioners, aggregators, attacks."""
    from fedledger.assembly.plugins import registries

    for kind, registry in registries().items():
        table = Table(title=f"{kind}s", show_header=True, title_justify="left")
        table.add_column("name", style="bold")
        table.add_column("parameters")
        table.add_column("summary")
        for comp in registry:
            fields = ", ".join(
                n if f.is_required() else f"{n}={f.get_default(call_default_factory=True)!r}"
                for n, f in comp.params.model_fields.items()
            )
            table.add_row(comp.name, fields or "-", comp.summary)
        console.print(table)


@chain_app.command("verify")
def chain_verify(
    path: Annotated[Path, typer.Argument(help="a node's ledger database, node dir or run dir")],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Verify every ledger under PATH: signatures, ids, links, Merkle roots, finality, blobs;
    inside a run directory also what its config and journal say must be there (every
    node's ledger, each node's own models, agreeing heads, no head below a recorded one)."""
    from fedledger.assembly.plugins import registries
    from fedledger.experiment.audit_run import verify

    registries()  # protocols register the record types their blocks hold
    try:
        report = verify(path)
    except FedledgerError as exc:
        raise _fail(exc) from None
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
    elif report.ok:
        console.print(f"[green]ok[/]: {report.describe()}")
    else:
        err_console.print(f"[bold red]FAILED[/]: {report.describe()}", highlight=False)
        for problem in report.problems[1:_SHOWN_PROBLEMS]:
            err_console.print(f"  also: {problem}", highlight=False)
    if not as_json:
        for note in report.notes:
            console.print(f"[yellow]note[/]: {note}", highlight=False)
    raise typer.Exit(code=0 if report.ok else 1)


_SHOWN_PROBLEMS = 10  # chain verify prints the first ones; --json has them all


# ---------------------------------------------------------------- real network


@app.command()
def node(
    config: Annotated[Path, typer.Option("--config", help="experiment YAML file")],
    node_id: Annotated[str, typer.Option("--node", help="this node's id, e.g. server or c003")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to accept peers on")],
    data_dir: Annotated[
        Path, typer.Option(help="root of this node's state: DIR/nodes/<id>/ (ledger, blobs, ...)")
    ],
    peers: Annotated[str, typer.Option(help="HOST:PORT,... of the peers this node dials")] = "",
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value (repeatable); same on every node"),
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option(help="this node's PEM private key file (`fedledger keygen`); with --genesis"),
    ] = None,
    genesis: Annotated[
        Path | None,
        typer.Option(
            help="the network's signed genesis file (`fedledger genesis`): members' public "
            "keys by node id. Without it every key is derived from the config's seed, which "
            "is allowed on loopback addresses only"
        ),
    ] = None,
    convener: Annotated[
        str | None,
        typer.Option(
            help="with --genesis: the convener's public key (hex, as `fedledger genesis` "
            "prints it, or its member file); a genesis signed by another key is refused"
        ),
    ] = None,
    genesis_sha256: Annotated[
        str | None,
        typer.Option(
            "--genesis-sha256",
            help="with --genesis: the genesis's SHA-256 as `fedledger genesis` prints it; "
            "another genesis is refused (give this or --convener)",
        ),
    ] = None,
    max_frame: Annotated[
        int | None, typer.Option(help="largest frame in bytes (default: from the model size)")
    ] = None,
    queue_size: Annotated[int, typer.Option(help="messages queued per peer")] = 256,
    start_wait: Annotated[
        float, typer.Option(help="seconds to wait for the protocol's peers before starting")
    ] = 60.0,
    idle_timeout: Annotated[
        float, typer.Option(help="seconds of silence before a connection is dropped")
    ] = 10.0,
    threads: Annotated[int, typer.Option(help="torch threads for jobs")] = 1,
    exit_with_parent: Annotated[
        bool, typer.Option(help="stop when the launching process dies (localnet)")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING or ERROR")] = "INFO",
    epoch: Annotated[
        float | None,
        typer.Option(
            help="the network's epoch, UNIX seconds, the same on every node (restarted ones "
            "too): event times are wall seconds since it, and a node up before it waits for "
            "it to start the protocol; without it a node counts from its own start, so its "
            "clock does not line up with its peers'"
        ),
    ] = None,
    epoch_file: Annotated[
        Path | None,
        typer.Option(
            help="a file that will hold the network's epoch (UNIX seconds as text, written "
            "by the launcher once every node is ready): a node that is ready before it "
            "exists says 'ready' and waits for it; one started later reads it at once. "
            "Not with --epoch"
        ),
    ] = None,
) -> None:
    """Run one node of an experiment as a real process on TCP (README: "Run a real network")."""
    import asyncio
    import logging
    import os
    import sys

    import torch

    from fedledger.assembly.config import load_config
    from fedledger.runtime.node.host import NodeHost
    from fedledger.runtime.node.options import NodeOptions
    from fedledger.runtime.node.settings import NetSettings, parse_address

    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise _fail(ValueError(f"--log-level {log_level!r}: allowed DEBUG, INFO, WARNING, ERROR"))
    logging.basicConfig(
        level=level, format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s"
    )
    torch.set_num_threads(max(1, threads))
    try:
        cfg = load_config(config, tuple(override or ()))
        options = NodeOptions(
            config=cfg,
            node_id=node_id,
            data_dir=data_dir,
            listen=parse_address(listen),
            peers=tuple(parse_address(p) for p in peers.split(",") if p.strip()),
            net=NetSettings(
                queue_size=queue_size, start_wait=start_wait, idle_timeout=idle_timeout
            ),
            key_file=key,
            exit_with_parent=exit_with_parent,
            max_frame=max_frame,
            epoch=epoch,
            epoch_file=epoch_file,
            genesis_file=genesis,
            convener=convener,
            genesis_sha256=genesis_sha256,
        )
        host = NodeHost(options)
    except (FedledgerError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    if exit_with_parent:
        _die_with_parent()
    code = asyncio.run(host.run())
    # Everything is written and closed; do not wait for a training job still running in
    # the worker thread (the interpreter would join it before exiting).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="directory for the key files")],
    node_id: Annotated[str, typer.Option("--node", help="the node's id, e.g. server or c003")],
    force: Annotated[bool, typer.Option(help="overwrite an existing key file")] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="experiment YAML file: also write the extra keys the protocol declares for "
            "this node (VRF, secp256k1)",
        ),
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value (repeatable), with --config"),
    ] = None,
) -> None:
    """Create a node's random Ed25519 key: OUT/<node>.key (private, mode 0600) and
    OUT/<node>.pub.json (its member file, for `fedledger genesis`); with --config also the
    extra keys its protocol declares, OUT/<node>.<scheme>.key (0600, public parts in the
    member file)."""
    from fedledger.assembly.member_keys import ExtraKeys, save_extra_keys
    from fedledger.assembly.services import member_json
    from fedledger.crypto import KeyPair, save_keypair

    if not node_id or "/" in node_id or node_id.startswith("."):
        raise _fail(ValueError(f"--node {node_id!r}: must be a node id such as c003"))
    private = out / f"{node_id}.key"
    public = out / f"{node_id}.pub.json"
    if private.exists() and not force:
        raise _fail(ValueError(f"{private} exists; a node keeps its key (--force replaces it)"))
    try:
        schemes = () if config is None else _declared_extra_keys(config, override, node_id)
        key = KeyPair.generate("ed25519")
        extra = ExtraKeys.generate(schemes)
        save_keypair(key, private)
        written = save_extra_keys(extra, private)
        public.write_text(member_json(node_id, key.public, extra.publics()))
    except (FedledgerError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    others = "".join(f", {p}" for p in written)
    console.print(f"{node_id}: private key {private}{others} (0600), member file {public}")


def _declared_extra_keys(config: Path, override: list[str] | None, node_id: str) -> tuple[str, ...]:
    """The extra key schemes the config's protocol declares for ``node_id``."""
    from fedledger.assembly.build import build_protocol
    from fedledger.assembly.config import load_config

    cfg = load_config(config, tuple(override or ()))
    protocol = build_protocol(cfg)
    plans = list(protocol.plan(cfg.nodes.count, cfg.seed))
    plan = next((p for p in plans if p.node_id == node_id), None)
    if plan is None:
        ids = [p.node_id for p in plans]
        raise ValueError(
            f"--node {node_id!r} is not in the config; its nodes are {ids} (a convener's "
            "key: leave out --config)"
        )
    return protocol.resources(plan, plans).extra_schemes


@app.command()
def genesis(
    members: Annotated[list[Path], typer.Argument(help="member files (<node>.pub.json)")],
    config: Annotated[Path, typer.Option("--config", help="experiment YAML file")],
    out: Annotated[Path, typer.Option(help="the genesis file to write")],
    key: Annotated[
        Path, typer.Option(help="the convener's PEM private key, which signs the genesis")
    ],
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value (repeatable); same on every node"),
    ] = None,
) -> None:
    """Sign a network's genesis file: the members' public keys by node id and the config
    digest. Every node of the config must have a member file."""
    from fedledger.assembly.build import build_protocol
    from fedledger.assembly.config import load_config, to_yaml
    from fedledger.assembly.services import GenesisFile, MembershipError, read_member
    from fedledger.crypto import load_keypair

    try:
        cfg = load_config(config, tuple(override or ()))
        protocol = build_protocol(cfg)
        plans = list(protocol.plan(cfg.nodes.count, cfg.seed))
        node_ids = [p.node_id for p in plans]
        keys = {}
        extras: dict[str, dict[str, str]] = {}
        for path in members:
            node_id, public, extra = read_member(path)
            if node_id in keys:
                raise MembershipError(f"{path}: a second member file for {node_id!r}")
            keys[node_id] = public
            extras[node_id] = extra
        if sorted(keys) != sorted(node_ids):
            missing = sorted(set(node_ids) - set(keys))
            extra = sorted(set(keys) - set(node_ids))
            problems = [f"missing member files for {missing}"] if missing else []
            problems += [f"member files of nodes not in the config: {extra}"] if extra else []
            raise MembershipError(
                f"the config's nodes are {sorted(node_ids)}; {', '.join(problems)}"
            )
        for plan in plans:  # each member's file holds the extra keys its protocol declares
            lacking = set(protocol.resources(plan, plans).extra_schemes) - set(extras[plan.node_id])
            if lacking:
                raise MembershipError(
                    f"the member file of {plan.node_id!r} has no {sorted(lacking)} key: the "
                    f"protocol declares it; run `fedledger keygen --config {config} --node "
                    f"{plan.node_id}`"
                )
        committees = protocol.committees(plans)
        signed = GenesisFile.sign(keys, to_yaml(cfg), load_keypair(key), extras, committees)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(signed.to_json())
    except (FedledgerError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    console.print(
        f"genesis of {len(keys)} members written to {out}\n"
        f"  convener (--convener): {signed.convener.to_bytes().hex()}\n"
        f"  genesis sha256 (--genesis-sha256): {signed.digest}",
        highlight=False,
        soft_wrap=True,
    )


def _die_with_parent() -> None:
    """Linux: ask the kernel for SIGTERM when the parent dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass


@app.command()
def localnet(
    config: Annotated[Path, typer.Argument(help="experiment YAML file")],
    nodes: Annotated[
        int | None, typer.Option(help="data-holding nodes (nodes.count); vanilla adds a server")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="run directory (default runs/<name>-<time>)")
    ] = None,
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value, e.g. -o rounds=5 (repeatable)"),
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds before the whole run is stopped")] = 900.0,
    grace: Annotated[
        float, typer.Option(help="seconds the others get after the first node halts")
    ] = 20.0,
    start_delay: Annotated[
        float | None,
        typer.Option(
            help="a fixed number of seconds from the launch to the network's epoch, when "
            "the nodes start the protocol together (default: the epoch is set once every "
            "node is ready, however long that takes)"
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress view")] = False,
) -> None:
    """Run an experiment as one process per node on 127.0.0.1 and write its run directory."""
    from rich.live import Live

    from fedledger.experiment.localnet import Localnet, run_localnet
    from fedledger.experiment.rundir import LocalnetCounters

    overrides = tuple(override or ())
    if nodes is not None:
        overrides += (f"nodes.count={nodes}",)
    started = time.perf_counter()
    try:
        net = Localnet(
            config, overrides, out, timeout=timeout, grace=grace, start_delay=start_delay
        )
    except (FedledgerError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    with Live(console=console, refresh_per_second=4, transient=True) as live:

        def on_tick(n: Localnet) -> None:
            if not quiet:
                live.update(_localnet_table(n))

        result = run_localnet(net, on_tick)
    summary = result.summary
    counters = summary.counters
    assert isinstance(counters, LocalnetCounters)
    acc = summary.final_accuracy
    crashed = {n: c for n, c in result.exit_codes.items() if c not in (0, None)}
    sent = f"{counters.messages} / {counters.bytes_sent / 1e6:.2f} MB"
    rows = [
        ("protocol", summary.protocol),
        ("nodes (processes)", f"{summary.nodes} ({len(crashed)} exited with an error)"),
        _horizon_row(summary),
        ("final accuracy (honest mean)", "n/a" if acc is None else f"{acc:.4f}"),
        ("network time to halt", f"{counters.virtual_seconds:.2f} s"),
        ("wall time", f"{time.perf_counter() - started:.2f} s"),
        ("messages / bytes sent", sent),
        ("dropped (by reason)", json.dumps(counters.drops) if counters.drops else "0"),
        ("run directory", str(result.run_dir)),
    ]
    if counters.late_starts:
        slow = ", ".join(f"{n} +{s:.1f} s" for n, s in counters.late_starts.items())
        hint = (
            f"raise --start-delay above {counters.start_delay:g} s"
            if net.start_delay is not None
            else "the machine was too busy to start them on time"
        )
        rows.append(("started after the epoch", f"{slow} ({hint})"))
    console.print(_key_value_table(f"fedledger localnet: {summary.name}", rows))
    if result.interrupted:
        raise typer.Exit(code=130)
    if crashed or counters.nodes_halted == 0:
        raise typer.Exit(code=1)


def _localnet_table(net: object) -> Table:
    views = net.views()  # type: ignore[attr-defined]
    horizon = net.horizon  # type: ignore[attr-defined]
    step = max((v.step for v in views), default=0)
    title = f"localnet: {_step_label(horizon.unit)} {step}/{horizon.length}"
    table = Table(title=title, title_justify="left")
    names = ("node", "role", "state", "step", "accuracy", "peers", "sent", "received", "dropped")
    for name in names:
        table.add_column(name, justify="left" if name in ("node", "role", "state") else "right")
    for v in views:
        acc = "" if v.accuracy is None else f"{v.accuracy:.3f}"
        table.add_row(
            v.node_id,
            v.role,
            v.state,
            str(v.step),
            acc,
            str(v.connected),
            f"{v.sent / 1e6:.2f} MB",
            f"{v.received / 1e6:.2f} MB",
            str(v.dropped),
        )
    return table


@app.command()
def compare(
    configs: Annotated[list[Path], typer.Argument(help="experiment YAML files (2 or more)")],
    override: Annotated[
        list[str] | None,
        typer.Option("-o", "--override", help="key.path=value for every config (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="parent directory of the runs (default runs/compare-<time>)")
    ] = None,
) -> None:
    """Run several experiments in the simulator and show them side by side: accuracy,
    what each protocol's ledger caught, and what it cost."""
    import torch

    from fedledger.assembly.config import load_config
    from fedledger.experiment.compare import comparison_rows, run_all
    from fedledger.experiment.runner import run_experiment

    torch.set_num_threads(1)
    try:
        loaded = [load_config(path, override or []) for path in configs]
        if len(loaded) < 2:
            raise typer.BadParameter(f"compare needs 2 or more configs, got {len(loaded)}")
        parent = out or Path(loaded[0].output.dir) / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"

        def one(config, run_dir):  # type: ignore[no-untyped-def]
            console.print(f"running [bold]{config.name}[/] ({config.protocol.name}) ...")
            return run_experiment(config, out=run_dir).run_dir

        runs = run_all(loaded, parent, one)
    except FedledgerError as exc:
        raise _fail(exc) from None
    table = Table(title="fedledger compare", show_lines=False)
    table.add_column("")
    for r in runs:
        table.add_column(r.config.name)
    for label, cells in comparison_rows(runs):
        table.add_row(label, *cells)
    console.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
