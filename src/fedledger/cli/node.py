"""``fedledger node``: one node of an experiment as a real process on TCP."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import fail
from fedledger.errors import FedledgerError


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
        raise fail(ValueError(f"--log-level {log_level!r}: allowed DEBUG, INFO, WARNING, ERROR"))
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
        raise fail(exc) from None
    if exit_with_parent:
        _die_with_parent()
    code = asyncio.run(host.run())
    # Everything is written and closed; do not wait for a training job still running in
    # the worker thread (the interpreter would join it before exiting).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
