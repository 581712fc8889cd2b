"""Transaction bodies: the `body` bytes of a `consensus.types.Tx`, one structure per transaction type.

Type names are `module.action`. Admin actions are not transactions of their own: an admin proposes one with
`gov.propose` (its `action` names the action type below, `payload` is the action's canonical bytes), other
admins approve it with `gov.approve`, and it runs when the approvals reach the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

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
from consensus.tendermint import Evidence
from consensus.types import MAX_TOTAL_POWER, NAME
from contracts.records import (
    FIELDS,
    IDS,
    PURPOSE,
    REASON,
    ROLES,
    SCHEMA_NAME,
    AccountKind,
    Status,
    one_of,
)

#: The longest a grant or a consent request may run: ten years.
MAX_DURATION_MS = 10 * 366 * 24 * 3600 * 1000
MAX_USES = 1_000_000

# ------------------------------------------------------------------------------------------ governance


@dataclass(frozen=True)
class Propose(Struct):
    action: str = field_(Text(32, min=1))
    payload: bytes = field_(Bytes(max=16 * 1024))


@dataclass(frozen=True)
class Approve(Struct):
    proposal_id: bytes = field_(HASH)


@dataclass(frozen=True)
class RegisterMember(Struct):
    """Admin action `member.register`: an organisation with roles, identified by its signing key."""

    name: str = field_(NAME)
    roles: tuple[str, ...] = field_(ROLES)
    sign_pk: bytes = field_(PUBKEY)
    enc_pk: bytes = field_(PUBKEY)

    def validate_basic(self) -> None:
        if not self.roles:
            raise ValidationError("a member needs at least one role")


@dataclass(frozen=True)
class UpdateMember(Struct):
    """Admin action `member.update`: new roles and status (active or suspended) for a member."""

    account: bytes = field_(HASH)
    roles: tuple[str, ...] = field_(ROLES)
    status: str = field_(one_of(Status))


@dataclass(frozen=True)
class RegisterSchema(Struct):
    """Admin action `schema.register`: create a schema, or update one (fields may only be added)."""

    name: str = field_(SCHEMA_NAME)
    fields: tuple[str, ...] = field_(FIELDS)
    issuers: tuple[bytes, ...] = field_(IDS)

    def validate_basic(self) -> None:
        if not self.fields:
            raise ValidationError("a schema needs at least one field")


@dataclass(frozen=True)
class SetValidator(Struct):
    """Admin action `validator.set`: add, re-weight (power > 0) or remove (power 0) a validator."""

    pubkey: bytes = field_(PUBKEY)
    power: int = field_(U64)
    name: str = field_(NAME)

    def validate_basic(self) -> None:
        if self.power > MAX_TOTAL_POWER:
            raise ValidationError("a validator's power is at most 2**60")


@dataclass(frozen=True)
class SetThreshold(Struct):
    """Admin action `admin.threshold`: how many admin approvals an admin action needs."""

    threshold: int = field_(U32)

    def validate_basic(self) -> None:
        if self.threshold < 1:
            raise ValidationError("the threshold is at least 1")


ADMIN_ACTIONS: dict[str, type[Struct]] = {
    "member.register": RegisterMember,
    "member.update": UpdateMember,
    "schema.register": RegisterSchema,
    "validator.set": SetValidator,
    "admin.threshold": SetThreshold,
}

# ------------------------------------------------------------------------------------------ holders


@dataclass(frozen=True)
class RegisterHolder(Struct):
    """`holder.register` (registrar): bind a person's or an enterprise's keys to its salted subject ref."""

    kind: str = field_(Text(16, allowed=lambda s: s in (AccountKind.PERSON, AccountKind.ENTERPRISE),
                            what="'person' or 'enterprise'"))
    subject_ref: bytes = field_(HASH)
    sign_pk: bytes = field_(PUBKEY)
    enc_pk: bytes = field_(PUBKEY)


@dataclass(frozen=True)
class Delegate(Struct):
    """`holder.add_delegate` / `holder.remove_delegate` (an enterprise, with its own key)."""

    pubkey: bytes = field_(PUBKEY)


@dataclass(frozen=True)
class RotateKeys(Struct):
    """`account.rotate_keys` (any account, with its own key): new signing and encryption keys."""

    sign_pk: bytes = field_(PUBKEY)
    enc_pk: bytes = field_(PUBKEY)


# ------------------------------------------------------------------------------------------ assets


@dataclass(frozen=True)
class IssueAsset(Struct):
    """`asset.issue` (issuer): a new asset, or a new version (`supersedes`), possibly answering a holder's
    request for an asset or for a correction (`answers`)."""

    holder: bytes = field_(HASH)
    schema: str = field_(SCHEMA_NAME)
    fields: tuple[str, ...] = field_(FIELDS)
    field_root: bytes = field_(HASH)
    payload_hash: bytes = field_(HASH)
    supersedes: bytes = field_(HASH_OR_EMPTY)
    answers: bytes = field_(HASH_OR_EMPTY)

    def validate_basic(self) -> None:
        if not self.fields:
            raise ValidationError("an asset has at least one field")


@dataclass(frozen=True)
class RequestAsset(Struct):
    """`asset.request` (holder): return on application."""

    issuer: bytes = field_(HASH)
    schema: str = field_(SCHEMA_NAME)
    note_hash: bytes = field_(HASH_OR_EMPTY)


@dataclass(frozen=True)
class RequestCorrection(Struct):
    """`asset.request_correction` (holder): these fields of this asset are wrong."""

    asset_id: bytes = field_(HASH)
    fields: tuple[str, ...] = field_(FIELDS)
    note_hash: bytes = field_(HASH_OR_EMPTY)

    def validate_basic(self) -> None:
        if not self.fields:
            raise ValidationError("name at least one field to correct")


@dataclass(frozen=True)
class RefuseRequest(Struct):
    """`asset.refuse` (issuer): refuse a request for an asset or for a correction, with a reason."""

    request_id: bytes = field_(HASH)
    reason: str = field_(Text(200, min=1))


@dataclass(frozen=True)
class RevokeAsset(Struct):
    """`asset.revoke` (issuer)."""

    asset_id: bytes = field_(HASH)
    reason: str = field_(Text(200, min=1))


@dataclass(frozen=True)
class EraseAsset(Struct):
    """`asset.erase` (holder): crypto-shredding marker; the vault deletes the ciphertexts."""

    asset_id: bytes = field_(HASH)


# ------------------------------------------------------------------------------------------ consent


@dataclass(frozen=True)
class RequestConsent(Struct):
    """`consent.request` (consumer)."""

    holder: bytes = field_(HASH)
    schemas: tuple[str, ...] = field_(ListOf(SCHEMA_NAME, 32, unique_sorted=True))
    fields: tuple[str, ...] = field_(FIELDS)
    purpose: str = field_(PURPOSE)
    duration_ms: int = field_(U64)
    max_uses: int = field_(U32)

    def validate_basic(self) -> None:
        if not self.schemas and not self.fields:
            raise ValidationError("ask for at least one schema or field")
        if not 1 <= self.duration_ms <= MAX_DURATION_MS:
            raise ValidationError("duration must be between 1 ms and ten years")
        if not 1 <= self.max_uses <= MAX_USES:
            raise ValidationError(f"max_uses must be in 1..{MAX_USES}")


@dataclass(frozen=True)
class GrantConsent(Struct):
    """`consent.grant` (holder)."""

    grantee: bytes = field_(HASH)
    assets: tuple[bytes, ...] = field_(IDS)
    fields: tuple[str, ...] = field_(FIELDS)
    purpose: str = field_(PURPOSE)
    not_after_ms: int = field_(U64)
    max_uses: int = field_(U32)
    package_hash: bytes = field_(HASH)
    request_id: bytes = field_(HASH_OR_EMPTY)

    def validate_basic(self) -> None:
        if not self.assets or not self.fields:
            raise ValidationError("a grant covers at least one asset and one field")
        if not 1 <= self.max_uses <= MAX_USES:
            raise ValidationError(f"max_uses must be in 1..{MAX_USES}")


@dataclass(frozen=True)
class RejectConsent(Struct):
    """`consent.reject` (holder)."""

    request_id: bytes = field_(HASH)
    reason: str = field_(REASON)


@dataclass(frozen=True)
class RevokeConsent(Struct):
    """`consent.revoke` (holder)."""

    grant_id: bytes = field_(HASH)


# ------------------------------------------------------------------------------------------ access


@dataclass(frozen=True)
class RecordAccess(Struct):
    """`access.record` (consumer): the on-chain record of one pull, made before the data is released."""

    grant_id: bytes = field_(HASH)
    asset_id: bytes = field_(HASH)


# ------------------------------------------------------------------------------------------ evidence


@dataclass(frozen=True)
class SubmitEvidence(Struct):
    """`evidence.submit` (any member): two conflicting votes of one validator (contracts/evidence.py)."""

    evidence: Evidence = field_(Nested(Evidence))


TX_BODIES: dict[str, type[Struct]] = {
    "gov.propose": Propose,
    "gov.approve": Approve,
    "holder.register": RegisterHolder,
    "holder.add_delegate": Delegate,
    "holder.remove_delegate": Delegate,
    "account.rotate_keys": RotateKeys,
    "asset.issue": IssueAsset,
    "asset.request": RequestAsset,
    "asset.request_correction": RequestCorrection,
    "asset.refuse": RefuseRequest,
    "asset.revoke": RevokeAsset,
    "asset.erase": EraseAsset,
    "consent.request": RequestConsent,
    "consent.grant": GrantConsent,
    "consent.reject": RejectConsent,
    "consent.revoke": RevokeConsent,
    "access.record": RecordAccess,
    "evidence.submit": SubmitEvidence,
}

#: What a wallet needs to build a transaction: the type name of each body class (delegates share one).
TYPE_OF: dict[type[Struct], str] = {cls: name for name, cls in reversed(TX_BODIES.items())}
