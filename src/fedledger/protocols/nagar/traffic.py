"""Limits on consortium vault traffic at a storage member (Nagar Sec. III-B).

In a step, every device sends each storage member one ``VaultMsg`` with the parts that
member keeps of the device's sealed blob: the chunks it holds (``min(REPLICAS, m)`` of
the m) and its key share (:func:`~fedledger.protocols.nagar.vault.member_parts`). A
member therefore takes at most :func:`parts_per_step` parts per device and step, each no
larger than :func:`part_limit` of the largest blob the plan lets a device send. Beyond
that the member refuses and counts, by reason:

- ``vault_flood``: a message that would take a device past its parts for the step (a
  second message, or one with too many parts); nothing of it is stored;
- ``vault_oversize``: a part larger than the plan's largest honest part; nothing of the
  message is stored;
- ``vault_duplicate``: a part the member already stores (sent again, or twice in one
  message); it is not stored again, the message's other parts are.

Pure bookkeeping (no IO): the node passes what its store holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fedledger.privacy.he.encoding import Layout
from fedledger.privacy.he.paillier import CipherVector
from fedledger.protocols.nagar.vault import MAX_PART, REPLICAS, SHARE_BYTES, digest

VAULT_FLOOD = "vault_flood"
VAULT_OVERSIZE = "vault_oversize"
VAULT_DUPLICATE = "vault_duplicate"
#: AES-GCM's tag: a sealed blob's ciphertext is the blob plus 16 bytes
TAG_BYTES = 16


def parts_per_step(m: int) -> int:
    """Parts one device sends one member per step: the chunks it holds and one share."""
    return min(REPLICAS, m) + 1


def part_limit(blob_bytes: int, m: int) -> int:
    """The largest honest part when the largest blob is ``blob_bytes``: a chunk of its
    AES-GCM ciphertext cut in ``m``, or a key share (index and value)."""
    chunk = -(-(blob_bytes + TAG_BYTES) // m)
    return min(MAX_PART, max(chunk, 2 + SHARE_BYTES))


def cipher_blob_bytes(n: int, layout: Layout, length: int) -> int:
    """The size of a device's Paillier blob of ``length`` coordinates (the encoding is
    fixed width: every ciphertext takes twice the modulus' bytes)."""
    count = layout.count(length)
    return len(CipherVector(n, layout, length, 1, (1,) * count).to_bytes())


def plain_blob_bytes(encode: Callable[[np.ndarray], bytes], shape: tuple[int, ...]) -> int:
    """The size of a device's plaintext vector blob (safetensors of a fixed shape)."""
    return len(encode(np.zeros(shape, np.float32)))


@dataclass
class VaultIntake:
    """A storage member's parts taken per device in the current step."""

    allowed: int
    max_part: int
    step: int = 0
    taken: dict[str, int] = field(default_factory=dict)

    def admit(
        self, step: int, sender: str, parts: Sequence[bytes], stored: Callable[[str], bool]
    ) -> tuple[list[bytes], list[tuple[str, str]]]:
        """The parts of ``sender``'s message to store, and the refusals (reason,
        detail) to count. ``stored`` says whether the member already holds a part id."""
        if step != self.step:
            self.step, self.taken = step, {}
        before = self.taken.get(sender, 0)
        if before + len(parts) > self.allowed:
            detail = (
                f"{sender} sent {before} + {len(parts)} parts in step {step}; allowed "
                f"{self.allowed} per device and step"
            )
            return [], [(VAULT_FLOOD, detail)]
        big = [len(p) for p in parts if len(p) > self.max_part]
        if big:
            detail = f"{sender}: a part of {big[0]} bytes; allowed <= {self.max_part}"
            return [], [(VAULT_OVERSIZE, detail)]
        self.taken[sender] = before + len(parts)
        keep: list[bytes] = []
        refusals: list[tuple[str, str]] = []
        seen: set[str] = set()
        for part in parts:
            cid = digest(part)
            if cid in seen or stored(cid):
                refusals.append((VAULT_DUPLICATE, f"{sender} sent part {cid} again"))
                continue
            seen.add(cid)
            keep.append(part)
        return keep, refusals
