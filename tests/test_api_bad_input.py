"""Bad input at the HTTP level against a real node process (DESIGN "API": "Bad input gets a 4xx with a clear
message; the node never crashes on input").

Every case answers a 4xx with exactly `{"error": {"code", "message"}}` and changes nothing: the node's height,
app hash and mempool are compared before and after (and the record the input aimed at: a grant's uses, a
vault blob). One node process serves the whole module.

The fuzz test is seeded: set MYDATA_FUZZ_SEED to replay a run; the seed is in every failure message.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest

from cli.demo import PAYMENT, demo_genesis, demo_identities, start_local_node
from consensus.crypto import Domain, Signer, request_payload
from consensus.types import Tx
from contracts.txs import RecordAccess, RegisterHolder, RequestConsent
from node.config import read_genesis
from tests.livenode import LiveNode as Node
from wallet.actions import grant_window_ms, subject_ref
from wallet.assetdata import seal_asset
from wallet.tx import make_tx

HTTP_TIMEOUT = 60.0
MiB = 1024 * 1024
JSON_LIMIT = 1 * MiB
VAULT_LIMIT = 16 * MiB
PAYMENT_A = {"name": "Sun Haoyu", "employer": "Yantai Optics 3381", "monthly_wage": "48215",
             "months_paid": "73", "last_paid_month": "2026-08"}
SIG_HEADERS = ("X-MyData-Account", "X-MyData-Key", "X-MyData-Time", "X-MyData-Nonce", "X-MyData-Signature")


# ---------------------------------------------------------------------------------------------- the node


@dataclass
class World:
    node: Node
    http: httpx.Client
    asset: bytes
    payload_hash: bytes
    grant: bytes

    def id_of(self, who: str) -> bytes:
        return self.node.ids[who].id


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """Like tests/conftest.py's `live_node`, for the whole module: one real node process, always stopped."""
    base = tmp_path_factory.mktemp("bad-input")
    ids = demo_identities()
    proc = start_local_node(base, ids, demo_genesis(ids))
    try:
        yield Node(proc, ids, read_genesis(base / "genesis.json"), base)
    finally:
        proc.stop()
        if os.environ.get("MYDATA_SHOW_NODE_LOG"):
            print(proc.log_tail(200))


@pytest.fixture(scope="module")
def world(node: Node) -> Iterator[World]:
    citizen = node.ids["citizen"]
    node.session("public-security").send(RegisterHolder("person", subject_ref(os.urandom(16), "person", "3701"),
                                                        citizen.pk, citizen.enc_pk))
    asset = node.session("social-security").issue(citizen.id, PAYMENT, PAYMENT_A).object_id
    holder = node.session("citizen")
    payload_hash = bytes.fromhex(holder.asset(asset)["payload_hash"])
    grant = holder.grant(node.ids["bank"].id, [asset], ["monthly_wage"], "loan", grant_window_ms(30), 100).object_id
    with httpx.Client(base_url=node.url, timeout=HTTP_TIMEOUT) as http:
        yield World(node, http, asset, payload_hash, grant)


# ---------------------------------------------------------------------------------------------- helpers


def signed_headers(signer: Signer, account: bytes, chain_id: str, method: str, path: str, body: bytes = b"",
                   *, time_ms: int | None = None, nonce: bytes | None = None) -> dict[str, str]:
    t = int(time.time() * 1000) if time_ms is None else time_ms
    n = os.urandom(16) if nonce is None else nonce
    sig = signer.sign(Domain.REQUEST, chain_id, request_payload(method, path, body, t, n))
    return {"X-MyData-Account": account.hex(), "X-MyData-Key": signer.public_key.hex(), "X-MyData-Time": str(t),
            "X-MyData-Nonce": n.hex(), "X-MyData-Signature": sig.hex()}


