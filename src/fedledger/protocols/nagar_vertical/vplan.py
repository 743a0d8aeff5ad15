"""The vertical mode's plan: what each node expects, from its own params and data.

Requester and sequencer: the coordinator C in coordinator mode (Hardy et al.'s trusted
third party, which sets up the keys and already orders the exchange); in committee mode
party B, the label holder: the model owner that asks for the training and the only
party that measures the model (a key holder only ever sees masked ciphertexts, and the
holders are interchangeable t of m, so none is singled out to order the run).

Each node builds the plan it expects (:func:`vertical_plan`) from its own params; a party
puts its own data's column count in place of the params' (a party whose data does not
match its params refuses the plan, naming ``terms.features.<role>``). The data layout
digest covers the dataset, the id scheme, the overlap and the train/test split.
"""

from __future__ import annotations

from fedledger.protocols.base import NodeSetup
from fedledger.protocols.nagar_vertical.node_ids import (
    A_ID,
    B_ID,
    C_ID,
    ROLE_A,
    ROLE_B,
    ROLE_C,
    holder_ids,
)
from fedledger.protocols.nagar_vertical.params import NagarVerticalParams
from fedledger.protocols.nagar_vertical.plan import PartyPlan, Scalar, data_digest, make_plan

#: breast_cancer's feature count
FEATURES = 30
#: the roles whose signed result every round block holds
REPORTERS = (ROLE_A, ROLE_B)


def vertical_roles(p: NagarVerticalParams) -> dict[str, str]:
    """role -> node id of every party of the plan."""
    roles = {ROLE_A: A_ID, ROLE_B: B_ID}
    if p.decryptor == "coordinator":
        roles[ROLE_C] = C_ID
    else:
        roles.update({h: h for h in holder_ids(p.committee)})
    return roles


def vertical_plan(
    setup: NodeSetup[NagarVerticalParams], own_columns: int | None = None
) -> PartyPlan:
    """The plan this node expects; ``own_columns``: a party's own data's column count."""
    p = setup.params
    svc = setup.services
    roles = vertical_roles(p)
    parties = {role: svc.address_of(node) for role, node in roles.items()}
    lead = C_ID if p.decryptor == "coordinator" else B_ID
    columns = {ROLE_A: p.features_a, ROLE_B: FEATURES - p.features_a}
    role = next((r for r, n in roles.items() if n == setup.node_id), None)
    if own_columns is not None and role in columns:
        columns[role] = own_columns
    terms: dict[str, Scalar] = {
        "model": "logreg-taylor",
        "features.party_a": columns[ROLE_A],
        "features.party_b": columns[ROLE_B],
        "labels": ROLE_B,
        "optimizer": "minibatch-gd",
        "batch_size": p.batch_size,
        "lr": p.lr,
        "l2": p.l2,
        "intercept": p.intercept,
        "he": "paillier",
        "key_bits": p.key_bits,
        "frac_bits": p.frac_bits,
        "decryptor": p.decryptor,
        "privacy": "none",
    }
    if p.decryptor == "committee":
        terms |= {"committee": p.committee, "threshold": p.threshold}
    data = data_digest(
        dataset="breast_cancer",
        ids="case-<row>",
        overlap=p.overlap,
        test_fraction=p.test_fraction,
        split="sha256(seed/id)",
    )
    address = svc.address_of(lead)
    return make_plan("vertical", address, address, parties, setup.horizon.length, data, terms)


def vertical_rules(plan: PartyPlan) -> list[str]:
    """The vertical mode's own plan rules (each problem names the value and the rule)."""
    out: list[str] = []
    roles = {r for r, _ in plan.parties}
    if not {ROLE_A, ROLE_B} <= roles:
        out.append(f"parties {sorted(roles)}; vertical FL needs {ROLE_A} and {ROLE_B}")
    decryptor = plan.term("decryptor")
    if decryptor == "coordinator" and ROLE_C not in roles:
        out.append("decryptor coordinator without a coordinator party")
    elif decryptor == "committee":
        m, t = plan.term("committee"), plan.term("threshold")
        holders = set(holder_ids(m)) if isinstance(m, int) and 0 < m <= 16 else set()
        if not holders or not isinstance(t, int) or not 1 <= t <= m or holders != roles - {
            ROLE_A,
            ROLE_B,
        }:
            out.append(f"committee {m!r}, threshold {t!r}; allowed 1 <= t <= m, m holders")
    elif decryptor != "coordinator":
        out.append(f"decryptor {decryptor!r}; allowed coordinator, committee")
    bits = plan.term("key_bits")
    if not isinstance(bits, int) or bits < 256:
        out.append(f"key_bits {bits!r}; allowed >= 256")
    for name in ("features.party_a", "features.party_b", "batch_size", "frac_bits"):
        value = plan.term(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            out.append(f"{name} {value!r}; allowed an int >= 1")
    return out
