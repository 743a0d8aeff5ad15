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
