"""Restarting a real node process (`mydata node start HOME`): it resumes exactly where it stopped (height,
app hash, blocks, every committed transaction and object; the mempool, which is not persisted, starts empty),
the vault's ciphertexts survive (and shredded ones stay shredded), and a home whose genesis file is not the
chain its store holds refuses to start.

Every node process is ours and is stopped by its own pid in the fixture's teardown, whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.demo import LICENCE, PAYMENT, demo_genesis, start_local_node
from cli.localnet import NodeProcess
from consensus.types import Genesis
from contracts.txs import RevokeConsent
from node.config import read_genesis, write_genesis
from wallet.actions import Receipt, WalletSession, grant_window_ms
from wallet.client import ApiError, Client
from wallet.devchain import Identity
from wallet.tx import make_tx

pytestmark = pytest.mark.timeout(120)

SEED = 20261128
NAMES = ["validator", "data-bureau", "public-security", "social-security", "market-regulator", "bank", "notary",
         "auditor", "citizen", "enterprise", "enterprise-clerk"]
PAYMENT_RECORD = {"name": "Li Wei", "employer": "Jinan Light Industry Co.", "monthly_wage": "8650",
                  "months_paid": "94", "last_paid_month": "2026-10"}
LICENCE_RECORD = {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min",
                  "registered_capital": "5000000", "business_scope": "software, data services",
                  "established": "2019-03-18"}


@pytest.fixture
def procs() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for p in started:
            p.stop()


@dataclass
class Node:
    base: Path
    ids: dict[str, Identity]
    proc: NodeProcess
    genesis: Genesis

    @property
    def home(self) -> Path:
        return self.proc.home

    def client(self, who: str = "auditor") -> Client:
        i = self.ids[who]
        return Client(self.proc.url, timeout=10.0).as_(i.signer, i.id)

    def session(self, who: str) -> WalletSession:
        return WalletSession(Client(self.proc.url, timeout=10.0), self.ids[who])

    def restart(self, procs: list[NodeProcess]) -> None:
        self.proc.stop()
        assert self.proc.proc is not None and self.proc.proc.poll() is not None
        self.proc = NodeProcess(self.home, self.proc.api)
        procs.append(self.proc)
        self.proc.start(timeout=30)


def start(base: Path, procs: list[NodeProcess], tag: str) -> Node:
    print(f"seed={SEED}")
    ids = {n: Identity.derive(n, f"restart-{SEED}-{tag}".encode()) for n in NAMES}
    proc = start_local_node(base, ids, demo_genesis(ids, chain_id=f"restart-{tag}"))
    procs.append(proc)
    return Node(base, ids, proc, read_genesis(base / "genesis.json"))


def register(n: Node) -> None:
    ps = n.session("public-security")
    salt = hashlib.sha256(f"salt-{SEED}".encode()).digest()[:16]
    for who, kind, subject in (("citizen", "person", "370102199001011234"),
                               ("enterprise", "enterprise", "91370100MA3C000000")):
        ps.register_holder(kind, subject, salt, n.ids[who].pk, n.ids[who].enc_pk)


def snapshot(n: Node) -> dict[str, Any]:
    """Everything the API says of the chain and of the parties' objects (auditor's and own views)."""
    a = n.client("auditor")
    st = a.status()
    out: dict[str, Any] = {"status": {k: st[k] for k in ("chain_id", "height", "latest_block_hash",
                                                         "latest_block_time_ms", "app_hash", "genesis_hash",
                                                         "validators", "total_power")}}
    out["blocks"] = [a.block(h) for h in range(1, st["height"] + 1)]
    for who in ("citizen", "enterprise", "bank", "notary", "social-security"):
        c = n.client(who)
        for what in ("assets", "grants", "accesses", "requests"):
            out[f"{who}/{what}"] = c.listing(n.ids[who].id, what)
        out[f"{who}/account"] = c.account_info(n.ids[who].id)
    return out


def test_restart_resumes_exactly_where_it_stopped(tmp_path: Path, procs: list[NodeProcess]) -> None:
    n = start(tmp_path, procs, "exact")
    register(n)
    receipts: list[Receipt] = []
    payment = n.session("social-security").issue(n.ids["citizen"].id, PAYMENT, PAYMENT_RECORD)
    receipts.append(payment)
    req = n.session("bank").request_consent(n.ids["citizen"].id, [PAYMENT], ["monthly_wage"], "loan",
                                            30 * 86_400_000, 3)
    receipts.append(req)
    g = n.session("citizen").grant(n.ids["bank"].id, [payment.object_id], ["monthly_wage"], "loan",
                                   grant_window_ms(30), 3, request_id=req.object_id)
    receipts.append(g)
    pulled = n.session("bank").pull(g.object_id)
    refused = n.session("notary").send(RevokeConsent(g.object_id), check=False)  # refused on chain, committed
    assert refused.code != "ok"
    receipts.append(refused)
    corr = n.session("citizen").request_correction(payment.object_id, ["monthly_wage"])
    receipts.append(corr)
    auditor = n.client("auditor")
    where = {r.tx_hash: auditor.tx(r.tx_hash) for r in receipts}
    assert all(w["status"] == "committed" for w in where.values())

    # a transaction that cannot commit yet (a nonce gap) waits in the mempool when the node stops
    citizen = n.session("citizen")
    gap_nonce = citizen.next_nonce() + 1
    gapped = make_tx(n.ids["citizen"].signer, n.genesis.chain_id, gap_nonce, RevokeConsent(g.object_id))
    assert citizen.client.submit(gapped, wait=False)["code"] == "ok"
    assert auditor.tx(gapped.hash)["status"] == "pending"
    assert auditor.status()["mempool"]["txs"] == 1

    before = snapshot(n)
    n.restart(procs)
    after = snapshot(n)
    assert after == before, "the restarted node must answer exactly as before (chain, blocks, objects)"

    auditor = n.client("auditor")
    st = auditor.status()
    assert st["mempool"]["txs"] == 0, "the mempool starts empty"
    with pytest.raises(ApiError) as e:
        auditor.tx(gapped.hash)
    assert e.value.status == 404
    for h, r in where.items():
        assert auditor.tx(h) == r, "every committed transaction is found where it was, with its result"
    assert n.client("bank").object("accesses", pulled.access_id)["height"] == pulled.height

    # a second restart, with nothing new in between, changes nothing either
    n.restart(procs)
    assert snapshot(n) == before

    # the chain continues on top of the same last block: the second use of the grant, then the revocation
    again = n.session("bank").pull(g.object_id)
    assert again.height == st["height"] + 1
    b = n.client().block(again.height)
    assert b["header"]["prev_hash"] == st["latest_block_hash"]
    rv = n.session("citizen").revoke(g.object_id)
    assert rv.ok and rv.height == again.height + 1
    grant = n.client("citizen").object("grants", g.object_id)
    assert (grant["status"], grant["uses"], grant["max_uses"]) == ("revoked", 2, 3)


def test_vault_blobs_survive_restart(tmp_path: Path, procs: list[NodeProcess]) -> None:
    n = start(tmp_path, procs, "vault")
    register(n)
    cit = n.session("citizen")
    payment = n.session("social-security").issue(n.ids["citizen"].id, PAYMENT, PAYMENT_RECORD).object_id
    licence = n.session("market-regulator").issue(n.ids["enterprise"].id, LICENCE, LICENCE_RECORD).object_id
    doomed = n.session("social-security").issue(n.ids["citizen"].id, PAYMENT,
                                                {**PAYMENT_RECORD, "employer": "Old Co."}).object_id
    g = cit.grant(n.ids["bank"].id, [payment], ["monthly_wage", "name"], "loan", grant_window_ms(30), 5).object_id
    eg = n.session("enterprise").grant(n.ids["notary"].id, [licence], ["company_name"], "notarise",
                                       grant_window_ms(7), 3).object_id
    assert n.session("bank").pull(g).fields == {payment: {"monthly_wage": "8650", "name": "Li Wei"}}
    doomed_rec = cit.asset(doomed)
    doomed_hash = bytes.fromhex(doomed_rec["payload_hash"])
    doomed_blob = cit.client.vault_get(doomed_hash)
    assert hashlib.sha256(doomed_blob).digest() == doomed_hash
    cit.erase(doomed)
    with pytest.raises(ApiError) as e:
        cit.client.vault_get(doomed_hash)
    assert e.value.status == 404

    def vault_files() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted((n.home / "vault").rglob("*")) if p.is_file()}

    files = vault_files()
    assert doomed_hash.hex() not in files
    assert len(files) == 4, files  # two payloads, two packages
    assert all(name == digest for name, digest in files.items()), "content-addressed"

    n.restart(procs)
    assert vault_files() == files, "the vault holds exactly the same ciphertexts after the restart"
    cit = n.session("citizen")
    assert cit.open_asset(payment).record == PAYMENT_RECORD
    assert n.session("enterprise").open_asset(licence).record == LICENCE_RECORD
    assert n.session("bank").pull(g).fields == {payment: {"monthly_wage": "8650", "name": "Li Wei"}}
    assert n.session("notary").pull(eg).fields == {licence: {"company_name": "Quancheng Digital Ltd."}}
    # shredded stays shredded: not served, and never accepted again
    with pytest.raises(ApiError) as e:
        cit.client.vault_get(doomed_hash)
    assert e.value.status == 404
    with pytest.raises(ApiError) as e:
        cit.client.vault_put(doomed_hash, doomed_blob)
    assert e.value.code == "erased" and 400 <= e.value.status < 500
    assert cit.asset(doomed)["status"] == "erased"
    assert doomed_hash.hex() not in vault_files()


def _start_process(home: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """`mydata node start HOME` expected to refuse: bounded; a node that starts anyway is killed on timeout."""
    return subprocess.run([sys.executable, "-m", "cli", "node", "start", str(home)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _stopped_node_with_blocks(tmp_path: Path, procs: list[NodeProcess], tag: str) -> tuple[Node, dict[str, Any]]:
    n = start(tmp_path, procs, tag)
    register(n)
    status = n.client().status()
    n.proc.stop()
    return n, status


def test_a_home_with_another_genesis_refuses_to_start(tmp_path: Path, procs: list[NodeProcess]) -> None:
    n, status = _stopped_node_with_blocks(tmp_path, procs, "genesis")
    original = (n.home / "genesis.json").read_bytes()
    # the same chain id, another genesis (another time): the config check passes, the store's chain does not
    other = demo_genesis(n.ids, chain_id=n.genesis.chain_id)
    assert other.hash != n.genesis.hash
    write_genesis(n.home / "genesis.json", other)
    r = _start_process(n.home)
    assert r.returncode != 0, r.stderr
    assert "refusing to start" in r.stderr and n.genesis.hash.hex()[:16] in r.stderr \
        and other.hash.hex()[:16] in r.stderr, r.stderr

    # another chain id altogether: the home's config and genesis disagree
    foreign = demo_genesis(n.ids, chain_id="another-chain")
    write_genesis(n.home / "genesis.json", foreign)
    r = _start_process(n.home)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "another-chain" in lines[0] and n.genesis.chain_id in lines[0], r.stderr

    # the refusals touched nothing: with its own genesis back, the node resumes where it stopped
    (n.home / "genesis.json").write_bytes(original)
    n.proc = NodeProcess(n.home, n.proc.api)
    procs.append(n.proc)
    n.proc.start(timeout=30)
    after = n.client().status()
    assert (after["height"], after["app_hash"], after["latest_block_hash"]) == (
        status["height"], status["app_hash"], status["latest_block_hash"])
    assert n.session("social-security").issue(n.ids["citizen"].id, PAYMENT, PAYMENT_RECORD).height == \
        status["height"] + 1


def test_genesis_mismatch_is_one_line(tmp_path: Path, procs: list[NodeProcess]) -> None:
    """(Regression: GenesisMismatch escaped cli/main.py main() as a full traceback.)"""
    n, _ = _stopped_node_with_blocks(tmp_path, procs, "genesis-line")
    write_genesis(n.home / "genesis.json", demo_genesis(n.ids, chain_id=n.genesis.chain_id))
    r = _start_process(n.home)
    assert r.returncode == 1
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert "Traceback" not in r.stderr and len(lines) == 1 and lines[0].startswith("mydata: "), r.stderr
    assert json.loads((n.home / "config.json").read_text())["chain_id"] == n.genesis.chain_id


def test_blobs_of_transactions_lost_with_the_mempool_are_deleted(tmp_path: Path,
                                                                 procs: list[NodeProcess]) -> None:
    from wallet.assetdata import seal_asset

    n = start(tmp_path, procs, "orphan")
    register(n)
    issuer = n.session("social-security")
    sealed = seal_asset(PAYMENT, PAYMENT_RECORD, n.ids["citizen"].enc_pk)
    # a nonce gap keeps the issue waiting in the mempool; its ciphertext is accepted meanwhile (NODE-4)
    tx = make_tx(n.ids["social-security"].signer, n.genesis.chain_id, issuer.next_nonce() + 1,
                 sealed.issue_body(n.ids["citizen"].id, PAYMENT))
    assert issuer.client.submit(tx, wait=False)["code"] == "ok"
    issuer.client.vault_put(sealed.payload_hash, sealed.blob)
    blob_file = n.home / "vault" / sealed.payload_hash.hex()[:2] / sealed.payload_hash.hex()
    assert blob_file.is_file()

    n.restart(procs)
    assert n.client().status()["mempool"]["txs"] == 0
    with pytest.raises(ApiError):  # nothing can release it...
        n.client("citizen").vault_get(sealed.payload_hash)
    assert not blob_file.exists(), "...so it must not stay in the vault"
