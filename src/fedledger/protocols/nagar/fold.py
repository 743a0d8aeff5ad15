"""How every device turns a block's vectors into its model state (pure, no IO):

- stats: the count vectors -> S_k (own) and A (Konecny's statistics);
- grad: the full gradient (1/n_r) sum_k n_k g_k over the included devices (each device
  sends its mean gradient g_k = G_k / n_k, so a fixed-point encoding bounds it);
- update: w <- w + A sum_k c_k Delta_k with c_k = n_k / n_r (weighted) or 1 / K_r,
  applied only when at least ``min_updates`` devices are included.

Both come from the weighted total sum_k w_k v_k (:func:`fold_total`), which under
encryption is the committee's decrypted aggregate and otherwise the plaintext sum.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedledger.learning.fsvrg import aggregation_scaling, scaling
from fedledger.protocols.nagar.chainstate import Included
from fedledger.protocols.nagar.messages import GRAD, STATS, UPDATE
from fedledger.protocols.nagar.params import NagarParams
from fedledger.protocols.nagar.secure import weights_of


class ModelState:
    def __init__(self, initial: np.ndarray, params: NagarParams, address: bytes) -> None:
        self.weights = np.asarray(initial, dtype=np.float64).copy()
        self.params = params
        self.address = address
        self.full_grad = np.zeros_like(self.weights)
        self.s_diag = np.ones_like(self.weights)
        self.a_diag = np.ones_like(self.weights)

    def fold(self, phase: str, items: Sequence[Included], vecs: Sequence[np.ndarray]) -> bool:
        """Apply one block's vectors; whether the block changed the model state."""
        if not items:
            return False
        vs = [np.asarray(v, dtype=np.float64) for v in vecs]
        ns = np.array([i.sub.model.num_samples for i in items], dtype=np.float64)
        if phase == STATS:
            n = int(ns.sum())
            total = np.sum(vs, axis=0)
            if self.params.a_scaling:
                self.a_diag = aggregation_scaling(vs)
            for item, v in zip(items, vs, strict=True):
                if item.sender == self.address and self.params.s_scaling:
                    self.s_diag = scaling(v, item.sub.model.num_samples, total, n)
            return True
        if phase in (GRAD, UPDATE):
            ws = weights_of(phase, self.weighted, items)
            total = np.sum([w * v for w, v in zip(ws, vs, strict=True)], axis=0)
            return self.fold_total(phase, items, total)
        return False

    @property
    def weighted(self) -> bool:
        return self.params.weighted or self.params.optimizer == "fedavg"

    def fold_total(self, phase: str, items: Sequence[Included], total: np.ndarray) -> bool:
        """Apply the weighted total sum_k w_k v_k of a grad or update block."""
        if not items:
            return False
        total = np.asarray(total, dtype=np.float64)
        if phase == GRAD:
            self.full_grad = total / sum(i.sub.model.num_samples for i in items)
            return True
        if phase == UPDATE:
            if len(items) < self.params.min_updates:
                return False
            step = total / float(sum(weights_of(phase, self.weighted, items)))
            if self.params.optimizer == "fsvrg" and self.params.a_scaling:
                step = self.a_diag * step
            self.weights = self.weights + step
            return True
        return False
