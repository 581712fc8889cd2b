"""node/replication.py without processes: a fake core (a vault that takes only referenced blobs) and a fake
peer manager record what VaultReplication stores, keeps, asks and answers (docs/protocol.md, section 14,
"Vault replication")."""

from __future__ import annotations

import asyncio
import hashlib
import itertools

import pytest

import node.replication as rep
from node import messages as m
from node.replication import VaultReplication
from node.vault import VaultError

ME, V1, V2, OBS = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32, b"\x04" * 32


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class FakeCore:
    def __init__(self, address: bytes | None = ME) -> None:
        self.address = address
        self.referenced: set[bytes] = set()
        self.erased: set[bytes] = set()
        self.vault: dict[bytes, bytes] = {}
        self.refs_missing: list[bytes] = []

    def vault_put(self, h: bytes, data: bytes) -> bool:
        if h in self.erased:
            raise VaultError("erased", "erased")
        if h not in self.referenced:
            raise VaultError("not_referenced", "not referenced")
        if sha(data) != h:
            raise VaultError("hash_mismatch", "mismatch")
        self.vault[h] = data
        return True

    def vault_get(self, h: bytes) -> bytes | None:
        return None if h in self.erased else self.vault.get(h)

    def vault_has(self, h: bytes) -> bool:
        return h in self.vault or h in self.erased

    def is_referenced(self, h: bytes) -> bool:
        return h in self.referenced and h not in self.erased

    def is_erased(self, h: bytes) -> bool:
        return h in self.erased

    def missing_blobs(self, after: bytes = b"", count: int = 1000) -> tuple[list[bytes], bytes | None]:
        rest = sorted(h for h in self.refs_missing if h > after)
        page = rest[:count]
        return [h for h in page if not self.vault_has(h)], (page[-1] if len(rest) > count else None)


class FakePeers:
    def __init__(self, connected: list[bytes]) -> None:
        self._connected = connected
        self.sent: list[tuple[bytes, int, bytes]] = []  # (peer, kind, payload)
        self.refuse = False

    def connected(self) -> list[bytes]:
        return sorted(self._connected)

    def send(self, peer: bytes, msg: bytes) -> bool:
        if self.refuse:
            return False
        env = m.Envelope.decode(msg)
        self.sent.append((peer, env.kind, env.payload))
        return True


def make(validators: set[bytes] = frozenset({ME, V1, V2}), connected: tuple[bytes, ...] = (V1, V2, OBS),
         address: bytes | None = ME) -> tuple[VaultReplication, FakeCore, FakePeers]:
    core, peers = FakeCore(address), FakePeers(list(connected))
    return VaultReplication(core, peers, lambda n: n in validators), core, peers  # type: ignore[arg-type]


def blob(tag: str, size: int = 100) -> tuple[bytes, bytes]:
    data = (tag.encode() * size)[:size]
    return sha(data), data


def test_upload_is_pushed_to_the_validators_only() -> None:
    vr, _, peers = make()
    h, data = blob("up")
    vr.on_local_blob(h, data)
    assert sorted(p for p, kind, _ in peers.sent if kind == m.VAULT_BLOB) == [V1, V2]


def test_a_validator_stores_pushes_from_any_member_and_an_observer_stores_none() -> None:
    vr, core, _ = make()
    h, data = blob("a")
    core.referenced.add(h)
    vr.on_blob(OBS, m.VaultBlob(h, data))  # an observer's upload, passed on
    assert core.vault[h] == data
    observer, ocore, _ = make(address=OBS)
    ocore.referenced.add(h)
    observer.on_blob(V1, m.VaultBlob(h, data))
    assert ocore.vault == {}


def test_orphans_wait_for_their_transaction_and_bad_ones_are_not_kept() -> None:
    vr, core, _ = make()
    h, data = blob("early")
    vr.on_blob(V1, m.VaultBlob(h, data))
    assert core.vault == {}
    wrong = m.VaultBlob(sha(b"other"), data)  # does not hash to its name: never kept
    vr.on_blob(V1, wrong)
    core.referenced.add(h)
    core.referenced.add(wrong.hash)
    vr.retry_orphans()
    assert core.vault == {h: data}
    gone, gdata = blob("erased")
    vr.on_blob(V2, m.VaultBlob(gone, gdata))
    core.erased.add(gone)
    vr.retry_orphans()  # an erased orphan is dropped, never stored
    assert gone not in core.vault
    vr.retry_orphans()
    assert gone not in core.vault


