"""One client's side of a secure aggregation round (Bonawitz et al. 2017, semi-honest).

Round 0 :meth:`SecAggClient.advertise`: fresh X25519 channel and mask key pairs.
Round 1 :meth:`SecAggClient.share_keys`: given the roster U1 (at least ``t`` clients),
Shamir-share the mask secret key and a fresh self-mask seed ``b`` among U1 and seal one
bundle to each other member; a hash commitment to ``b`` goes to the server.
Round 2 :meth:`SecAggClient.receive` then :meth:`SecAggClient.masked_input`: with the
bundles of U2 (the members that shared), send ``y = x + PRG(b) + sum_v +-PRG(s_uv)``
mod 2**64, ``+`` for ``u < v`` and ``-`` for ``u > v`` (ids in string order).
Round 3 :meth:`SecAggClient.unmask`: given the survivors U3, reveal the shares of the
mask keys of the dropped (U2 - U3) and of the self-mask seeds of the survivors, never
both for one client, and answer once only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.privacy.he.rand import RandomSource
from fedledger.privacy.secagg.errors import DropoutError, SecAggError
from fedledger.privacy.secagg.prg import expand
from fedledger.privacy.secagg.shares import (
    Bundle,
    agree,
    commit,
    open_sealed,
    public_key,
    random_bytes,
    seal,
    share_secret,
)


@dataclass(frozen=True)
class KeyAd:
    """A client's advertised public keys for one round."""

    node: str
    channel_pk: bytes
    mask_pk: bytes


@dataclass(frozen=True)
class Reveal:
    """A survivor's round-3 answer: shares of dropped clients' mask keys and of
    survivors' self-mask seeds, by the client they belong to."""

    key_shares: Mapping[str, int]
    seed_shares: Mapping[str, int]


def pair_label(round_: int, u: str, v: str) -> bytes:
    a, b = sorted((u, v))
    return f"pair/{round_}/{a}/{b}".encode()


def pair_sign(u: str, v: str) -> int:
    """The sign of the pairwise mask of (u, v) in ``u``'s input."""
    return 1 if u < v else -1


def check_roster(roster: Sequence[KeyAd], threshold: int, where: str) -> dict[str, KeyAd]:
    ids = [ad.node for ad in roster]
    if len(set(ids)) != len(ids):
        raise SecAggError(f"roster at {where} repeats a client: {sorted(ids)}")
    if list(ids) != sorted(ids):
        raise SecAggError(f"roster at {where} is not in id order: {ids}")
    return {ad.node: ad for ad in roster}


class SecAggClient:
    """A client's state for one round; the secrets never leave it except as shares."""

    def __init__(self, node_id: str, round_: int, threshold: int, rng: RandomSource) -> None:
        if threshold < 1:
            raise SecAggError(f"threshold={threshold}; allowed: >= 1")
        self.node_id = node_id
        self.round = round_
        self.threshold = threshold
        self._rng = rng
        self._channel_sk = random_bytes(rng)
        self._mask_sk = random_bytes(rng)
        self._seed = random_bytes(rng)
        self.roster: dict[str, KeyAd] = {}
        self.index: dict[str, int] = {}
        self.u2: tuple[str, ...] = ()
        self._held: dict[str, Bundle] = {}
        self._sent_input = False
        self._revealed = False

    def advertise(self) -> KeyAd:
        return KeyAd(self.node_id, public_key(self._channel_sk), public_key(self._mask_sk))

    def share_keys(self, roster: Sequence[KeyAd]) -> tuple[bytes, dict[str, bytes]]:
        """The commitment to the self-mask seed and one sealed bundle per other member."""
        table = check_roster(roster, self.threshold, "share keys")
        if table.get(self.node_id) != self.advertise():
            raise SecAggError(f"roster lacks {self.node_id} or carries other keys for it")
        if len(table) < self.threshold:
            raise DropoutError("share keys", len(table), self.threshold, len(table))
        self.roster = table
        self.index = {node: i + 1 for i, node in enumerate(table)}
        m = len(table)
        keys = share_secret(self._mask_sk, self.threshold, m, self._rng)
        seeds = share_secret(self._seed, self.threshold, m, self._rng)
        sealed = {}
        for node, i in self.index.items():
            bundle = Bundle(self.round, self.node_id, node, keys[i - 1].y, seeds[i - 1].y)
            if node == self.node_id:
                self._held[node] = bundle
            else:
                sealed[node] = seal(bundle, self._channel_sk, table[node].channel_pk)
        return commit(self._seed), sealed

    def receive(self, sealed: Mapping[str, bytes]) -> None:
        """Open the bundles the server routed here; their senders (and self) form U2."""
        if not self.roster:
            raise SecAggError("bundles received before the roster")
        for sender, data in sorted(sealed.items()):
            if sender not in self.roster or sender == self.node_id:
                raise SecAggError(f"bundle from {sender!r}, not another roster member")
            expect = (self.round, sender, self.node_id)
            self._held[sender] = open_sealed(
                data, self._channel_sk, self.roster[sender].channel_pk, expect
            )
        self.u2 = tuple(sorted(self._held))
        if len(self.u2) < self.threshold:
            raise DropoutError("masked input", len(self.u2), self.threshold, len(self.roster))

    def masked_input(self, x: np.ndarray) -> np.ndarray:
        """``y = x + PRG(b) + sum +-PRG(s_uv)`` over U2, as uint64 (once per round)."""
        if not self.u2:
            raise SecAggError("masked input asked before the share bundles arrived")
        if self._sent_input:
            raise SecAggError("masked input already sent this round")
        x = np.asarray(x)
        if x.dtype != np.uint64 or x.ndim != 1:
            raise SecAggError(f"input of dtype {x.dtype}, ndim {x.ndim}; allowed: 1-D uint64")
        y = x + expand(self._seed, x.size)
        for v in self.u2:
            if v == self.node_id:
                continue
            label = pair_label(self.round, self.node_id, v)
            seed = agree(self._mask_sk, self.roster[v].mask_pk, label)
            mask = expand(seed, x.size)
            y = y + mask if pair_sign(self.node_id, v) > 0 else y - mask
        self._sent_input = True
        return y

    def unmask(self, survivors: Sequence[str]) -> Reveal:
        """The shares the server needs to remove the masks, given the survivors U3."""
        if self._revealed:
            raise SecAggError("unmasking already answered this round")
        u3 = set(survivors)
        if not u3 <= set(self.u2) or self.node_id not in u3:
            raise SecAggError(f"survivors {sorted(u3)} must include {self.node_id} and lie in U2")
        if len(u3) < self.threshold:
            raise DropoutError("unmasking", len(u3), self.threshold, len(self.u2))
        self._revealed = True
        keys = {u: b.key_share for u, b in self._held.items() if u not in u3}
        seeds = {u: b.seed_share for u, b in self._held.items() if u in u3}
        return Reveal(keys, seeds)
