"""The composition root: builds an experiment's nodes from a config and the protocol's
declared resources (chains, blob stores, keys, root data), below both hosts, so the
simulator and the real node build the same nodes from the same code."""
