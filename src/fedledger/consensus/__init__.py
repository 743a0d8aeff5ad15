"""Consensus engines and rules, written once for every protocol.

``consensus.pbft``: a sans-IO Castro-Liskov PBFT replica (requests, batching, three-phase
agreement, checkpoints and watermarks, view change, catch-up), its client, Byzantine
fault switches, a block builder for committed batches and a deterministic test network.
``consensus.abci``: the narrow boundary between consensus and application (check,
propose, validate, apply). ``consensus.committee``: the seeded role shuffle, weighted
committee sampling from VRF outputs (exact arithmetic) and binomial sortition.
``consensus.selection``: highest stake, stake lottery, proof of work with retargeting.
The engines here know nothing of protocols, hosts or experiments: they take method calls
carrying the current time and return actions.
"""
