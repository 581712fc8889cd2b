"""The node's HTTP features against a real node process (DESIGN "API", "Access", "Consent"): health, metrics,
OpenAPI, status and blocks, server-sent events, state proofs, package verification, enterprise delegates.

One node process serves the whole module; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.demo import LICENCE, PAYMENT, demo_genesis, demo_identities, start_local_node
from consensus.crypto import Domain, request_payload
from consensus.statetree import StateProof, verify_state_proof
from contracts.records import Access, Asset, Grant, Kind
from contracts.txs import GrantConsent, RecordAccess, RegisterHolder, RequestConsent
from node.config import read_genesis
from tests.livenode import LiveNode as Node
from wallet.actions import DelegateActor, WalletSession, grant_window_ms, subject_ref
from wallet.assetdata import WalletCryptoError
from wallet.client import ApiError, Client
from wallet.devchain import Identity
from wallet.package import DisclosedAsset, Disclosure, DisclosureError, build_package, open_package, verify_disclosure
from wallet.tx import make_tx

HTTP_TIMEOUT = 30.0
PAYMENT_REC = {"name": "He Jiayi", "employer": "Zibo Ceramics 2210", "monthly_wage": "55120",
               "months_paid": "132", "last_paid_month": "2026-07"}
PAYMENT_REC_2 = {**PAYMENT_REC, "employer": "Linyi Logistics 8802", "monthly_wage": "39004"}
LICENCE_1 = {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min",
             "registered_capital": "5000000", "business_scope": "software", "established": "2019-03-18"}
LICENCE_2 = {"company_name": "Baotu Spring Foods Ltd.", "legal_representative": "Liu Fang",
             "registered_capital": "800000", "business_scope": "food", "established": "2011-06-01"}
GRANTED = ["monthly_wage", "months_paid"]


# ---------------------------------------------------------------------------------------------- the node


@dataclass
class World:
    node: Node
    http: httpx.Client
    asset: bytes
    grant: bytes
    access: bytes

    def id_of(self, who: str) -> bytes:
        return self.node.ids[who].id


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Like tests/conftest.py's `live_node`, for the whole module: one real node process, always stopped."""
    base = tmp_path_factory.mktemp("features")
    ids = demo_identities()
    for extra in ("citizen2", "enterprise2"):
        ids[extra] = Identity(extra, os.urandom(32))
    proc = start_local_node(base, ids, demo_genesis(ids))
    try:
        yield Node(proc, ids, read_genesis(base / "genesis.json"), base)
    finally:
        proc.stop()
        if os.environ.get("MYDATA_SHOW_NODE_LOG"):
            print(proc.log_tail(200))


@pytest.fixture(scope="module")
def world(node: Node) -> Iterator[World]:
    reg = node.session("public-security")
    salt = os.urandom(16)
    for who, kind, subject in (("citizen", "person", "1"), ("citizen2", "person", "2"),
                               ("enterprise", "enterprise", "3"), ("enterprise2", "enterprise", "4")):
        i = node.ids[who]
        reg.send(RegisterHolder(kind, subject_ref(salt, kind, subject), i.pk, i.enc_pk))
    asset = node.session("social-security").issue(node.ids["citizen"].id, PAYMENT, PAYMENT_REC).object_id
    grant = node.session("citizen").grant(node.ids["bank"].id, [asset], GRANTED, "loan", grant_window_ms(30),
                                          10).object_id
    access = node.session("bank").pull(grant).access_id
    with httpx.Client(base_url=node.url, timeout=HTTP_TIMEOUT) as http:
        yield World(node, http, asset, grant, access)


def signed_get(w: World, who: str, path: str) -> httpx.Response:
    i = w.node.ids[who]
    t, nonce = int(time.time() * 1000), os.urandom(16)
    sig = i.signer.sign(Domain.REQUEST, w.node.chain_id, request_payload("GET", path, b"", t, nonce))
    return w.http.get(path, headers={"X-MyData-Account": i.id.hex(), "X-MyData-Key": i.pk.hex(),
                                     "X-MyData-Time": str(t), "X-MyData-Nonce": nonce.hex(),
                                     "X-MyData-Signature": sig.hex()})


HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------------------------------------- operations


def test_healthz(world: World) -> None:
    r = world.http.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["height"] == world.http.get("/v1/status").json()["height"]


def metric_samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def test_metrics(world: World) -> None:
    # a refused pull, so the refusal counter has something to count
    notary = world.node.session("notary")
    with pytest.raises(ApiError) as e:
        notary.client.pull(notary.sign(RecordAccess(world.grant, world.asset)))
    assert (e.value.status, e.value.code) == (403, "not_grantee")
    r = world.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    s = metric_samples(r.text)
    height = world.http.get("/v1/status").json()["height"]
    assert total(s, "mydata_height") == height
    assert total(s, "mydata_blocks_committed_total") == height  # this process made every block
    committed = sum(world.http.get(f"/v1/blocks/{h}").json()["header"]["num_txs"] for h in range(1, height + 1))
    assert total(s, "mydata_txs_committed_total") == committed
    assert total(s, "mydata_txs_submitted_total", code="ok") >= committed
    assert total(s, "mydata_access_released_total") >= 1
    assert total(s, "mydata_access_refused_total", code="not_grantee") >= 1
    assert total(s, "mydata_http_requests_total", route="/v1/status", status="200") >= 1
    assert total(s, "mydata_http_requests_total", route="/v1/access", status="403") >= 1
    assert "mydata_block_seconds_bucket" in s and "mydata_sse_clients" in s


DESIGN_ENDPOINTS = [
    ("get", "/v1/status"), ("get", "/v1/blocks/{height}"), ("post", "/v1/txs"), ("get", "/v1/txs/{hash}"),
    ("get", "/v1/accounts/{id}"), ("get", "/v1/accounts/{id}/assets"), ("get", "/v1/accounts/{id}/grants"),
    ("get", "/v1/accounts/{id}/accesses"), ("get", "/v1/accounts/{id}/requests"), ("put", "/v1/vault/{hash}"),
    ("post", "/v1/access"), ("get", "/v1/events"), ("get", "/v1/proofs/{kind}/{id}"), ("get", "/metrics"),
    ("get", "/healthz"),
]


def template_matches(template: str, path: str) -> bool:
    """Whether an OpenAPI path template covers a DESIGN path (its {params} match any one segment)."""
    t, p = template.strip("/").split("/"), path.strip("/").split("/")
    if len(t) != len(p):
        return False
    for a, b in zip(t, p, strict=True):
        if a.startswith("{") or a == b:
            continue
        return False
    return True


def test_docs_and_openapi(world: World) -> None:
    docs = world.http.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    assert "openapi.json" in docs.text
    spec = world.http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths: dict[str, dict[str, Any]] = spec["paths"]
    for method, path in DESIGN_ENDPOINTS:
        found = [t for t in paths if template_matches(t, path) and method in paths[t]]
        assert found, f"{method.upper()} {path} is not in /openapi.json (paths: {sorted(paths)})"


def test_status(world: World) -> None:
    s = world.http.get("/v1/status").json()
    assert s["chain_id"] == world.node.chain_id
    assert s["node"] == "node0"
    assert isinstance(s["height"], int) and s["height"] >= 1
    assert HEX64.match(s["latest_block_hash"]) and HEX64.match(s["app_hash"])
    tip = world.http.get(f"/v1/blocks/{s['height']}").json()
    assert tip["hash"] == s["latest_block_hash"]
    assert tip["header"]["app_hash"] == s["app_hash"]
    assert s["genesis_hash"] == world.node.genesis.hash.hex()