def headers_of(w: World, who: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    i = w.node.ids[who]
    return signed_headers(i.signer, i.id, w.node.chain_id, method, path, body)


def call(w: World, who: str | None, method: str, path: str, body: bytes = b"") -> httpx.Response:
    headers = {} if who is None else headers_of(w, who, method, path, body)
    if body:
        headers["Content-Type"] = "application/json"
    return w.http.request(method, path, content=body, headers=headers)


def assert_error(r: httpx.Response, status: int | None, code: str | None = None, context: str = "") -> str:
    """A 4xx (or exactly `status`) with the JSON error object only; returns the code."""
    where = f"{context}: " if context else ""
    if status is None:
        assert 400 <= r.status_code < 500, f"{where}expected a 4xx, got {r.status_code}: {r.text[:300]}"
    else:
        assert r.status_code == status, f"{where}expected {status} {code}, got {r.status_code}: {r.text[:300]}"
    assert r.headers.get("content-type", "").startswith("application/json"), f"{where}{r.headers}"
    try:
        body = r.json()
    except ValueError:
        raise AssertionError(f"{where}the error is not JSON: {r.text[:300]}") from None
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}{body}"
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"code", "message"}, f"{where}{err}"
    assert isinstance(err["code"], str) and err["code"], f"{where}{err}"
    assert isinstance(err["message"], str) and err["message"], f"{where}{err}"
    if code is not None:
        assert err["code"] == code, f"{where}expected code {code}, got {err}"
    return str(err["code"])


def snapshot(w: World) -> tuple[int, str, str, int]:
    s = w.http.get("/v1/status").json()
    return s["height"], s["app_hash"], s["latest_block_hash"], s["mempool"]["txs"]


def grant_uses(w: World) -> int:
    return int(w.node.session("citizen").client.object("grants", w.grant)["uses"])


@contextlib.contextmanager
def unchanged(w: World) -> Iterator[None]:
    """Nothing committed, nothing waiting, the grant not used, the asset's ciphertext intact."""
    before, uses = snapshot(w), grant_uses(w)
    yield
    assert snapshot(w) == before, "bad input changed the chain or the mempool"
    assert grant_uses(w) == uses, "bad input consumed a use of the grant"
    blob = call(w, "citizen", "GET", f"/v1/vault/{w.payload_hash.hex()}")
    assert blob.status_code == 200 and hashlib.sha256(blob.content).digest() == w.payload_hash


def post_txs(w: World, body: bytes, query: str = "") -> httpx.Response:
    return w.http.post("/v1/txs" + query, content=body, headers={"Content-Type": "application/json"})


def post_access(w: World, body: bytes, who: str = "bank") -> httpx.Response:
    return call(w, who, "POST", "/v1/access", body)


def tx_body(tx: Tx | bytes) -> bytes:
    raw = tx if isinstance(tx, bytes) else tx.encode()
    return json.dumps({"tx": raw.hex()}).encode()


def access_tx(w: World, nonce_offset: int = 0) -> Tx:
    bank = w.node.session("bank")
    return make_tx(w.node.ids["bank"].signer, w.node.chain_id, bank.next_nonce() + nonce_offset,
                   RecordAccess(w.grant, w.asset))


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """A streamed body (no content-length: chunked transfer encoding)."""
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b" " * n


# ---------------------------------------------------------------------------------------------- malformed bodies


MALFORMED_JSON = [b"", b"{", b"not json", b'{"tx": }', b"\xff\xfe\x00", b'{"tx": "00"', b"{'tx': '00'}",
                  b'{"tx": 1' + b"0" * 5000 + b"}"]
NOT_AN_OBJECT = [b"[]", b'["00"]', b'"00"', b"5", b"null", b"true", b'[{"tx": "00"}]']


def test_malformed_json_is_400(world: World) -> None:
    with unchanged(world):
        for body in MALFORMED_JSON:
            assert_error(post_txs(world, body), 400, "malformed_json", f"/v1/txs {body[:20]!r}")
            assert_error(post_access(world, body), 400, "malformed_json", f"/v1/access {body[:20]!r}")


def test_json_that_is_not_an_object_is_400(world: World) -> None:
    with unchanged(world):
        for body in NOT_AN_OBJECT:
            assert_error(post_txs(world, body), 400, "malformed_json", f"/v1/txs {body!r}")
            assert_error(post_access(world, body), 400, "malformed_json", f"/v1/access {body!r}")


def test_deeply_nested_json_is_400(world: World) -> None:
    with unchanged(world):
        for body in (b"[" * 5000, b'{"tx": ' + b"[" * 3000 + b"]" * 3000 + b"}"):
            assert_error(post_txs(world, body), 400, "malformed_json", "/v1/txs nested")
            assert_error(post_access(world, body), 400, "malformed_json", "/v1/access nested")
    assert world.http.get("/healthz").status_code == 200


