"""Off-chain storage: content ids and the content-addressed blob store."""

from fedledger.storage.blobs import BlobCorruptError, BlobError, BlobNotFoundError, BlobStore
from fedledger.storage.cid import InvalidCidError, cid_from_sha256, cid_of, sha256_of_cid

__all__ = [
    "BlobCorruptError",
    "BlobError",
    "BlobNotFoundError",
    "BlobStore",
    "InvalidCidError",
    "cid_from_sha256",
    "cid_of",
    "sha256_of_cid",
]
