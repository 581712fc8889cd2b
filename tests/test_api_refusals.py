"""HTTP-level refusals against a real node process (DESIGN "API", "Access", "Consent"; node/api.py, node/authz.py).

Every refusal answers 401, 403 or 404 with the JSON error object and nothing else: no field value, no package
byte, no X-MyData-* release header. A refused pull that reaches the chain is committed with its failure code
(auditable) and consumes no use of the grant: the holder's own view of the grant is compared before and after.
Object-level authorization: another holder's objects answer exactly like objects that do not exist.

One node process serves the whole module (the world is set up once; each test makes its own grants).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from cli.demo import PAYMENT, demo_genesis, demo_identities, start_local_node
from consensus.crypto import Domain, Signer, request_payload
from consensus.types import Block, Tx
from contracts.txs import RecordAccess, RegisterHolder
from node.config import read_genesis
from tests.livenode import LiveNode as Node
from wallet.actions import grant_window_ms, subject_ref
from wallet.devchain import Identity
from wallet.tx import make_tx

HTTP_TIMEOUT = 30.0

# Distinctive values, so that "no field value in the body" is a meaningful check.
PAYMENT_A = {"name": "Qiao Lanfeng", "employer": "Weihai Ropeworks 7731", "monthly_wage": "93417",
             "months_paid": "211", "last_paid_month": "2026-09"}
PAYMENT_B = {"name": "Qiao Lanfeng", "employer": "Rongcheng Fisheries 5529", "monthly_wage": "61283",
             "months_paid": "37", "last_paid_month": "2025-12"}
PAYMENT_C = {"name": "Qiao Lanfeng", "employer": "Shidao Shipyard 4410", "monthly_wage": "70091",
             "months_paid": "58", "last_paid_month": "2024-03"}
SECRET_VALUES = [v.encode() for rec in (PAYMENT_A, PAYMENT_B, PAYMENT_C) for k, v in rec.items()
                 if k != "last_paid_month"]
GRANTED = ["monthly_wage", "months_paid"]


# ---------------------------------------------------------------------------------------------- the node


@dataclass
class World:
    node: Node
    http: httpx.Client
    asset_a: bytes
    asset_b: bytes
    #: a grant to the bank over asset A, pulled once (so the holder has an access to list)
    grant_ab: bytes
    access_id: bytes
    access_tx: bytes  # the hash of the bank's successful access transaction
    package_hash: bytes  # grant_ab's package

    def id_of(self, who: str) -> bytes:
        return self.node.ids[who].id


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Like tests/conftest.py's `live_node`, for the whole module: one real node process, always stopped."""
    base = tmp_path_factory.mktemp("refusals")
    ids = demo_identities()
    ids["citizen2"] = Identity("citizen2", os.urandom(32))
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
    for who, subject in (("citizen", "370102199001011234"), ("citizen2", "370102199202023456")):
        i = node.ids[who]
        reg.send(RegisterHolder("person", subject_ref(salt, "person", subject), i.pk, i.enc_pk))
    issuer = node.session("social-security")
    citizen_id = node.ids["citizen"].id
    asset_a = issuer.issue(citizen_id, PAYMENT, PAYMENT_A).object_id
    asset_b = issuer.issue(citizen_id, PAYMENT, PAYMENT_B).object_id
    citizen = node.session("citizen")
    grant_ab = citizen.grant(node.ids["bank"].id, [asset_a], GRANTED, "loan", grant_window_ms(30), 5).object_id
    bank = node.session("bank")
    tx = bank.sign(RecordAccess(grant_ab, asset_a))
    package, meta = bank.client.pull(tx)
    assert hashlib.sha256(package).hexdigest() == meta["package-hash"]
    with httpx.Client(base_url=node.url, timeout=HTTP_TIMEOUT) as http:
        yield World(node, http, asset_a, asset_b, grant_ab, bytes.fromhex(meta["access"]), tx.hash,
                    bytes.fromhex(meta["package-hash"]))


# ---------------------------------------------------------------------------------------------- helpers


