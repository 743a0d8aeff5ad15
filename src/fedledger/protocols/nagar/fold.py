"""How every device turns a block's vectors into its model state (pure, no IO):

- stats: the count vectors -> S_k (own) and A (Konecny's statistics);
- grad: the full gradient (1/n_r) sum_k G_k over the included devices;
- update: w <- w + A sum_k c_k Delta_k with c_k = n_k / n_r (weighted) or 1 / K_r,
  applied only when at least ``min_updates`` devices are included.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedledger.learning.fsvrg import aggregation_scaling, scaling
from fedledger.protocols.nagar.chainstate import Included
from fedledger.protocols.nagar.messages import GRAD, STATS, UPDATE
from fedledger.protocols.nagar.params import NagarParams


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
        if phase == GRAD:
            self.full_grad = np.sum(vs, axis=0) / ns.sum()
            return True
        if phase == UPDATE:
            if len(items) < self.params.min_updates:
                return False
            p = self.params
            weighted = p.weighted or p.optimizer == "fedavg"
            coef = ns / ns.sum() if weighted else np.full(len(vs), 1.0 / len(vs))
            step = np.sum([c * v for c, v in zip(coef, vs, strict=True)], axis=0)
            if p.optimizer == "fsvrg" and p.a_scaling:
                step = self.a_diag * step
            self.weights = self.weights + step
            return True
        return False
