"""Privacy layer: differential privacy (dp/), homomorphic aggregation (he/)."""