def signed_headers(signer: Signer, account: bytes, chain_id: str, method: str, path: str,
                   body: bytes = b"") -> dict[str, str]:
    t = int(time.time() * 1000)
    nonce = os.urandom(16)
    sig = signer.sign(Domain.REQUEST, chain_id, request_payload(method, path, body, t, nonce))
    return {"X-MyData-Account": account.hex(), "X-MyData-Key": signer.public_key.hex(), "X-MyData-Time": str(t),
            "X-MyData-Nonce": nonce.hex(), "X-MyData-Signature": sig.hex()}


def call(w: World, who: str | Identity | None, method: str, path: str, body: bytes = b"") -> httpx.Response:
    """One request, signed by `who` (a demo name or an Identity) or unsigned (None)."""
    headers: dict[str, str] = {}
    if who is not None:
        i = who if isinstance(who, Identity) else w.node.ids[who]
        headers = signed_headers(i.signer, i.id, w.node.chain_id, method, path, body)
    if body:
        headers["Content-Type"] = "application/json"
    return w.http.request(method, path, content=body, headers=headers)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, str]:
    """The answer is `status` with exactly {"error": {"code", "message"}} and nothing else."""
    assert r.status_code == status, f"expected {status} {code}, got {r.status_code}: {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, err
    assert isinstance(err["code"], str) and isinstance(err["message"], str) and err["message"], err
    if code is not None:
        assert err["code"] == code, f"expected code {code}, got {err}"
    return err


def assert_releases_nothing(r: httpx.Response, package: bytes | None = None) -> None:
    """Zero bytes of data: the error object only, no personal value, no package, no release headers."""
    assert len(r.content) < 512, r.content[:600]
    for v in SECRET_VALUES:
        assert v not in r.content, f"a field value leaked: {v!r}"
    if package is not None:
        assert package[:64] not in r.content and package[-64:] not in r.content
    leaked = {k for k in r.headers if k.lower().startswith("x-mydata-")}
    assert not leaked, f"release headers on a refusal: {leaked}"
    assert r.headers.get("content-type", "").startswith("application/json")


def access_tx(w: World, consumer: str, grant_id: bytes, asset_id: bytes) -> Tx:
    return w.node.session(consumer).sign(RecordAccess(grant_id, asset_id))


def pull_raw(w: World, consumer: str, tx: Tx) -> httpx.Response:
    return call(w, consumer, "POST", "/v1/access", json.dumps({"tx": tx.encode().hex()}).encode())


def grant_view(w: World, grant_id: bytes) -> dict[str, Any]:
    """The holder's own view of its grant (status, uses...)."""
    return w.node.session("citizen").client.object("grants", grant_id)


def committed_code(w: World, consumer: str, tx: Tx) -> str:
    """The result code of a committed transaction, as its sender sees it."""
    r = call(w, consumer, "GET", f"/v1/txs/{tx.hash.hex()}")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "committed", out
    return str(out["code"])


def holder_accesses(w: World) -> list[str]:
    return [a["id"] for a in w.node.session("citizen").listing("accesses")["accesses"]]


def make_grant(w: World, assets: list[bytes], *, max_uses: int = 3, not_after_ms: int | None = None,
               grantee: str = "bank") -> bytes:
    citizen = w.node.session("citizen")
    return citizen.grant(w.id_of(grantee), assets, GRANTED, "mortgage assessment",
                         not_after_ms if not_after_ms is not None else grant_window_ms(30), max_uses).object_id


def refused_pull(w: World, consumer: str, grant_id: bytes, asset_id: bytes, status: int, code: str,
                 package: bytes | None = None) -> None:
    """The pull is refused with (status, code), releases nothing, is on chain with that code, and the grant
    (if any) and the holder's access list are unchanged."""
    before = grant_view(w, grant_id) if status != 404 else None
    accesses = holder_accesses(w)
    tx = access_tx(w, consumer, grant_id, asset_id)
    r = pull_raw(w, consumer, tx)
    assert_error(r, status, code)
    assert_releases_nothing(r, package)
    assert committed_code(w, consumer, tx) == code  # the refused attempt is on chain, auditable
    if before is not None:
        after = grant_view(w, grant_id)
        assert after["uses"] == before["uses"], (before, after)
        assert after["status"] == before["status"], (before, after)
    assert holder_accesses(w) == accesses


