"""What nodes say to each other over the peer transport (node/p2p): one canonical envelope per message.

    Envelope = [kind u8, payload bytes]

| kind | payload                                  | meaning                                            |
|------|------------------------------------------|----------------------------------------------------|
| 1    | consensus.tendermint.ProposalMessage     | a signed proposal with its block                   |
| 2    | consensus.types.Vote                     | a signed prevote or precommit                      |
| 3    | TxBatch                                  | transaction gossip: raw transactions, in order     |
| 4    | Status                                   | "my last committed height is ..., my peers are ..." |
| 5    | SyncRequest                              | "send me the blocks from ..." (block sync)         |
| 6    | SyncBlock                                | a committed block with the commit that finalised it |
| 7    | VaultBlob                                | a vault ciphertext (replicated among validators)   |
| 8    | VaultRequest                             | "send me this ciphertext" (a node that lacks one)  |

Decoding checks everything (consensus.encoding); a peer that sends garbage is the peer's problem, never a crash.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from consensus.encoding import HASH, U8, U32, U64, Bytes, ListOf, Nested, Struct, field_
from consensus.types import MAX_TX_BYTES, Block, CommitCertificate

PROPOSAL, VOTE, TX, STATUS, SYNC_REQUEST, SYNC_BLOCK, VAULT_BLOB, VAULT_REQUEST = 1, 2, 3, 4, 5, 6, 7, 8
KINDS = {PROPOSAL, VOTE, TX, STATUS, SYNC_REQUEST, SYNC_BLOCK, VAULT_BLOB, VAULT_REQUEST}
#: A message carries at most one block (ConsensusParams.max_block_bytes is 16 MiB at most by default).
MAX_MESSAGE = 24 * 1024 * 1024
#: Blocks sent for one sync request.
SYNC_BATCH = 32
#: Transactions in one gossip message, and their bytes in all (a batch is cut when either is reached).
MAX_BATCH_TXS = 4096
MAX_BATCH_BYTES = 4 * 1024 * 1024
#: Peers a status lists (the node's connected peers; a bigger network lists the first this many).
MAX_STATUS_LINKS = 256


@dataclass(frozen=True)
class Envelope(Struct):
    kind: int = field_(U8)
    payload: bytes = field_(Bytes(max=MAX_MESSAGE))


@dataclass(frozen=True)
class Status(Struct):
    """The sender's last committed height and the node ids of the peers it is connected to right now, in
    ascending order: a node relays gossip to a peer only if the peer has no direct link to where it came from
    (docs/protocol.md, section 14, "Relay")."""

    height: int = field_(U64)
    links: tuple[bytes, ...] = field_(ListOf(HASH, MAX_STATUS_LINKS, unique_sorted=True))


@dataclass(frozen=True)
class TxBatch(Struct):
    """Transactions for the mempool, as raw bytes, in the order the sender admitted them."""

    txs: tuple[bytes, ...] = field_(ListOf(Bytes(max=MAX_TX_BYTES + 1024), MAX_BATCH_TXS))


@dataclass(frozen=True)
class SyncRequest(Struct):
    from_height: int = field_(U64)
    count: int = field_(U32)


@dataclass(frozen=True)
class SyncBlock(Struct):
    block: Block = field_(Nested(Block))
    commit: CommitCertificate = field_(Nested(CommitCertificate))


def envelope(kind: int, payload: bytes) -> bytes:
    return Envelope(kind, payload).encode()


def tx_batches(raws: Iterable[bytes]) -> Iterator[bytes]:
    """`TX` envelopes carrying `raws` in order, each within MAX_BATCH_TXS transactions and MAX_BATCH_BYTES."""
    batch: list[bytes] = []
    size = 0
    for raw in raws:
        if batch and (len(batch) >= MAX_BATCH_TXS or size + len(raw) > MAX_BATCH_BYTES):
            yield envelope(TX, TxBatch(tuple(batch)).encode())
            batch, size = [], 0
        batch.append(raw)
        size += len(raw)
    if batch:
        yield envelope(TX, TxBatch(tuple(batch)).encode())


@dataclass(frozen=True)
class VaultBlob(Struct):
    hash: bytes = field_(HASH)
    data: bytes = field_(Bytes(max=MAX_MESSAGE - 1024))


@dataclass(frozen=True)
class VaultRequest(Struct):
    hash: bytes = field_(HASH)
