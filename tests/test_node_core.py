"""The node core (node/core.py, NODE-1..NODE-7) and its block store: block production in one atomic batch,
signatures checked once, restart at the same app hash, the vault's referencing and erasure rules, queries,
and the auditor's replay of what the core produced."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from consensus.kv import MemoryKV
from consensus.statetree import verify_state_proof
from consensus.types import Genesis, Tx
from contracts.audit import replay
from contracts.records import Kind
from contracts.txs import (
    EraseAsset,
    GrantConsent,
    IssueAsset,
    RecordAccess,
    RegisterHolder,
    RevokeConsent,
)
from node.blockstore import BlockStore
from node.core import VAULT_ERASE, VAULT_GONE, VAULT_REF, CommittedBlock, GenesisMismatch, NodeCore
from node.vault import VaultError
from wallet.devchain import Identity, dev_genesis
from wallet.tx import created_id, make_tx

CHAIN = "core-test"
SCHEMA = "civil.marriage"
FIELDS = ("name", "spouse")
T0 = 1_767_225_600_000


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class CountingKV(MemoryKV):
    """A MemoryKV that records every write as (number of puts, number of deletes, sync), and can fail one."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, int, bool]] = []
        self.fail_next = False

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("simulated disk failure")
        dels = list(deletes)
        self.writes.append((len(puts), len(dels), sync))
        super().write(puts, dels, sync)


class SimulatedCrash(BaseException):
    """The process dies here (a BaseException, so no `except Exception` in the core can swallow it)."""


class World:
    """Keys, a genesis and transaction building for one test (identities keep their own nonces)."""

    def __init__(self, seed: bytes = b"core", chain_id: str = CHAIN) -> None:
        def ident(n: str) -> Identity:
            return Identity.derive(n, seed)

        self.chain_id = chain_id
        self.val = ident("validator-0")
        self.admin, self.reg = ident("admin"), ident("registrar")
        self.issuer, self.bank = ident("issuer"), ident("bank")
        self.holders = [ident(f"holder-{i}") for i in range(3)]
        self.genesis: Genesis = dev_genesis(
            chain_id, [self.val],
            [(self.admin, ("admin",)), (self.reg, ("registrar",)), (self.issuer, ("issuer",)),
             (self.bank, ("consumer",))],
            [(SCHEMA, FIELDS, [self.issuer])], genesis_time_ms=T0)
        self.now = T0

    def tx(self, who: Identity, body: object) -> bytes:
        raw = make_tx(who.signer, self.chain_id, who.nonce, body).encode()  # type: ignore[arg-type]
        who.nonce += 1
        return raw

    def core(self, store: MemoryKV | None = None, vault_dir: Path | None = None, signer: bool = True,
             tmp: Path | None = None) -> NodeCore:
        assert vault_dir is not None or tmp is not None
        return NodeCore(store if store is not None else MemoryKV(), vault_dir or tmp / "vault",  # type: ignore[operator]
                        self.genesis, self.val.signer if signer else None, "node-0")

    def block(self, core: NodeCore, *raws: bytes) -> CommittedBlock:
        for raw in raws:
            r = core.submit(raw)
            assert r.ok, r
        self.now += 1000
        cb = core.produce_block(self.now)
        assert cb is not None
        return cb

    def register(self, core: NodeCore) -> CommittedBlock:
        return self.block(core, *[
            self.tx(self.reg, RegisterHolder("person", bytes([i + 1]) * 32, h.pk, h.enc_pk))
            for i, h in enumerate(self.holders)])

    def issue(self, holder: Identity, payload: bytes) -> tuple[bytes, bytes]:
        """(raw tx, asset id) of an asset whose encrypted payload is `payload`."""
        raw = self.tx(self.issuer, IssueAsset(holder.id, SCHEMA, FIELDS, sha(b"root" + payload), sha(payload),
                                              b"", b""))
        return raw, created_id(Kind.ASSET, Tx.decode(raw))

    def grant(self, holder: Identity, assets: Iterable[bytes], package: bytes) -> tuple[bytes, bytes]:
        raw = self.tx(holder, GrantConsent(self.bank.id, tuple(sorted(assets)), ("name",), "mortgage",
                                           T0 + 10**10, 3, sha(package), b""))
        return raw, created_id(Kind.GRANT, Tx.decode(raw))


