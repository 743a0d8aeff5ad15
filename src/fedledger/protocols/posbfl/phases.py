"""PoS-BFL's round phases on the network-time grid (deadlines from its params)."""

from __future__ import annotations

from fedledger.protocols.kit.schedule import Phase, RoundSchedule
from fedledger.protocols.posbfl.params import PosBflParams

TX_WINDOW, VOTE, MINE, SELECT, ROUND_END, POW_SEND = (
    "tx-window",
    "vote",
    "mine",
    "select",
    "round-end",
    "pow-send",
)


def schedule_of(params: PosBflParams) -> RoundSchedule:
    """PoS-BFL's phases on the round grid (select and round-end are never skipped)."""
    p = params
    return RoundSchedule(
        p.round_length,
        (
            Phase(TX_WINDOW, p.tx_window),
            Phase(VOTE, p.vote_at),
            Phase(MINE, p.mine_at),
            Phase(SELECT, p.select_at, always=True),
            Phase(ROUND_END, p.round_length, always=True),
        ),
    )
