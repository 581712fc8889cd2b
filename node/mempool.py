"""The mempool: transactions that passed the ledger's checks and wait for a block.

Rules of this module (MEM-1..MEM-6; collected in docs/operations.md):

- MEM-1  Admission, cheapest refusal first: a transaction already waiting (``duplicate``); a full pool
         (``mempool_full``: ``max_txs`` transactions or ``max_bytes`` bytes); bytes that are not a
         transaction (``malformed_tx``); a nonce the same sender already has waiting (``duplicate_nonce``);
         a sender with ``max_per_sender`` waiting (``sender_limit``); then the injected ``check`` (the
         ledger's stateless and stateful ``check_tx``), whose code is returned as is; finally a nonce more
         than ``max_per_sender`` past the account's next one (``nonce_too_far``), which could never be
         reached while the sender's slots are full.
- MEM-2  ``check`` runs exactly once per admitted transaction. Its hash then enters ``verified``, a
         bounded set the ledger consults (``Ledger(store, verified=...)``) so a block's execution never
         checks the same signature again. A transaction's hash covers its signature, so a hit is as good
         as a verification. Hashes leave the set with their transaction.
- MEM-3  ``reap`` returns transactions in arrival order across senders, but each sender's in ascending
         nonce order and contiguous from the account's next nonce (``next_nonce``, injected): a nonce gap
         waits until the missing transaction arrives. Each sender's run stops at the first transaction
         that does not fit the byte budget.
- MEM-4  ``remove_committed`` drops the transactions of a committed block (whatever their result);
         ``recheck`` drops the transactions whose nonce the account has since used (e.g. by a transaction
         that reached another node).
- MEM-5  ``referenced_blobs`` is the set of vault blobs pending transactions name: the ``payload_hash``
         of ``asset.issue`` and the ``package_hash`` of ``consent.grant``. The node accepts vault uploads
         only for blobs named by a pending or a committed transaction.
- MEM-6  No I/O, no clocks, no threads: the caller serialises access (``node.core.NodeCore`` holds a lock).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from consensus.app import CheckResult
from consensus.errors import DecodeError, ValidationError
from consensus.types import MAX_TX_BYTES, Tx
from contracts.txs import GrantConsent, IssueAsset

__all__ = [
    "MEMPOOL_CODES",
    "AddResult",
    "Mempool",
    "MempoolCode",
    "MiB",
    "PendingTx",
    "VerifiedCache",
    "referenced_blob",
]

MiB = 1024 * 1024


class MempoolCode(StrEnum):
    """The mempool's own refusal codes (the ledger's codes pass through unchanged)."""

    OK = "ok"
    DUPLICATE = "duplicate"
    MEMPOOL_FULL = "mempool_full"
    MALFORMED_TX = "malformed_tx"  # the same value as contracts.codes.Code.MALFORMED_TX
    DUPLICATE_NONCE = "duplicate_nonce"
    SENDER_LIMIT = "sender_limit"
    NONCE_TOO_FAR = "nonce_too_far"


MEMPOOL_CODES = frozenset(c.value for c in MempoolCode)


@dataclass(frozen=True)
class AddResult:
    """The verdict on one submitted transaction."""

    tx_hash: bytes
    code: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == MempoolCode.OK


@dataclass(frozen=True, slots=True)
class PendingTx:
    """A waiting transaction; ``seq`` is its arrival number, ``blob`` the vault blob it names (or b"")."""

    tx_hash: bytes
    raw: bytes
    sender: bytes
    nonce: int
    seq: int
    blob: bytes


class VerifiedCache:
    """A bounded set of transaction hashes (MEM-2): O(1) membership, insertion-ordered, and when full the
    oldest entries are evicted first. Only ever an optimisation: a miss costs a signature check."""

    __slots__ = ("_items", "limit")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the cache holds at least one hash")
        self.limit = limit
        self._items: dict[bytes, None] = {}

    def add(self, tx_hash: bytes) -> None:
        items = self._items
        if tx_hash in items:
            return
        while len(items) >= self.limit:
            del items[next(iter(items))]
        items[tx_hash] = None

    def discard(self, tx_hash: bytes) -> None:
        self._items.pop(tx_hash, None)

    def clear(self) -> None:
        self._items.clear()

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._items))


def referenced_blob(tx: Tx) -> bytes:
    """The vault blob `tx` names (MEM-5), or b"" (none, or a body that does not decode)."""
    if tx.type == "asset.issue" or tx.type == "consent.grant":
        return _blob_of(tx.type, tx.body)
    return b""


@functools.lru_cache(maxsize=16384)
def _blob_of(tx_type: str, body: bytes) -> bytes:
    # A pure function of the bytes, asked for the same transaction at admission, at commit and after it:
    # the body is decoded once.
    try:
        if tx_type == "asset.issue":
            return IssueAsset.decode(body).payload_hash
        return GrantConsent.decode(body).package_hash
    except (DecodeError, ValidationError):
        return b""


class Mempool:
    """Waiting transactions, admitted by `check` (MEM-1, MEM-2), reaped in per-sender nonce order (MEM-3)."""

    def __init__(self, check: Callable[[bytes], CheckResult], max_txs: int = 50_000,
                 max_bytes: int = 64 * MiB, max_per_sender: int = 1000, *, next_nonce: Callable[[bytes], int],
                 verified: VerifiedCache | None = None) -> None:
        if max_txs < 1 or max_bytes < 1 or max_per_sender < 1:
            raise ValueError("mempool limits must be positive")
        self._check = check
        self._next_nonce = next_nonce
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        #: Hashes whose signature verified; pass it to contracts.execute.Ledger(store, verified=...).
        self.verified = verified if verified is not None else VerifiedCache(2 * max_txs)
        self._by_hash: dict[bytes, PendingTx] = {}  # in arrival order
        self._by_sender: dict[bytes, dict[int, PendingTx]] = {}
        self._blobs: dict[bytes, int] = {}  # blob hash -> how many waiting transactions name it
        self._bytes = 0
        self._seq = 0

    # ---- admission (MEM-1, MEM-2) ----------------------------------------------------------------------

    def add(self, raw: bytes) -> AddResult:
        if type(raw) is not bytes:
            raise TypeError("a transaction is bytes")
        tx_hash = hashlib.sha256(raw).digest()
        if tx_hash in self._by_hash:
            return AddResult(tx_hash, MempoolCode.DUPLICATE, "the transaction is already waiting")
        if len(self._by_hash) >= self.max_txs or self._bytes + len(raw) > self.max_bytes:
            return AddResult(tx_hash, MempoolCode.MEMPOOL_FULL, "the mempool is full; retry later")
        try:
            tx = Tx.decode(raw, max_bytes=MAX_TX_BYTES + 1024)
        except (DecodeError, ValidationError) as e:
            return AddResult(tx_hash, MempoolCode.MALFORMED_TX, str(e))
        mine = self._by_sender.get(tx.sender)
        if mine is not None:
            if tx.nonce in mine:
                return AddResult(tx_hash, MempoolCode.DUPLICATE_NONCE,
                                 f"another transaction with nonce {tx.nonce} is already waiting")
            if len(mine) >= self.max_per_sender:
                return AddResult(tx_hash, MempoolCode.SENDER_LIMIT,
                                 f"the sender already has {len(mine)} transactions waiting")
        verdict = self._check(raw)
        if not verdict.ok:
            return AddResult(tx_hash, verdict.code, verdict.message)
        next_nonce = self._next_nonce(tx.sender)
        if tx.nonce >= next_nonce + self.max_per_sender:
            return AddResult(tx_hash, MempoolCode.NONCE_TOO_FAR,
                             f"nonce {tx.nonce} is too far ahead of the account's next nonce {next_nonce}")
        self._seq += 1
        entry = PendingTx(tx_hash, raw, tx.sender, tx.nonce, self._seq, referenced_blob(tx))
        self._by_hash[tx_hash] = entry
        self._by_sender.setdefault(tx.sender, {})[tx.nonce] = entry
        self._bytes += len(raw)
        if entry.blob:
            self._blobs[entry.blob] = self._blobs.get(entry.blob, 0) + 1
        self.verified.add(tx_hash)
        return AddResult(tx_hash, MempoolCode.OK)

    # ---- block building (MEM-3) ------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether some waiting transaction could go into a block now (not only ones behind a nonce gap)."""
        return bool(self._by_hash) and bool(self.reap(1, 1 << 40))

    def reap(self, max_txs: int, max_bytes: int, *, overhead: int = 0) -> list[bytes]:
        """Up to `max_txs` transactions of at most `max_bytes` in all (each counted as its length plus
        `overhead`), in MEM-3 order. Nothing is removed: the block's commit does that."""
        out: list[bytes] = []
        size = 0
        expected: dict[bytes, int] = {}
        blocked: set[bytes] = set()
        for entry in self._by_hash.values():
            if len(out) >= max_txs:
                break
            sender = entry.sender
            if sender in blocked:
                continue
            nonce = expected.get(sender)
            if nonce is None:
                nonce = self._next_nonce(sender)
            if entry.nonce != nonce:
                expected[sender] = nonce
                continue  # a gap: wait for the missing nonce (or stale: recheck drops it)
            # Take this one, then its successors that arrived earlier (they were passed over as gapped);
            # successors that arrive later are taken when the scan reaches them.
            chain = self._by_sender[sender]
            cur: PendingTx | None = entry
            while cur is not None:
                cost = len(cur.raw) + overhead
                if size + cost > max_bytes:
                    blocked.add(sender)
                    break
                out.append(cur.raw)
                size += cost
                nonce += 1
                if len(out) >= max_txs:
                    break
                cur = chain.get(nonce)
                if cur is not None and cur.seq > entry.seq:
                    cur = None
            expected[sender] = nonce
        return out

    # ---- after a block (MEM-4) -------------------------------------------------------------------------

    def remove_committed(self, tx_hashes: Iterable[bytes]) -> int:
        """Drop the committed transactions that were waiting here; returns how many."""
        n = 0
        for h in tx_hashes:
            entry = self._by_hash.get(h)
            if entry is not None:
                self._remove(entry)
                n += 1
        return n

    def recheck(self, senders: Iterable[bytes] | None = None) -> list[PendingTx]:
        """Drop the transactions whose nonce is below their account's next nonce, for `senders` (default:
        every sender with waiting transactions). Returns what was dropped."""
        dropped: list[PendingTx] = []
        targets = list(self._by_sender) if senders is None else list(dict.fromkeys(senders))
        for sender in targets:
            chain = self._by_sender.get(sender)
            if not chain:
                continue
            next_nonce = self._next_nonce(sender)
            stale = [e for n, e in chain.items() if n < next_nonce]
            for entry in stale:
                self._remove(entry)
            dropped.extend(stale)
        return dropped

    def _remove(self, entry: PendingTx) -> None:
        del self._by_hash[entry.tx_hash]
        chain = self._by_sender[entry.sender]
        del chain[entry.nonce]
        if not chain:
            del self._by_sender[entry.sender]
        self._bytes -= len(entry.raw)
        if entry.blob:
            left = self._blobs[entry.blob] - 1
            if left:
                self._blobs[entry.blob] = left
            else:
                del self._blobs[entry.blob]
        self.verified.discard(entry.tx_hash)

    # ---- queries ---------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    def contains(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    def get(self, tx_hash: bytes) -> bytes | None:
        """The raw bytes of a waiting transaction, or None."""
        entry = self._by_hash.get(tx_hash)
        return None if entry is None else entry.raw

    def next_nonce(self, sender: bytes, committed_next: int) -> int:
        """The nonce `sender`'s next transaction should carry: past the run of its waiting transactions that
        starts at `committed_next` (the account's next nonce in the committed state)."""
        chain = self._by_sender.get(sender, {})
        nonce = committed_next
        while nonce in chain:
            nonce += 1
        return nonce

    def waiting(self) -> list[bytes]:
        """The raw bytes of every waiting transaction, in arrival order."""
        return [e.raw for e in self._by_hash.values()]

    @property
    def pending_hashes(self) -> list[bytes]:
        """Hashes of the waiting transactions, in arrival order."""
        return list(self._by_hash)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def referenced_blobs(self) -> set[bytes]:
        """MEM-5: every blob a waiting transaction names."""
        return set(self._blobs)

    def references(self, blob_hash: bytes) -> bool:
        """Whether a waiting transaction names `blob_hash` (O(1))."""
        return blob_hash in self._blobs
