"""Data assets: issue ("active return"), return on application, versions, revocation, correction, erasure.

The chain holds, per asset, the root of its per-field salted commitments and the hash of its encrypted
payload: never a value. Rules (docs/contracts.md, AST-1..AST-8):

- AST-1  Only an active issuer listed in the schema issues assets of that schema, to an existing holder,
         with a non-empty subset of the schema's fields.
- AST-2  `supersedes` names an active asset of the same holder, issuer and schema: it becomes superseded
         and the new asset gets the next version number.
- AST-3  `answers` names a pending request addressed to this issuer by this holder: a request for an asset
         of this schema (fulfilled), or a correction of the superseded asset (fulfilled, so `supersedes`
         must name the asset whose correction was asked).
- AST-4  A holder asks an issuer for an asset of a schema the issuer may issue (`asset.request`).
- AST-5  A holder asks for the correction of fields of its own active asset (`asset.request_correction`).
- AST-6  The issuer refuses a pending request addressed to it, with a reason (`asset.refuse`).
- AST-7  The issuer revokes its own active or superseded asset, with a reason.
- AST-8  The holder erases its own asset (any status but erased): the vault deletes the ciphertext; the
         chain keeps the commitments, and no grant authorizes access to it any more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.codes import Code, require
from contracts.context import TxContext
from contracts.records import (
    Asset,
    AssetRequest,
    AssetStatus,
    Index,
    Kind,
    RequestKind,
    RequestStatus,
    Role,
    Schema,
)
from contracts.txs import EraseAsset, IssueAsset, RefuseRequest, RequestAsset, RequestCorrection, RevokeAsset


def _schema(ctx: TxContext, name: str) -> Schema:
    s = ctx.state.get(Schema, Kind.SCHEMA, name.encode())
    require(s is not None, Code.UNKNOWN_SCHEMA, name)
    assert s is not None
    return s


def _asset(ctx: TxContext, asset_id: bytes) -> Asset:
    a = ctx.state.get(Asset, Kind.ASSET, asset_id)
    require(a is not None, Code.UNKNOWN_ASSET)
    assert a is not None
    return a


def _request(ctx: TxContext, request_id: bytes) -> AssetRequest:
    r = ctx.state.get(AssetRequest, Kind.ASSET_REQUEST, request_id)
    require(r is not None, Code.UNKNOWN_REQUEST)
    assert r is not None
    require(r.status == RequestStatus.PENDING, Code.REQUEST_NOT_PENDING)
    return r


def issue(ctx: TxContext, body: IssueAsset) -> None:
    """AST-1, AST-2, AST-3."""
    issuer = ctx.require_role(Role.ISSUER)
    st, h = ctx.state, ctx.block.height
    schema = _schema(ctx, body.schema)
    require(issuer.id in schema.issuers, Code.ISSUER_NOT_AUTHORIZED, f"not an issuer of {schema.name}")
    holder = st.account(body.holder)
    require(holder is not None and holder.is_holder, Code.UNKNOWN_HOLDER)
    missing = set(body.fields) - set(schema.fields)
    require(not missing, Code.UNKNOWN_FIELD, f"not in schema {schema.name}: {sorted(missing)}")

    version = 1
    if body.supersedes:
        old = _asset(ctx, body.supersedes)
        require(old.status == AssetStatus.ACTIVE and old.holder == body.holder and old.issuer == issuer.id
                and old.schema == body.schema, Code.CANNOT_SUPERSEDE,
                "only an active asset of the same holder, issuer and schema")
        version = old.version + 1

    aid = ctx.new_id(Kind.ASSET)
    if body.answers:
        r = _request(ctx, body.answers)
        require(r.issuer == issuer.id and r.holder == body.holder and r.schema == body.schema,
                Code.REQUEST_MISMATCH, "the request is for another issuer, holder or schema")
        if r.kind == RequestKind.CORRECTION:
            require(body.supersedes == r.asset_id, Code.REQUEST_MISMATCH,
                    "a correction is answered by a new version of the corrected asset")
        st.put(Kind.ASSET_REQUEST, r.id, r.evolve(status=RequestStatus.FULFILLED, result_asset=aid,
                                                 resolved_height=h))
        ctx.emit("request_fulfilled", r.id, r.holder)

    if body.supersedes:
        st.put(Kind.ASSET, old.id, old.evolve(status=AssetStatus.SUPERSEDED, superseded_by=aid))

    st.put(Kind.ASSET, aid, Asset(aid, body.holder, issuer.id, body.schema, version, body.fields,
                                  body.field_root, body.payload_hash, body.supersedes, b"",
                                  AssetStatus.ACTIVE, "", h, ctx.block.time_ms))
    st.index(Index.HOLDER_ASSETS, body.holder, h, aid)
    st.index(Index.ISSUER_ASSETS, issuer.id, h, aid)
    ctx.object_id = aid
    ctx.emit("asset_issued", aid, body.holder)


def request_asset(ctx: TxContext, body: RequestAsset) -> None:
    """AST-4."""
    holder = ctx.require_holder()
    schema = _schema(ctx, body.schema)
    issuer = ctx.active_member(body.issuer, Role.ISSUER)
    require(issuer is not None and issuer.id in schema.issuers, Code.ISSUER_NOT_AUTHORIZED,
            f"that account does not issue {schema.name}")
    _new_request(ctx, RequestKind.ISSUE, holder.id, body.issuer, body.schema, b"", (), body.note_hash)


def request_correction(ctx: TxContext, body: RequestCorrection) -> None:
    """AST-5."""
    holder = ctx.require_holder()
    a = _asset(ctx, body.asset_id)
    require(a.holder == holder.id, Code.NOT_ASSET_HOLDER)
    require(a.status == AssetStatus.ACTIVE, Code.ASSET_NOT_ACTIVE)
    missing = set(body.fields) - set(a.fields)
    require(not missing, Code.UNKNOWN_FIELD, f"not in the asset: {sorted(missing)}")
    _new_request(ctx, RequestKind.CORRECTION, holder.id, a.issuer, a.schema, a.id, body.fields, body.note_hash)


def _new_request(ctx: TxContext, kind: RequestKind, holder: bytes, issuer: bytes, schema: str,
                 asset_id: bytes, fields: tuple[str, ...], note_hash: bytes) -> None:
    st, h = ctx.state, ctx.block.height
    rid = ctx.new_id(Kind.ASSET_REQUEST)
    st.put(Kind.ASSET_REQUEST, rid, AssetRequest(rid, kind, holder, issuer, schema, asset_id, fields,
                                                 note_hash, RequestStatus.PENDING, b"", "", h, 0))
    st.index(Index.HOLDER_ASSET_REQUESTS, holder, h, rid)
    st.index(Index.ISSUER_REQUESTS, issuer, h, rid)
    ctx.object_id = rid
    ctx.emit("correction_requested" if kind == RequestKind.CORRECTION else "asset_requested", rid, issuer)


def refuse(ctx: TxContext, body: RefuseRequest) -> None:
    """AST-6."""
    issuer = ctx.require_role(Role.ISSUER)
    r = _request(ctx, body.request_id)
    require(r.issuer == issuer.id, Code.REQUEST_MISMATCH, "the request is addressed to another issuer")
    ctx.state.put(Kind.ASSET_REQUEST, r.id, r.evolve(status=RequestStatus.REFUSED, reason=body.reason,
                                                    resolved_height=ctx.block.height))
    ctx.object_id = r.id
    ctx.emit("request_refused", r.id, r.holder)


def revoke(ctx: TxContext, body: RevokeAsset) -> None:
    """AST-7."""
    issuer = ctx.require_role(Role.ISSUER)
    a = _asset(ctx, body.asset_id)
    require(a.issuer == issuer.id, Code.NOT_ASSET_ISSUER)
    require(a.status in (AssetStatus.ACTIVE, AssetStatus.SUPERSEDED), Code.ASSET_NOT_ACTIVE)
    ctx.state.put(Kind.ASSET, a.id, a.evolve(status=AssetStatus.REVOKED, reason=body.reason))
    ctx.object_id = a.id
    ctx.emit("asset_revoked", a.id, a.holder)


def erase(ctx: TxContext, body: EraseAsset) -> None:
    """AST-8."""
    holder = ctx.require_holder()
    a = _asset(ctx, body.asset_id)
    require(a.holder == holder.id, Code.NOT_ASSET_HOLDER)
    require(a.status != AssetStatus.ERASED, Code.ASSET_ERASED)
    ctx.state.put(Kind.ASSET, a.id, a.evolve(status=AssetStatus.ERASED))
    ctx.object_id = a.id
    ctx.emit("asset_erased", a.id, a.holder, a.issuer)


HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {
    "asset.issue": issue,
    "asset.request": request_asset,
    "asset.request_correction": request_correction,
    "asset.refuse": refuse,
    "asset.revoke": revoke,
    "asset.erase": erase,
}
