"""Block execution: the ledger as a `consensus.app.Application`, and `apply_block`, its single entry point
for a block made elsewhere.

Order of work in one block (docs/contracts.md, EXE-1..EXE-6):

- EXE-1  Grants whose not_after lies before the block time expire (CON-6).
- EXE-2  Each transaction in block order: decode; right chain; valid signature; known sender; the signing
         key is the sender's current key or one of its delegates; nonce equal to the account's. A failure
         here is recorded with its code and changes nothing at all.
- EXE-3  The nonce is then consumed. Suspended senders, unknown types, malformed bodies and every contract
         rule failure are recorded with their code; the transaction's other writes are undone.
- EXE-4  Validator changes scheduled for the next height are applied; the result signs the next block and,
         if it differs from this block's set, is kept in the validator-set history from that height on.
- EXE-5  The authenticated state changes are folded into the state tree: its root is the app hash. The
         results (one `TxResult` per transaction) are hashed into a Merkle root.
- EXE-6  Nothing is written until `commit`, which writes state, tree nodes, indexes, chain metadata and the
         caller's extra records (the block itself) in one atomic batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from consensus.app import AppInfo, BlockContext, CheckResult
from consensus.encoding import HASH as HASH_CODEC
from consensus.encoding import HASH_OR_EMPTY, U64, Optional, Struct, Text, field_, pack
from consensus.errors import DecodeError, ValidationError
from consensus.kv import KVStore, Overlay
from consensus.merkle import merkle_root
from consensus.statetree import EMPTY, StateTree
from consensus.types import Block, Genesis, Tx, ValidatorSet
from contracts import access, assets, consent, evidence, governance, holders
from contracts.codes import Code, Failure
from contracts.context import Event, RecordCache, State, TxContext
from contracts.genesis import AppGenesis
from contracts.records import STATE, Account, AccountKind, Kind, PendingValidators, Schema, Status
from contracts.txs import TX_BODIES

HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {
    **governance.HANDLERS, **holders.HANDLERS, **assets.HANDLERS, **consent.HANDLERS, **access.HANDLERS,
    **evidence.HANDLERS,
}
assert set(HANDLERS) == set(TX_BODIES), "every transaction type has exactly one handler"

#: Chain metadata, outside the state tree (it describes the chain, not the state).
META_LAST = b"m/last"            # LastBlock of the last committed height
META_GENESIS = b"m/genesis"      # the genesis document's canonical bytes


class BlockRejected(Exception):
    """A block that cannot be applied: it does not follow the chain, or its header does not match what
    executing it gives. Nothing was written."""


@dataclass(frozen=True)
class TxResult(Struct):
    """The committed outcome of one transaction: its code and the id of the object it made or touched."""

    code: str = field_(Text(32, min=1))
    object_id: bytes = field_(HASH_OR_EMPTY)


@dataclass(frozen=True)
class LastBlock(Struct):
    height: int = field_(U64)
    block_hash: bytes = field_(HASH_CODEC)
    time_ms: int = field_(U64)
    app_hash: bytes = field_(HASH_CODEC)
    validators: ValidatorSet | None = field_(Optional(ValidatorSet))


@dataclass
class BlockExecution:
    """A block's transactions run against the committed state; staged, not yet written."""

    height: int
    time_ms: int
    app_hash: bytes
    results: tuple[bytes, ...]
    results_hash: bytes
    validators: ValidatorSet
    next_validators: ValidatorSet
    events: list[Event]
    tx_hashes: tuple[bytes, ...]
    overlay: Overlay
    node_puts: dict[bytes, bytes] = field(default_factory=dict)

    def codes(self) -> list[str]:
        return [TxResult.decode(r).code for r in self.results]

    def result(self, i: int) -> TxResult:
        return TxResult.decode(self.results[i])


