"""The HTTP client of a node's API (httpx), signing requests for an identity when it has one."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from consensus.crypto import Domain, Signer, request_payload
from consensus.types import Tx


class ApiError(Exception):
    """The node answered with an error: `status` (HTTP), `code` and `message` from its JSON body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status, self.code, self.message = status, code, message


class NodeUnreachable(Exception):
    pass


class Client:
    """A node's API. `signer` and `account` (the account id the signer acts for) sign every request."""

    def __init__(self, base_url: str, *, chain_id: str | None = None, signer: Signer | None = None,
                 account: bytes | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)
        self.signer = signer
        self.account = account
        self._chain_id = chain_id

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def as_(self, signer: Signer, account: bytes) -> Client:
        """Another client on the same node, acting for another identity."""
        return Client(self.base_url, chain_id=self.chain_id, signer=signer, account=account,
                      timeout=self.http.timeout.read or 30.0)

    @property
    def chain_id(self) -> str:
        if self._chain_id is None:
            try:
                r = self.http.get("/v1/status")
            except httpx.TransportError as e:
                raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {e}") from None
            self._chain_id = str(r.json()["chain_id"])
        return self._chain_id

    # ---- transport ------------------------------------------------------------------------------------

    def _headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        if self.signer is None or self.account is None:
            return {}
        t = int(time.time() * 1000)
        nonce = os.urandom(16)
        sig = self.signer.sign(Domain.REQUEST, self.chain_id, request_payload(method, path, body, t, nonce))
        return {
            "X-MyData-Account": self.account.hex(),
            "X-MyData-Key": self.signer.public_key.hex(),
            "X-MyData-Time": str(t),
            "X-MyData-Nonce": nonce.hex(),
            "X-MyData-Signature": sig.hex(),
        }

    def request(self, method: str, path: str, *, json_body: Any = None, content: bytes | None = None,
                content_type: str = "application/json", raw: bool = False) -> Any:
        body = content if content is not None else (b"" if json_body is None else
                                                    json.dumps(json_body).encode())
        headers = self._headers(method, path, body)
        if body:
            headers["Content-Type"] = content_type
        try:
            r = self.http.request(method, path, content=body, headers=headers)
        except httpx.TransportError as e:
            raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {e}") from None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, str(err["code"]), str(err.get("message", "")))
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", r.text[:200]) from None
        if raw:
            return r.content
        return r.json() if r.content else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    # ---- endpoints ------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return dict(self.request("GET", "/v1/status"))

    def block(self, height: int) -> Any:
        """A block as JSON; signed as an auditor or validator, it also carries the canonical `raw` bytes."""
        return self.request("GET", f"/v1/blocks/{height}")

    def submit(self, tx: Tx, wait: bool = True) -> dict[str, Any]:
        """Submit one transaction; with `wait`, return its committed result (code, height, object id)."""
        return dict(self.request("POST", "/v1/txs" + ("?wait=true" if wait else ""),
                                 json_body={"tx": tx.encode().hex()}))

    def submit_many(self, txs: list[Tx]) -> list[dict[str, Any]]:
        out = self.request("POST", "/v1/txs", json_body={"txs": [t.encode().hex() for t in txs]})
        return list(out["results"])

    def tx(self, tx_hash: bytes) -> dict[str, Any]:
        return dict(self.get(f"/v1/txs/{tx_hash.hex()}"))

    def account_info(self, account: bytes) -> dict[str, Any]:
        return dict(self.get(f"/v1/accounts/{account.hex()}"))

    def listing(self, account: bytes, what: str) -> Any:
        return self.get(f"/v1/accounts/{account.hex()}/{what}")

    def object(self, kind: str, object_id: bytes) -> dict[str, Any]:
        return dict(self.get(f"/v1/{kind}/{object_id.hex()}"))

    def vault_put(self, blob_hash: bytes, data: bytes) -> None:
        self.request("PUT", f"/v1/vault/{blob_hash.hex()}", content=data, content_type="application/octet-stream")

    def vault_get(self, blob_hash: bytes) -> bytes:
        return bytes(self.request("GET", f"/v1/vault/{blob_hash.hex()}", raw=True))

    def pull(self, access_tx: Tx) -> tuple[bytes, dict[str, Any]]:
        """Submit an access record and, once it is committed with success, receive the package bytes."""
        body = json.dumps({"tx": access_tx.encode().hex()}).encode()
        headers = self._headers("POST", "/v1/access", body)
        headers["Content-Type"] = "application/json"
        try:
            r = self.http.post("/v1/access", content=body, headers=headers)
        except httpx.TransportError as e:
            raise NodeUnreachable(f"cannot reach the node at {self.base_url}: {e}") from None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                raise ApiError(r.status_code, str(err["code"]), str(err.get("message", "")))
            except (ValueError, KeyError, TypeError):
                raise ApiError(r.status_code, "http_error", r.text[:200]) from None
        meta = {k[len("x-mydata-"):]: v for k, v in r.headers.items() if k.startswith("x-mydata-")}
        return r.content, meta

    def proof(self, kind: str, object_id: bytes) -> dict[str, Any]:
        return dict(self.get(f"/v1/proofs/{kind}/{object_id.hex()}"))

    def events(self, max_events: int | None = None, timeout: float = 60.0,
               on_connect: Callable[[], None] | None = None) -> Iterator[dict[str, Any]]:
        """Server-sent events for this identity, as dicts; stops after `max_events` or on a read timeout
        (the node sends a keep-alive every 15 s). `on_connect` runs once the stream is open."""
        headers = self._headers("GET", "/v1/events", b"")
        n = 0
        with self.http.stream("GET", "/v1/events", headers=headers, timeout=timeout) as r:
            if r.status_code >= 400:
                r.read()
                raise ApiError(r.status_code, "events_refused", r.text[:200])
            if on_connect is not None:
                on_connect()
            for line in r.iter_lines():
                if line.startswith("data: "):
                    yield json.loads(line[6:])
                    n += 1
                    if max_events is not None and n >= max_events:
                        return
