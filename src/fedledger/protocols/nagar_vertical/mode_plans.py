"""The transfer and sharing modes' FL plans: what each node expects, from its own params.

Transfer: requester and sequencer is the coordinator C (it sets up the key, as in vertical
coordinator mode), or with a committee the target B; the parties are ``source`` (A),
``target`` (B) and ``coordinator`` or the key holders ``holder-1..m``;
source and target sign a result each round (epoch). Sharing: requester and sequencer is
the trainer (it asks for the data and does the work it is rewarded for); the parties are
every IoT device, every gateway and the trainer; the trainer signs a result each round
(hour of readings): the readings it has processed (``openings``, the basis of its
reward) and the digest of its fitted cycle.
"""

from __future__ import annotations

from fedledger.protocols.base import NodeSetup
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.plan import PartyPlan, Scalar, data_digest, make_plan

#: breast_cancer's feature count
FEATURES = 30
TRANSFER_REPORTERS = ("source", "target")
SHARING_REPORTERS = ("trainer",)


def transfer_roles(p: NagarVerticalParams) -> dict[str, str]:
    """role -> node id of every party of a transfer plan (holders: role = node id)."""
    from fedledger.protocols.nagar_vertical.committee import holder_ids

    roles = {"source": "party-a", "target": "party-b"}
    if p.decryptor == "coordinator":
        return {**roles, "coordinator": "coordinator"}
    return {**roles, **{h: h for h in holder_ids(p.committee)}}


def transfer_plan(
    setup: NodeSetup[NagarVerticalParams], own_columns: int | None = None
) -> PartyPlan:
    """The transfer plan this node expects; ``own_columns``: a party's own column count."""
    p, svc = setup.params, setup.services
    roles = transfer_roles(p)
    columns = {"source": p.features_a, "target": FEATURES - p.features_a}
    role = next((r for r, n in roles.items() if n == setup.node_id), None)
    if own_columns is not None and role in columns:
        columns[role] = own_columns
    terms: dict[str, Scalar] = {
        "model": "ftl-linear-taylor",
        "features.source": columns["source"],
        "features.target": columns["target"],
        "labels": "source",
        "dim": p.dim,
        "gamma": p.gamma,
        "l2": p.l2,
        "lr": p.lr,
        "optimizer": "full-batch-gd",
        "he": "paillier",
        "key_bits": p.key_bits,
        "frac_bits": p.frac_bits,
        "decryptor": p.decryptor,
        "privacy": "none",
    }
    if p.decryptor == "committee":
        terms |= {"committee": p.committee, "threshold": p.threshold}
    data = data_digest(dataset="breast_cancer", ids="case-<row>", overlap=p.overlap,
                       evaluation="target-non-overlap")  # fmt: skip
    lead = svc.address_of("coordinator" if p.decryptor == "coordinator" else "party-b")
    parties = {r: svc.address_of(n) for r, n in roles.items()}
    return make_plan("transfer", lead, lead, parties, setup.horizon.length, data, terms)


def transfer_rules(plan: PartyPlan) -> list[str]:
    """The transfer mode's own plan rules (each problem names the value and the rule)."""
    out: list[str] = []
    roles = {r for r, _ in plan.parties}
    decryptor, m, t = plan.term("decryptor"), plan.term("committee"), plan.term("threshold")
    if decryptor == "coordinator":
        need = {"source", "target", "coordinator"}
    elif decryptor == "committee" and isinstance(m, int) and isinstance(t, int) and 1 <= t <= m:
        need = {"source", "target", *(f"holder-{i}" for i in range(1, m + 1))}
    else:
        need = set()
        out.append(f"decryptor {decryptor!r}, committee {m!r}, threshold {t!r}; allowed "
                   "coordinator, or committee with 1 <= threshold <= committee")  # fmt: skip
    if need and roles != need:
        out.append(f"parties {sorted(roles)}; this transfer plan needs {sorted(need)}")
    for name in ("features.source", "features.target", "dim", "frac_bits"):
        value = plan.term(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"{name} {value!r}; allowed an int >= 1")
    bits = plan.term("key_bits")
    if not isinstance(bits, int) or bits < 256:
        out.append(f"key_bits {bits!r}; allowed >= 256")
    return out


def sharing_roles(p: NagarVerticalParams) -> dict[str, str]:
    """role -> node id of every party of a sharing plan (roles are the node ids)."""
    from fedledger.protocols.nagar_vertical.sharing_node import (
        TRAINER_ID,
        gateway_ids,
        iot_ids,
    )

    return {n: n for n in (*iot_ids(p.devices), *gateway_ids(p), TRAINER_ID)}


def sharing_party_plan(setup: NodeSetup[NagarVerticalParams]) -> PartyPlan:
    """The sharing plan this node expects: the privacy budget and transport are public."""
    p, svc = setup.params, setup.services
    terms: dict[str, Scalar] = {
        "model": "daily-cycle-lsq",
        "devices": p.devices,
        "transport": p.transport,
        "gateways": p.gateways if p.transport == "shamir" else 0,
        "gateway_threshold": p.gateway_threshold if p.transport == "shamir" else 0,
        "privacy": "laplace-ldp",
        "epsilon_reading": p.epsilon_reading,
        "epsilon_total": p.epsilon_total,
        "accountant": "basic",
        "per_work": p.per_work,
        "hour_seconds": p.hour_seconds,
    }
    data = data_digest(dataset="synthetic-sensors", features="temperature,humidity",
                       ranges="-10..40,0..100")  # fmt: skip
    lead = svc.address_of("trainer")
    parties = {r: svc.address_of(n) for r, n in sharing_roles(p).items()}
    return make_plan("sharing", lead, lead, parties, setup.horizon.length, data, terms)


def sharing_rules(plan: PartyPlan) -> list[str]:
    """The sharing mode's own plan rules."""
    out: list[str] = []
    eps, total = plan.term("epsilon_reading"), plan.term("epsilon_total")
    if not isinstance(eps, float) or not isinstance(total, float) or not 0 < eps <= total:
        out.append(f"epsilon_reading {eps!r}, epsilon_total {total!r}; allowed 0 < e <= total")
    t, m = plan.term("gateway_threshold"), plan.term("gateways")
    if plan.term("transport") == "shamir" and not (
        isinstance(t, int) and isinstance(m, int) and 1 <= t <= m
    ):
        out.append(f"gateway_threshold {t!r} of {m!r}; allowed 1 <= t <= m")
    if "trainer" not in {r for r, _ in plan.parties}:
        out.append("no trainer among the parties")
    return out
