"""The node's HTTP API (FastAPI): the endpoints of DESIGN.md, documented in docs/api.md.

Every error is a JSON body `{"error": {"code": ..., "message": ...}}` with a 4xx (the caller erred) or a
5xx (the node did). Personal data needs a signed request (node/auth.py) and passes an object-level check
(node/authz.py); unsigned callers see only public chain data. Handlers are `async def`: they all run on the
event loop that also runs the block producer, so the node's core is never used from two threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from consensus.errors import DecodeError, ValidationError
from consensus.types import Tx
from contracts.records import Grant, Kind
from contracts.txs import RecordAccess
from node import authz
from node.auth import AuthError, Caller, RequestAuthenticator
from node.core import NodeBusy
from node.service import Busy, NodeService
from node.vault import DEFAULT_MAX_BLOB_BYTES, VaultError

log = logging.getLogger("mydata.api")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_JSON_BODY = 1024 * 1024
MAX_BATCH = 1000
#: The longest `GET /v1/blocks/{height}?wait=` (seconds).
MAX_BLOCK_WAIT = 30.0
#: How a refused access maps to HTTP: unknown objects are 404, everything else is 403.
_NOT_FOUND_CODES = {"unknown_grant", "unknown_asset"}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _hex32(value: str, what: str) -> bytes:
    if not _HEX64.match(value):
        raise ApiError(400, "bad_id", f"{what} must be 64 lowercase hex characters")
    return bytes.fromhex(value)


class BodyLimit:
    """ASGI middleware: refuse bodies over the limit (413) before they are read whole."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app, self.limit_for = app, limit_for

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    too_big = int(v) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    await _send_json(send, 413, "body_too_large", f"the body exceeds {limit} bytes")
                    return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _send_json(send, 413, "body_too_large", f"the body exceeds {limit} bytes")


