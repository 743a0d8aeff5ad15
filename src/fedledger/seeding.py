"""Deterministic seeds derived from an experiment seed and names.

Python's ``hash()`` of a string changes between processes, so every seed that depends
on a node id or a label goes through these functions instead.
"""

from __future__ import annotations

import hashlib


def stable_int(text: str) -> int:
    """A 63-bit integer that depends only on ``text``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def derive_seed(seed: int, *parts: str | int) -> int:
    """A 63-bit seed for one purpose (e.g. a node's round), stable across processes."""
    text = "/".join([str(seed), *(str(p) for p in parts)])
    return stable_int(text)
