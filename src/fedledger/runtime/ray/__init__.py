"""Scaling out: the simulator's learning jobs on a Ray cluster (issue 18).

:mod:`.options` and :mod:`.choose` import nothing of Ray; :mod:`.executor` and
:mod:`.worker` import it when an executor is made, so fedledger runs without Ray
installed until ``--executor ray`` is asked for.
"""

from __future__ import annotations

from fedledger.runtime.ray.choose import EXECUTOR_NAMES, executor_usage, make_executor
from fedledger.runtime.ray.options import RayOptions, RayUnavailableError

__all__ = [
    "EXECUTOR_NAMES",
    "RayOptions",
    "RayUnavailableError",
    "executor_usage",
    "make_executor",
]
