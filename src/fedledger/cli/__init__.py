"""The ``fedledger`` command line."""

from __future__ import annotations

import typer

from fedledger.cli import chain, keys, localnet, node, simulate
from fedledger.cli.common import console, err_console

__all__ = ["app", "chain_app", "console", "err_console", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
chain_app = typer.Typer(no_args_is_help=True, help="Inspect and verify ledgers.")
app.add_typer(chain_app, name="chain")

# In the order `fedledger --help` lists them.
app.command()(simulate.run)
app.command("list")(simulate.list_components)
chain_app.command("verify")(chain.chain_verify)
app.command()(node.node)
app.command()(keys.keygen)
app.command()(keys.genesis)
app.command()(localnet.localnet)
app.command()(simulate.compare)


def main() -> None:
    app()
