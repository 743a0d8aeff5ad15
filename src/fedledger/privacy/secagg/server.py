"""The server's side of a secure aggregation round: route, collect, unmask, sum.

It sees public keys, sealed bundles it cannot open, commitments, masked inputs and, at
the end, shares of the self-mask seeds of the survivors and of the mask keys of the
dropped; from these it removes all masks from the sum of the survivors' inputs and
learns only that sum. Each phase needs at least ``t`` clients; fewer raise
:class:`~fedledger.privacy.secagg.errors.DropoutError` naming the counts. Bad shares
(off the polynomial that reconstructs a value passing its check) are named in
``culprits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fedledger.crypto.shamir import Share
from fedledger.privacy.secagg.client import KeyAd, Reveal, check_roster, pair_label, pair_sign
from fedledger.privacy.secagg.errors import DropoutError, SecAggError
from fedledger.privacy.secagg.prg import expand
from fedledger.privacy.secagg.shares import agree, commit, public_key, robust_reconstruct


class SecAggServer:
    """The server's state for one round of ``length`` ring elements."""

    def __init__(self, round_: int, threshold: int, length: int, expected: Sequence[str]) -> None:
        if not 1 <= threshold <= len(expected):
            raise SecAggError(
                f"threshold={threshold} with {len(expected)} clients; allowed: 1..{len(expected)}"
            )
        self.round = round_
        self.threshold = threshold
        self.length = length
        self.expected = tuple(sorted(expected))
        self.roster: dict[str, KeyAd] = {}
        self.index: dict[str, int] = {}
        self.commits: dict[str, bytes] = {}
        self.u2: tuple[str, ...] = ()
        self.u3: tuple[str, ...] = ()
        self._masked: dict[str, np.ndarray] = {}
        self.culprits: set[str] = set()

    def _need(self, phase: str, alive: int, total: int) -> None:
        if alive < self.threshold:
            raise DropoutError(phase, alive, self.threshold, total)

    def make_roster(self, ads: Mapping[str, KeyAd]) -> tuple[KeyAd, ...]:
        """U1: the expected clients that advertised keys, in id order."""
        roster = tuple(ads[n] for n in sorted(ads) if n in self.expected and ads[n].node == n)
        self._need("advertise keys", len(roster), len(self.expected))
        self.roster = check_roster(roster, self.threshold, "advertise keys")
        self.index = {node: i + 1 for i, node in enumerate(self.roster)}
        return roster

    def route(
        self, shared: Mapping[str, tuple[bytes, Mapping[str, bytes]]]
    ) -> dict[str, dict[str, bytes]]:
        """U2 and, per member of U2, the sealed bundles addressed to it by U2."""
        u2 = sorted(
            n for n, (_, sealed) in shared.items()
            if n in self.roster and set(sealed) == set(self.roster) - {n}
        )  # fmt: skip
        self._need("share keys", len(u2), len(self.roster))
        self.u2 = tuple(u2)
        self.commits = {n: shared[n][0] for n in u2}
        return {v: {u: shared[u][1][v] for u in u2 if u != v} for v in u2}

    def accept_input(self, sender: str, masked: np.ndarray) -> bool:
        """Keep a masked input of the right shape from a member of U2."""
        arr = np.asarray(masked)
        if sender not in self.u2 or arr.dtype != np.uint64 or arr.shape != (self.length,):
            return False
        self._masked[sender] = arr
        return True

    def close_inputs(self) -> tuple[str, ...]:
        """U3: the members of U2 whose masked input arrived."""
        self.u3 = tuple(sorted(self._masked))
        self._need("masked input", len(self.u3), len(self.u2))
        return self.u3

    def finish(self, reveals: Mapping[str, Reveal]) -> np.ndarray:
        """The sum of the survivors' inputs mod 2**64, from at least ``t`` reveals."""
        holders = sorted(v for v in reveals if v in self.u3)
        self._need("unmasking", len(holders), len(self.u3))
        total = np.zeros(self.length, dtype=np.uint64)
        for y in self._masked.values():
            total += y
        for u in self.u3:
            shares = [
                (v, Share(self.index[v], reveals[v].seed_shares[u]))
                for v in holders if u in reveals[v].seed_shares
            ]  # fmt: skip
            want = self.commits[u]
            seed, bad = robust_reconstruct(
                shares, self.threshold, lambda s, w=want: commit(s) == w, f"{u}'s self-mask seed"
            )
            self.culprits.update(bad)
            total -= expand(seed, self.length)
        for u in sorted(set(self.u2) - set(self.u3)):
            shares = [
                (v, Share(self.index[v], reveals[v].key_shares[u]))
                for v in holders if u in reveals[v].key_shares
            ]  # fmt: skip
            pk = self.roster[u].mask_pk
            key, bad = robust_reconstruct(
                shares, self.threshold, lambda s, p=pk: public_key(s) == p, f"{u}'s mask key"
            )
            self.culprits.update(bad)
            for v in self.u3:
                seed = agree(key, self.roster[v].mask_pk, pair_label(self.round, u, v))
                mask = expand(seed, self.length)
                total = total - mask if pair_sign(v, u) > 0 else total + mask
        return total
