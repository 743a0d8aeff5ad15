"""Which ``nagar-vertical`` keys belong to which ``mode``, and the per-mode checks.

A key that only one mode reads, set explicitly in a config of another mode, is an error
that names the key, the mode and the modes that read it (a silent no-op would hide a
typo or a mode left at its default).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fedledger.protocols.nagar_vertical.params import NagarVerticalParams

#: Keys each mode reads (besides the plan and other keys every mode shares).
MODE_KEYS: dict[str, frozenset[str]] = {
    "vertical": frozenset(
        {"overlap", "features_a", "batch_size", "lr", "l2", "test_fraction", "key_bits",
         "frac_bits", "decryptor", "committee", "threshold"}
    ),
    "transfer": frozenset(
        {"overlap", "features_a", "lr", "l2", "key_bits", "frac_bits", "dim", "gamma",
         "decryptor", "committee", "threshold"}
    ),
    "sharing": frozenset(
        {"devices", "gateways", "gateway_threshold", "transport", "epsilon_reading",
         "epsilon_total", "per_work", "hour_seconds"}
    ),
}
_ALL = frozenset().union(*MODE_KEYS.values())


def check_mode(p: NagarVerticalParams) -> None:
    """Refuse keys of another mode and values the chosen mode cannot run with."""
    for key in sorted(p.model_fields_set & _ALL - MODE_KEYS[p.mode]):
        readers = [m for m, keys in MODE_KEYS.items() if key in keys]
        raise ValueError(
            f"{key} is set but mode is {p.mode!r}; {key} is read by mode {' and '.join(readers)}"
        )
    if p.mode == "sharing":
        for key in ("epsilon_reading", "epsilon_total", "per_work", "hour_seconds"):
            if not math.isfinite(getattr(p, key)):
                raise ValueError(f"{key}={getattr(p, key)}; allowed: a finite number (it is "
                                 "a term of the plan on chain)")  # fmt: skip
        if p.gateway_threshold > p.gateways:
            raise ValueError(
                f"gateway_threshold={p.gateway_threshold} > gateways={p.gateways}; "
                "allowed: 1 <= t <= m"
            )
        if p.epsilon_reading > p.epsilon_total:
            raise ValueError(
                f"epsilon_reading={p.epsilon_reading} > epsilon_total={p.epsilon_total}: no "
                "reading could ever be shared; allowed: epsilon_reading <= epsilon_total"
            )


def node_count(p: NagarVerticalParams) -> tuple[int, str]:
    """The ``nodes.count`` a transfer or sharing run needs, and why."""
    if p.mode == "transfer" and p.decryptor == "coordinator":
        return 3, "transfer mode has exactly 3 nodes (source A, target B, coordinator C)"
    if p.mode == "transfer":
        return 2 + p.committee, f"transfer mode with a committee of {p.committee} holders"
    gateways = p.gateways if p.transport == "shamir" else 0
    why = f"sharing mode with {p.devices} IoT devices, 1 trainer"
    why += f" and {gateways} gateways (transport shamir)" if gateways else " (transport sealed)"
    return p.devices + 1 + gateways, why
