"""Privacy layer: differential privacy (dp/), homomorphic aggregation (he/).

Importing it registers the ``dp_sgd`` solver in :data:`fedledger.learning.solvers.SOLVERS`.
"""

import fedledger.privacy.dp.solver  # noqa: F401  (registers the dp_sgd solver)
