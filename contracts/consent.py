"""Consent: a consumer asks, the holder grants, rejects or revokes; grants expire and get used up.

Lifecycle of a consent request:  requested -> granted | rejected
Lifecycle of a grant:            granted -> revoked | expired | used_up   (all three final)

Rules (docs/contracts.md, CON-1..CON-8):

- CON-1  Only an active consumer files a consent request, to an existing holder.
- CON-2  Only a holder grants; the grantee is an active consumer; every asset is the holder's own and
         active; every disclosed field is a field of at least one of the assets; `not_after` lies after the
         block time and at most ten years past it; 1 <= max_uses <= 1,000,000.
- CON-3  A grant that answers a request needs that request in state `requested`, filed by the grantee to
         this holder; the request becomes `granted` and points at the grant.
- CON-4  The holder rejects a request addressed to it while it is `requested`.
- CON-5  The holder revokes its own grant while it is `granted`.
- CON-6  At the start of every block, each grant whose `not_after` lies before the block time becomes
         `expired` (in order of not_after, then grant id).
- CON-7  A grant whose uses reach max_uses becomes `used_up` (contracts/access.py).
- CON-8  Only a grant in state `granted` whose not_after has not passed authorizes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.app import BlockContext
from contracts.codes import Code, require
from contracts.context import Event, State, TxContext
from contracts.records import (
    Asset,
    AssetStatus,
    ConsentRequest,
    ConsentRequestStatus,
    Grant,
    GrantStatus,
    Index,
    Kind,
    Role,
)
from contracts.txs import MAX_DURATION_MS, GrantConsent, RejectConsent, RequestConsent, RevokeConsent


def request(ctx: TxContext, body: RequestConsent) -> None:
    """CON-1."""
    consumer = ctx.require_role(Role.CONSUMER)
    st, h = ctx.state, ctx.block.height
    holder = st.account(body.holder)
    require(holder is not None and holder.is_holder, Code.UNKNOWN_HOLDER)
    rid = ctx.new_id(Kind.CONSENT_REQUEST)
    st.put(Kind.CONSENT_REQUEST, rid, ConsentRequest(
        rid, consumer.id, body.holder, body.schemas, body.fields, body.purpose, body.duration_ms,
        body.max_uses, ConsentRequestStatus.REQUESTED, b"", "", h, ctx.block.time_ms))
    st.index(Index.HOLDER_CONSENT_REQUESTS, body.holder, h, rid)
    st.index(Index.CONSUMER_REQUESTS, consumer.id, h, rid)
    ctx.object_id = rid
    ctx.emit("consent_requested", rid, body.holder)


def grant(ctx: TxContext, body: GrantConsent) -> None:
    """CON-2, CON-3."""
    holder = ctx.require_holder()
    st, h = ctx.state, ctx.block.height
    require(ctx.active_member(body.grantee, Role.CONSUMER) is not None, Code.GRANTEE_NOT_CONSUMER)
    covered: set[str] = set()
    for aid in body.assets:
        a = st.get(Asset, Kind.ASSET, aid)
        require(a is not None, Code.UNKNOWN_ASSET, aid.hex()[:16])
        assert a is not None
        require(a.holder == holder.id, Code.NOT_ASSET_HOLDER, aid.hex()[:16])
        require(a.status == AssetStatus.ACTIVE, Code.ASSET_NOT_ACTIVE, aid.hex()[:16])
        covered.update(a.fields)
    missing = set(body.fields) - covered
    require(not missing, Code.FIELD_NOT_IN_ASSETS, f"{sorted(missing)}")
    require(body.not_after_ms > ctx.block.time_ms, Code.NOT_AFTER_IN_PAST)
    require(body.not_after_ms <= ctx.block.time_ms + MAX_DURATION_MS, Code.NOT_AFTER_TOO_FAR,
            "a grant runs for ten years at most")

    gid = ctx.new_id(Kind.GRANT)
    if body.request_id:
        r = st.get(ConsentRequest, Kind.CONSENT_REQUEST, body.request_id)
        require(r is not None, Code.UNKNOWN_REQUEST)
        assert r is not None
        require(r.status == ConsentRequestStatus.REQUESTED, Code.REQUEST_NOT_PENDING)
        require(r.holder == holder.id and r.consumer == body.grantee, Code.REQUEST_MISMATCH)
        st.put(Kind.CONSENT_REQUEST, r.id, r.evolve(status=ConsentRequestStatus.GRANTED, grant_id=gid))

    st.put(Kind.GRANT, gid, Grant(gid, holder.id, body.grantee, body.assets, body.fields, body.purpose,
                                  body.not_after_ms, body.max_uses, 0, body.package_hash, body.request_id,
                                  GrantStatus.GRANTED, h, ctx.block.time_ms, 0))
    st.put_raw(expiry_key(body.not_after_ms, gid), b"")
    st.index(Index.HOLDER_GRANTS, holder.id, h, gid)
    st.index(Index.CONSUMER_GRANTS, body.grantee, h, gid)
    ctx.object_id = gid
    ctx.emit("consent_granted", gid, body.grantee, holder.id)


def reject(ctx: TxContext, body: RejectConsent) -> None:
    """CON-4."""
    holder = ctx.require_holder()
    r = ctx.state.get(ConsentRequest, Kind.CONSENT_REQUEST, body.request_id)
    require(r is not None and r.holder == holder.id, Code.UNKNOWN_REQUEST)
    assert r is not None
    require(r.status == ConsentRequestStatus.REQUESTED, Code.REQUEST_NOT_PENDING)
    ctx.state.put(Kind.CONSENT_REQUEST, r.id, r.evolve(status=ConsentRequestStatus.REJECTED,
                                                      reason=body.reason))
    ctx.object_id = r.id
    ctx.emit("consent_rejected", r.id, r.consumer)


def revoke(ctx: TxContext, body: RevokeConsent) -> None:
    """CON-5."""
    holder = ctx.require_holder()
    g = ctx.state.get(Grant, Kind.GRANT, body.grant_id)
    require(g is not None, Code.UNKNOWN_GRANT)
    assert g is not None
    require(g.holder == holder.id, Code.NOT_GRANT_HOLDER)
    require(g.status == GrantStatus.GRANTED and ctx.block.time_ms <= g.not_after_ms, Code.GRANT_NOT_ACTIVE)
    close_grant(ctx.state, g, GrantStatus.REVOKED, ctx.block.height)
    ctx.object_id = g.id
    ctx.emit("consent_revoked", g.id, g.grantee, g.holder)


def expiry_key(not_after_ms: int, grant_id: bytes) -> bytes:
    return Kind.EXPIRY + not_after_ms.to_bytes(8, "big") + grant_id


def close_grant(st: State, g: Grant, status: GrantStatus, height: int) -> None:
    """Move a grant to a final state and take it off the expiry queue."""
    st.put(Kind.GRANT, g.id, g.evolve(status=status, closed_height=height))
    st.delete_raw(expiry_key(g.not_after_ms, g.id))


def expire_grants(st: State, block: BlockContext) -> list[Event]:
    """CON-6: runs before the block's transactions."""
    due: list[bytes] = []
    for rest, _ in st.scan(Kind.EXPIRY):
        if int.from_bytes(rest[:8], "big") >= block.time_ms:
            break
        due.append(rest[8:])
    events = []
    for gid in due:
        g = st.get(Grant, Kind.GRANT, gid)
        assert g is not None and g.status == GrantStatus.GRANTED, "expiry queue holds only live grants"
        close_grant(st, g, GrantStatus.EXPIRED, block.height)
        events.append(Event("grant_expired", gid, (g.holder, g.grantee)))
    return events


HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {
    "consent.request": request,
    "consent.grant": grant,
    "consent.reject": reject,
    "consent.revoke": revoke,
}
