"""Crash recovery of a real node process (`mydata node start`): kill -9 under load loses no committed
transaction, the restarted node resumes at the app hash an independent replay of its block store computes,
and the chain goes on; SIGTERM stops it cleanly; a second node on the same home is refused.

The load: four client threads, one per sender (citizen and enterprise grant consent, the bank and the notary
record accesses, some of them refused on chain), each signing with explicit nonces and submitting with
`Client.submit(tx, wait=False)` (or now and then `wait=True`), then asking `GET /v1/txs/{hash}` until the
node says "committed". Only what the node acknowledged as committed is held against it after the crash.

Every node process is ours (NodeProcess, started with start_new_session) and is stopped by its pid in the
fixture's teardown, whatever happens. Randomness is seeded; each test prints its seed (pytest shows it on
failure).
"""

from __future__ import annotations

import hashlib
import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cli.demo import LICENCE, PAYMENT, demo_genesis, start_local_node
from cli.localnet import NodeProcess, free_port
from consensus.types import Genesis, Tx
from contracts.audit import AuditReport, replay
from contracts.txs import GrantConsent, RecordAccess
from node.blockstore import BlockStore
from node.config import read_genesis
from node.kvstore import LevelDBKV
from wallet.actions import WalletSession, grant_window_ms
from wallet.client import Client, NodeUnreachable
from wallet.devchain import Identity
from wallet.tx import make_tx

pytestmark = pytest.mark.timeout(120)

NAMES = ["validator", "data-bureau", "public-security", "social-security", "market-regulator", "bank", "notary",
         "auditor", "citizen", "enterprise", "enterprise-clerk"]
PAYMENT_RECORD = {"name": "Li Wei", "employer": "Jinan Light Industry Co.", "monthly_wage": "8650",
                  "months_paid": "94", "last_paid_month": "2026-10"}
LICENCE_RECORD = {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min",
                  "registered_capital": "5000000", "business_scope": "software, data services",
                  "established": "2019-03-18"}


def identities(seed: int) -> dict[str, Identity]:
    return {n: Identity.derive(n, f"crash-{seed}".encode()) for n in NAMES}


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """Every node process (NodeProcess or Popen) a test starts; all stopped by their own pid at the end."""
    started: list[Any] = []
    try:
        yield started
    finally:
        for p in started:
            if isinstance(p, NodeProcess):
                p.stop()
            elif p.poll() is None:
                p.kill()
                p.wait(10)


@dataclass
class Chain:
    base: Path
    ids: dict[str, Identity]
    node: NodeProcess
    genesis: Genesis
    payment: bytes = b""
    licence: bytes = b""
    bank_grant: bytes = b""
    notary_grant: bytes = b""

    @property
    def home(self) -> Path:
        return self.node.home

    def client(self, who: str = "auditor") -> Client:
        i = self.ids[who]
        return Client(self.node.url, timeout=10.0).as_(i.signer, i.id)

    def session(self, who: str) -> WalletSession:
        return WalletSession(Client(self.node.url, timeout=10.0), self.ids[who])

    def restart(self, procs: list[Any]) -> None:
        self.node = NodeProcess(self.home, self.node.api)
        procs.append(self.node)
        self.node.start(timeout=30)


def prepare(base: Path, seed: int, procs: list[Any]) -> Chain:
    """A node with two registered holders, an asset each, and one long-lived grant to each consumer."""
    ids = identities(seed)
    node = start_local_node(base, ids, demo_genesis(ids, chain_id=f"crash-{seed}"))
    procs.append(node)
    c = Chain(base, ids, node, read_genesis(base / "genesis.json"))
    ps = c.session("public-security")
    salt = hashlib.sha256(f"salt-{seed}".encode()).digest()[:16]
    ps.register_holder("person", "370102199001011234", salt, ids["citizen"].pk, ids["citizen"].enc_pk)
    ps.register_holder("enterprise", "91370100MA3C000000", salt, ids["enterprise"].pk, ids["enterprise"].enc_pk)
    c.payment = c.session("social-security").issue(ids["citizen"].id, PAYMENT, PAYMENT_RECORD).object_id
    c.licence = c.session("market-regulator").issue(ids["enterprise"].id, LICENCE, LICENCE_RECORD).object_id
    c.bank_grant = c.session("citizen").grant(ids["bank"].id, [c.payment], ["monthly_wage"], "loan",
                                              grant_window_ms(30), 1_000_000).object_id
    c.notary_grant = c.session("enterprise").grant(ids["notary"].id, [c.licence], ["company_name"], "notarise",
                                                   grant_window_ms(30), 1_000_000).object_id
    return c


