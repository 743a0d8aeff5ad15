"""Faults a Nagar device can be switched into (``nodes.malicious[].faults``), to show
that miners refuse and count each: a submission for another plan (``unknown_plan``),
for another step (``wrong_step``), with an inflated sample count (``bad_samples``
against its stats claim, else ``implausible_samples`` against its local computation
time) and a second submission for the same step (``duplicate``); in consortium mode, a
device that sends every storage member a second message of parts in each step
(``vault_flood``, refused by the member); and a curious storage member that tries to
gather every part of every sealed blob from the other members (``vault_snoop``, a miner
fault: the members do not serve it, :meth:`~fedledger.protocols.nagar.mining.Mining.may_serve`)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

from fedledger.protocols.nagar.messages import Submission

WRONG_PLAN = "wrong_plan"
WRONG_ROUND = "wrong_round"
INFLATE_SAMPLES = "inflate_samples"
DUPLICATE_SUBMISSION = "duplicate_submission"
VAULT_FLOOD = "vault_flood"
DEVICE_FAULTS = (WRONG_PLAN, WRONG_ROUND, INFLATE_SAMPLES, DUPLICATE_SUBMISSION, VAULT_FLOOD)
VAULT_SNOOP = "vault_snoop"
#: the factor an inflating device multiplies its n_k by
INFLATION = 1000


def tamper(sub: Submission, faults: Sequence[str]) -> Submission:
    """``sub`` as a device with ``faults`` would send it (unchanged for an honest one)."""
    if WRONG_PLAN in faults:
        sub = dataclasses.replace(sub, plan_id=hashlib.sha256(b"another plan").digest())
    if WRONG_ROUND in faults:
        sub = dataclasses.replace(sub, step=sub.step + 1)
    if INFLATE_SAMPLES in faults:
        n_k = sub.model.num_samples * INFLATION
        sub = dataclasses.replace(sub, model=dataclasses.replace(sub.model, num_samples=n_k))
    return sub
