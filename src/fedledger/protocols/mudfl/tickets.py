"""Committee tickets: the VRF keys μDFL's sortition uses, and each client's own ticket.

Keys: every client's VRF public key as registered in the genesis and its own private key
(``NodeServices.extra``, written by ``fedledger keygen --config``). A setup without
registered keys (unit tests, tools that build a node by hand) derives every client's key
from the experiment seed and its id, which the simulator and a localnet also do when they
register keys. Only when every registered key is the seed-derived one may a node compute
another's ticket, and only then is dynasty 0 drawn by VRF from the genesis hash as
before; with keys of their own, dynasty 0 is the administrator's D_init fixed by the
genesis (:func:`dynasty.d_init`).

Tickets: a client proves only its own ticket for dynasty ``n`` once the RandShare seed
is fixed on its chain (the first slot after the reveal window) and sends it to the
running committee; a member keeps the first ticket of each client that verifies under
the client's registered key; the proposer of the dynasty block draws the committee from
the tickets it holds (its own ticket included). The switch block comes at least two
slots after the reveal window, so tickets sent in the slot after it arrive in time.
A proposer may leave tickets out (as it may leave out transactions); every node checks
each ticket it includes and that the committee is the one drawn from them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedledger.consensus.committee import committee_alpha
from fedledger.crypto.keys import CryptoError
from fedledger.crypto.vrf import VrfError, VrfKey, VrfPublicKey, derive_vrf_key
from fedledger.protocols.base import Broadcast, Effect
from fedledger.protocols.mudfl import rotation as rot
from fedledger.protocols.mudfl.dynasty import PURPOSE, own_ticket
from fedledger.protocols.mudfl.messages import TicketMsg
from fedledger.protocols.resources import NodeExtraKeys

if TYPE_CHECKING:
    from fedledger.protocols.mudfl.chain import Microchain


@dataclass(frozen=True)
class SortitionKeys:
    """This node's VRF key (None unless it is a client), every client's public key, and
    ``derived``: all of them are the seed-derived ones (simulator, localnet)."""

    own: VrfKey | None
    public: Mapping[str, VrfPublicKey]
    derived: bool

    @classmethod
    def of(
        cls, extra: NodeExtraKeys, node_id: str, clients: Sequence[str], run_seed: int
    ) -> SortitionKeys:
        registered = extra.vrf_keys
        if not registered:
            keys = {c: derive_vrf_key(run_seed, c) for c in clients}
            return cls(keys.get(node_id), {c: k.public for c, k in keys.items()}, True)
        missing = [c for c in clients if c not in registered]
        if missing:
            raise CryptoError(
                f"mudfl: client(s) {missing} have no VRF key registered in the genesis; "
                "create them with `fedledger keygen --config CONFIG` and list their member "
                "files in `fedledger genesis`"
            )
        public = {c: registered[c] for c in clients}
        own = extra.vrf if node_id in public else None
        if node_id in public and (
            own is None or own.public.to_bytes() != public[node_id].to_bytes()
        ):
            raise CryptoError(
                f"mudfl: client {node_id!r} holds no VRF key or not the one registered for "
                "it in the genesis (load its <node>.vrf.key)"
            )
        derived = all(
            public[c].to_bytes() == derive_vrf_key(run_seed, c).public.to_bytes() for c in clients
        )
        return cls(own, public, derived)


def send_own(chain: Microchain) -> list[Effect]:
    """At a slot's start: a client whose chain fixes the next dynasty's seed (the reveal
    window is over and the switch block is not yet there) proves its ticket, once."""
    ctx = chain.ctx
    key = ctx.keys.own
    number = ctx.dynasty.number + 1
    if key is None or number in chain.tickets_sent:
        return []
    win = rot.window(chain.store, chain.parent.hash, number, chain.params)
    if win is None or chain.parent.height >= win.switch:
        return []
    if chain.slot <= win.start_slot + win.deal_slots + win.reveal_slots:
        return []
    seed, _ = ctx.rotation.seed(chain.parent.hash, ctx.dynasty, number)
    proof = own_ticket(key, seed, number)
    chain.tickets_sent.add(number)
    if ctx.in_committee:
        chain.tickets.setdefault(number, {})[ctx.node_id] = proof
    to = tuple(n for n in ctx.dynasty.committee if n != ctx.node_id)
    return [Broadcast(TicketMsg(number, proof), to=to)] if to else []


def on_ticket(chain: Microchain, msg: TicketMsg, sender: str) -> None:
    """A running committee member keeps a client's ticket that verifies under the
    client's registered key and the seed on its own chain; refusals are counted."""
    ctx, gate = chain.ctx, chain.ctx.gate
    if not ctx.in_committee:
        raise gate.fail("not_in_committee", f"ticket from {sender}")
    public = ctx.keys.public.get(sender)
    if public is None:
        raise gate.fail("bad_ticket", f"ticket from {sender}, which is not a client")
    if msg.number != ctx.dynasty.number + 1:
        raise gate.fail("wrong_dynasty", f"ticket of dynasty {msg.number} from {sender}")
    held = chain.tickets.setdefault(msg.number, {})
    if sender in held:
        raise gate.fail("duplicate_ticket", f"second ticket of dynasty {msg.number} from {sender}")
    head = chain.store.head_hash()
    if rot.window(chain.store, head, msg.number, chain.params) is None:
        raise gate.fail("early_ticket", f"ticket of dynasty {msg.number} before its RandShare")
    seed, _ = ctx.rotation.seed(head, ctx.dynasty, msg.number)
    try:
        public.verify(msg.proof, committee_alpha(seed, msg.number, PURPOSE))
    except VrfError as err:
        raise gate.fail("bad_ticket", f"ticket of {sender}: {err}") from None
    held[sender] = msg.proof


def held(chain: Microchain, number: int) -> dict[str, bytes]:
    """The tickets a proposer puts in dynasty ``number``'s record: those it received and
    its own (proved now if it has not sent it, e.g. after a restart)."""
    ctx = chain.ctx
    tickets = dict(chain.tickets.get(number, {}))
    if ctx.keys.own is not None and ctx.node_id not in tickets:
        seed, _ = ctx.rotation.seed(chain.parent.hash, ctx.dynasty, number)
        tickets[ctx.node_id] = own_ticket(ctx.keys.own, seed, number)
    return tickets
