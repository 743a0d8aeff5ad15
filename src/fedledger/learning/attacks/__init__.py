"""Attacks on learning, as wrappers around honest behaviour; importing this registers them.

Data poisoning: label_flip, random_labels, random_data, gaussian_data (data); backdoor
(backdoor).
Model poisoning: gaussian_noise, random_model, sign_flip, scaling (model); alie, ipm,
min_max, min_sum (omniscient). Behaviour: lazy, free_rider, sybil (behaviour).
"""

from __future__ import annotations

from fedledger.learning.attacks import backdoor, behaviour, data, model, omniscient
from fedledger.learning.attacks import dfl as dfl
from fedledger.learning.attacks.base import ATTACKS, Attack, AttackContext

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackContext",
    "backdoor",
    "behaviour",
    "data",
    "model",
    "omniscient",
]