def random_id() -> bytes:
    return os.urandom(32)


# ---------------------------------------------------------------------------------------------- pulls


def test_pull_unknown_grant_is_404(world: World) -> None:
    refused_pull(world, "bank", random_id(), world.asset_a, 404, "unknown_grant")


def test_pull_by_wrong_consumer_is_403_not_grantee(world: World) -> None:
    g = make_grant(world, [world.asset_a])
    refused_pull(world, "notary", g, world.asset_a, 403, "not_grantee")
    assert grant_view(world, g)["uses"] == 0
    # the rightful grantee still can
    assert world.node.session("bank").pull(g).fields[world.asset_a] == {k: PAYMENT_A[k] for k in GRANTED}


def test_pull_of_revoked_grant_is_403(world: World) -> None:
    g = make_grant(world, [world.asset_a])
    world.node.session("citizen").revoke(g)
    assert grant_view(world, g)["status"] == "revoked"
    refused_pull(world, "bank", g, world.asset_a, 403, "grant_revoked")
    assert grant_view(world, g)["uses"] == 0


def test_pull_of_used_up_grant_is_403(world: World) -> None:
    g = make_grant(world, [world.asset_a], max_uses=1)
    tx = access_tx(world, "bank", g, world.asset_a)
    ok = pull_raw(world, "bank", tx)
    assert ok.status_code == 200, ok.text
    package = ok.content
    assert hashlib.sha256(package).hexdigest() == ok.headers["x-mydata-package-hash"]
    view = grant_view(world, g)
    assert (view["uses"], view["status"]) == (1, "used_up")
    refused_pull(world, "bank", g, world.asset_a, 403, "grant_used_up", package=package)
    assert grant_view(world, g)["uses"] == 1


def test_pull_of_expired_grant_is_403(world: World) -> None:
    not_after = int(time.time() * 1000) + 2500
    g = make_grant(world, [world.asset_a], not_after_ms=not_after)
    assert grant_view(world, g)["status"] == "granted"
    deadline = time.monotonic() + 10
    while time.time() * 1000 <= not_after + 50:
        assert time.monotonic() < deadline, "the clock did not pass not_after in time"
        time.sleep(0.05)
    # The node makes a block only when a transaction arrives: an unrelated one moves block time forward.
    world.node.session("notary").request_consent(world.id_of("citizen2"), [PAYMENT], ["employer"], "tick",
                                                 86_400_000, 1)
    view = grant_view(world, g)
    assert view["status"] == "expired", view
    refused_pull(world, "bank", g, world.asset_a, 403, "grant_expired")
    assert grant_view(world, g)["uses"] == 0


def test_pull_of_asset_not_covered_is_403(world: World) -> None:
    g = make_grant(world, [world.asset_a])
    refused_pull(world, "bank", g, world.asset_b, 403, "asset_not_covered")
    assert grant_view(world, g)["uses"] == 0


@pytest.fixture(scope="module")
def erased(world: World) -> tuple[bytes, bytes]:
    """(asset, grant): a grant to the bank over an asset the holder then erased."""
    c = world.node.session("social-security").issue(world.id_of("citizen"), PAYMENT, PAYMENT_C).object_id
    g = make_grant(world, [c])
    world.node.session("citizen").erase(c)
    assert world.node.session("citizen").asset(c)["status"] == "erased"
    return c, g


def test_pull_of_erased_asset_releases_nothing(world: World, erased: tuple[bytes, bytes]) -> None:
    asset, g = erased
    before = grant_view(world, g)
    accesses = holder_accesses(world)
    r = pull_raw(world, "bank", access_tx(world, "bank", g, asset))
    assert 400 <= r.status_code < 500
    assert_error(r, r.status_code)
    assert_releases_nothing(r)
    assert grant_view(world, g)["uses"] == before["uses"] == 0
    assert holder_accesses(world) == accesses


def test_pull_of_erased_asset_is_403_asset_erased_on_chain(world: World, erased: tuple[bytes, bytes]) -> None:
    asset, g = erased
    refused_pull(world, "bank", g, asset, 403, "asset_erased")


# ---------------------------------------------------------------------------------------------- callers