def replay_home(c: Chain, up_to: int | None = None) -> tuple[AuditReport, dict[bytes, tuple[int, int]]]:
    """The auditor's replay over the (stopped) node's LevelDB block store, and where each tx of `hashes` is."""
    store = LevelDBKV(c.home / "data", create_if_missing=False)
    try:
        bs = BlockStore(store)
        top = bs.height()
        blocks = bs.iter_blocks(1)
        if up_to is not None:
            blocks = itertools.takewhile(lambda b: b.height <= up_to, blocks)
        report = replay(c.genesis, blocks, bs.commit(top) if up_to is None else bs.commit(up_to))
        where: dict[bytes, tuple[int, int]] = {}
        for h in range(1, top + 1):
            b = bs.block(h)
            assert b is not None, f"block {h} missing from the store"
            for i, raw in enumerate(b.txs):
                where[hashlib.sha256(raw).digest()] = (h, i)
        return report, where
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------- the load


@dataclass
class Acked:
    height: int
    index: int
    code: str
    sender: str


@dataclass
class Load:
    """Client threads submitting a stream of grants and accesses, recording what the node acknowledged."""

    chain: Chain
    seed: int
    stop: threading.Event = field(default_factory=threading.Event)
    killed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[bytes, Acked] = field(default_factory=dict)
    submitted: int = 0
    errors: list[str] = field(default_factory=list)
    uploads: dict[bytes, bytes] = field(default_factory=dict)  # grant tx hash -> its uploaded package
    threads: list[threading.Thread] = field(default_factory=list)

    def body(self, who: str, rng: random.Random) -> tuple[Any, bytes | None]:
        c = self.chain
        ids = c.ids
        if who == "citizen":
            blob = rng.randbytes(rng.randint(32, 1024))
            return GrantConsent(ids["bank"].id, (c.payment,), tuple(sorted(rng.sample(
                ["monthly_wage", "months_paid", "employer"], rng.randint(1, 3)))), "loan",
                grant_window_ms(30), rng.randint(1, 50), hashlib.sha256(blob).digest(), b""), blob
        if who == "enterprise":
            blob = rng.randbytes(rng.randint(32, 1024))
            return GrantConsent(ids["notary"].id, (c.licence,), ("company_name",), "notarise",
                                grant_window_ms(7), 1, hashlib.sha256(blob).digest(), b""), blob
        if who == "bank":  # mostly its own grant (ok); sometimes the notary's (refused: not_grantee)
            if rng.random() < 0.8:
                return RecordAccess(c.bank_grant, c.payment), None
            return RecordAccess(c.notary_grant, c.licence), None
        # the notary: its grant (ok), or a grant that does not exist (refused: unknown_grant)
        if rng.random() < 0.85:
            return RecordAccess(c.notary_grant, c.licence), None
        return RecordAccess(rng.randbytes(32), c.licence), None

    def run(self, who: str, nonce: int) -> None:
        rng = random.Random(f"{self.seed}/{who}")
        ident = self.chain.ids[who]
        client = self.chain.client(who)
        chain_id = self.chain.genesis.chain_id
        try:
            while not self.stop.is_set():
                pending: list[Tx] = []
                for _ in range(rng.randint(1, 8)):
                    body, blob = self.body(who, rng)
                    tx = make_tx(ident.signer, chain_id, nonce, body)
                    nonce += 1
                    with self.lock:
                        self.submitted += 1
                    if rng.random() < 0.15:
                        r = client.submit(tx, wait=True)
                        self.ack(tx.hash, int(r["height"]), int(r["index"]), str(r["code"]), who)
                    else:
                        client.submit(tx, wait=False)
                        pending.append(tx)
                    if blob is not None:
                        client.vault_put(hashlib.sha256(blob).digest(), blob)
                        with self.lock:
                            self.uploads[tx.hash] = blob
                deadline = time.monotonic() + 20
                while pending:
                    tx = pending[0]
                    r = client.tx(tx.hash)
                    if r.get("status") == "committed":
                        self.ack(tx.hash, int(r["height"]), int(r["index"]), str(r["code"]), who)
                        pending.pop(0)
                        continue
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{who}: {tx.hash.hex()} not committed in 20 s")
                    time.sleep(0.005)
        except NodeUnreachable:
            if not self.killed.is_set():
                self.errors.append(f"{who}: node unreachable before the kill")
        except Exception as e:  # anything else before the kill is a failure of the node
            if not self.killed.is_set():
                self.errors.append(f"{who}: {type(e).__name__}: {e}")
        finally:
            client.close()

    def ack(self, tx_hash: bytes, height: int, index: int, code: str, who: str) -> None:
        with self.lock:
            self.acked[tx_hash] = Acked(height, index, code, who)

    def start(self) -> None:
        for who in ("citizen", "enterprise", "bank", "notary"):
            nonce = self.chain.session(who).next_nonce()
            t = threading.Thread(target=self.run, args=(who, nonce), name=f"load-{who}", daemon=True)
            self.threads.append(t)
            t.start()

    def join(self, timeout: float = 30.0) -> None:
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.threads), "a load thread did not stop"


