"""The checks of the two-party DH-PSI exchange that every party mode runs before its
training (vertical and transfer parties alike): each refusal is a counted gate reason
(``repeated_psi``, ``bad_psi``), never an exception past the node."""

from __future__ import annotations

from fedledger.crypto.psi import BlindedSet, PsiError, PsiParty, Reblinded
from fedledger.protocols.kit.gate import Gate
from fedledger.protocols.nagar_vertical.messages import PsiBlinded, PsiReblinded


def reblind(gate: Gate, psi: PsiParty, msg: PsiBlinded, done: bool) -> PsiReblinded:
    """This party's reply to the peer's blinded set (``done``: it already replied once)."""
    if done:
        raise gate.fail("repeated_psi", "a second blinded set")
    if not msg.points:
        raise gate.fail("bad_psi", "an empty blinded set: no id can be aligned")
    try:
        return PsiReblinded(psi.reblind(BlindedSet(msg.points)).points)
    except PsiError as exc:
        raise gate.fail("bad_psi", str(exc)) from None


def check_reply(gate: Gate, msg: PsiReblinded, have: PsiReblinded | None, ids: int) -> None:
    """Refuse a second reply, or one whose point count is not this party's ``ids``."""
    if have is not None:
        raise gate.fail("repeated_psi", "a second reply")
    if len(msg.points) != ids:
        raise gate.fail("bad_psi", f"{len(msg.points)} points for {ids}")


def intersection(gate: Gate, psi: PsiParty, reply: PsiReblinded) -> tuple[str, ...]:
    """The common ids, sorted (as ``vfl.align`` orders them)."""
    try:
        result = psi.finish(Reblinded(reply.points))
    except PsiError as exc:
        raise gate.fail("bad_psi", str(exc)) from None
    return tuple(sorted(i.decode() for i in result.intersection))