def test_tx_that_is_not_hex_is_400(world: World) -> None:
    bodies = [{"tx": "zz"}, {"tx": "0"}, {"tx": "0x00"}, {"tx": "AB CD"}, {"tx": 5}, {"tx": None}, {},
              {"tx": ["00"]}, {"tx": {"hex": "00"}}, {"tx": "\u0663\u0663"}, {"tx": True}]
    with unchanged(world):
        for b in bodies:
            body = json.dumps(b).encode()
            assert_error(post_txs(world, body), 400, "malformed_tx", f"/v1/txs {b}")
            assert_error(post_access(world, body), 400, "malformed_tx", f"/v1/access {b}")


def test_hex_that_is_not_a_canonical_tx_is_400(world: World) -> None:
    good = access_tx(world).encode()
    variants = [b"", b"\x00", b"\xff" * 40, os.urandom(200), good + b"\x00", good[:-1], good[:len(good) // 2],
                b"\x98" + good[1:],  # eight fields announced, seven given
                b"\x96" + good[1:],  # six fields announced, seven given
                b"\xdc\x00\x07" + good[1:]]  # seven fields, in a non-canonical array header
    with unchanged(world):
        for raw in variants:
            assert_error(post_txs(world, tx_body(raw)), 400, "malformed_tx", f"/v1/txs {raw[:8].hex()}")
            assert_error(post_access(world, tx_body(raw)), 400, "malformed_tx", f"/v1/access {raw[:8].hex()}")


def test_batches_out_of_bounds_are_400(world: World) -> None:
    with unchanged(world):
        for items in (["00"] * 1001, [], "00", None, {"0": "00"}):
            assert_error(post_txs(world, json.dumps({"txs": items}).encode()), 400, "invalid_request", str(items)[:20])
        assert_error(post_txs(world, json.dumps({"txs": ["00"]}).encode(), "?wait=true"), 400, "invalid_request")
        assert_error(post_txs(world, json.dumps({"tx": "00"}).encode(), "?wait=maybe"), 400, "invalid_request")
        # a batch within bounds answers per item, and accepts none of them
        r = post_txs(world, json.dumps({"txs": ["00", 7, "zz", ""]}).encode())
        assert r.status_code == 202
        assert [x["code"] for x in r.json()["results"]] == ["malformed_tx"] * 4


# ---------------------------------------------------------------------------------------------- oversized


def test_oversized_json_bodies_are_413(world: World) -> None:
    body = b'{"tx": "' + b"00" * (JSON_LIMIT // 2) + b'"}'
    assert len(body) > JSON_LIMIT
    with unchanged(world):
        assert_error(post_txs(world, body), 413, "body_too_large")
        assert_error(post_access(world, body), 413, "body_too_large")
        r = world.http.post("/v1/txs", content=chunks(JSON_LIMIT + 1), headers={"Content-Type": "application/json"})
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_error(r, 413, "body_too_large", "chunked /v1/txs")
        r = world.http.post("/v1/txs", content=chunks(3 * JSON_LIMIT), headers={"Content-Type": "application/json"})
        assert_error(r, 413, "body_too_large", "chunked /v1/txs, 3 MiB")
        # a body at the limit is read (and refused for what it is)
        assert_error(post_txs(world, b" " * (JSON_LIMIT - 2) + b"{}"), 400, "malformed_tx")
    assert world.http.get("/healthz").status_code == 200


def test_oversized_vault_uploads_are_413(world: World) -> None:
    data = os.urandom(VAULT_LIMIT + 4096)
    h = hashlib.sha256(data).hexdigest()
    path = f"/v1/vault/{h}"
    with unchanged(world):
        r = world.http.put(path, content=data, headers=headers_of(world, "citizen", "PUT", path, data))
        assert_error(r, 413, "body_too_large")
        r = world.http.put(path, content=chunks(VAULT_LIMIT + 64 * 1024),
                           headers={"Content-Type": "application/octet-stream"})
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_error(r, 413, "body_too_large", "chunked vault upload")
        assert_error(call(world, "citizen", "GET", path), 404, "unknown_blob")
    assert world.http.get("/healthz").status_code == 200


def test_vault_blob_just_over_the_limit_is_413_even_when_referenced(world: World) -> None:
    """16 MiB + 1 byte passes the transport limit (16 MiB + 1 KiB of slack) and is refused by the vault."""
    data = os.urandom(VAULT_LIMIT + 1)
    h = hashlib.sha256(data).digest()
    issuer = world.node.session("social-security")
    sealed = seal_asset(PAYMENT, PAYMENT_A, world.node.ids["citizen"].enc_pk)
    body = replace(sealed.issue_body(world.id_of("citizen"), PAYMENT), payload_hash=h)
    tx = issuer.sign(body)
    issuer.client.submit(tx, wait=False)  # the pending transaction references the blob
    path = f"/v1/vault/{h.hex()}"
    r = world.http.put(path, content=data, headers=headers_of(world, "social-security", "PUT", path, data))
    assert_error(r, 413, "too_large")
    issuer.wait(tx.hash)
    assert_error(call(world, "social-security", "GET", path), 404, "unknown_blob")


# ---------------------------------------------------------------------------------------------- request signatures


def listing_path(w: World) -> str:
    return f"/v1/accounts/{w.id_of('bank').hex()}/grants"


def test_flipped_signature_byte_is_401(world: World) -> None:
    path = listing_path(world)
    with unchanged(world):
        for i in (0, 31, 32, 63):
            h = headers_of(world, "bank", "GET", path)
            sig = bytearray(bytes.fromhex(h["X-MyData-Signature"]))
            sig[i] ^= 0x01
            h["X-MyData-Signature"] = sig.hex()
            assert_error(world.http.get(path, headers=h), 401, "bad_signature", f"byte {i}")
        tx = access_tx(world)
        body = tx_body(tx)
        h = headers_of(world, "bank", "POST", "/v1/access", body)
        h["X-MyData-Signature"] = h["X-MyData-Signature"][:-2] + ("00" if h["X-MyData-Signature"][-2:] != "00"
                                                                  else "01")
        assert_error(world.http.post("/v1/access", content=body, headers=h), 401, "bad_signature")


def test_signature_by_another_key_is_401(world: World) -> None:
    path = listing_path(world)
    notary = world.node.ids["notary"]
    with unchanged(world):
        h = headers_of(world, "bank", "GET", path)
        t, n = int(h["X-MyData-Time"]), bytes.fromhex(h["X-MyData-Nonce"])
        h["X-MyData-Signature"] = notary.signer.sign(Domain.REQUEST, world.node.chain_id,
                                                     request_payload("GET", path, b"", t, n)).hex()
        assert_error(world.http.get(path, headers=h), 401, "bad_signature")
        # signed for another path, another method, another chain, another body
        for method, p, chain, body in (("GET", "/v1/status", world.node.chain_id, b""),
                                       ("POST", path, world.node.chain_id, b""),
                                       ("GET", path, "another-chain", b""),
                                       ("GET", path, world.node.chain_id, b"{}")):
            bank = world.node.ids["bank"]
            h = signed_headers(bank.signer, bank.id, chain, method, p, body)
            assert_error(world.http.get(path, headers=h), 401, "bad_signature", f"{method} {p} {chain}")
        # the notary's own valid signature, claiming the bank's account
        h = signed_headers(notary.signer, world.id_of("bank"), world.node.chain_id, "GET", path)
        assert_error(world.http.get(path, headers=h), 401, "key_not_authorized")


def test_missing_signature_header_is_401(world: World) -> None:
    path = listing_path(world)
    with unchanged(world):
        for missing in SIG_HEADERS:
            h = headers_of(world, "bank", "GET", path)
            del h[missing]
            err = world.http.get(path, headers=h)
            assert_error(err, 401, "incomplete_signature", missing)
            assert missing.lower() in err.json()["error"]["message"]
        # a lone header makes the request a (broken) signed one even on a public endpoint
        assert_error(world.http.get("/v1/blocks/1", headers={"X-MyData-Nonce": "00" * 16}), 401,
                     "incomplete_signature")


def test_malformed_signature_headers_are_401(world: World) -> None:
    path = listing_path(world)
    cases = {"X-MyData-Account": "zz", "X-MyData-Key": "ab" * 31, "X-MyData-Time": "soon",
             "X-MyData-Nonce": "ab" * 4 + "a", "X-MyData-Signature": "ab" * 63}
    with unchanged(world):
        for name, value in cases.items():
            h = headers_of(world, "bank", "GET", path)
            h[name] = value
            assert_error(world.http.get(path, headers=h), 401, "malformed_signature", name)


def test_clock_skew_is_401(world: World) -> None:
    path = listing_path(world)
    bank = world.node.ids["bank"]
    now = int(time.time() * 1000)
    with unchanged(world):
        for t in (now - 65_000, now + 65_000, 0):
            h = signed_headers(bank.signer, bank.id, world.node.chain_id, "GET", path, time_ms=t)
            assert_error(world.http.get(path, headers=h), 401, "clock_skew", str(t - now))
        body = tx_body(access_tx(world))
        h = signed_headers(bank.signer, bank.id, world.node.chain_id, "POST", "/v1/access", body,
                           time_ms=now - 120_000)
        assert_error(world.http.post("/v1/access", content=body, headers=h), 401, "clock_skew")
    # within the window is fine
    h = signed_headers(bank.signer, bank.id, world.node.chain_id, "GET", path, time_ms=int(time.time() * 1000) - 30_000)
    assert world.http.get(path, headers=h).status_code == 200


def test_replayed_request_is_401(world: World) -> None:
    path = listing_path(world)
    h = headers_of(world, "bank", "GET", path)
    assert world.http.get(path, headers=h).status_code == 200
    with unchanged(world):
        assert_error(world.http.get(path, headers=h), 401, "replayed_request")
        # the same nonce under a fresh signature is a replay too
        bank = world.node.ids["bank"]
        h2 = signed_headers(bank.signer, bank.id, world.node.chain_id, "GET", path,
                            nonce=bytes.fromhex(h["X-MyData-Nonce"]))
        assert_error(world.http.get(path, headers=h2), 401, "replayed_request")


def test_replayed_pull_request_releases_nothing(world: World) -> None:
    body = tx_body(access_tx(world))
    h = headers_of(world, "bank", "POST", "/v1/access", body)
    uses = grant_uses(world)
    first = world.http.post("/v1/access", content=body, headers=h)
    assert first.status_code == 200, first.text
    assert grant_uses(world) == uses + 1
    with unchanged(world):
        again = world.http.post("/v1/access", content=body, headers=h)
        assert_error(again, 401, "replayed_request")
        assert first.content[:32] not in again.content
        # the same access transaction in a freshly signed request: the chain refuses the used nonce
        again = post_access(world, body)
        assert_error(again, 400, "bad_nonce")
        assert first.content[:32] not in again.content


# ---------------------------------------------------------------------------------------------- transactions


def consent_request(w: World, nonce: int | None = None, chain_id: str | None = None) -> Tx:
    notary = w.node.ids["notary"]
    n = w.node.session("notary").next_nonce() if nonce is None else nonce
    return make_tx(notary.signer, chain_id or w.node.chain_id, n,
                   RequestConsent(w.id_of("citizen"), (PAYMENT,), ("employer",), "probate", 86_400_000, 1))


def test_replayed_committed_transaction_is_400_bad_nonce(world: World) -> None:
    tx = consent_request(world)
    r = world.http.post("/v1/txs?wait=true", content=tx_body(tx))
    assert r.status_code == 200 and r.json()["code"] == "ok", r.text
    requests_before = world.node.session("citizen").listing("requests")
    with unchanged(world):
        for query in ("", "?wait=true"):
            assert_error(world.http.post("/v1/txs" + query, content=tx_body(tx)), 400, "bad_nonce", query)
        r = world.http.post("/v1/txs", content=json.dumps({"txs": [tx.encode().hex()]}).encode())
        assert r.status_code == 202 and r.json()["results"][0]["code"] == "bad_nonce"
    assert world.node.session("citizen").listing("requests") == requests_before


def test_transaction_for_another_chain_is_400(world: World) -> None:
    tx = consent_request(world, chain_id="another-chain")
    with unchanged(world):
        assert_error(world.http.post("/v1/txs", content=tx_body(tx)), 400, "wrong_chain")
        bank = world.node.ids["bank"]
        acc = make_tx(bank.signer, "another-chain", 0, RecordAccess(world.grant, world.asset))
        assert_error(post_access(world, tx_body(acc)), 400, "wrong_chain")


def test_transaction_with_bad_signature_is_400(world: World) -> None:
    tx = consent_request(world)
    sig = bytearray(tx.signature)
    sig[5] ^= 0x40
    forged = replace(tx, signature=bytes(sig))
    other = world.node.ids["bank"]  # signed by another key than the one it names
    relabelled = replace(tx, signature=other.signer.sign(Domain.TX, world.node.chain_id, tx.signing_payload))
    wrong_chain_sig = replace(tx, signature=world.node.ids["notary"].signer.sign(Domain.TX, "another-chain",
                                                                                  tx.signing_payload))
    with unchanged(world):
        for bad in (forged, relabelled, wrong_chain_sig):
            assert_error(world.http.post("/v1/txs", content=tx_body(bad)), 400, "bad_signature")
            assert_error(world.http.post("/v1/txs?wait=true", content=tx_body(bad)), 400, "bad_signature")
        acc = access_tx(world)
        acc = replace(acc, signature=acc.signature[:-1] + bytes([acc.signature[-1] ^ 1]))
        assert_error(post_access(world, tx_body(acc)), 400, "bad_signature")
        # the notary's tx, sent as the citizen's: the key does not act for that account
        fake_sender = make_tx(world.node.ids["notary"].signer, world.node.chain_id, 0,
                              RequestConsent(world.id_of("citizen"), (PAYMENT,), ("employer",), "x", 1000, 1),
                              sender=world.id_of("bank"))
        assert_error(world.http.post("/v1/txs", content=tx_body(fake_sender)), 400, "key_not_authorized")


def test_pull_carrying_a_wrong_transaction_is_refused(world: World) -> None:
    with unchanged(world):
        # not an access transaction
        bank = world.node.ids["bank"]
        other = make_tx(bank.signer, world.node.chain_id, world.node.session("bank").next_nonce(),
                        RequestConsent(world.id_of("citizen"), (PAYMENT,), ("employer",), "x", 1000, 1))
        assert_error(post_access(world, tx_body(other)), 400, "wrong_tx_type")
        # the bank's access transaction, in the notary's request
        assert_error(post_access(world, tx_body(access_tx(world)), who="notary"), 403, "not_your_tx")


# ---------------------------------------------------------------------------------------------- the vault


def test_vault_refusals(world: World) -> None:
    with unchanged(world):
        data = os.urandom(1000)
        h = hashlib.sha256(data).hexdigest()
        path = f"/v1/vault/{h}"
        r = world.http.put(path, content=data, headers=headers_of(world, "citizen", "PUT", path, data))
        assert_error(r, 403, "not_referenced")
        assert_error(call(world, "citizen", "GET", path), 404, "unknown_blob")
        # a referenced name, other bytes
        path = f"/v1/vault/{world.payload_hash.hex()}"
        r = world.http.put(path, content=data, headers=headers_of(world, "social-security", "PUT", path, data))
        assert_error(r, 400, "hash_mismatch")
        for bad in ("abc", "AB" * 32, "ab" * 31, "ab" * 33, "zz" * 32, "ab" * 31 + "a "):
            p = f"/v1/vault/{bad}"
            r = world.http.put(p, content=data, headers=headers_of(world, "citizen", "PUT", p, data))
            assert_error(r, 400, "bad_id", bad)
            assert_error(call(world, "citizen", "GET", p), 400, "bad_id", bad)


def test_erased_blob_is_never_accepted_again(world: World) -> None:
    citizen = world.node.session("citizen")
    asset = world.node.session("social-security").issue(world.id_of("citizen"), PAYMENT, PAYMENT_A).object_id
    payload = bytes.fromhex(citizen.asset(asset)["payload_hash"])
    blob = citizen.client.vault_get(payload)
    citizen.erase(asset)
    path = f"/v1/vault/{payload.hex()}"
    with unchanged(world):
        for who in ("citizen", "social-security"):
            r = world.http.put(path, content=blob, headers=headers_of(world, who, "PUT", path, blob))
            assert_error(r, None, "erased")
        assert_error(call(world, "citizen", "GET", path), 404, "unknown_blob")


# ---------------------------------------------------------------------------------------------- routes


def test_unknown_routes_and_methods(world: World) -> None:
    with unchanged(world):
        for path in ("/nope", "/v1", "/v1/nope", "/v1/nope/abc", "/v2/status", "/v1/status/extra",
                     f"/v1/accounts/{world.id_of('bank').hex()}/nope", "/v1/proofs/blocks/" + "ab" * 32):
            r = call(world, "bank", "GET", path)
            assert_error(r, 404, None, path)
        for method, path in (("DELETE", "/v1/status"), ("POST", "/v1/status"), ("GET", "/v1/txs"),
                             ("PUT", "/v1/txs"), ("GET", "/v1/access"), ("DELETE", "/v1/access"),
                             ("POST", "/healthz"), ("PATCH", "/v1/blocks/1"), ("POST", f"/v1/vault/{'ab' * 32}")):
            r = world.http.request(method, path)
            assert_error(r, 405, "method_not_allowed", f"{method} {path}")


def test_blocks_out_of_range(world: World) -> None:
    tip = snapshot(world)[0]
    with unchanged(world):
        for h in (0, -1, tip + 1, tip + 1000, 2**64, 10**30):
            assert_error(world.http.get(f"/v1/blocks/{h}"), 404, "unknown_block", str(h))
            assert_error(call(world, "auditor", "GET", f"/v1/blocks/{h}"), 404, "unknown_block", str(h))
        for bad in ("abc", "1.5", "0x10"):
            assert_error(world.http.get(f"/v1/blocks/{bad}"), 400, None, bad)


def test_tx_lookup_with_bad_hash_is_400(world: World) -> None:
    with unchanged(world):
        for bad in ("zz", "ab" * 31, "AB" * 32, "ab" * 33, "0x" + "ab" * 31):
            assert_error(call(world, "bank", "GET", f"/v1/txs/{bad}"), 400, "bad_id", bad)
        assert_error(call(world, "bank", "GET", f"/v1/txs/{'ab' * 32}"), 404, "unknown_tx")
        for bad in ("zz", "ab" * 31):
            assert_error(call(world, "bank", "GET", f"/v1/accounts/{bad}/grants"), 400, "bad_id")
            assert_error(call(world, "bank", "GET", f"/v1/grants/{bad}"), 400, "bad_id")


# ---------------------------------------------------------------------------------------------- fuzz


FUZZ_CASES = 200


class Fuzzer:
    """Seeded random bodies and headers for POST /v1/txs and POST /v1/access."""

    KEYS = ["tx", "txs", "wait", "", "TX", "tx ", "grant", "\u00e9"]
    STRINGS = ["", "00", "zz", "0x00", "\ud800", "\u0000", "null", "NaN", "-1", "ab" * 32, " " * 10, "\u0663"]

    def __init__(self, seed: int, good_txs: list[bytes], valid: list[bytes]) -> None:
        self.rng = random.Random(seed)
        self.good = good_txs
        self.valid = valid

    def mutate(self, raw: bytes) -> bytes:
        """`raw` changed in 1..4 places (never left unchanged)."""
        b = bytearray(raw)
        for _ in range(self.rng.randint(1, 4)):
            op = self.rng.randrange(5)
            i = self.rng.randrange(len(b)) if b else 0
            if op == 0 and b:
                b[i] ^= 1 << self.rng.randrange(8)
            elif op == 1:
                b.insert(i, self.rng.randrange(256))
            elif op == 2 and b:
                del b[i]
            elif op == 3:
                b = b[: self.rng.randrange(len(b) + 1)]
            else:
                b += bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))
        if bytes(b) == raw:
            b.append(0)
        return bytes(b)

    def scalar(self) -> Any:
        r = self.rng
        makers: list[Callable[[], Any]] = [
            lambda: r.randint(-(2**70), 2**70), lambda: r.random() * 1e300, lambda: r.choice([True, False, None]),
            lambda: r.choice(self.STRINGS), lambda: r.randbytes(r.randint(0, 64)).hex(),
            lambda: "".join(r.choice(string.printable) for _ in range(r.randint(0, 40))),
            lambda: self.mutate(r.choice(self.good)).hex(),
        ]
        return r.choice(makers)()

    def value(self, depth: int = 0) -> Any:
        r = self.rng
        kind = r.randrange(4) if depth < 5 else 0
        if kind == 0:
            return self.scalar()
        if kind == 1:
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        return {r.choice(self.KEYS) + ("" if r.random() < 0.7 else str(r.randrange(9))): self.value(depth + 1)
                for _ in range(r.randint(0, 4))}

    def body(self) -> bytes:
        """A random body that never carries one of the valid transactions whole (that would be accepted)."""
        while True:
            body = self._body()
            if not any(g.hex().encode() in body.lower() for g in self.valid):
                return body

    def _body(self) -> bytes:
        r = self.rng
        choice = r.randrange(8)
        if choice == 0:
            return r.randbytes(r.randint(0, 3000))
        if choice == 1:
            return json.dumps(self.value()).encode()
        if choice == 2:
            return json.dumps({"tx": self.mutate(r.choice(self.good)).hex()}).encode()
        if choice == 3:
            return json.dumps({"tx": self.scalar()}).encode()
        if choice == 4:
            return json.dumps({"txs": [self.mutate(r.choice(self.good)).hex()
                                       for _ in range(r.randint(1, 6))]}).encode()
        if choice == 5:
            return json.dumps({"tx": self.value(3), "txs": self.value(3)}).encode()
        if choice == 6:  # valid JSON, mangled
            s = bytearray(json.dumps({"tx": r.choice(self.good).hex()}).encode())
            return self.mutate(bytes(s))
        return (b'{"tx": "' + r.choice(self.good).hex().encode() + b'"}')[: r.randint(0, 50)]

    def headers(self, w: World, path: str, body: bytes) -> dict[str, str]:
        r = self.rng
        h: dict[str, str] = {}
        mode = r.randrange(4)
        if mode == 1 or (mode == 3 and path == "/v1/access"):
            h = headers_of(w, r.choice(["bank", "notary", "citizen"]), "POST", path, body)
        elif mode == 2:
            for name in SIG_HEADERS:
                if r.random() < 0.6:
                    h[name] = r.choice([r.randbytes(r.randint(0, 40)).hex(), str(r.randint(-(2**64), 2**64)),
                                        "".join(r.choice(string.ascii_letters + string.digits + "-_.:")
                                                for _ in range(r.randint(0, 30)))])
        ct = r.choice(["application/json", "application/octet-stream", "text/plain", None, "multipart/form-data"])
        if ct is not None:
            h["Content-Type"] = ct
        return h


