"""DFLBCB's node roles, timer keys and per-node secp256k1 keys."""

from __future__ import annotations

from fedledger.contracts.eth import EthKey

INITIATOR, MEMBER, PARTICIPANT = "initiator", "member", "participant"
ETH = 10**18
FUND = 10 * ETH  # what each node puts in its fund pool when it registers
PBFT = "pbft-"
CLIENT_RETRY = "client-retry"
STAGE_TIMER = "stage"
WRONG_END = "wrong_end"
#: Protocol faults: the PBFT engine's switches for a member's replica, and ``wrong_end``
#: (a member's End and proof shares carry a hash no honest member computes).
FAULTS = ("equivocate", "wrong_digest", "silent", "censor", "forge", WRONG_END)


def eth_key(node_id: str) -> EthKey:
    """A node's secp256k1 key on the dev chain (funded at genesis, so fixed by its id)."""
    return EthKey.from_seed(0, f"dflbcb/{node_id}")
