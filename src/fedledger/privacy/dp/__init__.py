"""Differential privacy: clipping and noise mechanisms, privacy accountants, DP-SGD.

The mechanisms live in :mod:`.mechanisms`, the accountants (and their registry
``ACCOUNTANTS``) in :mod:`.accountants`, DP-SGD training on flat weights in :mod:`.dpsgd`.
"""