def test_blocks_chain_up(world: World) -> None:
    height = world.http.get("/v1/status").json()["height"]
    prev = world.node.genesis.hash.hex()  # block 1's prev_hash is the genesis document's hash
    for h in range(1, height + 1):
        b = world.http.get(f"/v1/blocks/{h}").json()
        assert HEX64.match(b["hash"])
        header = b["header"]
        assert header["height"] == h
        assert HEX64.match(header["app_hash"])
        assert header["prev_hash"] == prev, f"block {h} does not link to block {h - 1}"
        assert header["chain_id"] == world.node.chain_id
        assert len(b["tx_hashes"]) == header["num_txs"]
        prev = b["hash"]


def test_validator_set_of_any_height(world: World) -> None:
    height = world.http.get("/v1/status").json()["height"]
    current = world.http.get("/v1/validators").json()
    for h in (1, height, height + 1):
        assert world.http.get("/v1/validators", params={"height": h}).json() == current  # no change on this chain
    for bad in (0, height + 2):
        r = world.http.get("/v1/validators", params={"height": bad})
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_block"
    assert world.http.get("/v1/validators", params={"height": "x"}).status_code == 400


def test_block_long_poll_answers_when_the_block_commits(world: World) -> None:
    """`GET /v1/blocks/{h}?wait=S`: a block not there yet is answered as it commits; nothing comes in S
    seconds: 404; a wait outside 0..30 is 400 and waits for nothing."""
    height = world.http.get("/v1/status").json()["height"]
    assert world.http.get(f"/v1/blocks/{height}", params={"wait": 5}).json()["header"]["height"] == height
    got: dict[str, Any] = {}

    def follow() -> None:
        t0 = time.monotonic()
        r = world.http.get(f"/v1/blocks/{height + 1}", params={"wait": 20})
        got.update(status=r.status_code, body=r.json(), waited=time.monotonic() - t0)

    th = threading.Thread(target=follow, daemon=True)
    th.start()
    time.sleep(0.5)  # the poll is waiting: the chain is idle (blocks are made only when there is work)
    assert not got, got
    receipt = world.node.session("bank").send(RequestConsent(world.node.ids["citizen"].id, (PAYMENT,),
                                                             ("monthly_wage",), "long poll", 86_400_000, 1))
    th.join(20)
    assert got["status"] == 200, got
    assert got["body"]["header"]["height"] == height + 1
    assert receipt.height == height + 1 and receipt.tx_hash.hex() in got["body"]["tx_hashes"]
    t0 = time.monotonic()
    r = world.http.get("/v1/blocks/1000000", params={"wait": 0.3})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_block"
    assert time.monotonic() - t0 >= 0.3
    for bad in ("-1", "31", "nan", "soon"):
        r = world.http.get(f"/v1/blocks/{height + 1000}", params={"wait": bad})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", (bad, r.text)


# ---------------------------------------------------------------------------------------------- events


