"""Additively homomorphic aggregation: fixed-point packing, Paillier, threshold Paillier.

- ``encoding``: float32 vectors to fixed-point integers packed in slots, and back;
- ``paillier``: vectors of packed Paillier ciphertexts (phe keys, gmpy2 arithmetic);
- ``threshold``: t-of-m threshold decryption with proofs of correct partials;
- ``rand``: seeded (simulator) or OS randomness; ``primes``: safe primes for the dealer.
"""