# ---------------------------------------------------------------------------------------------- kill -9


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_kill9_under_load_loses_nothing_committed(seed: int, tmp_path: Path, procs: list[Any]) -> None:
    print(f"seed={seed}")
    rng = random.Random(seed)
    c = prepare(tmp_path, seed, procs)
    auditor = c.client("auditor")
    delay = rng.uniform(0.3, 2.0)
    print(f"kill after {delay:.2f} s of load")

    load = Load(c, seed)
    load.start()
    last: dict[str, Any] = {}
    t0 = time.monotonic()
    try:
        # let the load run for the seeded delay, and at least until a few transactions were acknowledged
        while time.monotonic() - t0 < delay or len(load.acked) < 10:
            assert time.monotonic() - t0 < 30, f"too few acknowledged transactions: {len(load.acked)}"
            assert not load.errors, load.errors
            last = auditor.status()
            time.sleep(0.02)
        with load.lock:
            acked_before = len(load.acked)
        load.killed.set()
        c.node.kill9()
    finally:
        load.join()
    assert not load.errors, load.errors
    assert c.node.proc is not None and c.node.proc.returncode == -9
    acked = dict(load.acked)
    assert len(acked) >= acked_before >= 10
    print(f"{load.submitted} submitted, {len(acked)} acknowledged as committed; last status seen at height "
          f"{last['height']}")

    # -- restart the same home ------------------------------------------------------------------------------------
    c.restart(procs)
    auditor = c.client("auditor")
    st = auditor.status()
    assert st["mempool"]["txs"] == 0, "the mempool is not persisted: it starts empty"
    assert st["height"] >= max(a.height for a in acked.values())
    assert st["height"] >= last["height"]
    seen = auditor.block(last["height"])
    assert seen["header"]["app_hash"] == last["app_hash"] and seen["hash"] == last["latest_block_hash"], \
        "a block seen committed before the crash is the same block after it"

    # every transaction acknowledged as committed is still committed, where it was, with the same result
    for h, a in acked.items():
        r = auditor.tx(h)
        assert (r["status"], r["height"], r["index"], r["code"]) == ("committed", a.height, a.index, a.code), \
            f"seed={seed}: {a.sender}'s {h.hex()} was acknowledged as {a} but is now {r}"
    codes = {a.code for a in acked.values()}
    assert "ok" in codes

    # vault packages uploaded for acknowledged grants survived the crash
    bank = c.client("bank")
    checked = 0
    for tx_hash, package in list(load.uploads.items()):
        ack = acked.get(tx_hash)
        if ack is None or ack.sender != "citizen" or ack.code != "ok" or checked >= 3:
            continue
        grant_id = bytes.fromhex(auditor.tx(tx_hash)["object_id"])
        nonce = int(bank.account_info(c.ids["bank"].id)["nonce"])
        got, _ = bank.pull(make_tx(c.ids["bank"].signer, c.genesis.chain_id, nonce,
                                   RecordAccess(grant_id, c.payment)))
        assert got == package, "the package released after the crash is the one uploaded before it"
        checked += 1
    assert checked >= 1, "the load made no acknowledged grant with an uploaded package"

    # -- the chain goes on: one more transaction per sender commits after the restart -------------------------------
    after: dict[str, dict[str, Any]] = {}
    for who in ("citizen", "enterprise", "bank", "notary"):
        body, _ = load.body(who, random.Random(f"after/{seed}/{who}"))
        if isinstance(body, RecordAccess):  # the always-valid variant
            body = RecordAccess(c.bank_grant, c.payment) if who == "bank" else RecordAccess(c.notary_grant,
                                                                                          c.licence)
        s = c.session(who)
        tx = make_tx(c.ids[who].signer, c.genesis.chain_id, s.next_nonce(), body)
        after[who] = s.client.submit(tx, wait=True)
        assert after[who]["code"] == "ok", after[who]
        assert after[who]["height"] > st["height"]
    final = auditor.status()
    assert final["height"] > st["height"]
    c.node.stop()

    # -- an independent replay of the block store agrees ---------------------------------------------------------
    at_restart, _ = replay_home(c, up_to=st["height"])
    assert (at_restart.height, at_restart.app_hash) == (st["height"], st["app_hash"]), \
        f"seed={seed}: the restarted node's status disagrees with a replay of its blocks"
    assert at_restart.final_commit_verified
    report, where = replay_home(c)
    assert (report.height, report.app_hash, report.last_block_hash) == (
        final["height"], final["app_hash"], final["latest_block_hash"])
    assert report.final_commit_verified
    entries: dict[str, tuple[int, str]] = {e.tx_hash: (e.height, e.code) for e in report.grants}
    entries.update({e.tx_hash: (e.height, e.code) for e in report.accesses})
    for h, a in acked.items():
        assert where[h] == (a.height, a.index)
        assert entries[h.hex()] == (a.height, a.code), f"seed={seed}: the replay disagrees on {h.hex()}"
    assert {"ok", "not_grantee", "unknown_grant"} >= {e.code for e in report.accesses}


