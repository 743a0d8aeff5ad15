"""``fedledger chain verify``: check every ledger under a path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import console, err_console, fail
from fedledger.errors import FedledgerError

_SHOWN_PROBLEMS = 10  # chain verify prints the first ones; --json has them all


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
        raise fail(exc) from None
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
