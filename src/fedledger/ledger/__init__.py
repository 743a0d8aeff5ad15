"""The ledger: signed records (records.py), Merkle trees (merkle.py), boundary
verification (verify.py), and the chain store and audit built on them.

Import from the submodules (``from fedledger.ledger.records import Block``); this package
file imports nothing, so loading one ledger module does not load the rest.
"""
