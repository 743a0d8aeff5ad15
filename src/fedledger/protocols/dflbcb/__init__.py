"""DFLBCB (Yang 2022, arXiv 2205.11137): committee PBFT plus a Vyper state contract.

So far this package holds the paper's rules as pure functions (``election``, ``timer``,
``rewards``); the node state machines and the protocol registration come next.
"""