@pytest.fixture
def w() -> World:
    return World()


# ---- NODE-3: producing blocks ------------------------------------------------------------------------------


def test_nothing_to_produce(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    assert core.produce_block(T0 + 1) is None  # empty mempool
    passive = w.core(signer=False, tmp=tmp_path / "b")
    passive.submit(w.tx(w.reg, RegisterHolder("person", b"\x01" * 32, w.holders[0].pk, w.holders[0].enc_pk)))
    assert len(passive.mempool) == 1 and passive.produce_block(T0 + 1) is None  # not a validator
    stranger = NodeCore(MemoryKV(), tmp_path / "c", w.genesis, w.bank.signer, "c")
    assert not stranger.can_produce()


def test_only_nonce_gaps_produce_nothing(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.reg.nonce = 1  # nonce 0 never sent
    h = w.holders[0]
    assert core.submit(w.tx(w.reg, RegisterHolder("person", b"\x01" * 32, h.pk, h.enc_pk))).ok
    assert core.produce_block(T0 + 1000) is None
    assert core.height == 0 and len(core.mempool) == 1


def test_blocks_results_and_queries(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    b1 = w.register(core)
    assert b1.height == 1 and [r.code for r in b1.results] == ["ok"] * 3
    assert b1.block.header.proposer == w.val.id and b1.block.last_commit is None
    issue, aid = w.issue(w.holders[0], b"payload-0")
    b2 = w.block(core, issue)
    assert b2.results[0].object_id == aid
    assert any(e.kind == "asset_issued" for e in b2.events)
    assert b2.block.last_commit == core.commit(1)  # block 2 carries the stored certificate of block 1
    for h, cb in ((1, b1), (2, b2)):
        assert core.block(h) == cb.block
        c = core.commit(h)
        assert c is not None and c.block_hash == cb.block.hash and c.round == 0
        c.verify(CHAIN, w.genesis.validators)
    assert core.block(3) is None and core.commit(3) is None and core.block(0) is None
    found = core.tx_result(sha(issue))
    assert found is not None and found[:2] == (2, 0) and found[2].code == "ok" and found[2].object_id == aid
    assert core.tx_result(b"\x00" * 32) is None
    assert [b.height for b in core.blockstore.iter_blocks()] == [1, 2]
    assert [b.height for b in core.blockstore.iter_blocks(2)] == [2]
    s = core.status()
    assert s["chain_id"] == CHAIN and s["node"] == "node-0" and s["height"] == 2
    assert s["latest_block_hash"] == b2.block.hash.hex() and s["app_hash"] == b2.block.header.app_hash.hex()
    assert s["validators"][0]["address"] == w.val.id.hex() and s["validator"] == w.val.id.hex()
    assert core.state().account(w.holders[0].id) is not None
    assert len(core.mempool) == 0 and len(core.mempool.verified) == 0


def test_block_time_is_monotonic(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    h = w.holders[0]
    core.submit(w.tx(w.reg, RegisterHolder("person", b"\x01" * 32, h.pk, h.enc_pk)))
    b1 = core.produce_block(0)  # a clock behind the genesis
    assert b1 is not None and b1.block.header.time_ms == T0 + 1
    core.submit(w.tx(w.reg, RegisterHolder("person", b"\x02" * 32, w.holders[1].pk, w.holders[1].enc_pk)))
    b2 = core.produce_block(T0 - 5)
    assert b2 is not None and b2.block.header.time_ms == T0 + 2


# ---- NODE-1: one batch per block ---------------------------------------------------------------------------


def test_one_synced_write_per_block(w: World, tmp_path: Path) -> None:
    store = CountingKV()
    core = w.core(store, tmp=tmp_path)
    store.writes.clear()  # init_chain's own batch
    w.register(core)
    issue, _ = w.issue(w.holders[0], b"p")
    w.block(core, issue)
    assert [sync for _, _, sync in store.writes] == [True, True]
    assert all(dels == 0 for _, dels, _ in store.writes)


def test_failed_batch_changes_nothing_and_the_block_is_retried(w: World, tmp_path: Path) -> None:
    store = CountingKV()
    core = w.core(store, tmp=tmp_path)
    w.register(core)
    issue, aid = w.issue(w.holders[0], b"p")
    assert core.submit(issue).ok
    before = core.status()
    store.fail_next = True
    with pytest.raises(OSError):
        core.produce_block(w.now + 1000)
    assert core.status() == before and core.mempool.contains(sha(issue))
    assert core.blockstore.height() == 1 and core.block(2) is None
    cb = core.produce_block(w.now + 2000)
    assert cb is not None and cb.height == 2 and cb.results[0].object_id == aid


def test_signatures_verified_exactly_once(w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = w.core(tmp=tmp_path)
    calls: list[bytes] = []
    real = Tx.signature_valid

    def counting(self: Tx) -> bool:
        calls.append(self.hash)
        return real(self)

    monkeypatch.setattr(Tx, "signature_valid", counting)
    cb = w.register(core)
    issues = [w.issue(h, f"payload-{i}".encode())[0] for i, h in enumerate(w.holders)]
    cb2 = w.block(core, *issues)
    hashes = list(cb.execution.tx_hashes) + list(cb2.execution.tx_hashes)
    assert len(hashes) == 6 and sorted(calls) == sorted(hashes)


# ---- NODE-1, NODE-2: restart -------------------------------------------------------------------------------


def test_restart_on_leveldb_resumes_at_the_same_app_hash(w: World, tmp_path: Path) -> None:
    home = tmp_path / "node0"
    core = NodeCore.open(home, w.genesis, w.val.signer, "node-0")
    w.register(core)
    issue, aid = w.issue(w.holders[0], b"payload")
    w.block(core, issue)
    assert core.vault_put(sha(b"payload"), b"payload")
    status = core.status()
    core.close()

    core = NodeCore.open(home, w.genesis, w.val.signer, "node-0")
    assert core.status() == status and core.height == 2
    assert core.vault_get(sha(b"payload")) == b"payload"
    issue2, aid2 = w.issue(w.holders[0], b"payload-2")
    cb = w.block(core, issue2)  # block 3 carries the certificate of block 2 read back from disk
    assert cb.height == 3 and cb.block.last_commit == core.commit(2)
    first = core.list_index("hasset", w.holders[0].id, limit=1)
    assert first == [aid2] and core.list_index("hasset", w.holders[0].id, after=aid2) == [aid]
    final = core.commit(3)
    blocks = list(core.blockstore.iter_blocks())
    core.close()
    report = replay(w.genesis, blocks, final)
    assert report.final_commit_verified and report.height == 3
    assert report.app_hash == cb.block.header.app_hash.hex()


def test_genesis_mismatch_refused(w: World, tmp_path: Path) -> None:
    home = tmp_path / "node0"
    NodeCore.open(home, w.genesis, w.val.signer, "node-0").close()
    other = World(seed=b"other", chain_id="other-chain")
    with pytest.raises(GenesisMismatch, match="refusing to start"):
        NodeCore.open(home, other.genesis, other.val.signer, "node-0")
    NodeCore.open(home, w.genesis, w.val.signer, "node-0").close()  # the store was released


# ---- NODE-4..NODE-6: the vault -----------------------------------------------------------------------------


def test_vault_accepts_only_referenced_blobs(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.register(core)
    with pytest.raises(VaultError) as e:
        core.vault_put(sha(b"stray"), b"stray")
    assert e.value.code == "not_referenced"
    payload = b"encrypted payload"
    issue, aid = w.issue(w.holders[0], payload)
    assert not core.is_referenced(sha(payload))
    assert core.submit(issue).ok
    assert core.is_referenced(sha(payload))
    with pytest.raises(VaultError) as e:
        core.vault_put(sha(payload), b"something else")
    assert e.value.code == "hash_mismatch"
    assert core.vault_put(sha(payload), payload) is True  # named by a pending transaction
    w.now += 1000
    core.produce_block(w.now)
    assert core.store.get(VAULT_REF + sha(payload)) == Kind.ASSET + aid
    assert core.blob_asset(sha(payload)) == aid and core.blob_owner(sha(payload)) == (Kind.ASSET, aid)
    assert core.blob_asset(sha(b"stray")) is None
    assert core.vault_put(sha(payload), payload) is False  # already there; still referenced (committed)
    # A blob named only by a committed transaction can be uploaded later (e.g. to another validator).
    later = b"uploaded after the commit"
    issue2, _ = w.issue(w.holders[1], later)
    w.block(core, issue2)
    assert not core.mempool.references(sha(later)) and core.vault_put(sha(later), later)
    big = b"x" * (core.vault.max_blob_bytes + 1)
    issue3, _ = w.issue(w.holders[2], big)
    assert core.submit(issue3).ok
    with pytest.raises(VaultError) as e:
        core.vault_put(sha(big), big)
    assert e.value.code == "too_large"
    with pytest.raises(VaultError) as e:
        core.vault_put(b"short", b"")
    assert e.value.code == "bad_hash"


def test_blob_of_a_failed_transaction_is_dropped(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.register(core)
    junk = b"uploaded for an issue that fails"
    # The bank is no issuer: the transaction is admitted (signature, nonce) but fails in execution.
    bad = w.tx(w.bank, IssueAsset(w.holders[0].id, SCHEMA, FIELDS, sha(b"r"), sha(junk), b"", b""))
    assert core.submit(bad).ok and core.vault_put(sha(junk), junk)
    cb = w.block(core)
    assert cb.results[0].code == "not_issuer"
    assert not core.vault.has(sha(junk)) and core.store.get(VAULT_REF + sha(junk)) is None
    with pytest.raises(VaultError) as e:
        core.vault_put(sha(junk), junk)
    assert e.value.code == "not_referenced"


def _erasure_world(w: World, core: NodeCore) -> dict[str, bytes]:
    """Holder 0 owns assets A and B; grants: gA (A), gB (B), gAB (A and B). Every blob is in the vault."""
    w.register(core)
    h = w.holders[0]
    blobs = {"A": b"payload A", "B": b"payload B", "gA": b"package A", "gB": b"package B",
             "gAB": b"package AB", "other": b"payload of holder 1"}
    issue_a, aid = w.issue(h, blobs["A"])
    issue_b, bid = w.issue(h, blobs["B"])
    issue_o, _ = w.issue(w.holders[1], blobs["other"])
    w.block(core, issue_a, issue_b, issue_o)
    ga, gid_a = w.grant(h, [aid], blobs["gA"])
    gb, _ = w.grant(h, [bid], blobs["gB"])
    gab, _ = w.grant(h, [aid, bid], blobs["gAB"])
    w.block(core, ga, gb, gab)
    for data in blobs.values():
        core.vault_put(sha(data), data)
    return {"aid": aid, "bid": bid, "gid_a": gid_a, **blobs}


def test_erasure_shreds_payload_and_covering_packages(w: World, tmp_path: Path) -> None:
    store = CountingKV()
    core = w.core(store, tmp=tmp_path)
    x = _erasure_world(w, core)
    assert core.blob_owner(sha(x["gA"])) == (Kind.GRANT, x["gid_a"])
    assert core.blob_asset(sha(x["gA"])) is None and core.blob_asset(sha(x["A"])) == x["aid"]
    store.writes.clear()
    cb = w.block(core, w.tx(w.holders[0], EraseAsset(x["aid"])))
    assert cb.results[0].code == "ok"
    assert core.blob_asset(sha(x["A"])) is None and core.blob_owner(sha(x["gA"])) is None
    assert core.blob_asset(sha(x["B"])) == x["bid"]
    shredded = [x[k] for k in ("A", "gA", "gAB")]
    kept = [x[k] for k in ("B", "gB", "other")]
    assert all(not core.vault.has(sha(d)) for d in shredded)
    assert all(core.vault.get(sha(d)) == d for d in kept)
    # One synced batch for the block, then the small unsynced removal of the markers.
    assert [(dels, sync) for _, dels, sync in store.writes] == [(0, True), (6, False)]
    assert list(store.iterate(VAULT_ERASE)) == []
    assert {k[len(VAULT_GONE):] for k, _ in store.iterate(VAULT_GONE)} == {sha(d) for d in shredded}
    for d in shredded:  # never accepted again, not even while a pending transaction names it
        with pytest.raises(VaultError) as e:
            core.vault_put(sha(d), d)
        assert e.value.code == "erased"
        assert core.vault_get(sha(d)) is None
    assert core.vault_put(sha(x["B"]), x["B"]) is False


def test_erasure_in_the_same_block_as_the_grant(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.register(core)
    h = w.holders[0]
    issue, aid = w.issue(h, b"payload")
    w.block(core, issue)
    core.vault_put(sha(b"payload"), b"payload")
    grant, _ = w.grant(h, [aid], b"package")
    assert core.submit(grant).ok
    core.vault_put(sha(b"package"), b"package")
    cb = w.block(core, w.tx(h, EraseAsset(aid)))
    assert [r.code for r in cb.results] == ["ok", "ok"]
    assert not core.vault.has(sha(b"payload")) and not core.vault.has(sha(b"package"))
    assert core.store.get(VAULT_GONE + sha(b"package")) == b""


def test_erasure_recovered_after_a_crash_before_the_files_go(w: World, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "node0"
    core = NodeCore.open(home, w.genesis, w.val.signer, "node-0")
    x = _erasure_world(w, core)
    assert core.submit(w.tx(w.holders[0], EraseAsset(x["aid"]))).ok

    def crash(blob_hash: bytes) -> bool:
        raise SimulatedCrash

    monkeypatch.setattr(core.vault, "delete", crash)
    with pytest.raises(SimulatedCrash):
        core.produce_block(w.now + 1000)
    # The block's batch is durable: erasure markers, tombstones, the block itself; the files are still there.
    markers = {k[len(VAULT_ERASE):] for k, _ in core.store.iterate(VAULT_ERASE)}
    assert markers == {sha(x[k]) for k in ("A", "gA", "gAB")}
    assert all(core.vault.has(m) for m in markers)
    height = core.height
    core.close()

    core = NodeCore.open(home, w.genesis, w.val.signer, "node-0")
    assert core.height == height == 4
    assert not any(core.vault.has(m) for m in markers)
    assert list(core.store.iterate(VAULT_ERASE)) == []
    assert all(core.store.get(VAULT_REF + m) is None for m in markers)
    assert core.vault.has(sha(x["B"])) and core.vault.has(sha(x["gB"]))
    core.close()


def test_erasure_retried_after_an_io_error(w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = w.core(tmp=tmp_path)
    x = _erasure_world(w, core)

    def broken(blob_hash: bytes) -> bool:
        raise PermissionError("read-only file system")

    with monkeypatch.context() as m:
        m.setattr(core.vault, "delete", broken)
        cb = w.block(core, w.tx(w.holders[0], EraseAsset(x["aid"])))  # the block is committed regardless
    assert cb.results[0].code == "ok" and len(list(core.store.iterate(VAULT_ERASE))) == 3
    assert core.vault.has(sha(x["A"]))
    issue, _ = w.issue(w.holders[1], b"next")
    w.block(core, issue)  # the next block finishes the erasure
    assert not core.vault.has(sha(x["A"])) and list(core.store.iterate(VAULT_ERASE)) == []


# ---- queries -----------------------------------------------------------------------------------------------


def test_list_index_pages_newest_first(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.register(core)
    h = w.holders[0]
    ids: list[tuple[int, bytes]] = []
    for blk in range(3):
        raws = [w.issue(h, f"p{blk}-{i}".encode()) for i in range(2)]
        cb = w.block(core, *(r for r, _ in raws))
        ids.extend((cb.height, aid) for _, aid in raws)
    expect = [aid for _, aid in sorted(ids, reverse=True)]
    assert core.list_index("hasset", h.id) == expect
    assert core.list_index(b"iasset", w.issuer.id, limit=100) == expect
    pages, after = [], None
    while True:
        page = core.list_index("hasset", h.id, limit=4, after=after)
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [4, 2] and [i for p in pages for i in p] == expect
    assert core.list_index("hasset", w.holders[1].id) == []
    with pytest.raises(ValueError, match="unknown index"):
        core.list_index("nope", h.id)
    with pytest.raises(ValueError):
        core.list_index("hasset", b"short")
    with pytest.raises(ValueError, match="cursor"):
        core.list_index("hasset", h.id, after=b"\x00" * 32)
    with pytest.raises(ValueError):
        core.list_index("hasset", h.id, limit=0)


def test_prove_state_keys(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.register(core)
    key = Kind.ACCOUNT + w.holders[0].id
    app_hash, height, proof, value = core.prove(key)
    assert height == 1 and app_hash.hex() == core.status()["app_hash"] and value is not None
    assert verify_state_proof(app_hash, key, value, proof)
    absent = Kind.ACCOUNT + b"\x00" * 32
    app_hash, _, proof, value = core.prove(absent)
    assert value is None and verify_state_proof(app_hash, absent, None, proof)


# ---- the auditor's replay of what the core produced --------------------------------------------------------


def test_replay_of_the_whole_story(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    x = _erasure_world(w, core)
    h = w.holders[0]
    assert len(core.list_index("hgrant", h.id)) == 3
    gid = x["gid_a"]
    w.block(core, w.tx(w.bank, RecordAccess(gid, x["aid"])))
    w.block(core, w.tx(h, RevokeConsent(gid)))
    refused = w.block(core, w.tx(w.bank, RecordAccess(gid, x["aid"])))
    assert refused.results[0].code == "grant_revoked"
    w.block(core, w.tx(h, EraseAsset(x["aid"])))
    height = core.height
    report = replay(w.genesis, core.blockstore.iter_blocks(), core.commit(height))
    assert report.final_commit_verified and report.height == height == 7
    assert report.app_hash == core.status()["app_hash"]
    assert len(report.grants) == 3 and [a.code for a in report.accesses] == ["ok", "grant_revoked"]
    assert [f.code for f in report.failures] == ["grant_revoked"]


def test_blockstore_rejects_a_foreign_commit(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    b1 = w.register(core)
    issue, _ = w.issue(w.holders[0], b"p")
    b2 = w.block(core, issue)
    with pytest.raises(ValueError):
        BlockStore.puts_for(b2.block, b1.commit, b2.execution.tx_hashes)
    with pytest.raises(ValueError):
        BlockStore.puts_for(b2.block, b2.commit, ())
    assert core.blockstore.height() == 2 and BlockStore(MemoryKV()).height() == 0
    assert core.blockstore.tx_location(sha(issue)) == (2, 0)
    assert core.blockstore.results(2) == b2.execution.results


def test_missing_blobs_lists_committed_references_the_vault_lacks_page_by_page(w: World, tmp_path: Path) -> None:
    core = w.core(tmp=tmp_path)
    w.register(core)
    payloads = [f"payload {i}".encode() for i in range(5)]
    issues = [w.issue(w.holders[i % 3], p)[0] for i, p in enumerate(payloads)]
    w.block(core, *issues)
    core.vault_put(sha(payloads[1]), payloads[1])  # this one arrived
    expected = sorted(sha(p) for i, p in enumerate(payloads) if i != 1)
    seen: list[bytes] = []
    after, pages = b"", 0
    while True:
        missing, last = core.missing_blobs(after, count=2)
        seen += missing
        pages += 1
        if last is None:
            break
        after = last
    assert sorted(seen) == expected and pages == 3
    assert core.vault_has(sha(payloads[1])) and not core.vault_has(expected[0])
    assert core.missing_blobs(count=100) == (expected, None)


def test_long_polls_wake_at_their_height_and_are_capped(w: World, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    import node.service as service_mod
    from node.service import Busy, NodeService

    monkeypatch.setattr(service_mod, "MAX_HEIGHT_WAITERS", 2)

    async def body() -> None:
        core = w.core(tmp=tmp_path)
        svc = NodeService(core)
        assert await svc.wait_height(0, 5.0)  # already there: no wait
        first = asyncio.create_task(svc.wait_height(1, 5.0))
        second = asyncio.create_task(svc.wait_height(2, 0.2))
        await asyncio.sleep(0.01)
        with pytest.raises(Busy):
            await svc.wait_height(1, 5.0)
        assert await second is False  # timed out: height 2 never came
        h = w.holders[0]
        core.submit(w.tx(w.reg, RegisterHolder("person", b"\x01" * 32, h.pk, h.enc_pk)))
        assert await svc._produce_one()
        assert await asyncio.wait_for(first, 5.0) is True
        assert svc._n_height_waiters == 0 and not svc._height_waiters

    asyncio.run(body())