# ---------------------------------------------------------------------------------------------- SIGTERM


def test_sigterm_stops_promptly_and_restart_resumes(tmp_path: Path, procs: list[Any]) -> None:
    seed = 5
    print(f"seed={seed}")
    c = prepare(tmp_path, seed, procs)
    bank = c.session("bank")
    for _ in range(3):
        assert bank.pull(c.bank_grant).fields == {c.payment: {"monthly_wage": "8650"}}
    before = c.client().status()
    p = c.node.proc
    assert p is not None
    t0 = time.monotonic()
    p.terminate()  # SIGTERM, to our own child
    try:
        rc = p.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail("the node did not stop within 15 s of SIGTERM")
    print(f"stopped in {time.monotonic() - t0:.2f} s with exit code {rc}")
    assert rc in (0, -15), f"SIGTERM must stop the node, not crash it: exit code {rc}\n{c.node.log_tail()}"
    assert "Traceback" not in c.node.log_tail(200)

    c.restart(procs)
    after = c.client().status()
    for k in ("height", "app_hash", "latest_block_hash", "latest_block_time_ms", "genesis_hash"):
        assert after[k] == before[k], k
    assert after["mempool"]["txs"] == 0
    got = bank.pull(c.bank_grant)
    assert got.height == before["height"] + 1
    assert c.client().block(got.height)["header"]["prev_hash"] == before["latest_block_hash"]
    c.node.stop()
    report, _ = replay_home(c)
    assert report.height == got.height and report.final_commit_verified


def test_sigterm_closes_the_store_and_exits_0(tmp_path: Path, procs: list[Any]) -> None:
    """(Regression: uvicorn re-raised the captured SIGTERM after its graceful shutdown, so the node died by the
    signal, exit -15, before run_node's `finally` closed the store.)"""
    ids = identities(6)
    node = start_local_node(tmp_path, ids, demo_genesis(ids, chain_id="crash-6"))
    procs.append(node)
    assert node.proc is not None
    node.proc.terminate()
    rc = node.proc.wait(15)
    assert "node node0 stopped" in node.log_tail(50), node.log_tail(50)
    assert rc == 0


# ---------------------------------------------------------------------------------------------- two nodes, one home


def _second_start(home: Path, api: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", "node", "start", str(home), "--api", api],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_second_node_on_the_same_home_is_refused(tmp_path: Path, procs: list[Any]) -> None:
    seed = 7
    print(f"seed={seed}")
    c = prepare(tmp_path, seed, procs)
    before = c.client().status()
    for api in (f"127.0.0.1:{free_port()}", c.node.api):  # another port, and the same one
        r = _second_start(c.home, api)
        assert r.returncode == 1, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
        lines = [x for x in r.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert lines[0].startswith("mydata: ") and ("in use" in lines[0] or "lock" in lines[0].lower()), lines[0]
    # the first node is untouched and goes on
    assert c.node.proc is not None and c.node.proc.poll() is None
    assert c.client().status()["app_hash"] == before["app_hash"]
    got = c.session("bank").pull(c.bank_grant)
    assert got.height == before["height"] + 1
    final = c.client().status()
    c.node.stop()
    report, _ = replay_home(c)
    assert (report.height, report.app_hash) == (final["height"], final["app_hash"])
    c.restart(procs)
    assert c.client().status()["app_hash"] == final["app_hash"]


def test_second_node_message_names_the_problem(tmp_path: Path, procs: list[Any]) -> None:
    """(Regression: the message was plyvel's bytes repr, `mydata: b'IO error: lock .../LOCK: ...'`.)"""
    ids = identities(8)
    node = start_local_node(tmp_path, ids, demo_genesis(ids, chain_id="crash-8"))
    procs.append(node)
    r = _second_start(node.home, f"127.0.0.1:{free_port()}")
    assert r.returncode == 1
    line = r.stderr.strip()
    assert "b'" not in line, "no Python bytes repr in a message for people"
    assert "in use" in line or "already running" in line, line
