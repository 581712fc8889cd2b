"""The node's core for ONE node: ledger, block store, mempool and vault over one store, synchronous and I/O
light. The HTTP API and the consensus driver are shells around it; it opens no sockets and reads no clock
(the caller passes the time).

Rules of this module (NODE-1..NODE-7; collected in docs/operations.md):

- NODE-1  One store holds state, blocks, commits, results, indexes and the vault bookkeeping: everything a
          block changes is written by ONE ``Ledger.commit`` batch with ``sync=True`` (one fsync). A crash
          between blocks loses nothing committed; reopening resumes at the same height and app hash.
- NODE-2  A node opens only the chain of its genesis: an empty store is initialised from it, a store made
          from another genesis is refused (``GenesisMismatch``).
- NODE-3  ``produce_block`` is the single-validator producer: when this node's key alone holds a quorum of
          the voting power it reaps the mempool, builds, executes and signs the block (round 0) and commits
          it. Block time is ``max(now, previous block time + 1)``.
- NODE-4  The vault accepts a blob only if a waiting transaction names it (``Mempool.referenced_blobs``) or a
          committed, successful one does (``v/ref/<hash>``, written in the block's batch for every
          ``asset.issue`` payload and ``consent.grant`` package whose result is ``ok``; its value names the
          object, so ``blob_owner`` is O(1) too). Anything else is ``not_referenced``; a shredded blob is
          ``erased``, forever.
- NODE-5  Erasure (crypto-shredding): a successful ``asset.erase`` shreds the asset's payload and the
          package of every grant that covers the asset (found through the holder's grant index). The block's
          batch records ``v/erase/<hash>`` (to delete) and ``v/gone/<hash>`` (never accept again); after the
          commit the files are deleted, then the ``v/erase`` markers in one small write. Markers left by a
          crash are finished when the node opens, and after the next block.
- NODE-6  A blob named only by transactions that failed (or were dropped from the mempool) is deleted after
          the block: nothing can authorize its release.
- NODE-7  Every public method holds the core's lock, so the API and a producer thread may share a core.

Node-side keys (outside the state tree):

    b/...                   the block store (node.blockstore)
    v/ref/<blob hash>       b"asset/" + asset id, or b"grant/" + grant id: the committed object (created by
                            a successful transaction) that names the blob; the latest one if several do
    v/erase/<blob hash>     b""   the blob is to be deleted from the vault (erasure in progress)
    v/gone/<blob hash>      b""   the blob was shredded; it is never accepted again
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256 as _sha256
from pathlib import Path
from types import TracebackType
from typing import Any

from consensus.app import BlockContext
from consensus.blocks import build_block, sign_commit
from consensus.crypto import Signer, account_id
from consensus.encoding import Struct
from consensus.errors import DecodeError, ValidationError
from consensus.kv import KVStore
from consensus.statetree import StateProof
from consensus.types import Block, CommitCertificate, Genesis, Tx, ValidatorSet
from contracts.codes import Code
from contracts.context import Event, State
from contracts.execute import BlockExecution, BlockRejected, CommitBatch, Ledger, TxResult, verify_and_execute
from contracts.records import (
    STATE,
    Access,
    Asset,
    AssetRequest,
    ConsentRequest,
    Grant,
    Index,
    Kind,
    index_prefix,
)
from node.blockstore import BlockStore
from node.mempool import AddResult, Mempool, MiB, VerifiedCache, referenced_blob
from node.vault import DEFAULT_MAX_BLOB_BYTES, Vault, VaultError

__all__ = [
    "INDEX_OBJECTS",
    "MAX_PAGE",
    "VAULT_ERASE",
    "VAULT_GONE",
    "VAULT_REF",
    "CommittedBlock",
    "GenesisMismatch",
    "NodeCore",
    "NodeError",
]

log = logging.getLogger("mydata.node.core")

VAULT_REF = b"v/ref/"
VAULT_ERASE = b"v/erase/"
VAULT_GONE = b"v/gone/"

#: What `Ledger.prepare_proposal` counts per transaction beyond its bytes; reaping counts the same, so the
#: proposal keeps every reaped transaction (dropping one could break a sender's nonce run).
TX_SIZE_OVERHEAD = 8

#: The longest page `list_index` returns.
MAX_PAGE = 1000

#: For each index: the kind of object it lists, its record type and the field holding the height under
#: which the index entry was written (the creating block), so a cursor (an object id) is found in O(1).
INDEX_OBJECTS: dict[bytes, tuple[bytes, type[Struct], str]] = {
    Index.HOLDER_ASSETS: (Kind.ASSET, Asset, "issued_height"),
    Index.ISSUER_ASSETS: (Kind.ASSET, Asset, "issued_height"),
    Index.HOLDER_GRANTS: (Kind.GRANT, Grant, "created_height"),
    Index.CONSUMER_GRANTS: (Kind.GRANT, Grant, "created_height"),
    Index.HOLDER_ACCESSES: (Kind.ACCESS, Access, "height"),
    Index.CONSUMER_ACCESSES: (Kind.ACCESS, Access, "height"),
    Index.HOLDER_CONSENT_REQUESTS: (Kind.CONSENT_REQUEST, ConsentRequest, "created_height"),
    Index.CONSUMER_REQUESTS: (Kind.CONSENT_REQUEST, ConsentRequest, "created_height"),
    Index.HOLDER_ASSET_REQUESTS: (Kind.ASSET_REQUEST, AssetRequest, "created_height"),
    Index.ISSUER_REQUESTS: (Kind.ASSET_REQUEST, AssetRequest, "created_height"),
}


class NodeError(Exception):
    """The node cannot do what was asked because of its own state or configuration (not the caller's
    input: that is a VaultError, a ValueError, or a refusal code)."""


def sha256_(data: bytes) -> bytes:
    return _sha256(data).digest()


class NodeBusy(NodeError):
    """A read that would straddle a block being written: ask again in a moment."""


class GenesisMismatch(NodeError):
    """NODE-2: the store holds another chain than the genesis the node was started with."""


@dataclass(frozen=True)
class CommittedBlock:
    """A block this node produced and committed, with its certificate and its execution (results, events)."""

    block: Block
    commit: CommitCertificate
    execution: BlockExecution

    @property
    def height(self) -> int:
        return self.block.height

    @property
    def results(self) -> list[TxResult]:
        return [TxResult.decode(r) for r in self.execution.results]

    @property
    def events(self) -> list[Event]:
        return self.execution.events


def _decode_tx(raw: bytes) -> Tx | None:
    try:
        return Tx.decode(raw)
    except (DecodeError, ValidationError):
        return None


@dataclass
class PendingBlock:
    """A block made and signed, its batch computed, not yet written (NodeCore.prepare_block)."""

    block: Block
    commit: CommitCertificate
    execution: BlockExecution
    batch: CommitBatch
    decoded: list[Tx | None]
    shredded: set[bytes]
    orphans: list[bytes]


class NodeCore:
    """One node's ledger, block store, mempool and vault (module rules NODE-1..NODE-7).

    `NodeCore(store, vault_dir, genesis, signer, name)` works over any KVStore (tests use MemoryKV);
    `NodeCore.open(home, ...)` is the real node: LevelDB at `home/data`, the vault at `home/vault`. The core
    owns the store: `close()` closes it.
    """

    def __init__(self, store: KVStore, vault_dir: str | os.PathLike[str], genesis: Genesis,
                 signer: Signer | None, name: str, *, max_txs: int = 50_000, max_bytes: int = 64 * MiB,
                 max_per_sender: int = 1000, max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        self._lock = threading.RLock()
        self.store = store
        self.name = name
        self.signer = signer
        self.address: bytes | None = None if signer is None else account_id(signer.public_key)
        self.ledger = Ledger(store, verified=VerifiedCache(2 * max_txs))
        stored = self.ledger.genesis
        if stored is None:
            self.ledger.init_chain(genesis)
        elif stored.hash != genesis.hash:
            raise GenesisMismatch(
                f"the store holds chain {stored.chain_id!r} with genesis {stored.hash.hex()[:16]}, not "
                f"chain {genesis.chain_id!r} with genesis {genesis.hash.hex()[:16]}: refusing to start "
                "(wrong genesis file, or wrong data directory)")
        assert self.ledger.genesis is not None
        self.genesis: Genesis = self.ledger.genesis
        self.blockstore = BlockStore(store)
        verified = self.ledger.verified
        assert isinstance(verified, VerifiedCache)
        self.mempool = Mempool(self.ledger.check_tx, max_txs, max_bytes, max_per_sender,
                               next_nonce=self._next_nonce, verified=verified)
        self.vault = Vault(vault_dir, max_blob_bytes)
        self._staged: dict[bytes, BlockExecution] = {}  # executions of proposals at the next height
        self._erasures_pending = True  # check for markers a crash may have left
        self._finish_erasures()
        self._sweep_unreferenced()

    @classmethod
    def open(cls, home: str | os.PathLike[str], genesis: Genesis, signer: Signer | None, name: str,
             **limits: int) -> NodeCore:
        """The node of directory `home`: LevelDB at `home/data`, the vault at `home/vault`."""
        from node.kvstore import LevelDBKV

        root = Path(home)
        root.mkdir(parents=True, exist_ok=True)
        store = LevelDBKV(root / "data")
        try:
            return cls(store, root / "vault", genesis, signer, name, **limits)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        with self._lock:
            self.store.close()

    def __enter__(self) -> NodeCore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- transactions ----------------------------------------------------------------------------------

    def submit(self, raw: bytes) -> AddResult:
        """Offer a transaction to the mempool (MEM-1): `ok`, or the code of the refusal."""
        with self._lock:
            return self.mempool.add(raw)

    def _next_nonce(self, sender: bytes) -> int:
        acct = self.ledger.state().account(sender)
        return 0 if acct is None else acct.nonce

    # ---- block production (NODE-1, NODE-3) -------------------------------------------------------------

    def can_produce(self) -> bool:
        """Whether this node's key alone reaches the quorum of the validators of the next block."""
        if self.address is None:
            return False
        vs = self.ledger.state().validators()
        v = vs.by_address.get(self.address)
        return v is not None and v.power >= vs.quorum

    def produce_block(self, now_ms: int) -> CommittedBlock | None:
        """Make, sign and commit the next block from the mempool; None if there is nothing ready (empty
        mempool, or only nonce gaps) or this node cannot produce alone."""
        pending = self.prepare_block(now_ms)
        if pending is None:
            return None
        self.write_block(pending)
        return self.finish_block(pending)

    def next_expiry_ms(self) -> int | None:
        """The not_after of the grant that expires first (CON-6), or None when no grant is live."""
        with self._lock:
            for rest, _ in self.ledger.state().scan(Kind.EXPIRY):
                return int.from_bytes(rest[:8], "big")
            return None

    def prepare_block(self, now_ms: int, *, allow_empty: bool = False) -> PendingBlock | None:
        """Step 1 of 3 (the node's event loop): reap, execute, sign the commit, compute the batch.
        `allow_empty` makes a block even with no transaction waiting (so that grants expire on time)."""
        with self._lock:
            if not (len(self.mempool) or allow_empty) or not self.can_produce():
                return None
            assert self.signer is not None and self.address is not None
            ledger = self.ledger
            last = ledger.last
            params = ledger.state().params()
            txs = self.mempool.reap(params.max_block_txs, params.max_block_bytes, overhead=TX_SIZE_OVERHEAD)
            if not txs and not allow_empty:
                return None
            ctx = BlockContext(ledger.chain_id, last.height + 1, max(now_ms, last.time_ms + 1), self.address)
            txs = ledger.prepare_proposal(ctx, txs, params.max_block_bytes)
            last_commit = self.blockstore.commit(last.height) if last.height else None
            # Ledger.commit takes more (keyword) arguments than Application.commit declares: mypy sees a
            # protocol conflict that is not one at run time.
            block, ex = build_block(ledger, ctx, last.block_hash, txs, last_commit)  # type: ignore[arg-type]
            assert isinstance(ex, BlockExecution)
            commit = sign_commit(block, [self.signer], 0, ctx.time_ms)
            return self._pending(block, commit, ex)

    def _pending(self, block: Block, commit: CommitCertificate, ex: BlockExecution) -> PendingBlock:
        decoded = [_decode_tx(raw) for raw in block.txs]
        puts = self.blockstore.puts_for(block, commit, ex.tx_hashes, ex.results)
        vault_puts, shredded, orphans = self._vault_records(decoded, ex)
        puts.update(vault_puts)
        batch = self.ledger.commit_batch(ex, puts, block_hash=block.hash)
        return PendingBlock(block, commit, ex, batch, decoded, shredded, orphans)

    # ---- consensus hooks (node/driver.py) -----------------------------------------------------------

    def propose(self, height: int, round: int, time_ms: int) -> Block | None:
        """The proposer's block for (height, round): the waiting transactions, executed (staged)."""
        with self._lock:
            ledger = self.ledger
            last = ledger.last
            if height != last.height + 1 or self.address is None:
                return None
            params = ledger.state().params()
            txs = self.mempool.reap(params.max_block_txs, params.max_block_bytes, overhead=TX_SIZE_OVERHEAD)
            ctx = BlockContext(ledger.chain_id, height, max(time_ms, last.time_ms + 1), self.address)
            txs = ledger.prepare_proposal(ctx, txs, params.max_block_bytes)
            last_commit = self.blockstore.commit(last.height) if last.height else None
            block, ex = build_block(ledger, ctx, last.block_hash, txs, last_commit)  # type: ignore[arg-type]
            assert isinstance(ex, BlockExecution)
            self._staged[block.hash] = ex
            return block

    def validate(self, block: Block) -> bool:
        """Execute a proposed block against the committed state (staged): valid iff its header states the
        outcome (the paper's valid(v)). Never raises on a bad block."""
        with self._lock:
            if block.hash in self._staged:
                return True
            try:
                ex = verify_and_execute(self.ledger, block)
            except BlockRejected as e:
                log.info("rejecting proposed block %d: %s", block.header.height, e)
                return False
            self._staged[block.hash] = ex
            return True

    def prepare_decided(self, block: Block, commit: CommitCertificate) -> PendingBlock:
        """A block consensus decided (or block sync fetched with its commit): the batch to write. The commit
        must be for this block and reach the quorum of the validators of its height."""
        with self._lock:
            if commit.block_hash != block.hash or commit.height != block.header.height:
                raise NodeError("the commit is not for this block")
            commit.verify(self.chain_id, self.ledger.state().validators())
            ex = self._staged.get(block.hash)
            if ex is None:
                ex = verify_and_execute(self.ledger, block)
            self._staged.clear()
            return self._pending(block, commit, ex)

    def write_block(self, pending: PendingBlock) -> None:
        """Step 2 of 3: the one atomic, fsynced write (NODE-1). Safe to run in a worker thread while the
        event loop goes on admitting transactions: it touches nothing but the store, whose readers see the
        whole batch or none of it. This is what lets blocks grow with the load (group commit)."""
        self.store.write(pending.batch.puts, pending.batch.deletes, True)

    def finish_block(self, pending: PendingBlock) -> CommittedBlock:
        """Step 3 of 3 (the event loop): move the ledger and the mempool past the written block."""
        with self._lock:
            ex = pending.execution
            self.ledger.committed(pending.batch)
            self.mempool.remove_committed(ex.tx_hashes)
            dropped = self.mempool.recheck({tx.sender for tx in pending.decoded if tx is not None})
            orphans = list(pending.orphans)
            orphans.extend(d.blob for d in dropped if d.blob)
            self._delete_orphans(orphans)
            if pending.shredded:
                self._erasures_pending = True
            self._finish_erasures()
            log.debug("committed block %d (%d txs, app hash %s)", pending.block.height, len(pending.block.txs),
                      ex.app_hash.hex()[:16])
            return CommittedBlock(pending.block, pending.commit, ex)

    # ---- the vault (NODE-4..NODE-6) --------------------------------------------------------------------

    def vault_put(self, blob_hash: bytes, data: bytes) -> bool:
        """Store an uploaded ciphertext if a waiting or committed transaction names it (NODE-4).
        Returns False if the vault already held it. Raises VaultError otherwise."""
        with self._lock:
            self.vault.path_of(blob_hash)  # bad_hash before anything else
            if self.store.get(VAULT_GONE + blob_hash) is not None:
                raise VaultError("erased", "the blob was erased and is never accepted again")
            if not (self.mempool.references(blob_hash) or self.store.get(VAULT_REF + blob_hash) is not None):
                raise VaultError("not_referenced",
                                 "no waiting or committed transaction names this blob; submit it first")
            return self.vault.put(blob_hash, data)

    def vault_get(self, blob_hash: bytes) -> bytes | None:
        """The stored ciphertext (authorization to release it is the caller's business), or None."""
        with self._lock:
            if self.store.get(VAULT_GONE + blob_hash) is not None:
                return None
            return self.vault.get(blob_hash)

    def vault_has(self, blob_hash: bytes) -> bool:
        """Whether the vault holds the blob, or must never again (shredded): nothing to fetch either way."""
        with self._lock:
            return self.vault.has(blob_hash) or self.store.get(VAULT_GONE + blob_hash) is not None

    def missing_blobs(self, after: bytes = b"", count: int = 1000) -> tuple[list[bytes], bytes | None]:
        """One page of the blobs that committed transactions name (NODE-4's `v/ref/`) and this vault lacks,
        shredded ones left out: (missing hashes, the hash to continue after, or None at the end). Pages keep
        the core's lock short while a node scans a large vault in the background."""
        with self._lock:
            start = VAULT_REF + after + b"\x00" if after else None
            seen: list[bytes] = []
            for key, _ in self.store.iterate(VAULT_REF, start=start):
                seen.append(key[len(VAULT_REF):])
                if len(seen) >= count:
                    break
            missing = [h for h in seen if not self.vault.has(h) and self.store.get(VAULT_GONE + h) is None]
            return missing, (seen[-1] if len(seen) >= count else None)

    def is_erased(self, blob_hash: bytes) -> bool:
        """Whether the blob was shredded (an erased asset's payload, or a package that held its fields)."""
        with self._lock:
            return self.store.get(VAULT_GONE + blob_hash) is not None

    def is_referenced(self, blob_hash: bytes) -> bool:
        """Whether an upload of `blob_hash` would be accepted now (NODE-4)."""
        with self._lock:
            return self.store.get(VAULT_GONE + blob_hash) is None and (
                self.mempool.references(blob_hash) or self.store.get(VAULT_REF + blob_hash) is not None)

    def _vault_records(self, txs: list[Tx | None], ex: BlockExecution
                       ) -> tuple[dict[bytes, bytes], set[bytes], list[bytes]]:
        """The block's vault bookkeeping: (records for the batch, blobs shredded, blobs of failed txs)."""
        refs: dict[bytes, bytes] = {}  # blob -> the state key (without s/) of the object naming it
        shredded: set[bytes] = set()
        failed: list[bytes] = []
        for i, tx in enumerate(txs):
            if tx is None:
                continue
            if tx.type in ("asset.issue", "consent.grant"):
                blob = referenced_blob(tx)
                res = ex.result(i)
                if blob and res.code == Code.OK:
                    refs[blob] = (Kind.ASSET if tx.type == "asset.issue" else Kind.GRANT) + res.object_id
                elif blob:
                    failed.append(blob)
            elif tx.type == "asset.erase":
                res = ex.result(i)
                if res.code == Code.OK:
                    shredded |= self._blobs_of_asset(State(ex.overlay), res.object_id)
        puts: dict[bytes, bytes] = {}
        for blob, owner in refs.items():
            if blob not in shredded and self.store.get(VAULT_GONE + blob) is None:
                puts[VAULT_REF + blob] = owner
        for blob in shredded:
            puts[VAULT_ERASE + blob] = b""
            puts[VAULT_GONE + blob] = b""
        return puts, shredded, failed

    @staticmethod
    def _blobs_of_asset(st: State, asset_id: bytes) -> set[bytes]:
        """NODE-5: the asset's payload and the package of every grant that covers it."""
        asset = st.get(Asset, Kind.ASSET, asset_id)
        if asset is None:  # cannot happen after a successful erase; shred nothing rather than fail
            return set()
        blobs = {asset.payload_hash}
        for key, _ in st.overlay.iterate(index_prefix(Index.HOLDER_GRANTS, asset.holder)):
            grant = st.get(Grant, Kind.GRANT, key[-32:])
            if grant is not None and asset_id in grant.assets:
                blobs.add(grant.package_hash)
        return blobs

    def _sweep_unreferenced(self) -> None:
        """On open the mempool is empty: a blob no committed object names was uploaded for a transaction
        that never committed (lost with the mempool, or failed); nothing can ever reference it again."""
        gone = [h for h in self.vault.hashes() if self.store.get(VAULT_REF + h) is None]
        for h in gone:
            try:
                self.vault.delete(h)
            except OSError as e:
                log.warning("vault: could not delete an unreferenced blob: %s", e)
        if gone:
            log.info("vault: deleted %d blob(s) that no committed transaction references", len(gone))

    def _finish_erasures(self) -> None:
        """NODE-5: delete the blobs marked `v/erase/`, then the markers; on failure keep them for later."""
        if not self._erasures_pending:
            return
        markers = [key for key, _ in self.store.iterate(VAULT_ERASE)]
        n = len(VAULT_ERASE)
        try:
            for key in markers:
                self.vault.delete(key[n:])
        except OSError as e:
            log.warning("vault erasure incomplete, retried after the next block: %s", e)
            return
        if markers:
            self.store.write({}, markers + [VAULT_REF + key[n:] for key in markers], sync=False)
            log.info("vault: shredded %d blob(s)", len(markers))
        self._erasures_pending = False

    def _delete_orphans(self, blobs: Iterable[bytes]) -> None:
        """NODE-6: blobs that nothing waiting or committed names any more."""
        for blob in dict.fromkeys(blobs):
            if self.mempool.references(blob) or self.store.get(VAULT_REF + blob) is not None:
                continue
            try:
                self.vault.delete(blob)
            except OSError as e:
                log.warning("vault: could not delete an unreferenced blob: %s", e)

    # ---- queries ---------------------------------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    @property
    def height(self) -> int:
        return self.ledger.last.height

    def state(self) -> State:
        """A view of the committed state (reads only, by convention)."""
        return self.ledger.state()

    @staticmethod
    def tx_hash(raw: bytes) -> bytes:
        """A transaction's hash: SHA-256 of its canonical bytes (what the block store and results use)."""
        return hashlib.sha256(raw).digest()

    def blob_owner(self, blob_hash: bytes) -> tuple[bytes, bytes] | None:
        """(kind, object id) of the committed object that names a vault blob (Kind.ASSET for a payload,
        Kind.GRANT for a disclosure package), or None (unreferenced, pending only, or erased)."""
        with self._lock:
            value = self.store.get(VAULT_REF + blob_hash)
            if not value or self.store.get(VAULT_GONE + blob_hash) is not None:
                return None
            for kind in (Kind.ASSET, Kind.GRANT):
                if value.startswith(kind) and len(value) == len(kind) + 32:
                    return kind, value[len(kind):]
            return None

    def blob_asset(self, blob_hash: bytes) -> bytes | None:
        """The id of the committed asset whose encrypted payload is `blob_hash`, or None."""
        owner = self.blob_owner(blob_hash)
        return owner[1] if owner is not None and owner[0] == Kind.ASSET else None

    def validators(self) -> ValidatorSet:
        """The validator set that signs the next block."""
        with self._lock:
            return self.ledger.state().validators()

    def validators_at(self, height: int) -> ValidatorSet | None:
        """The validator set that signed (or signs) block `height`, from the state's history (None below 1 or
        beyond the next block)."""
        with self._lock:
            if not 1 <= height <= self.ledger.last.height + 1:
                return None
            return self.ledger.state().validators_at(height)

    def status(self) -> dict[str, Any]:
        """The node's view of the chain, JSON-ready (bytes as lowercase hex)."""
        with self._lock:
            last = self.ledger.last
            vs = self.ledger.state().validators()
            return {
                "chain_id": self.chain_id,
                "node": self.name,
                "height": last.height,
                "latest_block_hash": last.block_hash.hex(),
                "latest_block_time_ms": last.time_ms,
                "app_hash": last.app_hash.hex(),
                "genesis_hash": self.genesis.hash.hex(),
                "validator": None if self.address is None or self.address not in vs.by_address
                else self.address.hex(),
                "can_produce": self.can_produce(),
                "validators": [{"address": v.address.hex(), "pubkey": v.pubkey.hex(), "power": v.power,
                                "name": v.name} for v in vs.validators],
                "total_power": vs.total_power,
                "mempool": {"txs": len(self.mempool), "bytes": self.mempool.size_bytes},
            }

    def block(self, height: int) -> Block | None:
        with self._lock:
            return self.blockstore.block(height)

    def commit(self, height: int) -> CommitCertificate | None:
        with self._lock:
            return self.blockstore.commit(height)

    def tx_result(self, tx_hash: bytes) -> tuple[int, int, TxResult] | None:
        """(height, index, result) of a committed transaction, or None (unknown, or still waiting)."""
        with self._lock:
            loc = self.blockstore.tx_location(tx_hash)
            if loc is None:
                return None
            height, index = loc
            results = self.blockstore.results(height)
            if results is None or index >= len(results):
                raise NodeError(f"block store inconsistent: no result {index} at height {height}")
            return height, index, TxResult.decode(results[index])

    def list_index(self, name: str | bytes, owner: bytes, limit: int = 100,
                   after: bytes | None = None) -> list[bytes]:
        """Object ids of index `name` (contracts.records.Index: "hasset", "cgrant", ...) for `owner`, newest
        first (descending height, then descending id), at most `limit` (capped at MAX_PAGE), starting after
        the object id `after` (the last id of the previous page). ValueError on bad arguments."""
        name_b = name.encode() if isinstance(name, str) else name
        spec = INDEX_OBJECTS.get(name_b)
        if spec is None:
            raise ValueError(f"unknown index {name_b.decode(errors='replace')!r}; one of "
                             f"{sorted(n.decode() for n in INDEX_OBJECTS)}")
        if type(owner) is not bytes or len(owner) != 32:
            raise ValueError("an owner is a 32-byte account id")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, MAX_PAGE)
        prefix = index_prefix(name_b, owner)
        with self._lock:
            start: bytes | None = None
            if after is not None:
                kind, cls, height_field = spec
                if type(after) is not bytes or len(after) != 32:
                    raise ValueError("a cursor is a 32-byte object id")
                obj = self.ledger.state().get(cls, kind, after)
                if obj is None:
                    raise ValueError("the cursor names no object of this index")
                start = prefix + int(getattr(obj, height_field)).to_bytes(8, "big") + after
            out: list[bytes] = []
            for key, _ in self.store.iterate(prefix, start=start, reverse=True):
                if key == start:
                    continue
                out.append(key[-32:])
                if len(out) >= limit:
                    break
            return out

    def prove(self, state_key: bytes) -> tuple[bytes, int, StateProof, bytes | None]:
        """(app hash, height, proof, value) for a key of the authenticated state, given WITHOUT the `s/`
        prefix (e.g. b"acct/" + account id); value None with a proof of absence. Verify with
        consensus.statetree.verify_state_proof(app_hash, state_key, value, proof)."""
        if type(state_key) is not bytes:
            raise TypeError("a state key is bytes")
        with self._lock:
            last = self.ledger.last
            tree = self.ledger.tree
            if tree.root != last.app_hash:
                raise NodeError("the state tree is not at the last committed app hash")
            proof = tree.prove(state_key)
            value = self.store.get(STATE + state_key)
            # While a block is being written (off the event loop) the store may already hold its values
            # while the tree still stands at the previous root: never pair the two.
            want = proof.leaf_value_hash if proof.leaf_key_hash == sha256_(state_key) else b""
            if (value is None) != (want == b"") or (value is not None and sha256_(value) != want):
                raise NodeBusy("a block is being written; ask again")
            return last.app_hash, last.height, proof, value