class Listener:
    """A thread reading one identity's event stream until stopped (bounded by `limit` seconds)."""

    def __init__(self, client: Client, limit: float = 60.0) -> None:
        self.client = client
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None
        self.limit = limit
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.client.events(timeout=self.limit, on_connect=self.connected.set):
                self.events.append(ev)
                if self.stopping.is_set():
                    return
        except Exception as e:
            if not self.stopping.is_set():
                self.error = e

    def kinds(self) -> set[str]:
        return {e["kind"] for e in list(self.events)}

    def wait_for(self, kinds: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if kinds <= self.kinds():
                return True
            time.sleep(0.02)
        return kinds <= self.kinds()

    def stop(self, poke: Callable[[], object]) -> None:
        """Stop reading. A blocked read ends only with the next event (keep-alives are not yielded), so
        `poke` makes one for this identity; a thread that still lingers (a daemon) ends with the node."""
        self.stopping.set()
        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                poke()
            self.thread.join(10)
        self.client.close()


def poke_for(node: Node, holder: bytes) -> Callable[[], object]:
    """Something that makes an event for `holder`: a consent request to it."""
    return lambda: node.session("notary").request_consent(holder, [PAYMENT], ["name"], "stop", 1000, 1)


def test_server_sent_events(world: World) -> None:
    node = world.node
    me = node.ids["citizen"].id
    listener = Listener(node.client("citizen"))
    bystander = Listener(node.client("citizen2"))
    try:
        assert listener.connected.wait(10) and bystander.connected.wait(10), "event streams did not open"
        asset = node.session("social-security").issue(me, PAYMENT, PAYMENT_REC_2).object_id
        assert listener.wait_for({"asset_issued"}, 10), listener.events
        req = node.session("bank").request_consent(me, [PAYMENT], GRANTED, "car loan", 86_400_000, 2).object_id
        assert listener.wait_for({"consent_requested"}, 10), listener.events
        not_after = int(time.time() * 1000) + 3000
        grant = node.session("citizen").grant(node.ids["bank"].id, [asset], GRANTED, "car loan", not_after, 2,
                                              request_id=req).object_id
        node.session("bank").pull(grant)
        assert listener.wait_for({"data_accessed"}, 10), listener.events
        deadline = time.monotonic() + 10
        while time.time() * 1000 <= not_after + 50:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # an unrelated transaction makes the next block, whose start expires the grant
        node.session("notary").request_consent(node.ids["citizen2"].id, [PAYMENT], ["name"], "tick", 86_400_000, 1)
        assert listener.wait_for({"grant_expired"}, 10), listener.events
        assert listener.error is None, listener.error
        by_kind = {e["kind"]: e for e in listener.events}
        assert by_kind["asset_issued"]["object_id"] == asset.hex()
        assert by_kind["consent_requested"]["object_id"] == req.hex()
        assert by_kind["grant_expired"]["object_id"] == grant.hex()
        assert by_kind["grant_expired"]["tx_index"] == -1  # the block's own work
        for e in listener.events:
            assert me.hex() in e["accounts"], e
        assert node.session("citizen").client.object("grants", grant)["status"] == "expired"
        # another holder heard only of what concerns it: the notary's request
        assert {e["kind"] for e in bystander.events} <= {"consent_requested"}, bystander.events
        for e in bystander.events:
            assert me.hex() not in e["accounts"]
    finally:
        for lst, who in ((listener, me), (bystander, node.ids["citizen2"].id)):
            lst.stop(poke_for(node, who))
    assert not listener.thread.is_alive() and not bystander.thread.is_alive()


def test_events_need_a_signature(world: World) -> None:
    r = world.http.get("/v1/events")
    assert r.status_code == 401 and r.json()["error"]["code"] == "signature_required"


# ---------------------------------------------------------------------------------------------- proofs


def check_proof(w: World, who: str, kind: str, oid: bytes, prefix: bytes) -> tuple[bytes, bytes, StateProof, bytes]:
    r = signed_get(w, who, f"/v1/proofs/{kind}/{oid.hex()}")
    assert r.status_code == 200, r.text
    p = r.json()
    key, value = bytes.fromhex(p["key"]), bytes.fromhex(p["value"])
    app_hash = bytes.fromhex(p["app_hash"])
    proof = StateProof.decode(bytes.fromhex(p["proof"]))
    assert key == prefix + oid
    assert verify_state_proof(app_hash, key, value, proof)
    header = w.http.get(f"/v1/blocks/{p['height']}").json()["header"]
    assert header["app_hash"] == p["app_hash"], "the proof's root must be the header's app hash at its height"
    return key, value, proof, app_hash


def test_state_proofs(world: World) -> None:
    key, value, proof, app_hash = check_proof(world, "citizen", "grants", world.grant, Kind.GRANT)
    g = Grant.decode(value)
    view = world.node.session("citizen").client.object("grants", world.grant)
    assert g.id == world.grant and g.uses == view["uses"] and g.package_hash.hex() == view["package_hash"]
    # the same proof fails for anything else
    assert not verify_state_proof(app_hash, key, g.evolve(uses=g.uses + 1).encode(), proof)
    assert not verify_state_proof(app_hash, key, None, proof)
    assert not verify_state_proof(app_hash, Kind.GRANT + bytes(32), value, proof)
    assert not verify_state_proof(bytes(32), key, value, proof)
    if proof.siblings:
        sib = bytearray(proof.siblings[0])
        sib[0] ^= 1
        bad = replace(proof, siblings=(bytes(sib), *proof.siblings[1:]))
        assert not verify_state_proof(app_hash, key, value, bad)
    # the grantee and the auditor get the same proof; other kinds of objects too
    for who in ("bank", "auditor"):
        assert check_proof(world, who, "grants", world.grant, Kind.GRANT)[1] == value
    _, av, _, _ = check_proof(world, "social-security", "assets", world.asset, Kind.ASSET)
    assert Asset.decode(av).id == world.asset
    _, xv, _, _ = check_proof(world, "citizen", "accesses", world.access, Kind.ACCESS)
    assert Access.decode(xv).grant == world.grant
    # the proof stays anchored to its block after the chain moves on
    old = signed_get(world, "citizen", f"/v1/proofs/grants/{world.grant.hex()}").json()
    world.node.session("notary").request_consent(world.id_of("citizen2"), [PAYMENT], ["name"], "move", 1000, 1)
    assert world.http.get("/v1/status").json()["height"] > old["height"]
    assert world.http.get(f"/v1/blocks/{old['height']}").json()["header"]["app_hash"] == old["app_hash"]
    # and the ones that may not see the grant get no proof
    for who in ("citizen2", "notary", "social-security"):
        assert signed_get(world, who, f"/v1/proofs/grants/{world.grant.hex()}").status_code == 404


# ---------------------------------------------------------------------------------------------- packages


def test_tampered_package_fails_verification(world: World) -> None:
    node = world.node
    bank, citizen = node.ids["bank"], node.session("citizen")
    g = citizen.grant(bank.id, [world.asset], GRANTED, "audit of packages", grant_window_ms(1), 3).object_id
    bank_s = node.session("bank")
    blob, meta = bank_s.client.pull(bank_s.sign(RecordAccess(g, world.asset)))
    grant = bank_s.client.object("grants", g)
    package_hash = bytes.fromhex(grant["package_hash"])
    assert meta["package-hash"] == package_hash.hex() and hashlib.sha256(blob).digest() == package_hash
    roots = {bytes.fromhex(a["id"]): bytes.fromhex(a["field_root"]) for a in grant["asset_records"]}
    fields_of = {bytes.fromhex(a["id"]): list(a["fields"]) for a in grant["asset_records"]}

    def verify(b: bytes, *, check_hash: bool = True) -> dict[bytes, dict[str, str]]:
        d = open_package(b, bank.enc_secret, package_hash=package_hash if check_hash else None)
        return verify_disclosure(d, roots, grant["fields"], asset_fields=fields_of)

    assert verify(blob) == {world.asset: {k: PAYMENT_REC[k] for k in GRANTED}}
    # a flipped byte anywhere: the hash check, then the AEAD, refuse it
    for i in (0, 1, len(blob) // 3, len(blob) // 2, len(blob) - 17, len(blob) - 1):
        bad = bytearray(blob)
        bad[i] ^= 0x01
        for check_hash in (True, False):
            with pytest.raises(WalletCryptoError):
                verify(bytes(bad), check_hash=check_hash)
    with pytest.raises(WalletCryptoError):
        verify(blob[:-1], check_hash=False)
    # a well-formed package for other fields of the same asset (the holder's own, re-sealed to the bank)
    payload = citizen.open_asset(world.asset)
    other = build_package(bank.enc_pk, [(world.asset, payload, ["employer", "name"])])
    with pytest.raises(WalletCryptoError):  # not the grant's package
        verify(other.blob)
    with pytest.raises(DisclosureError):
        verify(other.blob, check_hash=False)
    fewer = build_package(bank.enc_pk, [(world.asset, payload, ["monthly_wage"])])
    with pytest.raises(DisclosureError):
        verify(fewer.blob, check_hash=False)
    more = build_package(bank.enc_pk, [(world.asset, payload, [*GRANTED, "name"])])
    with pytest.raises(DisclosureError):
        verify(more.blob, check_hash=False)
    # the right fields with a forged value
    d = open_package(blob, bank.enc_secret)
    a = d.assets[world.asset]
    forged_fields = dict(a.fields)
    forged_fields["monthly_wage"] = forged_fields["monthly_wage"]._replace(value="99999999")
    forged = Disclosure({world.asset: DisclosedAsset(a.asset_id, a.n_fields, forged_fields)})
    with pytest.raises(DisclosureError):
        verify_disclosure(forged, roots, grant["fields"], asset_fields=fields_of)
    # a package sealed to someone else does not open with the bank's key
    to_notary = build_package(node.ids["notary"].enc_pk, [(world.asset, payload, GRANTED)])
    with pytest.raises(WalletCryptoError):
        open_package(to_notary.blob, bank.enc_secret)


# ---------------------------------------------------------------------------------------------- delegates


def test_enterprise_delegate_grants_but_cannot_read_another_enterprise(world: World) -> None:
    node = world.node
    ent, ent2, clerk_id = node.ids["enterprise"], node.ids["enterprise2"], node.ids["enterprise-clerk"]
    node.session("enterprise").add_delegate(clerk_id.pk)
    regulator = node.session("market-regulator")
    licence = regulator.issue(ent.id, LICENCE, LICENCE_1).object_id
    licence2 = regulator.issue(ent2.id, LICENCE, LICENCE_2).object_id

    clerk = WalletSession(node.client(), DelegateActor(clerk_id.signer, ent.id, ent.enc_secret))
    fields = ["company_name", "legal_representative"]
    g = clerk.grant(node.ids["notary"].id, [licence], fields, "notarisation", grant_window_ms(7), 1).object_id
    assert clerk.client.object("grants", g)["holder"] == ent.id.hex()
    got = node.session("notary").pull(g).fields[licence]
    assert got == {k: LICENCE_1[k] for k in fields}
    # the clerk reads its enterprise's data
    assert [a["id"] for a in clerk.listing("assets")["assets"]] == [licence.hex()]
    assert clerk.asset(licence)["holder"] == ent.id.hex()

    # ... but not the other enterprise's
    for what in ("assets", "grants", "accesses", "requests"):
        with pytest.raises(ApiError) as e:
            clerk.client.listing(ent2.id, what)
        assert e.value.status == 403
    with pytest.raises(ApiError) as e:
        clerk.client.object("assets", licence2)
    assert (e.value.status, e.value.code) == (404, "unknown_asset")
    with pytest.raises(ApiError) as e:
        clerk.client.account_info(ent2.id)
    assert (e.value.status, e.value.code) == (404, "unknown_account")
    payload2 = node.session("enterprise2").asset(licence2)["payload_hash"]
    with pytest.raises(ApiError) as e:
        clerk.client.vault_get(bytes.fromhex(payload2))
    assert e.value.status == 404
    # it cannot act for the other enterprise at all
    as_ent2 = node.client().as_(clerk_id.signer, ent2.id)
    with pytest.raises(ApiError) as e:
        as_ent2.listing(ent2.id, "assets")
    assert (e.value.status, e.value.code) == (401, "key_not_authorized")
    height = world.http.get("/v1/status").json()["height"]
    body = GrantConsent(node.ids["notary"].id, (licence2,), tuple(fields), "x", grant_window_ms(1), 1,
                        os.urandom(32), b"")
    with pytest.raises(ApiError) as e:
        node.client().submit(make_tx(clerk_id.signer, node.chain_id, 0, body, sender=ent2.id), wait=True)
    assert (e.value.status, e.value.code) == (400, "key_not_authorized")
    assert world.http.get("/v1/status").json()["height"] == height
    # nor grant the other enterprise's asset in its own enterprise's name: refused on chain
    r = clerk.send(body, check=False)
    assert r.code == "not_asset_holder"
    assert node.session("enterprise2").listing("grants")["grants"] == []

