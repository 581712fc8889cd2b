"""The block store: blocks, their commit certificates, results and a transaction index, kept in the SAME
`KVStore` as the ledger state so that one atomic batch per block covers all of it.

Keys (node-side records, outside the state tree; the ledger owns ``m/``, ``s/``, ``t/`` and ``i/``):

    b/block/<u64be height>    Block bytes
    b/commit/<u64be height>   CommitCertificate bytes: the certificate that finalized that height here
                              (block h+1 carries a certificate for h too, possibly with other signatures)
    b/results/<u64be height>  canonical encode_value([result bytes, ...]): the TxResults, in block order
    b/tx/<tx hash>            canonical encode_value([height, index]); a hash committed twice points at
                              its latest occurrence

The block store never writes: ``puts_for`` returns the records, and the caller hands them to
``Ledger.commit(execution, extra_puts=...)`` with the state of that block (one batch, one fsync).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from consensus.encoding import decode_value, encode_value
from consensus.kv import KVStore
from consensus.types import Block, CommitCertificate
from contracts.execute import META_LAST, LastBlock

__all__ = ["BLOCK", "COMMIT", "RESULTS", "TX", "BlockStore"]

BLOCK = b"b/block/"
COMMIT = b"b/commit/"
RESULTS = b"b/results/"
TX = b"b/tx/"


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "big")


class BlockStore:
    """Reads of the chain's blocks over the node's store; writes go through the ledger's commit batch."""

    def __init__(self, store: KVStore) -> None:
        self.store = store

    # ---- writing (through the caller's batch) ----------------------------------------------------------

    @staticmethod
    def puts_for(block: Block, commit: CommitCertificate, tx_hashes: Sequence[bytes],
                 results: Sequence[bytes] | None = None) -> dict[bytes, bytes]:
        """The records of one committed block, to add to the ledger's commit batch. `tx_hashes` (and
        `results`, if given) are in block order, one per transaction."""
        h = block.height
        if commit.height != h or commit.block_hash != block.hash:
            raise ValueError(f"the commit certificate is not for block {h}")
        if len(tx_hashes) != len(block.txs) or (results is not None and len(results) != len(block.txs)):
            raise ValueError("one transaction hash (and result) per transaction of the block")
        puts = {BLOCK + _u64(h): block.encode(), COMMIT + _u64(h): commit.encode()}
        if results is not None:
            puts[RESULTS + _u64(h)] = encode_value(list(results))
        for i, tx_hash in enumerate(tx_hashes):
            puts[TX + tx_hash] = encode_value([h, i])
        return puts

    # ---- reading ---------------------------------------------------------------------------------------

    def height(self) -> int:
        """The last committed height (0 before block 1, or on an empty store)."""
        raw = self.store.get(META_LAST)
        return 0 if raw is None else LastBlock.decode(raw).height

    def block(self, height: int) -> Block | None:
        if not 1 <= height < 2**64:
            return None
        raw = self.store.get(BLOCK + _u64(height))
        return None if raw is None else Block.decode(raw)

    def block_bytes(self, height: int) -> bytes | None:
        """The stored canonical bytes of a block (what block sync sends), without decoding them."""
        if not 1 <= height < 2**64:
            return None
        return self.store.get(BLOCK + _u64(height))

    def commit(self, height: int) -> CommitCertificate | None:
        if not 1 <= height < 2**64:
            return None
        raw = self.store.get(COMMIT + _u64(height))
        return None if raw is None else CommitCertificate.decode(raw)

    def results(self, height: int) -> tuple[bytes, ...] | None:
        """The encoded TxResults of a block, in block order (None if the block is not stored)."""
        if not 1 <= height < 2**64:
            return None
        raw = self.store.get(RESULTS + _u64(height))
        if raw is None:
            return None
        value = decode_value(raw)
        if not isinstance(value, tuple) or not all(type(r) is bytes for r in value):
            raise ValueError(f"corrupt results record at height {height}")
        return tuple(r for r in value if isinstance(r, bytes))

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """(height, index in the block) of a committed transaction, or None."""
        if type(tx_hash) is not bytes or len(tx_hash) != 32:
            return None
        raw = self.store.get(TX + tx_hash)
        if raw is None:
            return None
        value = decode_value(raw)
        if isinstance(value, tuple) and len(value) == 2:
            height, index = value
            if type(height) is int and type(index) is int:
                return height, index
        raise ValueError(f"corrupt transaction index entry for {tx_hash.hex()}")

    def iter_blocks(self, start: int = 1) -> Iterator[Block]:
        """The stored blocks from height `start` upward, in height order."""
        for _, raw in self.store.iterate(BLOCK, start=BLOCK + _u64(max(start, 1))):
            yield Block.decode(raw)
