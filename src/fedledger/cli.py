"""The ``fedledger`` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fedledger.errors import FedledgerError

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
) -> None:
    """Run an experiment in the simulator and write its run directory."""
    from fedledger.experiment.config import load_config
    from fedledger.experiment.runner import run_experiment

    try:
        cfg = load_config(config, tuple(override or ()))
    except FedledgerError as exc:
        raise _fail(exc) from None
    started = time.perf_counter()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    )
    with progress:
        task = progress.add_task(cfg.name, total=cfg.rounds, acc="")

        def on_row(row: object) -> None:
            step = getattr(row, "step", 0)
            acc = getattr(row, "accuracy", 0.0)
            progress.update(task, completed=min(step, cfg.rounds), acc=f"acc {acc:.3f}")

        try:
            result = run_experiment(cfg, out, on_row=on_row)
        except FedledgerError as exc:
            raise _fail(exc) from None
    _print_summary(result.summary, result.run_dir, time.perf_counter() - started)


def _print_summary(summary: dict, run_dir: Path, wall: float) -> None:
    table = Table(title=f"fedledger run: {summary['name']}", show_header=False, min_width=50)
    table.add_column("key", style="bold")
    table.add_column("value")
    acc = summary["final_accuracy"]
    rows = [
        ("protocol", summary["protocol"]),
        ("seed", str(summary["seed"])),
        ("nodes", f"{summary['nodes']} ({len(summary['malicious'])} malicious)"),
        ("rounds / last step", f"{summary['rounds']} / {summary['last_step']}"),
        ("final accuracy (honest mean)", "n/a" if acc is None else f"{acc:.4f}"),
        ("virtual time", f"{summary['virtual_seconds']:.2f} s"),
        ("wall time", f"{wall:.2f} s"),
        ("messages (lost)", f"{summary['messages']} ({summary['messages_lost']})"),
        ("bytes sent", f"{summary['bytes_sent'] / 1e6:.2f} MB"),
        ("run directory", str(run_dir)),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


@app.command("list")
def list_components() -> None:
    """Show the registered protocols, models, datasets, partitioners, aggregators, attacks."""
    from fedledger.plugins import registries

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
    """Verify every ledger under PATH: signatures, ids, links, Merkle roots, finality, blobs."""
    from fedledger.ledger.audit import audit_path

    try:
        report = audit_path(path)
    except FedledgerError as exc:
        raise _fail(exc) from None
    if as_json:
        console.print_json(json.dumps(report.as_dict()))
    elif report.ok:
        console.print(f"[green]ok[/]: {report.describe()}")
    else:
        err_console.print(f"[bold red]FAILED[/]: {report.describe()}", highlight=False)
    raise typer.Exit(code=0 if report.ok else 1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
