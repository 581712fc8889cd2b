"""What the ledger stores: one canonical structure per kind of object, and the keys they live under.

Authenticated state (`s/` + key, covered by the state tree and hence by the app hash):

    acct/<account id>        Account        members (organisations) and holders (persons, enterprises)
    subj/<subject ref>       bytes          the account bound to a salted subject reference
    key/<pubkey>             bytes          the account a signing key (current or delegate) acts for
    schema/<name>            Schema
    gov/threshold            u32            admin approvals needed for an admin action
    gov/admins               [id]           every member holding the admin role
    params                   ConsensusParams
    valset                   ValidatorSet   the set that signs the next block
    valpend/<u64be height>   PendingValidators  changes that take effect at that height
    valhist/<u64be height>   ValidatorSet   the set in force from that height on (genesis: height 1; then one
                                            record per height at which a change makes the set differ)
    prop/<id>                Proposal
    asset/<id>               Asset
    areq/<id>                AssetRequest   a holder's request for an asset or for a correction
    creq/<id>                ConsentRequest
    grant/<id>               Grant
    expiry/<u64be not_after><grant id>  b""  grants to expire, in time order
    access/<id>              Access
    evidence/<hash>          EvidenceRecord (contracts/evidence.py)

Indexes (`i/<name>/<owner><u64be height><object id>` -> b""): derived data, written in the same atomic batch
as the state but outside the tree, because they can be rebuilt from it (docs/decisions.md, D-4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from consensus.encoding import (
    HASH,
    HASH_OR_EMPTY,
    PUBKEY,
    U32,
    U64,
    Bytes,
    ListOf,
    Nested,
    Struct,
    Text,
    field_,
)
from consensus.errors import ValidationError
from consensus.types import NAME


class Role(StrEnum):
    ADMIN = "admin"
    REGISTRAR = "registrar"
    ISSUER = "issuer"
    CONSUMER = "consumer"
    AUDITOR = "auditor"
    VALIDATOR = "validator"


class AccountKind(StrEnum):
    MEMBER = "member"
    PERSON = "person"
    ENTERPRISE = "enterprise"


class Status(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class AssetStatus(StrEnum):
    ACTIVE = "active"
    SUPERSEDED = "superseded"
    REVOKED = "revoked"
    ERASED = "erased"


class RequestStatus(StrEnum):
    PENDING = "pending"
    FULFILLED = "fulfilled"
    REFUSED = "refused"


class RequestKind(StrEnum):
    ISSUE = "issue"
    CORRECTION = "correction"


class ConsentRequestStatus(StrEnum):
    REQUESTED = "requested"
    GRANTED = "granted"
    REJECTED = "rejected"


class GrantStatus(StrEnum):
    GRANTED = "granted"
    REVOKED = "revoked"
    EXPIRED = "expired"
    USED_UP = "used_up"


def one_of(enum: type[StrEnum]) -> Text:
    values = frozenset(e.value for e in enum)
    return Text(32, allowed=values.__contains__, what=f"one of {sorted(values)}")


_FIELD_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
FIELD = Text(48, min=1, allowed=lambda s: _FIELD_RE.fullmatch(s) is not None,
             what="a field name (lowercase letters, digits, '_'; starting with a letter)")
FIELDS = ListOf(FIELD, 128, unique_sorted=True)
_SCHEMA_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
SCHEMA_NAME = Text(64, min=1, allowed=lambda s: _SCHEMA_RE.fullmatch(s) is not None,
                   what="a schema name (lowercase letters, digits, '_', '.')")
PURPOSE = Text(200, min=1)
REASON = Text(200)
ROLES = ListOf(one_of(Role), 6, unique_sorted=True)
IDS = ListOf(HASH, 64, unique_sorted=True)
#: How many members may hold the admin role at once (the list is read on every admin action); a proposal can
#: gather that many approvals.
MAX_ADMINS = 256
ADMIN_IDS = ListOf(HASH, MAX_ADMINS, unique_sorted=True)
#: Validator changes scheduled for one height (PendingValidators).
MAX_VALIDATOR_CHANGES = 128


@dataclass(frozen=True)
class Account(Struct):
    id: bytes = field_(HASH)
    kind: str = field_(one_of(AccountKind))
    name: str = field_(Text(64))
    roles: tuple[str, ...] = field_(ROLES)
    sign_pk: bytes = field_(PUBKEY)
    enc_pk: bytes = field_(PUBKEY)
    status: str = field_(one_of(Status))
    nonce: int = field_(U64)
    subject_ref: bytes = field_(HASH_OR_EMPTY)
    delegates: tuple[bytes, ...] = field_(ListOf(PUBKEY, 16, unique_sorted=True))
    created_height: int = field_(U64)

    @property
    def is_holder(self) -> bool:
        return self.kind != AccountKind.MEMBER

    def active_with(self, role: Role) -> bool:
        return self.status == Status.ACTIVE and role in self.roles


@dataclass(frozen=True)
class Schema(Struct):
    name: str = field_(SCHEMA_NAME)
    fields: tuple[str, ...] = field_(FIELDS)
    issuers: tuple[bytes, ...] = field_(IDS)
    version: int = field_(U32)


@dataclass(frozen=True)
class ValidatorUpdate(Struct):
    """A change of one validator: power 0 removes it."""

    pubkey: bytes = field_(PUBKEY)
    power: int = field_(U64)
    name: str = field_(NAME)


@dataclass(frozen=True)
class PendingValidators(Struct):
    updates: tuple[ValidatorUpdate, ...] = field_(ListOf(Nested(ValidatorUpdate), MAX_VALIDATOR_CHANGES))


@dataclass(frozen=True)
class AdminProposal(Struct):
    id: bytes = field_(HASH)
    proposer: bytes = field_(HASH)
    action: str = field_(Text(32))
    payload: bytes = field_(Bytes(max=16 * 1024))
    approvals: tuple[bytes, ...] = field_(ADMIN_IDS)
    status: str = field_(Text(16))  # "open" or "executed"
    created_height: int = field_(U64)
    executed_height: int = field_(U64)


@dataclass(frozen=True)
class Asset(Struct):
    id: bytes = field_(HASH)
    holder: bytes = field_(HASH)
    issuer: bytes = field_(HASH)
    schema: str = field_(SCHEMA_NAME)
    version: int = field_(U32)
    fields: tuple[str, ...] = field_(FIELDS)
    field_root: bytes = field_(HASH)
    payload_hash: bytes = field_(HASH)
    supersedes: bytes = field_(HASH_OR_EMPTY)
    superseded_by: bytes = field_(HASH_OR_EMPTY)
    status: str = field_(one_of(AssetStatus))
    reason: str = field_(REASON)
    issued_height: int = field_(U64)
    issued_time_ms: int = field_(U64)


@dataclass(frozen=True)
class AssetRequest(Struct):
    id: bytes = field_(HASH)
    kind: str = field_(one_of(RequestKind))
    holder: bytes = field_(HASH)
    issuer: bytes = field_(HASH)
    schema: str = field_(SCHEMA_NAME)
    asset_id: bytes = field_(HASH_OR_EMPTY)
    fields: tuple[str, ...] = field_(FIELDS)
    note_hash: bytes = field_(HASH_OR_EMPTY)
    status: str = field_(one_of(RequestStatus))
    result_asset: bytes = field_(HASH_OR_EMPTY)
    reason: str = field_(REASON)
    created_height: int = field_(U64)
    resolved_height: int = field_(U64)


@dataclass(frozen=True)
class ConsentRequest(Struct):
    id: bytes = field_(HASH)
    consumer: bytes = field_(HASH)
    holder: bytes = field_(HASH)
    schemas: tuple[str, ...] = field_(ListOf(SCHEMA_NAME, 32, unique_sorted=True))
    fields: tuple[str, ...] = field_(FIELDS)
    purpose: str = field_(PURPOSE)
    duration_ms: int = field_(U64)
    max_uses: int = field_(U32)
    status: str = field_(one_of(ConsentRequestStatus))
    grant_id: bytes = field_(HASH_OR_EMPTY)
    reason: str = field_(REASON)
    created_height: int = field_(U64)
    created_time_ms: int = field_(U64)


@dataclass(frozen=True)
class Grant(Struct):
    id: bytes = field_(HASH)
    holder: bytes = field_(HASH)
    grantee: bytes = field_(HASH)
    assets: tuple[bytes, ...] = field_(IDS)
    fields: tuple[str, ...] = field_(FIELDS)
    purpose: str = field_(PURPOSE)
    not_after_ms: int = field_(U64)
    max_uses: int = field_(U32)
    uses: int = field_(U32)
    package_hash: bytes = field_(HASH)
    request_id: bytes = field_(HASH_OR_EMPTY)
    status: str = field_(one_of(GrantStatus))
    created_height: int = field_(U64)
    created_time_ms: int = field_(U64)
    closed_height: int = field_(U64)

    def validate_basic(self) -> None:
        if self.uses > self.max_uses:
            raise ValidationError("a grant cannot have more uses than its maximum")


@dataclass(frozen=True)
class Access(Struct):
    id: bytes = field_(HASH)
    grant: bytes = field_(HASH)
    asset: bytes = field_(HASH)
    holder: bytes = field_(HASH)
    consumer: bytes = field_(HASH)
    purpose: str = field_(PURPOSE)
    use: int = field_(U32)
    height: int = field_(U64)
    time_ms: int = field_(U64)


# ------------------------------------------------------------------------------------------ keys

STATE = b"s/"
INDEX = b"i/"


class Kind:
    """Key prefixes of the authenticated state, one per kind of object (without the `s/` prefix)."""

    ACCOUNT = b"acct/"
    SUBJECT = b"subj/"
    KEY = b"key/"
    SCHEMA = b"schema/"
    THRESHOLD = b"gov/threshold"
    ADMINS = b"gov/admins"
    PARAMS = b"params"
    VALSET = b"valset"
    VALPEND = b"valpend/"
    VALHIST = b"valhist/"
    PROPOSAL = b"prop/"
    ASSET = b"asset/"
    ASSET_REQUEST = b"areq/"
    CONSENT_REQUEST = b"creq/"
    GRANT = b"grant/"
    EXPIRY = b"expiry/"
    ACCESS = b"access/"
    EVIDENCE = b"evidence/"


class Index:
    """Index names: `i/<name>/<owner id><u64be height><object id>`."""

    HOLDER_ASSETS = b"hasset"
    HOLDER_GRANTS = b"hgrant"
    HOLDER_ACCESSES = b"haccess"
    HOLDER_CONSENT_REQUESTS = b"hcreq"
    HOLDER_ASSET_REQUESTS = b"hareq"
    CONSUMER_GRANTS = b"cgrant"
    CONSUMER_REQUESTS = b"ccreq"
    CONSUMER_ACCESSES = b"caccess"
    ISSUER_ASSETS = b"iasset"
    ISSUER_REQUESTS = b"iareq"


def index_key(name: bytes, owner: bytes, height: int, object_id: bytes) -> bytes:
    return INDEX + name + b"/" + owner + height.to_bytes(8, "big") + object_id


def index_prefix(name: bytes, owner: bytes) -> bytes:
    return INDEX + name + b"/" + owner