def test_unknown_caller_is_401(world: World) -> None:
    stranger = Identity("stranger", os.urandom(32))
    citizen = world.id_of("citizen").hex()
    for method, path in (("GET", f"/v1/accounts/{citizen}/assets"), ("GET", f"/v1/accounts/{citizen}"),
                         ("GET", f"/v1/assets/{world.asset_a.hex()}"), ("GET", f"/v1/grants/{world.grant_ab.hex()}"),
                         ("GET", f"/v1/accounts/{stranger.id.hex()}/grants"), ("GET", "/v1/events")):
        r = call(world, stranger, method, path)
        assert_error(r, 401, "unknown_account")
        assert_releases_nothing(r)
    # a pull by a stranger: refused before anything reaches the chain
    height = world.http.get("/v1/status").json()["height"]
    tx = make_tx(stranger.signer, world.node.chain_id, 0, RecordAccess(world.grant_ab, world.asset_a))
    r = call(world, stranger, "POST", "/v1/access", json.dumps({"tx": tx.encode().hex()}).encode())
    assert_error(r, 401, "unknown_account")
    assert_releases_nothing(r)
    assert world.http.get("/v1/status").json()["height"] == height


def test_unsigned_personal_endpoints_are_401(world: World) -> None:
    citizen = world.id_of("citizen").hex()
    tx = access_tx(world, "bank", world.grant_ab, world.asset_a)
    paths = [("GET", f"/v1/accounts/{citizen}/{what}") for what in ("assets", "grants", "accesses", "requests")]
    paths += [("GET", f"/v1/assets/{world.asset_a.hex()}"), ("GET", f"/v1/grants/{world.grant_ab.hex()}"),
              ("GET", f"/v1/accesses/{world.access_id.hex()}"), ("GET", f"/v1/proofs/grants/{world.grant_ab.hex()}"),
              ("GET", f"/v1/txs/{tx.hash.hex()}"), ("GET", "/v1/events"),
              ("GET", f"/v1/vault/{'ab' * 32}"), ("PUT", f"/v1/vault/{'ab' * 32}")]
    for method, path in paths:
        r = world.http.request(method, path)
        assert_error(r, 401, "signature_required")
        assert_releases_nothing(r)
    uses = grant_view(world, world.grant_ab)["uses"]
    r = world.http.post("/v1/access", content=json.dumps({"tx": tx.encode().hex()}).encode(),
                        headers={"Content-Type": "application/json"})
    assert_error(r, 401, "signature_required")
    assert_releases_nothing(r)
    assert grant_view(world, world.grant_ab)["uses"] == uses


def test_another_holder_cannot_read_listings(world: World) -> None:
    citizen = world.id_of("citizen").hex()
    for what in ("assets", "grants", "accesses", "requests"):
        r = call(world, "citizen2", "GET", f"/v1/accounts/{citizen}/{what}")
        assert_error(r, 403)
        assert_releases_nothing(r)
        # the holder itself can
        assert call(world, "citizen", "GET", f"/v1/accounts/{citizen}/{what}").status_code == 200


def test_another_holders_objects_look_nonexistent(world: World) -> None:
    pairs = [("assets", world.asset_a), ("grants", world.grant_ab), ("accesses", world.access_id)]
    for kind, oid in pairs:
        mine = call(world, "citizen", "GET", f"/v1/{kind}/{oid.hex()}")
        assert mine.status_code == 200, mine.text
        theirs = call(world, "citizen2", "GET", f"/v1/{kind}/{oid.hex()}")
        nothing = call(world, "citizen2", "GET", f"/v1/{kind}/{random_id().hex()}")
        assert_error(theirs, 404)
        assert_error(nothing, 404)
        assert theirs.json() == nothing.json(), "a hidden object must be indistinguishable from none"
        assert_releases_nothing(theirs)
        proof = call(world, "citizen2", "GET", f"/v1/proofs/{kind}/{oid.hex()}")
        assert_error(proof, 404)
        assert proof.json() == call(world, "citizen2", "GET", f"/v1/proofs/{kind}/{random_id().hex()}").json()


