"""Access: the on-chain record of a consumer's pull, written before the node releases any data.

Rules (docs/contracts.md, ACC-1..ACC-3):

- ACC-1  The sender is an active consumer and the grantee of the grant.
- ACC-2  The grant is in state `granted`, its not_after is not before the block time, it has uses left,
         and it covers the asset; the asset is active (not superseded, revoked or erased); and no other asset
         of the grant is erased either (the grant's one package holds that asset's fields too, so the vault
         shredded it: the grant can deliver nothing any more).
- ACC-3  A successful access consumes exactly one use and is stored with its grant, asset, holder,
         consumer, purpose, use number and block time; the last use moves the grant to `used_up`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.codes import Code, Failure, require
from contracts.consent import close_grant
from contracts.context import TxContext
from contracts.records import Access, Asset, AssetStatus, Grant, GrantStatus, Index, Kind, Role
from contracts.txs import RecordAccess

_CLOSED = {
    GrantStatus.REVOKED: Code.GRANT_REVOKED,
    GrantStatus.EXPIRED: Code.GRANT_EXPIRED,
    GrantStatus.USED_UP: Code.GRANT_USED_UP,
}
_INACTIVE_ASSET = {
    AssetStatus.SUPERSEDED: Code.ASSET_SUPERSEDED,
    AssetStatus.REVOKED: Code.ASSET_REVOKED,
    AssetStatus.ERASED: Code.ASSET_ERASED,
}


def record(ctx: TxContext, body: RecordAccess) -> None:
    """ACC-1, ACC-2, ACC-3."""
    consumer = ctx.require_role(Role.CONSUMER)
    st, h = ctx.state, ctx.block.height
    g = st.get(Grant, Kind.GRANT, body.grant_id)
    require(g is not None, Code.UNKNOWN_GRANT)
    assert g is not None
    require(g.grantee == consumer.id, Code.NOT_GRANTEE)
    if g.status != GrantStatus.GRANTED:
        raise Failure(_CLOSED[GrantStatus(g.status)])
    require(ctx.block.time_ms <= g.not_after_ms, Code.GRANT_EXPIRED)
    require(g.uses < g.max_uses, Code.GRANT_USED_UP)
    require(body.asset_id in g.assets, Code.ASSET_NOT_COVERED)
    a = st.get(Asset, Kind.ASSET, body.asset_id)
    assert a is not None, "a grant only names assets that existed"
    if a.status != AssetStatus.ACTIVE:
        raise Failure(_INACTIVE_ASSET[AssetStatus(a.status)])
    for other in g.assets:
        if other != a.id:
            o = st.get(Asset, Kind.ASSET, other)
            require(o is not None and o.status != AssetStatus.ERASED, Code.ASSET_ERASED,
                    "another asset of this grant was erased, and the grant's package with it")

    uses = g.uses + 1
    g = g.evolve(uses=uses)
    if uses == g.max_uses:
        close_grant(st, g, GrantStatus.USED_UP, h)
        ctx.emit("grant_used_up", g.id, g.holder, g.grantee)
    else:
        st.put(Kind.GRANT, g.id, g)
    xid = ctx.new_id(Kind.ACCESS)
    st.put(Kind.ACCESS, xid, Access(xid, g.id, a.id, g.holder, consumer.id, g.purpose, uses, h,
                                    ctx.block.time_ms))
    st.index(Index.HOLDER_ACCESSES, g.holder, h, xid)
    st.index(Index.CONSUMER_ACCESSES, consumer.id, h, xid)
    ctx.object_id = xid
    ctx.emit("data_accessed", xid, g.holder)


HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {"access.record": record}
