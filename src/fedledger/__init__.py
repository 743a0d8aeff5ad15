"""fedledger: decentralized federated learning secured by a blockchain."""

__version__ = "0.1.0"