def test_one_peer_cannot_crowd_out_the_others_orphans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rep, "MAX_ORPHAN_BYTES_PER_PEER", 300)
    monkeypatch.setattr(rep, "MAX_ORPHAN_BYTES", 10_000)
    vr, core, _ = make()
    honest = [blob(f"h{i}") for i in range(2)]
    for h, data in honest:
        vr.on_blob(V1, m.VaultBlob(h, data))
    flood = [blob(f"f{i}") for i in range(10)]
    for h, data in flood:
        vr.on_blob(OBS, m.VaultBlob(h, data))
    for h, _ in [*honest, *flood]:
        core.referenced.add(h)
    vr.retry_orphans()
    assert all(h in core.vault for h, _ in honest)
    # The flooder holds at most its quota, its own oldest evicted first.
    assert [h for h, _ in flood if h in core.vault] == [h for h, _ in flood[-3:]]


def test_over_the_total_the_biggest_holder_gives_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rep, "MAX_ORPHAN_BYTES_PER_PEER", 10_000)
    monkeypatch.setattr(rep, "MAX_ORPHAN_BYTES", 500)
    vr, core, _ = make()
    order = [(V1, blob("v1")), (OBS, blob("o1")), (OBS, blob("o2")), (OBS, blob("o3")), (V2, blob("v2a")),
             (V2, blob("v2b"))]  # 600 bytes offered, 500 kept
    for peer, (h, data) in order:
        vr.on_blob(peer, m.VaultBlob(h, data))
        core.referenced.add(h)
    vr.retry_orphans()
    kept = {h for h in core.vault}
    assert order[0][1][0] in kept  # the oldest orphan overall is not the one evicted...
    assert order[1][1][0] not in kept  # ...the biggest holder's oldest is
    assert len(kept) == 5


def test_missing_blobs_are_asked_of_one_validator_at_a_time_with_doubling_delays(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(rep.time, "monotonic", lambda: clock[0])

    class Tx:
        type = "asset.issue"

    vr, core, peers = make()
    h, _data = blob("missing")
    core.referenced.add(h)
    monkeypatch.setattr(rep, "referenced_blob", lambda tx: h)
    vr._was_validator = True
    vr.after_block([Tx()])  # type: ignore[list-item]
    vr.request_due()
    assert peers.sent == []  # within the grace period: the push may be on its way
    asked: list[tuple[float, bytes]] = []
    for _ in range(400):
        clock[0] += 1.0
        before = len(peers.sent)
        vr.request_due()
        asked += [(clock[0], p) for p, kind, _ in peers.sent[before:] if kind == m.VAULT_REQUEST]
    assert len(asked) == rep.WANT_ATTEMPTS and vr.wanted == 0  # given up after ten requests
    assert {p for _, p in asked} == {V1, V2}  # only validators, in turn; never the observer
    assert all(a != b for (_, a), (_, b) in itertools.pairwise(asked))
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(asked)]
    assert gaps[:5] == [2.0, 4.0, 8.0, 16.0, 32.0] and max(gaps) <= rep.WANT_MAX_DELAY


def test_a_request_that_could_not_be_sent_does_not_count_and_a_stored_blob_is_forgotten(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(rep.time, "monotonic", lambda: clock[0])
    vr, core, peers = make()
    h, data = blob("later")
    core.referenced.add(h)
    vr._want(h, 0.0)
    peers.refuse = True
    for _ in range(30):
        clock[0] += 60.0
        vr.request_due()
    assert vr.wanted == 1  # still wanted: nothing was ever sent
    peers.refuse = False
    core.vault[h] = data  # it arrived by a push meanwhile
    clock[0] += 60.0
    vr.request_due()
    assert vr.wanted == 0 and all(kind != m.VAULT_REQUEST for _, kind, _ in peers.sent)


def test_requests_are_answered_for_validators_only() -> None:
    vr, core, peers = make()
    h, data = blob("held")
    core.referenced.add(h)
    core.vault[h] = data
    vr.on_request(OBS, m.VaultRequest(h))
    assert peers.sent == []
    vr.on_request(V1, m.VaultRequest(h))
    assert [(p, kind) for p, kind, _ in peers.sent] == [(V1, m.VAULT_BLOB)]
    assert m.VaultBlob.decode(peers.sent[0][2]) == m.VaultBlob(h, data)
    core.erased.add(h)
    vr.on_request(V2, m.VaultRequest(h))
    assert len(peers.sent) == 1  # a shredded blob is never sent


def test_the_backlog_scan_on_start_wants_every_missing_committed_blob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rep, "SCAN_PAGE", 3)

    async def body() -> None:
        vr, core, _ = make()
        blobs = [blob(f"s{i}") for i in range(8)]
        core.refs_missing = [h for h, _ in blobs]
        core.vault[blobs[0][0]] = blobs[0][1]
        vr.start()
        assert vr._scan is not None
        await vr._scan
        assert vr.wanted == 7
        observer, ocore, _ = make(address=OBS)
        ocore.refs_missing = [h for h, _ in blobs]
        observer.start()
        assert observer._scan is None and observer.wanted == 0  # an observer fetches nothing
        await vr.stop()

    asyncio.run(body())