class RequestMetrics:
    """ASGI middleware counting requests by route and status (a plain ASGI wrapper: Starlette's
    BaseHTTPMiddleware would turn every response into a stream)."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def watch(msg: Any) -> None:
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(route=getattr(route, "path", "unmatched"),
                                         status=str(status["code"])).inc()


class _TooLarge(Exception):
    pass


async def _send_json(send: Any, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(service: NodeService, *, max_vault_blob: int = DEFAULT_MAX_BLOB_BYTES, commit_timeout: float = 20.0,
               max_skew_ms: int = 60_000) -> FastAPI:
    core = service.core
    auth = RequestAuthenticator(core.chain_id, max_skew_ms=max_skew_ms)
    metrics = service.metrics

    app = FastAPI(title="MyData Ledger node", version="0.1.0",
                  description="Consent-controlled access to government-held personal and enterprise data. "
                              "See docs/api.md for authentication and error codes.")
    app.add_middleware(BodyLimit, limit_for=lambda p: max_vault_blob + 1024 if p.startswith("/v1/vault/")
                       else MAX_JSON_BODY)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.code, e.message)

    @app.exception_handler(AuthError)
    async def _auth_error(_: Request, e: AuthError) -> JSONResponse:
        return _error(e.status, e.code, e.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return _error(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        log.exception("internal error while handling a request")
        return _error(500, "internal_error", "the node failed to handle this request; see its log")

    app.add_middleware(RequestMetrics, metrics=metrics)

    async def caller_of(request: Request) -> Caller | None:
        body = await request.body()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k.lower(): v for k, v in request.headers.items()}
        return auth.authenticate(core.state(), request.method, path, body, headers, service.now_ms())

    async def signed(request: Request) -> Caller:
        c = await caller_of(request)
        if c is None:
            raise ApiError(401, "signature_required", "this endpoint needs a signed request (docs/api.md)")
        return c

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            obj = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiError(400, "malformed_json", "the body is not valid JSON (or nested too deeply)") from None
        if not isinstance(obj, dict):
            raise ApiError(400, "malformed_json", "the body must be a JSON object")
        return obj

    def tx_bytes(value: object) -> bytes:
        if not isinstance(value, str):
            raise ApiError(400, "malformed_tx", "a transaction is a hex string")
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise ApiError(400, "malformed_tx", "the transaction is not valid hex") from None

    def decode_tx_hex(value: object) -> tuple[bytes, Tx]:
        raw = tx_bytes(value)
        try:
            return raw, Tx.decode(raw)
        except (DecodeError, ValidationError) as e:
            raise ApiError(400, "malformed_tx", str(e)) from None

    # ---- public chain data -------------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "height": core.status()["height"]}

    @app.get("/metrics", tags=["operations"])
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/status", tags=["chain"])
    async def status() -> dict[str, Any]:
        return dict(core.status())

    @app.get("/v1/validators", tags=["chain"])
    async def validators(height: int | None = None) -> dict[str, Any]:
        if height is None:
            return core.state().validators().to_json()
        vs = core.validators_at(height)
        if vs is None:
            raise ApiError(404, "unknown_block", f"no validator set for height {height} (1 .. the next block)")
        return vs.to_json()

    @app.get("/v1/schemas", tags=["chain"])
    async def schemas() -> dict[str, Any]:
        return {"schemas": [s.to_json() for s in authz.all_schemas(core.state())]}

    @app.get("/v1/blocks/{height}", tags=["chain"])
    async def block(height: int, request: Request, wait: float = 0.0) -> dict[str, Any]:
        caller = await caller_of(request)
        if not 0.0 <= wait <= MAX_BLOCK_WAIT:
            raise ApiError(400, "invalid_request", f"wait must be between 0 and {MAX_BLOCK_WAIT:g} seconds")
        if height >= 1 and wait > 0:
            try:
                await service.wait_height(height, wait)  # a follower's long poll: answered as it commits
            except Busy as e:
                raise ApiError(503, "busy", f"{e}; retry later or poll without wait") from None
        b = core.block(height) if height >= 1 else None
        if b is None:
            raise ApiError(404, "unknown_block", f"no block at height {height}")
        commit = core.commit(height)
        out: dict[str, Any] = {
            "hash": b.hash.hex(),
            "header": b.header.to_json(),
            "tx_hashes": [core.tx_hash(raw).hex() for raw in b.txs],
            "last_commit": None if b.last_commit is None else b.last_commit.to_json(),
            "commit": None if commit is None else commit.to_json(),
        }
        out["header"]["prev_hash"] = b.header.prev_hash.hex()
        if caller is not None and authz.sees_full_blocks(caller):
            out["raw"] = b.encode().hex()
            out["commit_raw"] = None if commit is None else commit.encode().hex()
        return out

    # ---- transactions --------------------------------------------------------------------------------------

    @app.post("/v1/txs", tags=["transactions"])
    async def submit(request: Request, wait: bool = False) -> JSONResponse:
        body = await json_body(request)
        if "txs" in body:
            items = body["txs"]
            if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
                raise ApiError(400, "invalid_request", f"txs must be a list of 1..{MAX_BATCH} hex strings")
            if wait:
                raise ApiError(400, "invalid_request", "wait=true takes a single transaction")
            results = []
            for item in items:
                try:
                    raw = tx_bytes(item)
                except ApiError as e:
                    results.append({"hash": None, "code": e.code, "message": e.message})
                    continue
                h, code, msg = service.submit(raw)  # the mempool decodes and checks it, once
                results.append({"hash": h.hex(), "code": code, "message": msg})
            return JSONResponse({"results": results}, status_code=202)
        raw = tx_bytes(body.get("tx"))
        h, code, msg = service.submit(raw)
        if code != "ok" and code != "duplicate":
            raise ApiError(503 if code == "mempool_full" else 400, code, msg or f"the transaction was refused: {code}")
        if not wait:
            return JSONResponse({"hash": h.hex(), "code": code}, status_code=202)
        outcome = await service.wait_committed(h, commit_timeout)
        if outcome is None:
            raise ApiError(504, "commit_timeout", f"transaction {h.hex()} not committed within {commit_timeout} s")
        return JSONResponse({"hash": h.hex(), "height": outcome.height, "index": outcome.index,
                             "code": outcome.result.code, "object_id": outcome.result.object_id.hex()})

    @app.get("/v1/txs/{tx_hash}", tags=["transactions"])
    async def tx_status(tx_hash: str, request: Request) -> dict[str, Any]:
        caller = await signed(request)
        h = _hex32(tx_hash, "tx hash")
        found = core.tx_result(h)
        if found is None:
            if core.mempool.contains(h):
                return {"hash": tx_hash, "status": "pending"}
            raise ApiError(404, "unknown_tx", "no such transaction")
        height, index, result = found
        b = core.block(height)
        assert b is not None
        tx = Tx.decode(b.txs[index])
        if not (caller.id == tx.sender or caller.is_auditor):
            raise ApiError(404, "unknown_tx", "no such transaction")
        return {"hash": tx_hash, "status": "committed", "height": height, "index": index, "type": tx.type,
                "sender": tx.sender.hex(), "code": result.code, "object_id": result.object_id.hex()}

    # ---- accounts and their objects ------------------------------------------------------------------------

    @app.get("/v1/accounts/{account_id}", tags=["accounts"])
    async def account(account_id: str, request: Request) -> dict[str, Any]:
        caller = await caller_of(request)
        a = core.state().account(_hex32(account_id, "account id"))
        if a is None or not authz.can_read_account(caller, a):
            raise ApiError(404, "unknown_account", "no such account (or not visible to you)")
        return authz.account_json(a)

    @app.get("/v1/accounts/{account_id}/{listing}", tags=["accounts"])
    async def account_listing(account_id: str, listing: str, request: Request, limit: int = 100) -> dict[str, Any]:
        caller = await signed(request)
        aid = _hex32(account_id, "account id")
        if listing not in authz.LISTINGS:
            raise ApiError(404, "not_found", f"no listing {listing!r}; try {sorted(authz.LISTINGS)}")
        st = core.state()
        a = st.account(aid)
        if a is None or not (caller.id == aid or caller.is_auditor):
            raise ApiError(403, "forbidden", "an account's listings are for itself and auditors")
        limit = max(1, min(limit, 1000))
        return authz.listing(core, st, a, listing, limit)

    def _object(kind: str, object_id: str, caller: Caller) -> tuple[bytes, Any]:
        oid = _hex32(object_id, "object id")
        st = core.state()
        rec = authz.load_object(st, kind, oid)
        if rec is None or not authz.can_read_object(st, caller, rec):
            raise ApiError(404, authz.NOT_FOUND_CODES[kind], "no such object (or not visible to you)")
        return oid, rec

    # ---- the vault -------------------------------------------------------------------------------------------

    @app.put("/v1/vault/{blob_hash}", tags=["vault"])
    async def vault_put(blob_hash: str, request: Request) -> JSONResponse:
        await signed(request)
        h = _hex32(blob_hash, "blob hash")
        data = await request.body()
        try:
            created = core.vault_put(h, data)
            if service.engine is not None:
                service.engine.on_local_blob(h, data)
        except VaultError as e:
            status = {"too_large": 413, "hash_mismatch": 400, "not_referenced": 403, "erased": 410}.get(e.code, 400)
            raise ApiError(status, e.code, e.message or e.code) from None
        return JSONResponse({"hash": blob_hash, "stored": True}, status_code=201 if created is not False else 200)

    @app.get("/v1/vault/{blob_hash}", tags=["vault"])
    async def vault_get(blob_hash: str, request: Request) -> Response:
        caller = await signed(request)
        h = _hex32(blob_hash, "blob hash")
        if not authz.can_read_blob(core, caller, h):
            raise ApiError(404, "unknown_blob", "no such blob (or not yours: packages come only from /v1/access)")
        data = core.vault_get(h)
        if data is None:
            raise ApiError(404, "unknown_blob", "the blob is not in this node's vault")
        return Response(data, media_type="application/octet-stream")

    # ---- the pull ----------------------------------------------------------------------------------------------

    @app.post("/v1/access", tags=["access"])
    async def pull(request: Request) -> Response:
        """Record an access on chain, then release the grant's disclosure package (only on success)."""
        caller = await signed(request)
        body = await json_body(request)
        raw, tx = decode_tx_hex(body.get("tx"))
        if tx.type != "access.record":
            raise ApiError(400, "wrong_tx_type", "a pull carries an access.record transaction")
        if tx.sender != caller.id:
            raise ApiError(403, "not_your_tx", "the access transaction must be the caller's own")
        try:
            ra = RecordAccess.decode(tx.body)
        except (DecodeError, ValidationError) as e:
            raise ApiError(400, "malformed_body", str(e)) from None
        st = core.state()
        acct = st.account(caller.id)
        if acct is not None and tx.chain_id == core.chain_id and tx.nonce > acct.nonce:
            # A pull is answered while the caller waits: it must run in the next block, not wait in the
            # mempool behind a nonce gap (and consume a use long after the caller gave up).
            raise ApiError(409, "nonce_not_next", f"a pull must carry the account's next nonce ({acct.nonce}); "
                                                  "wait for your pending transactions first")
        grant = st.get(Grant, Kind.GRANT, ra.grant_id)
        if (grant is not None and grant.grantee == caller.id and core.vault_get(grant.package_hash) is None
                and not core.is_erased(grant.package_hash)):
            raise ApiError(409, "package_missing", "the holder has not uploaded this grant's package yet")
        h, code, msg = service.submit(raw)
        if code != "ok" and code != "duplicate":
            metrics.access_refusals.labels(code=code).inc()
            raise ApiError(400, code, msg or f"the access transaction was refused: {code}")
        outcome = await service.wait_committed(h, commit_timeout)
        if outcome is None:
            raise ApiError(504, "commit_timeout", f"access {h.hex()} not committed within {commit_timeout} s")
        rcode = outcome.result.code
        if rcode != "ok":
            metrics.access_refusals.labels(code=rcode).inc()
            status = 404 if rcode in _NOT_FOUND_CODES else 403
            raise ApiError(status, rcode, f"access refused on chain at height {outcome.height}: {rcode}")
        grant = core.state().get(Grant, Kind.GRANT, ra.grant_id)
        assert grant is not None
        data = core.vault_get(grant.package_hash)
        if data is None:  # erased between the check and the commit
            raise ApiError(410, "package_erased", "the package was erased")
        metrics.access_releases.inc()
        return Response(data, media_type="application/octet-stream", headers={
            "X-MyData-Tx": h.hex(), "X-MyData-Height": str(outcome.height),
            "X-MyData-Access": outcome.result.object_id.hex(), "X-MyData-Package-Hash": grant.package_hash.hex(),
            "X-MyData-Grant": grant.id.hex()})

    # ---- events -------------------------------------------------------------------------------------------------

    @app.get("/v1/events", tags=["events"])
    async def events(request: Request) -> StreamingResponse:
        caller = await signed(request)
        q = service.subscribe(caller.id)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while True:
                    try:
                        ev = await asyncio.wait_for(q.get(), timeout=15.0)
                    except TimeoutError:
                        if await request.is_disconnected():
                            return
                        yield b": keep-alive\n\n"
                        continue
                    yield f"event: {ev.kind}\ndata: {json.dumps(ev.to_json())}\n\n".encode()
            finally:
                service.unsubscribe(caller.id, q)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    # Registered last: its path pattern would otherwise shadow /v1/vault/... and others.
    @app.get("/v1/{kind}/{object_id}", tags=["objects"])
    async def object_get(kind: str, object_id: str, request: Request) -> dict[str, Any]:
        if kind not in authz.OBJECT_KINDS:
            raise ApiError(404, "not_found", f"unknown path /v1/{kind}")
        caller = await signed(request)
        _, rec = _object(kind, object_id, caller)
        return authz.object_json(core.state(), rec)

    @app.get("/v1/proofs/{kind}/{object_id}", tags=["objects"])
    async def proof(kind: str, object_id: str, request: Request) -> dict[str, Any]:
        if kind not in authz.OBJECT_KINDS:
            raise ApiError(404, "not_found", f"no proofs for {kind}")
        caller = await signed(request)
        oid, _ = _object(kind, object_id, caller)
        key = authz.OBJECT_KINDS[kind][0] + oid
        try:
            app_hash, height, p, value = core.prove(key)
        except NodeBusy as e:
            raise ApiError(503, "retry", str(e)) from None
        return {"key": key.hex(), "value": None if value is None else value.hex(), "app_hash": app_hash.hex(),
                "height": height, "proof": p.encode().hex()}

    @app.on_event("startup")
    async def _start() -> None:
        await service.start()

    @app.on_event("shutdown")
    async def _stop() -> None:
        await service.stop()

    return app