def test_fuzz_never_5xx(world: World) -> None:
    seed = int(os.environ.get("MYDATA_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    valid = [access_tx(world).encode(), consent_request(world).encode()]
    fz = Fuzzer(seed, [*valid, consent_request(world, chain_id="another-chain").encode()], valid)
    print(f"fuzz seed {seed} (replay with MYDATA_FUZZ_SEED={seed})")
    deadline = time.monotonic() + 45
    codes: dict[str, int] = {}
    with unchanged(world):
        for n in range(FUZZ_CASES):
            assert time.monotonic() < deadline, f"fuzz too slow (seed {seed}, case {n})"
            path = "/v1/txs" if n % 2 == 0 else "/v1/access"
            query = fz.rng.choice(["", "", "", "?wait=true", "?wait=1", "?wait=xyz"]) if path == "/v1/txs" else ""
            body = fz.body()
            headers = fz.headers(world, path, body)
            ctx = f"seed {seed} (MYDATA_FUZZ_SEED), case {n}: POST {path}{query} {body[:80]!r} {headers}"
            try:
                r = world.http.post(path + query, content=body, headers=headers)
            except httpx.TransportError as e:
                raise AssertionError(f"{ctx}: the node dropped the connection: {e}") from None
            assert r.status_code < 500, f"{ctx}: {r.status_code} {r.text[:300]}"
            if r.status_code == 202 and path == "/v1/txs":  # a batch: every item refused
                results = r.json()["results"]
                assert all(x["code"] != "ok" for x in results), f"{ctx}: {results}"
                codes["202 batch"] = codes.get("202 batch", 0) + 1
                continue
            code = assert_error(r, None, None, ctx)
            codes[f"{r.status_code} {code}"] = codes.get(f"{r.status_code} {code}", 0) + 1
            assert world.http.get("/healthz").status_code == 200, ctx
    print(f"fuzz seed {seed}: {sorted(codes.items())}")
    assert len(codes) >= 5, f"seed {seed}: the fuzz reached too few distinct answers: {codes}"
    health = world.http.get("/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True