class Ledger:
    """The MyData ledger over a `KVStore`: implements `consensus.app.Application`.

    `verified` is an optional set of transaction hashes whose signatures the caller already checked (the
    mempool's cache); a transaction hash covers its signature, so a hit is as good as a verification.
    """

    def __init__(self, store: KVStore, *, verified: Container[bytes] = frozenset(),
                 tree_cache_size: int = 1_000_000) -> None:
        self.store = store
        self.verified = verified
        self.cache = RecordCache()
        self._decoded: dict[bytes, tuple[Tx, Struct]] = {}
        self._decoded_limit = 100_000
        raw = store.get(META_LAST)
        self._last = None if raw is None else LastBlock.decode(raw)
        self.tree = StateTree(store, self._last.app_hash if self._last else EMPTY, cache_size=tree_cache_size)
        g = store.get(META_GENESIS)
        self.genesis = None if g is None else Genesis.decode(g)

    # ---- chain information ---------------------------------------------------------------------------

    @property
    def chain_id(self) -> str:
        if self.genesis is None:
            raise RuntimeError("the ledger has no genesis: call init_chain first")
        return self.genesis.chain_id

    @property
    def last(self) -> LastBlock:
        if self._last is None:
            raise RuntimeError("the ledger has no genesis: call init_chain first")
        return self._last

    def state(self) -> State:
        """A read-only-by-convention view of the committed state."""
        return State(Overlay(self.store), self.cache)

    def info(self) -> AppInfo:
        last = self.last
        return AppInfo(last.height, last.app_hash, self.state().validators())

    # ---- genesis -------------------------------------------------------------------------------------

    def init_chain(self, genesis: Genesis) -> AppInfo:
        if self._last is not None:
            raise RuntimeError("init_chain on a ledger that already has a chain")
        app = AppGenesis.decode(genesis.app_state)
        st = State(Overlay(self.store))
        for m in app.members:
            st.put_account(Account(m.id, AccountKind.MEMBER, m.name, m.roles, m.sign_pk, m.enc_pk,
                                   Status.ACTIVE, 0, b"", (), 0))
            st.claim_key(m.sign_pk, m.id)
        st.set_admins(tuple(m.id for m in app.members if "admin" in m.roles))
        st.set_threshold(app.admin_threshold)
        for s in app.schemas:
            st.put(Kind.SCHEMA, s.name.encode(), Schema(s.name, s.fields, s.issuers, 1))
        st.put(Kind.PARAMS, b"", genesis.params)
        st.put(Kind.VALSET, b"", genesis.validators)
        st.record_validators(1, genesis.validators)
        root, nodes = self.tree.update(_tree_changes(st.overlay))
        last = LastBlock(0, genesis.hash, genesis.genesis_time_ms, root, None)
        st.overlay.commit({**nodes, META_LAST: last.encode(), META_GENESIS: genesis.encode()})
        self.tree.set_root(root)
        self._last, self.genesis = last, genesis
        return self.info()

    # ---- mempool ---------------------------------------------------------------------------------------

    def check_tx(self, raw_tx: bytes) -> CheckResult:
        """Stateless checks and the cheap stateful ones; the mempool orders by nonce."""
        try:
            tx = Tx.decode(raw_tx, max_bytes=self.state().params().max_tx_bytes + 1024)
        except (DecodeError, ValidationError) as e:
            return CheckResult(Code.MALFORMED_TX, str(e))
        if tx.chain_id != self.chain_id:
            return CheckResult(Code.WRONG_CHAIN, f"transaction for chain {tx.chain_id!r}")
        body_cls = TX_BODIES.get(tx.type)
        if body_cls is None:
            return CheckResult(Code.UNKNOWN_TX_TYPE, tx.type)
        try:
            body = body_cls.decode(tx.body)
        except (DecodeError, ValidationError) as e:
            return CheckResult(Code.MALFORMED_BODY, str(e))
        if not (tx.hash in self.verified or tx.signature_valid()):
            return CheckResult(Code.BAD_SIGNATURE)
        self._remember_decoded(tx.hash, tx, body)
        acct = self.state().account(tx.sender)
        if acct is None:
            return CheckResult(Code.UNKNOWN_SENDER)
        if tx.pubkey != acct.sign_pk and tx.pubkey not in acct.delegates:
            return CheckResult(Code.KEY_NOT_AUTHORIZED)
        if tx.nonce < acct.nonce:
            return CheckResult(Code.BAD_NONCE, f"nonce {tx.nonce} already used (next is {acct.nonce})")
        if acct.status != Status.ACTIVE:
            return CheckResult(Code.ACCOUNT_SUSPENDED)
        return CheckResult(Code.OK)

    def _remember_decoded(self, tx_hash: bytes, tx: Tx, body: Struct) -> None:
        """Keep what check_tx decoded for execution (keyed by the hash of the bytes: decoding is a pure
        function of them, so a hit is exactly what decoding again would give)."""
        d = self._decoded
        if len(d) >= self._decoded_limit:
            del d[next(iter(d))]
        d[tx_hash] = (tx, body)

    def prepare_proposal(self, ctx: BlockContext, raw_txs: Sequence[bytes], max_bytes: int) -> list[bytes]:
        params = self.state().params()
        out: list[bytes] = []
        size = 0
        for raw in raw_txs:
            if len(out) >= params.max_block_txs:
                break
            if size + len(raw) + 8 > min(max_bytes, params.max_block_bytes):
                continue
            out.append(raw)
            size += len(raw) + 8
        return out

    # ---- execution -------------------------------------------------------------------------------------

    def execute(self, ctx: BlockContext, raw_txs: Sequence[bytes]) -> BlockExecution:
        """EXE-1..EXE-5 against the committed state; writes nothing."""
        overlay = Overlay(self.store)
        st = State(overlay, self.cache)
        validators = st.validators()
        events = consent.expire_grants(st, ctx)
        results: list[bytes] = []
        hashes: list[bytes] = []
        for i, raw in enumerate(raw_txs):
            tx_hash = hashlib.sha256(raw).digest()
            code, object_id, tx_events = self._execute_tx(st, ctx, raw, tx_hash, i)
            results.append(pack([code, object_id]))  # == TxResult(code, object_id).encode()
            hashes.append(tx_hash)
            events.extend(tx_events)
        next_validators = _apply_pending_validators(st, ctx.height + 1, validators)
        root, nodes = self.tree.update(_tree_changes(overlay))
        return BlockExecution(ctx.height, ctx.time_ms, root, tuple(results), merkle_root(results), validators,
                              next_validators, events, tuple(hashes), overlay, nodes)

    def _execute_tx(self, st: State, block: BlockContext, raw: bytes, tx_hash: bytes,
                    index: int) -> tuple[str, bytes, list[Event]]:
        # EXE-2: is this a valid act of a known account? If not, nothing changes.
        known = self._decoded.pop(tx_hash, None)
        if known is not None:
            tx, body = known
        else:
            try:
                tx = Tx.decode(raw)
            except (DecodeError, ValidationError):
                return Code.MALFORMED_TX, b"", []
            body = None
        if tx.chain_id != block.chain_id:
            return Code.WRONG_CHAIN, b"", []
        if not (tx_hash in self.verified or tx.signature_valid()):
            return Code.BAD_SIGNATURE, b"", []
        acct = st.account(tx.sender)
        if acct is None:
            return Code.UNKNOWN_SENDER, b"", []
        via_delegate = tx.pubkey != acct.sign_pk
        if via_delegate and tx.pubkey not in acct.delegates:
            return Code.KEY_NOT_AUTHORIZED, b"", []
        if tx.nonce != acct.nonce:
            return Code.BAD_NONCE, b"", []

        # EXE-3: the nonce is consumed; everything else is undone on failure.
        acct = acct.evolve(nonce=acct.nonce + 1)
        st.put_account(acct)
        mark = st.overlay.snapshot()
        ctx = TxContext(st, block, tx_hash, index, acct, via_delegate)
        try:
            if acct.status != Status.ACTIVE:
                raise Failure(Code.ACCOUNT_SUSPENDED)
            body_cls = TX_BODIES.get(tx.type)
            if body_cls is None:
                raise Failure(Code.UNKNOWN_TX_TYPE, tx.type)
            if body is None:
                try:
                    body = body_cls.decode(tx.body)
                except (DecodeError, ValidationError) as e:
                    raise Failure(Code.MALFORMED_BODY, str(e)) from None
            HANDLERS[tx.type](ctx, body)
        except Failure as f:
            st.overlay.revert(mark)
            return f.code, b"", []
        return Code.OK, ctx.object_id, ctx.events

    def commit(self, execution: BlockExecution, extra_puts: Mapping[bytes, bytes] | None = None, *,
               block_hash: bytes, sync: bool = True) -> None:
        """EXE-6: one atomic batch. `block_hash` (of the block executed) becomes the chain's last block."""
        batch = self.commit_batch(execution, extra_puts, block_hash=block_hash)
        self.store.write(batch.puts, batch.deletes, sync)
        self.committed(batch)

    def commit_batch(self, execution: BlockExecution, extra_puts: Mapping[bytes, bytes] | None = None, *,
                     block_hash: bytes) -> CommitBatch:
        """EXE-6 in two steps, for a caller that writes the batch itself (off its event loop): the batch to
        write in one atomic `store.write`, then `committed(batch)` once it is durable."""
        if execution.height != self.last.height + 1:
            raise RuntimeError(f"execution of height {execution.height} does not follow height {self.last.height}")
        if len(block_hash) != 32:
            raise ValueError("a block hash has 32 bytes")
        last = LastBlock(execution.height, block_hash, execution.time_ms, execution.app_hash,
                         execution.validators)
        extra = {**execution.node_puts, META_LAST: last.encode()}
        if extra_puts:
            extra.update(extra_puts)
        puts, deletes = execution.overlay.batch(extra)
        return CommitBatch(execution, last, puts, deletes)

    def committed(self, batch: CommitBatch) -> None:
        """The batch is in the store: move the ledger to it."""
        batch.execution.overlay.discard()
        self.tree.set_root(batch.execution.app_hash)
        self._last = batch.last


