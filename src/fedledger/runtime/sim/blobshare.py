"""One copy of each blob in a simulated run, however many nodes fetch it.

In a real deployment every fetch brings a node its own copy of a blob, and the node
decodes it into its own weights. In the simulator all nodes live in one process: at
1,000 PoS-BFL devices each device fetches every one of the ~960 accepted models of a
round, and a private copy per fetch (plus a private decode of it) is 1,000 x 960 x 51 KB,
far past 8 GiB. The bytes of a content id are the same for every fetch (a store's reads
are checked against the id), so the simulator hands every fetch of a content id one
:class:`SharedBlob`, from a :class:`BlobShare` (an LRU bounded by bytes).

A :class:`SharedBlob` is ``bytes`` with a memo for what pure functions of those bytes
computed: :meth:`fedledger.protocols.kit.blobs.ModelBlobs.check` keeps the decoded,
checked weights there (read-only numpy arrays), so nodes share one decode. Each node
still hashes the bytes itself (the check its real counterpart makes). A node that
wants to change shared weights must copy them first; writing raises ``ValueError``.
Real nodes get plain ``bytes`` and decode their own copy, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from fedledger.errors import FedledgerError

if TYPE_CHECKING:
    from fedledger.storage.blobs import BlobStore

#: Default bound of the bytes a :class:`BlobShare` keeps (evicted blobs stay alive
#: while some node still holds them; a later fetch then makes a new shared copy).
DEFAULT_CAPACITY = 512 * 1024 * 1024


class SharedBlob(bytes):
    """A blob's bytes, shared by every fetch of it in one simulated run, with a memo
    (``shared_memo``) of values computed from them alone."""

    shared_memo: dict[Hashable, Any]

    def __new__(cls, data: bytes) -> SharedBlob:
        blob = super().__new__(cls, data)
        blob.shared_memo = {}
        return blob


class BlobShare:
    """Blobs read from the nodes' stores, one :class:`SharedBlob` per content id, the
    most recently used first kept up to ``capacity`` bytes in all."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"blob share capacity {capacity}: bytes, >= 0")
        self.capacity = int(capacity)
        self.size = 0  # bytes now kept
        self.hits = 0
        self.reads = 0
        self._kept: OrderedDict[str, SharedBlob] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    def read(self, store: BlobStore | None, cid: str) -> bytes | None:
        """The blob ``cid`` from ``store``, or None when the store lacks it or ``cid``
        is malformed (it may come from a peer's message). A blob this share keeps is
        not read again: the store need only hold it (its bytes are those of ``cid``)."""
        if store is None:
            return None
        try:
            if not store.has(cid):
                return None
            kept = self._kept.get(cid)
            if kept is not None:
                self._kept.move_to_end(cid)
                self.hits += 1
                return kept
            data = store.get(cid)
        except (FedledgerError, ValueError):
            return None
        self.reads += 1
        blob = SharedBlob(data)
        self._keep(cid, blob)
        return blob

    def _keep(self, cid: str, blob: SharedBlob) -> None:
        if len(blob) > self.capacity:
            return
        self._kept[cid] = blob
        self.size += len(blob)
        while self.size > self.capacity:
            _, old = self._kept.popitem(last=False)
            self.size -= len(old)
