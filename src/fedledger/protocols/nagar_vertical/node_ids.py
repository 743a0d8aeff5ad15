"""The node ids and roles of ``nagar-vertical`` (shared by the nodes, the plan and the
ledger)."""

from __future__ import annotations

A_ID, B_ID, C_ID = "party-a", "party-b", "coordinator"
ROLE_A, ROLE_B, ROLE_C = "party_a", "party_b", "coordinator"
DOMAIN = "nagar-vertical"
HOLDER_PREFIX = "holder-"


def holder_ids(m: int) -> tuple[str, ...]:
    return tuple(f"{HOLDER_PREFIX}{i}" for i in range(1, m + 1))


def holder_index(node_id: str, m: int) -> int | None:
    """The share index of a holder id (1..m), None for any other id."""
    if not node_id.startswith(HOLDER_PREFIX):
        return None
    tail = node_id[len(HOLDER_PREFIX) :]
    if not tail.isdigit() or not 1 <= int(tail) <= m or str(int(tail)) != tail:
        return None
    return int(tail)
