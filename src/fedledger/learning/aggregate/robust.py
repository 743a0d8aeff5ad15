"""The Byzantine-robust family of aggregation rules; importing this registers them all.

krum, multi_krum, bulyan (robust_distance); median, trimmed_mean (robust_coordinate);
centred_clipping, geometric_median (robust_clip); fltrust (fltrust).
"""

from __future__ import annotations

from fedledger.learning.aggregate import fltrust, robust_clip, robust_coordinate, robust_distance

__all__ = ["fltrust", "robust_clip", "robust_coordinate", "robust_distance"]