def test_another_holder_cannot_read_the_asset_blob(world: World) -> None:
    payload = bytes.fromhex(world.node.session("citizen").asset(world.asset_a)["payload_hash"])
    mine = call(world, "citizen", "GET", f"/v1/vault/{payload.hex()}")
    assert mine.status_code == 200 and hashlib.sha256(mine.content).digest() == payload
    for who in ("citizen2", "bank", "notary"):
        theirs = call(world, who, "GET", f"/v1/vault/{payload.hex()}")
        nothing = call(world, who, "GET", f"/v1/vault/{random_id().hex()}")
        assert_error(theirs, 404, "unknown_blob")
        assert theirs.json() == nothing.json()
        assert mine.content[:64] not in theirs.content


def test_packages_only_through_a_pull(world: World) -> None:
    """Not even the grantee (nor the holder, nor an auditor) fetches a package from the vault directly: that
    would release data without an access on chain."""
    uses = grant_view(world, world.grant_ab)["uses"]
    path = f"/v1/vault/{world.package_hash.hex()}"
    for who in ("bank", "citizen", "auditor", "notary"):
        r = call(world, who, "GET", path)
        assert_error(r, 404, "unknown_blob")
        assert r.json() == call(world, who, "GET", f"/v1/vault/{random_id().hex()}").json()
    assert grant_view(world, world.grant_ab)["uses"] == uses


def test_another_accounts_transaction_looks_nonexistent(world: World) -> None:
    path = f"/v1/txs/{world.access_tx.hex()}"
    assert call(world, "bank", "GET", path).json()["code"] == "ok"
    assert call(world, "auditor", "GET", path).status_code == 200
    for who in ("citizen2", "notary", "citizen"):
        r = call(world, who, "GET", path)
        assert_error(r, 404, "unknown_tx")
        assert r.json() == call(world, who, "GET", f"/v1/txs/{random_id().hex()}").json()


def test_consumer_cannot_read_a_holders_account_or_listings(world: World) -> None:
    citizen = world.id_of("citizen").hex()
    for what in ("assets", "grants", "accesses", "requests"):
        r = call(world, "bank", "GET", f"/v1/accounts/{citizen}/{what}")
        assert_error(r, 403)
        assert_releases_nothing(r)
    assert_error(call(world, "bank", "GET", f"/v1/accounts/{citizen}"), 404, "unknown_account")
    # but its own grant is visible to it, with the covered asset's commitments
    g = call(world, "bank", "GET", f"/v1/grants/{world.grant_ab.hex()}")
    assert g.status_code == 200
    assert [a["id"] for a in g.json()["asset_records"]] == [world.asset_a.hex()]


def test_issuer_sees_issued_assets_but_not_grants(world: World) -> None:
    citizen = world.id_of("citizen").hex()
    r = call(world, "social-security", "GET", f"/v1/assets/{world.asset_a.hex()}")
    assert r.status_code == 200 and r.json()["id"] == world.asset_a.hex()
    payload = r.json()["payload_hash"]
    assert call(world, "social-security", "GET", f"/v1/vault/{payload}").status_code == 200
    assert_error(call(world, "social-security", "GET", f"/v1/grants/{world.grant_ab.hex()}"), 404)
    assert_error(call(world, "social-security", "GET", f"/v1/accesses/{world.access_id.hex()}"), 404)
    assert_error(call(world, "social-security", "GET", f"/v1/accounts/{citizen}/grants"), 403)
    # another issuer did not issue it
    assert_error(call(world, "market-regulator", "GET", f"/v1/assets/{world.asset_a.hex()}"), 404)


def test_auditor_sees_everything(world: World) -> None:
    citizen = world.id_of("citizen").hex()
    for what, key in (("assets", "assets"), ("grants", "grants"), ("accesses", "accesses")):
        r = call(world, "auditor", "GET", f"/v1/accounts/{citizen}/{what}")
        assert r.status_code == 200, r.text
        assert r.json()[key], f"the auditor must see the citizen's {what}"
    assert call(world, "auditor", "GET", f"/v1/accounts/{citizen}/requests").status_code == 200
    assert call(world, "auditor", "GET", f"/v1/accounts/{citizen}").status_code == 200
    for kind, oid in (("assets", world.asset_a), ("grants", world.grant_ab), ("accesses", world.access_id)):
        r = call(world, "auditor", "GET", f"/v1/{kind}/{oid.hex()}")
        assert r.status_code == 200 and r.json()["id"] == oid.hex(), r.text
        assert call(world, "auditor", "GET", f"/v1/proofs/{kind}/{oid.hex()}").status_code == 200


