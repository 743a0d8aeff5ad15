"""``fedledger keygen`` and ``genesis``: a real network's keys and its signed member list."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import console, fail
from fedledger.errors import FedledgerError


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
        raise fail(ValueError(f"--node {node_id!r}: must be a node id such as c003"))
    private = out / f"{node_id}.key"
    public = out / f"{node_id}.pub.json"
    if private.exists() and not force:
        raise fail(ValueError(f"{private} exists; a node keeps its key (--force replaces it)"))
    try:
        schemes = () if config is None else _declared_extra_keys(config, override, node_id)
        key = KeyPair.generate("ed25519")
        extra = ExtraKeys.generate(schemes)
        save_keypair(key, private)
        written = save_extra_keys(extra, private)
        public.write_text(member_json(node_id, key.public, extra.publics()))
    except (FedledgerError, ValueError, OSError) as exc:
        raise fail(exc) from None
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
        raise fail(exc) from None
    console.print(
        f"genesis of {len(keys)} members written to {out}\n"
        f"  convener (--convener): {signed.convener.to_bytes().hex()}\n"
        f"  genesis sha256 (--genesis-sha256): {signed.digest}",
        highlight=False,
        soft_wrap=True,
    )
