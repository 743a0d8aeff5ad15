"""Committed batches as ledger blocks, each carrying its 2f+1 commit certificate.

``block_of`` turns an :class:`~.actions.Execute` into a ``ledger.records.Block`` at
height ``seq`` (PBFT sequence numbers start at 1, the genesis block is height 0): its
transactions are the batch, so ``header.tx_root`` is the digest the commits sign, and
``header.extra`` is the :class:`~.messages.CommitCertificate`; the header timestamp is
the pre-prepare's. The header is signed by the node that writes the block to its own
chain (``ledger.verify`` and ``fedledger chain verify`` check a proposer signature on
every block): the primary cannot sign blocks that each replica builds locally, and the
agreement every honest replica shares is the batch, its digest and the certificate,
which ``certificate_ok`` checks against the membership.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from fedledger.consensus.pbft.actions import Execute
from fedledger.consensus.pbft.checks import Checker, Drop
from fedledger.consensus.pbft.messages import CommitCertificate
from fedledger.crypto.keys import KeyPair, PublicKey
from fedledger.ledger.records import Block, sign


def block_of(executed: Execute, parent: bytes, keypair: KeyPair) -> Block:
    """The signed block for one executed batch, on top of block ``parent``."""
    cert = executed.certificate
    block = Block.create(parent, executed.seq, keypair.address, cert.preprepare.timestamp,
                         tuple(executed.batch), cert)
    return sign(block, keypair)


def certificate_ok(
    block: Block, members: Sequence[PublicKey], clients: Mapping[bytes, PublicKey]
) -> str | None:
    """None if ``block`` carries a valid commit certificate for its height and
    transactions under ``members``; otherwise the reason it does not."""
    cert = block.header.extra
    if not isinstance(cert, CommitCertificate):
        return f"header.extra is {type(cert).__name__}, not a CommitCertificate"
    if cert.seq != block.height:
        return f"the certificate is for sequence {cert.seq}, the block is at {block.height}"
    if cert.digest != block.header.tx_root:
        return "the certificate's digest is not the block's tx_root"
    try:
        Checker(tuple(members), clients).committed(cert, block.transactions)
    except Drop as err:
        return str(err)
    return None
