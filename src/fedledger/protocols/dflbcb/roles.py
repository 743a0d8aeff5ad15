"""DFLBCB's node roles, timer keys and per-node secp256k1 keys."""

from __future__ import annotations

from collections.abc import Sequence

from fedledger.contracts.eth import EthKey, checksum
from fedledger.errors import ConfigError
from fedledger.protocols.resources import NodeExtraKeys

INITIATOR, MEMBER, PARTICIPANT = "initiator", "member", "participant"
ETH = 10**18
FUND = 10 * ETH  # what each node puts in its fund pool when it registers
PBFT = "pbft-"
CLIENT_RETRY = "client-retry"
STAGE_TIMER = "stage"
WRONG_END = "wrong_end"
FORGE_WORK, NO_SUBMIT, BAD_LAYOUT, SYBIL = "forge_work", "no_submit", "bad_layout", "sybil_pledge"
#: Protocol faults: the PBFT engine's switches for a member's replica; ``wrong_end`` (a
#: member's End and proof shares carry a hash no honest member computes); ``forge_work``
#: (a colluding member claims a Work result with global accuracy 1000 at once, and signs
#: the colluders' forged Ends: F+1 of them get it accepted, the documented bound);
#: ``no_submit`` (a participant pledges but never submits); ``bad_layout`` (it submits a
#: model of an undeclared layout); ``sybil_pledge`` (a candidate pledges 5x the minimum).
FAULTS = ("equivocate", "wrong_digest", "silent", "censor", "forge", WRONG_END, FORGE_WORK,
          NO_SUBMIT, BAD_LAYOUT, SYBIL)
SYBIL_FACTOR = 5


def eth_key(node_id: str) -> EthKey:
    """A node's secp256k1 key on the dev chain (funded at genesis, so fixed by its id)."""
    return EthKey.from_seed(0, f"dflbcb/{node_id}")


def seed_stand_in(seed: int, node_id: str) -> EthKey:
    """The secp256k1 key the simulator and a localnet hand a node that declares one
    (``assembly.member_keys.ExtraKeys.derive``: derived from the seed, registered nowhere)."""
    return EthKey.from_seed(seed, f"node-key/{node_id}")


def chain_keys(node_id: str, seed: int, node_ids: Sequence[str],
               extra: NodeExtraKeys) -> tuple[EthKey, dict[str, str]]:
    """The node's own secp256k1 key and every node's address, by node id.

    On a real network (``extra.eth`` loaded from the node's key file, ``eth_addresses``
    what the signed genesis registers) those registered keys; in the simulator and on a
    localnet (no key, or the seed's stand-in) the dev chain's keys derived from the node
    id (:func:`eth_key`), which the chain funds at genesis. A node whose key is not the
    one registered for it, or a member the genesis registers no key for, is refused."""
    own = extra.eth
    if own is None or own == seed_stand_in(seed, node_id):
        return eth_key(node_id), {n: eth_key(n).address for n in node_ids}
    registered = {n: checksum(a) for n, a in extra.eth_addresses.items()}
    missing = sorted(set(node_ids) - set(registered))
    if missing:
        raise ConfigError("genesis.extra_keys", f"no secp256k1 key registered for {missing}; "
                          "`fedledger keygen --config` and `fedledger genesis` register one "
                          "per member")
    if registered[node_id] != own.address:
        raise ConfigError("genesis.extra_keys", f"node {node_id!r} holds secp256k1 key "
                          f"{own.address}, but the genesis registers {registered[node_id]}")
    return own, {n: registered[n] for n in node_ids}
