"""A node's privacy spending over a run: job costs in, cumulative (epsilon, delta) out.

A DP solver or a DP protocol step describes what it spent as a
:class:`~fedledger.learning.jobs.PrivacyCost` (steps of a noisy mechanism, its noise
multiplier and sampling rate). :class:`PrivacyLedger` composes a node's costs under one
accountant at one delta, answers the epsilon spent so far (what the node emits as its
``epsilon_spent`` metric) and whether a further cost would take it over its budget.
"""

from __future__ import annotations

import math

from fedledger.learning.jobs import PrivacyCost
from fedledger.privacy.dp.accountants import Accountant, PrivacySpent, make_accountant
from fedledger.privacy.dp.errors import PrivacyError


class PrivacyLedger:
    """Composes one node's privacy costs under ``accountant`` at ``delta``.

    budget: the epsilon the node may spend over the run (None: no cap). A ledger made
    with :meth:`for_cost` takes the accountant, delta and budget of its first cost; every
    later cost must name the same accountant and delta (mixing them has no single
    guarantee), else :class:`PrivacyError`.
    """

    def __init__(self, accountant: str, delta: float, budget: float | None = None) -> None:
        if budget is not None and not (budget > 0 and not math.isnan(budget)):
            raise PrivacyError(f"privacy budget must be > 0 (or None), got {budget!r}")
        self.accountant_name = accountant
        self.delta = float(delta)
        self.budget = budget
        self._accountant: Accountant = make_accountant(accountant)
        self._accountant.spent(self.delta)  # validates delta now, not at the first cost

    @classmethod
    def for_cost(cls, cost: PrivacyCost) -> PrivacyLedger:
        return cls(cost.accountant, cost.delta, cost.budget)

    def _check(self, cost: PrivacyCost) -> None:
        if cost.accountant != self.accountant_name or cost.delta != self.delta:
            raise PrivacyError(
                f"a privacy cost priced by {cost.accountant!r} at delta {cost.delta} cannot be "
                f"composed in a ledger of {self.accountant_name!r} at delta {self.delta}: use "
                "one accountant and one delta for every DP mechanism of a node"
            )

    def _add(self, accountant: Accountant, cost: PrivacyCost) -> None:
        if cost.mechanism not in ("gaussian", "laplace"):
            raise PrivacyError(f"mechanism must be gaussian or laplace, got {cost.mechanism!r}")
        accountant.step(
            cost.noise_multiplier,
            cost.sample_rate,
            cost.steps,
            "gaussian" if cost.mechanism == "gaussian" else "laplace",
        )

    def record(self, cost: PrivacyCost) -> PrivacySpent:
        """Add ``cost``; the (epsilon, delta) spent in all, after it."""
        self._check(cost)
        self._add(self._accountant, cost)
        return self.spent()

    def spent(self) -> PrivacySpent:
        """The (epsilon, delta) guarantee of every cost recorded so far (0 before any)."""
        return self._accountant.spent(self.delta)

    def spent_after(self, *costs: PrivacyCost) -> PrivacySpent:
        """What the ledger would show after ``costs`` too (nothing is recorded)."""
        for cost in costs:
            self._check(cost)
        trial = make_accountant(self.accountant_name)
        for step in self._accountant.history:
            trial.step(step.noise_multiplier, step.sample_rate, step.steps, step.mechanism)
        for cost in costs:
            self._add(trial, cost)
        return trial.spent(self.delta)

    def would_exceed(self, *costs: PrivacyCost) -> bool:
        """Whether ``costs`` on top of what is spent would take epsilon over the budget."""
        if self.budget is None or not costs:
            return False
        return self.spent_after(*costs).epsilon > self.budget

    @property
    def history_steps(self) -> int:
        """Noisy steps recorded so far."""
        return sum(s.steps for s in self._accountant.history)