@dataclass
class CommitBatch:
    execution: BlockExecution
    last: LastBlock
    puts: dict[bytes, bytes]
    deletes: list[bytes]


def apply_block(ledger: Ledger, block: Block, extra_puts: Mapping[bytes, bytes] | None = None,
                sync: bool = True) -> BlockExecution:
    """Apply a block made elsewhere: check it follows the chain, execute it, check its header against the
    execution, and commit it atomically. Raises BlockRejected (writing nothing) if anything disagrees.

    The previous block's commit certificate (carried by this block) is verified against the validators
    that signed it. The signatures of this block's own commit are checked by whoever holds it (consensus,
    block sync, the auditor's replay)."""
    ex = verify_and_execute(ledger, block)
    ledger.commit(ex, extra_puts, block_hash=block.hash, sync=sync)
    return ex


def verify_and_execute(ledger: Ledger, block: Block) -> BlockExecution:
    """Everything `apply_block` checks, and the staged execution, without committing: what a validator does
    with a proposal before it votes for it. Raises BlockRejected."""
    h = block.header
    last = ledger.last
    if h.chain_id != ledger.chain_id:
        raise BlockRejected(f"block for chain {h.chain_id!r}, this is {ledger.chain_id!r}")
    if h.height != last.height + 1:
        raise BlockRejected(f"block height {h.height}, expected {last.height + 1}")
    if h.prev_hash != last.block_hash:
        raise BlockRejected(f"block {h.height} does not follow block {last.height}")
    if h.height > 1 and h.time_ms <= last.time_ms:
        raise BlockRejected(f"block {h.height} time does not advance")
    if h.height == 1 and h.time_ms < last.time_ms:
        raise BlockRejected("block 1 is older than the genesis")
    if block.last_commit is not None:
        assert last.validators is not None
        try:
            block.last_commit.verify(ledger.chain_id, last.validators)
        except Exception as e:
            raise BlockRejected(f"block {h.height} carries a bad commit of block {last.height}: {e}") from None
    params = ledger.state().params()
    if len(block.txs) > params.max_block_txs:
        raise BlockRejected(f"block {h.height} has {len(block.txs)} transactions, the limit is "
                            f"{params.max_block_txs}")
    if any(len(raw) > params.max_tx_bytes + 1024 for raw in block.txs):
        raise BlockRejected(f"block {h.height} holds a transaction over the size limit")
    if sum(len(raw) + 8 for raw in block.txs) > params.max_block_bytes:
        raise BlockRejected(f"block {h.height} exceeds max_block_bytes")
    validators = ledger.state().validators()
    if h.validators_hash != validators.hash:
        raise BlockRejected(f"block {h.height} names another validator set")
    if h.proposer not in validators.by_address:
        raise BlockRejected(f"block {h.height} proposed by a non-validator")
    ex = ledger.execute(BlockContext(h.chain_id, h.height, h.time_ms, h.proposer), block.txs)
    if ex.app_hash != h.app_hash:
        raise BlockRejected(f"block {h.height}: app hash {ex.app_hash.hex()[:16]} after execution, "
                            f"header says {h.app_hash.hex()[:16]}")
    if ex.results_hash != h.results_hash:
        raise BlockRejected(f"block {h.height}: results differ from the header's results_hash")
    if ex.next_validators.hash != h.next_validators_hash:
        raise BlockRejected(f"block {h.height}: next validator set differs from the header")
    return ex


def _tree_changes(overlay: Overlay) -> dict[bytes, bytes | None]:
    puts, deletes = overlay.changes()
    n = len(STATE)
    changes: dict[bytes, bytes | None] = {k[n:]: v for k, v in puts.items() if k.startswith(STATE)}
    for k in deletes:
        if k.startswith(STATE):
            changes[k[n:]] = None
    return changes


def _apply_pending_validators(st: State, height: int, current: ValidatorSet) -> ValidatorSet:
    """EXE-4: the changes scheduled for `height` make the set that signs it; a set that differs from
    `current` is also kept in the history (`valhist/<height>`, EVD-2 looks it up)."""
    key = Kind.VALPEND + height.to_bytes(8, "big")
    raw = st.get_raw(key)
    if raw is None:
        return current
    nxt = governance.apply_validator_updates(current, PendingValidators.decode(raw).updates)
    st.delete_raw(key)
    st.put(Kind.VALSET, b"", nxt)
    if nxt != current:
        st.record_validators(height, nxt)
    return nxt