def test_accounts_unsigned_holders_hidden_members_public(world: World) -> None:
    r = world.http.get(f"/v1/accounts/{world.id_of('citizen').hex()}")
    assert_error(r, 404, "unknown_account")
    assert r.json() == world.http.get(f"/v1/accounts/{random_id().hex()}").json()
    for member in ("bank", "social-security", "auditor"):
        r = world.http.get(f"/v1/accounts/{world.id_of(member).hex()}")
        assert r.status_code == 200, r.text
        assert r.json()["id"] == world.id_of(member).hex()
        assert "subject_ref" not in r.json()
    # a registrar and an issuer may read a holder's account (they need its encryption key)
    for who in ("public-security", "social-security", "citizen", "auditor"):
        r = call(world, who, "GET", f"/v1/accounts/{world.id_of('citizen').hex()}")
        assert r.status_code == 200, (who, r.text)
        assert "subject_ref" not in r.json()


def test_blocks_public_view_has_no_raw_auditor_gets_raw(world: World) -> None:
    height = world.http.get("/v1/status").json()["height"]
    assert height >= 3
    for h in (1, height // 2, height):
        pub = world.http.get(f"/v1/blocks/{h}")
        assert pub.status_code == 200
        b = pub.json()
        assert b["header"]["height"] == h and isinstance(b["tx_hashes"], list)
        assert "raw" not in b and "commit_raw" not in b
        for who in ("citizen", "bank"):  # ordinary signed callers get the public view too
            assert "raw" not in call(world, who, "GET", f"/v1/blocks/{h}").json()
        full = call(world, "auditor", "GET", f"/v1/blocks/{h}")
        assert full.status_code == 200
        fb = full.json()
        block = Block.decode(bytes.fromhex(fb["raw"]))
        assert block.hash.hex() == fb["hash"] == b["hash"]
        assert block.height == h
        assert block.header.app_hash.hex() == b["header"]["app_hash"]
        assert [hashlib.sha256(t).hexdigest() for t in block.txs] == b["tx_hashes"]


# ---------------------------------------------------------------------------------------------- a parked pull


def test_pull_with_a_nonce_gap_is_refused_at_once(live_node: Any) -> None:
    """Uses the function-scoped `live_node` (tests/conftest.py): the parked transaction must not leak into
    the module's node."""
    ids = live_node.ids
    c = ids["citizen"]
    live_node.session("public-security").send(RegisterHolder("person", subject_ref(os.urandom(16), "person", "9"),
                                                             c.pk, c.enc_pk))
    asset = live_node.session("social-security").issue(c.id, PAYMENT, PAYMENT_A).object_id
    citizen = live_node.session("citizen")
    g = citizen.grant(ids["bank"].id, [asset], GRANTED, "loan", grant_window_ms(1), 5).object_id
    bank = live_node.session("bank")
    chain_id = live_node.genesis.chain_id
    gap_tx = make_tx(ids["bank"].signer, chain_id, bank.next_nonce() + 1, RecordAccess(g, asset))
    body = json.dumps({"tx": gap_tx.encode().hex()}).encode()
    headers = signed_headers(ids["bank"].signer, ids["bank"].id, chain_id, "POST", "/v1/access", body)
    answer: httpx.Response | None = None
    with contextlib.suppress(httpx.ReadTimeout):
        answer = httpx.post(f"{live_node.url}/v1/access", content=body, headers=headers, timeout=3.0)
    # one good pull (it also fills the gap, so no request is left hanging in the node)
    bank.pull(g)
    uses = citizen.client.object("grants", g)["uses"]
    assert answer is not None, f"no answer within 3 s (the node parked the pull); after one good pull uses={uses}"
    assert 400 <= answer.status_code < 500, answer.text
    assert_releases_nothing(answer)
    assert uses == 1, "the refused pull consumed a use"
