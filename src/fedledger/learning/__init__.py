"""Learning core: datasets, partitions, models, local training, aggregation, attacks."""
