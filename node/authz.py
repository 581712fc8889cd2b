"""Object-level authorization of API reads (docs/api.md, "Who sees what"). One rule per kind of object:

| object          | who may read it                                                              |
|-----------------|------------------------------------------------------------------------------|
| member account  | anyone (organisations and their public keys are public)                     |
| holder account  | the holder, auditors, registrars and issuers (they need its encryption key) |
| asset           | its holder, its issuer, auditors                                             |
| grant           | its holder, its grantee (with the covered assets' commitments), auditors     |
| access          | the holder, the consumer, auditors                                           |
| consent request | the holder it asks, the consumer who asked, auditors                         |
| asset request   | the holder who asked, the issuer asked, auditors                             |
| listings        | the account itself and auditors                                              |
| vault blob      | an asset's ciphertext: its holder and issuer; packages only through a pull   |
| full blocks     | auditors, validators and admins (others get headers and transaction hashes)  |

Anything a caller may not read answers exactly like something that does not exist (404), so ids cannot be
probed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from consensus.encoding import Struct
from contracts.context import State
from contracts.records import (
    Access,
    Account,
    Asset,
    AssetRequest,
    ConsentRequest,
    Grant,
    Index,
    Kind,
    Role,
    Schema,
)
from node.auth import Caller

if TYPE_CHECKING:
    from node.core import NodeCore

OBJECT_KINDS: dict[str, tuple[bytes, type[Struct]]] = {
    "assets": (Kind.ASSET, Asset),
    "grants": (Kind.GRANT, Grant),
    "accesses": (Kind.ACCESS, Access),
    "consent-requests": (Kind.CONSENT_REQUEST, ConsentRequest),
    "asset-requests": (Kind.ASSET_REQUEST, AssetRequest),
}

NOT_FOUND_CODES = {"assets": "unknown_asset", "grants": "unknown_grant", "accesses": "unknown_access",
                   "consent-requests": "unknown_consent_request", "asset-requests": "unknown_asset_request"}

LISTINGS = ("assets", "grants", "accesses", "requests")


def all_schemas(st: State) -> list[Schema]:
    return [Schema.decode(v) for _, v in st.scan(Kind.SCHEMA)]


def sees_full_blocks(caller: Caller) -> bool:
    return caller.is_auditor or caller.has(Role.VALIDATOR) or caller.has(Role.ADMIN)


def can_read_account(caller: Caller | None, a: Account) -> bool:
    if not a.is_holder:
        return True
    if caller is None:
        return False
    return (caller.id == a.id or caller.is_auditor or caller.has(Role.REGISTRAR) or caller.has(Role.ISSUER))


def account_json(a: Account) -> dict[str, Any]:
    out = a.to_json()
    out.pop("subject_ref", None)  # a salted hash, but still nobody's business through the API
    return out


def load_object(st: State, kind: str, oid: bytes) -> Struct | None:
    prefix, cls = OBJECT_KINDS[kind]
    return st.get(cls, prefix, oid)


def can_read_object(st: State, caller: Caller, rec: Struct) -> bool:
    if caller.is_auditor:
        return True
    me = caller.id
    if isinstance(rec, Asset):
        return me in (rec.holder, rec.issuer)
    if isinstance(rec, Grant):
        return me in (rec.holder, rec.grantee)
    if isinstance(rec, Access):
        return me in (rec.holder, rec.consumer)
    if isinstance(rec, ConsentRequest):
        return me in (rec.holder, rec.consumer)
    if isinstance(rec, AssetRequest):
        return me in (rec.holder, rec.issuer)
    return False


def object_json(st: State, rec: Struct) -> dict[str, Any]:
    out = rec.to_json()
    if isinstance(rec, Grant):
        # The grantee needs the covered assets' field roots to verify a package; it sees nothing else of them.
        assets = [st.get(Asset, Kind.ASSET, aid) for aid in rec.assets]
        out["asset_records"] = [a.to_json() for a in assets if a is not None]
    return out


_INDEXES = {
    # listing: (index for holders, index for members by role)
    "assets": (Index.HOLDER_ASSETS, ((Role.ISSUER, Index.ISSUER_ASSETS),)),
    "grants": (Index.HOLDER_GRANTS, ((Role.CONSUMER, Index.CONSUMER_GRANTS),)),
    "accesses": (Index.HOLDER_ACCESSES, ((Role.CONSUMER, Index.CONSUMER_ACCESSES),)),
}


def listing(core: NodeCore, st: State, a: Account, what: str, limit: int) -> dict[str, Any]:
    """An account's own objects, newest first."""
    def records(index: bytes, prefix: bytes, cls: type[Struct]) -> list[dict[str, Any]]:
        out = []
        for oid in core.list_index(index, a.id, limit):
            rec = st.get(cls, prefix, oid)
            if rec is not None:
                out.append(object_json(st, rec))
        return out

    if what == "requests":
        if a.is_holder:
            return {"consent_requests": records(Index.HOLDER_CONSENT_REQUESTS, Kind.CONSENT_REQUEST, ConsentRequest),
                    "asset_requests": records(Index.HOLDER_ASSET_REQUESTS, Kind.ASSET_REQUEST, AssetRequest)}
        out: dict[str, Any] = {"consent_requests": [], "asset_requests": []}
        if Role.CONSUMER in a.roles:
            out["consent_requests"] = records(Index.CONSUMER_REQUESTS, Kind.CONSENT_REQUEST, ConsentRequest)
        if Role.ISSUER in a.roles:
            out["asset_requests"] = records(Index.ISSUER_REQUESTS, Kind.ASSET_REQUEST, AssetRequest)
        return out
    prefix, cls = OBJECT_KINDS[what]
    holder_index, member_indexes = _INDEXES[what]
    if a.is_holder:
        return {what: records(holder_index, prefix, cls)}
    items: list[dict[str, Any]] = []
    for role, index in member_indexes:
        if role in a.roles:
            items.extend(records(index, prefix, cls))
    return {what: items}


def can_read_blob(core: NodeCore, caller: Caller, blob_hash: bytes) -> bool:
    """Only an asset's ciphertext is served here, to its holder and issuer; packages go out only through a
    pull, after the access is on chain."""
    asset_id = core.blob_asset(blob_hash)
    if asset_id is None:
        return False
    a = core.state().get(Asset, Kind.ASSET, asset_id)
    return a is not None and caller.id in (a.holder, a.issuer)
