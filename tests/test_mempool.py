"""The mempool (node/mempool.py, MEM-1..MEM-6): admission, per-sender nonce order, caps, recheck, the
verified-signature cache and the blobs pending transactions name."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.app import BlockContext, CheckResult
from consensus.kv import MemoryKV
from consensus.types import Tx
from contracts.execute import Ledger
from contracts.txs import GrantConsent, IssueAsset, RegisterHolder, RequestAsset
from node.mempool import AddResult, Mempool, MiB, VerifiedCache, referenced_blob
from wallet.devchain import Identity, dev_genesis
from wallet.tx import make_tx

CHAIN = "mempool-test"
ISSUER = bytes(32)


def ident(name: str) -> Identity:
    return Identity.derive(name, b"mempool")


def tx(who: Identity, nonce: int, note: int = 0) -> bytes:
    body = RequestAsset(ISSUER, "civil.marriage", note.to_bytes(32, "big") if note else b"")
    return make_tx(who.signer, CHAIN, nonce, body).encode()


class FakeLedger:
    """A `check` that accepts everything and counts its calls, and account nonces to ask."""

    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}
        self.checked: list[bytes] = []
        self.refuse: dict[bytes, str] = {}

    def check(self, raw: bytes) -> CheckResult:
        self.checked.append(raw)
        code = self.refuse.get(raw)
        return CheckResult(code, "refused") if code else CheckResult("ok")

    def next_nonce(self, sender: bytes) -> int:
        return self.nonces.get(sender, 0)


def pool(fake: FakeLedger, max_txs: int = 50_000, max_bytes: int = 64 * MiB, max_per_sender: int = 1000
         ) -> Mempool:
    return Mempool(fake.check, max_txs, max_bytes, max_per_sender, next_nonce=fake.next_nonce)


def add_ok(mp: Mempool, raw: bytes) -> AddResult:
    r = mp.add(raw)
    assert r.ok, r
    return r


def senders_nonces(raws: Sequence[bytes]) -> list[tuple[bytes, int]]:
    out = []
    for raw in raws:
        t = Tx.decode(raw)
        out.append((t.sender, t.nonce))
    return out


# ---- MEM-3: order -------------------------------------------------------------------------------------


def test_reap_fifo_across_senders_nonce_order_within() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a, b = ident("a"), ident("b")
    arrivals = [tx(a, 1), tx(b, 0), tx(a, 0), tx(b, 1), tx(a, 2)]
    for raw in arrivals:
        add_ok(mp, raw)
    out = mp.reap(100, 10**9)
    # a:1 waits for a:0; when a:0 is reached, a:1 (arrived earlier) follows at once.
    assert senders_nonces(out) == [(b.id, 0), (a.id, 0), (a.id, 1), (b.id, 1), (a.id, 2)]
    assert len(mp) == 5  # reaping removes nothing


def test_nonce_gap_waits_until_filled() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a, b = ident("a"), ident("b")
    fake.nonces[a.id] = 5
    add_ok(mp, tx(a, 7))
    add_ok(mp, tx(b, 0))
    add_ok(mp, tx(a, 5))
    assert senders_nonces(mp.reap(100, 10**9)) == [(b.id, 0), (a.id, 5)]  # 7 waits for 6
    add_ok(mp, tx(a, 6))
    assert senders_nonces(mp.reap(100, 10**9)) == [(b.id, 0), (a.id, 5), (a.id, 6), (a.id, 7)]


def test_next_nonce_skips_the_senders_waiting_run_and_waiting_lists_everything() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a, b = ident("a"), ident("b")
    fake.nonces[a.id] = 5
    assert mp.next_nonce(a.id, 5) == 5
    raws = [tx(a, 5), tx(a, 6), tx(a, 8), tx(b, 0)]
    for raw in raws:
        add_ok(mp, raw)
    assert mp.next_nonce(a.id, 5) == 7  # 5 and 6 wait; 8 is behind a gap
    assert mp.next_nonce(b.id, 0) == 1 and mp.next_nonce(ident("c").id, 3) == 3
    assert mp.waiting() == raws  # arrival order


def test_only_gaps_reaps_nothing() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    add_ok(mp, tx(ident("a"), 3))
    assert len(mp) == 1 and mp.reap(100, 10**9) == []


def test_reap_limits() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a, b = ident("a"), ident("b")
    raws = [tx(a, 0), tx(a, 1), tx(b, 0), tx(a, 2)]
    for raw in raws:
        add_ok(mp, raw)
    assert mp.reap(2, 10**9) == raws[:2]
    size = len(raws[0])
    assert mp.reap(100, 2 * size + 10) == raws[:2]
    # With an overhead per transaction the same budget holds only one.
    assert mp.reap(100, 2 * size + 10, overhead=size) == raws[:1]


def test_a_sender_that_does_not_fit_stops_but_others_go_on() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a, b = ident("a"), ident("b")
    fields = tuple(sorted(f"field_{i:02d}" for i in range(40)))
    big = make_tx(a.signer, CHAIN, 0, IssueAsset(b.id, "civil.marriage", fields, bytes(32), bytes(32),
                                                 b"", b"")).encode()
    a1, small_b = tx(a, 1), tx(b, 0)
    for raw in (big, a1, small_b):
        add_ok(mp, raw)
    budget = len(small_b) + len(a1)
    assert len(big) > budget
    # a:0 does not fit, so a:1 must not go either (it would fail with a bad nonce); b:0 still fits.
    assert mp.reap(100, budget) == [small_b]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6)), max_size=40, unique=True),
       st.lists(st.integers(0, 3), min_size=4, max_size=4))
def test_reap_order_property(arrivals: list[tuple[int, int]], starts: list[int]) -> None:
    """Whatever the arrival order: each sender's reaped nonces are exactly next_nonce, next_nonce+1, ... as
    far as the pool holds them without a gap, and the output never puts a transaction before one of
    another sender that both arrived earlier and was ready earlier."""
    fake = FakeLedger()
    mp = pool(fake)
    ids = [ident(f"s{i}") for i in range(4)]
    for i, s in enumerate(ids):
        fake.nonces[s.id] = starts[i]
    present: dict[bytes, set[int]] = {s.id: set() for s in ids}
    for who, nonce in arrivals:
        r = mp.add(tx(ids[who], nonce))
        assert r.ok
        present[ids[who].id].add(nonce)
    out = senders_nonces(mp.reap(10_000, 10**9))
    for s in ids:
        got = [n for sid, n in out if sid == s.id]
        expect = []
        n = fake.nonces[s.id]
        while n in present[s.id]:
            expect.append(n)
            n += 1
        assert got == expect
    # Stale transactions (nonce below the account's) are never reaped.
    assert all(n >= fake.nonces[sid] for sid, n in out)


# ---- MEM-1: admission ---------------------------------------------------------------------------------


def test_duplicate_and_duplicate_nonce() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a = ident("a")
    raw = tx(a, 0)
    add_ok(mp, raw)
    r = mp.add(raw)
    assert r.code == "duplicate" and r.tx_hash == hashlib.sha256(raw).digest()
    assert mp.add(tx(a, 0, note=1)).code == "duplicate_nonce"
    assert len(fake.checked) == 1  # refusals before the check cost no signature verification


def test_caps() -> None:
    fake = FakeLedger()
    a, b, c = ident("a"), ident("b"), ident("c")
    mp = pool(fake, max_txs=3)
    for raw in (tx(a, 0), tx(b, 0), tx(c, 0)):
        add_ok(mp, raw)
    assert mp.add(tx(a, 1)).code == "mempool_full"

    size = len(tx(a, 0))
    mp = pool(fake, max_bytes=2 * size)
    add_ok(mp, tx(a, 0))
    add_ok(mp, tx(b, 0))
    assert mp.add(tx(c, 0)).code == "mempool_full"
    assert mp.size_bytes == 2 * size

    mp = pool(fake, max_per_sender=2)
    add_ok(mp, tx(a, 0))
    add_ok(mp, tx(a, 1))
    assert mp.add(tx(a, 2)).code == "sender_limit"
    add_ok(mp, tx(b, 0))
    # A nonce more than max_per_sender past the account's next nonce could never be reached.
    assert mp.add(tx(c, 2)).code == "nonce_too_far"
    add_ok(mp, tx(c, 1))


def test_check_refusal_passes_its_code_and_runs_once() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a = ident("a")
    raw = tx(a, 0)
    fake.refuse[raw] = "bad_signature"
    r = mp.add(raw)
    assert (r.code, r.message, r.ok) == ("bad_signature", "refused", False)
    assert len(mp) == 0 and raw not in mp.verified and hashlib.sha256(raw).digest() not in mp.verified
    del fake.refuse[raw]
    add_ok(mp, raw)
    assert fake.checked == [raw, raw]  # once per submission
    mp.add(raw)
    assert len(fake.checked) == 2  # the duplicate never reaches the check


def test_malformed_bytes() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    for junk in (b"", b"\x93\x01\x02\x03", b"\xff" * 40):
        assert mp.add(junk).code == "malformed_tx"
    assert fake.checked == [] and len(mp) == 0
    with pytest.raises(TypeError):
        mp.add("not bytes")  # type: ignore[arg-type]


# ---- MEM-4: after a block -----------------------------------------------------------------------------


def test_remove_committed_and_recheck() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    a, b = ident("a"), ident("b")
    raws = [tx(a, 0), tx(a, 1), tx(a, 2), tx(b, 0), tx(b, 1)]
    for raw in raws:
        add_ok(mp, raw)
    hashes = [hashlib.sha256(r).digest() for r in raws]
    assert mp.pending_hashes == hashes
    assert mp.remove_committed([hashes[0], hashes[3], b"\x00" * 32]) == 2
    fake.nonces[a.id] = 2  # a:1 was used elsewhere (another node's block)
    fake.nonces[b.id] = 1
    dropped = mp.recheck()
    assert [d.tx_hash for d in dropped] == [hashes[1]]
    assert mp.pending_hashes == [hashes[2], hashes[4]]
    assert mp.contains(hashes[2]) and not mp.contains(hashes[1]) and hashes[2] in mp
    assert mp.get(hashes[2]) == raws[2] and mp.get(hashes[1]) is None
    assert set(mp.verified) == {hashes[2], hashes[4]}  # the cache follows the pool
    assert mp.size_bytes == len(raws[2]) + len(raws[4])
    fake.nonces[a.id] = 3
    assert mp.recheck([b.id]) == []  # only the senders named
    assert [d.tx_hash for d in mp.recheck([a.id])] == [hashes[2]]
    assert len(mp) == 1


# ---- MEM-2: the verified cache ------------------------------------------------------------------------


def test_verified_cache_is_bounded_oldest_first() -> None:
    c = VerifiedCache(3)
    for i in range(5):
        c.add(bytes([i]) * 32)
    assert len(c) == 3
    assert bytes([0]) * 32 not in c and bytes([1]) * 32 not in c
    assert all(bytes([i]) * 32 in c for i in (2, 3, 4))
    c.add(bytes([2]) * 32)  # already there: nothing evicted
    assert len(c) == 3 and bytes([3]) * 32 in c
    c.discard(bytes([3]) * 32)
    assert bytes([3]) * 32 not in c and len(c) == 2
    with pytest.raises(ValueError):
        VerifiedCache(0)


def test_signature_checked_once_with_the_real_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    """check_tx verifies at admission; execution then finds the hash in `verified` and does not."""
    val, reg = ident("validator"), ident("registrar")
    g = dev_genesis(CHAIN, [val], [(ident("admin"), ("admin",)), (reg, ("registrar",))], [])
    ledger_holder: list[Ledger] = []
    mp = Mempool(lambda raw: ledger_holder[0].check_tx(raw),
                 next_nonce=lambda s: 0 if (a := ledger_holder[0].state().account(s)) is None else a.nonce)
    ledger = Ledger(MemoryKV(), verified=mp.verified)
    ledger_holder.append(ledger)
    ledger.init_chain(g)
    calls: list[bytes] = []
    real = Tx.signature_valid

    def counting(self: Tx) -> bool:
        calls.append(self.hash)
        return real(self)

    monkeypatch.setattr(Tx, "signature_valid", counting)
    holders = [ident(f"h{i}") for i in range(5)]
    raws = [make_tx(reg.signer, CHAIN, i, RegisterHolder("person", bytes([i + 1]) * 32, h.pk, h.enc_pk))
            .encode() for i, h in enumerate(holders)]
    for raw in reversed(raws):  # arrive out of order: the mempool sorts them
        add_ok(mp, raw)
    ex = ledger.execute(BlockContext(CHAIN, 1, g.genesis_time_ms + 1, val.id), mp.reap(100, 10**9))
    assert ex.codes() == ["ok"] * 5
    assert sorted(calls) == sorted(hashlib.sha256(r).digest() for r in raws)  # each exactly once


# ---- MEM-5: blobs named by pending transactions -------------------------------------------------------


def test_referenced_blobs() -> None:
    fake = FakeLedger()
    mp = pool(fake)
    issuer, holder = ident("issuer"), ident("holder")
    payload, package = b"\x01" * 32, b"\x02" * 32
    issue = make_tx(issuer.signer, CHAIN, 0, IssueAsset(holder.id, "civil.marriage", ("name",), bytes(32),
                                                        payload, b"", b"")).encode()
    issue2 = make_tx(issuer.signer, CHAIN, 1, IssueAsset(holder.id, "civil.marriage", ("spouse",), bytes(32),
                                                         payload, b"", b"")).encode()
    grant = make_tx(holder.signer, CHAIN, 0, GrantConsent(issuer.id, (b"\x03" * 32,), ("name",), "loan",
                                                          10**13, 1, package, b"")).encode()
    for raw in (issue, issue2, grant, tx(holder, 1)):
        add_ok(mp, raw)
    assert mp.referenced_blobs() == {payload, package}
    assert mp.references(payload) and not mp.references(b"\x04" * 32)
    assert referenced_blob(Tx.decode(issue)) == payload and referenced_blob(Tx.decode(tx(holder, 1))) == b""
    mp.remove_committed([hashlib.sha256(issue).digest()])
    assert mp.references(payload)  # still named by issue2
    mp.remove_committed([hashlib.sha256(issue2).digest(), hashlib.sha256(grant).digest()])
    assert mp.referenced_blobs() == set()
