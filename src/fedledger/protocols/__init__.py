"""Protocols: deterministic, IO-free state machines, one object per node."""
