"""What every ``fedledger`` command shares: the consoles, the error exit and the summary
table layout."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from fedledger.experiment.rundir import RunSummary

console = Console()
err_console = Console(stderr=True)


def fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=2)


def key_value_table(title: str, rows: list[tuple[str, str]]) -> Table:
    """The end-of-run summary layout: one bold key and its value per row."""
    table = Table(title=title, show_header=False, min_width=50)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows:
        table.add_row(key, value)
    return table


def step_label(unit: str) -> str:
    """The progress bar's word for one step of a horizon: round, tick or epoch."""
    return unit.removesuffix("s")


def horizon_row(summary: RunSummary) -> tuple[str, str]:
    """E.g. ("ticks / last tick", "60 / 60") for a DFL run, rounds for FedAvg."""
    unit = summary.horizon.unit
    return f"{unit} / last {step_label(unit)}", f"{summary.horizon.length} / {summary.last_step}"
