"""``fedledger localnet``: an experiment as one process per node on 127.0.0.1."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from fedledger.cli.common import console, fail, horizon_row, key_value_table, step_label
from fedledger.errors import FedledgerError


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
        raise fail(exc) from None
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
        horizon_row(summary),
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
    console.print(key_value_table(f"fedledger localnet: {summary.name}", rows))
    if result.interrupted:
        raise typer.Exit(code=130)
    if crashed or counters.nodes_halted == 0:
        raise typer.Exit(code=1)


def _localnet_table(net: object) -> Table:
    views = net.views()  # type: ignore[attr-defined]
    horizon = net.horizon  # type: ignore[attr-defined]
    step = max((v.step for v in views), default=0)
    title = f"localnet: {step_label(horizon.unit)} {step}/{horizon.length}"
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
