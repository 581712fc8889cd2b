"""Result codes: `ok`, or the name of the rule a transaction broke (docs/contracts.md lists each rule).

A failed transaction is still committed with its code in the block results, so refused attempts stay
auditable; it changes nothing but its sender's nonce (and not even that when the failure is one of the
envelope codes from `malformed_tx` to `bad_nonce`, found before the sender is known to have signed for that
nonce; `unknown_tx_type` and `malformed_body` do consume it).
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    OK = "ok"

    # envelope: the transaction is not a valid act of a known account (no state change at all)
    MALFORMED_TX = "malformed_tx"
    WRONG_CHAIN = "wrong_chain"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_SENDER = "unknown_sender"
    KEY_NOT_AUTHORIZED = "key_not_authorized"
    BAD_NONCE = "bad_nonce"
    UNKNOWN_TX_TYPE = "unknown_tx_type"
    MALFORMED_BODY = "malformed_body"

    # who may act
    ACCOUNT_SUSPENDED = "account_suspended"
    NOT_ADMIN = "not_admin"
    NOT_REGISTRAR = "not_registrar"
    NOT_ISSUER = "not_issuer"
    NOT_CONSUMER = "not_consumer"
    NOT_HOLDER = "not_holder"
    DELEGATE_NOT_ALLOWED = "delegate_not_allowed"

    # governance
    UNKNOWN_PROPOSAL = "unknown_proposal"
    PROPOSAL_CLOSED = "proposal_closed"
    ALREADY_APPROVED = "already_approved"
    ACCOUNT_EXISTS = "account_exists"
    UNKNOWN_MEMBER = "unknown_member"
    TOO_MANY_ADMINS = "too_many_admins"
    THRESHOLD_UNREACHABLE = "threshold_unreachable"
    SCHEMA_FIELDS_REMOVED = "schema_fields_removed"
    UNKNOWN_ISSUER = "unknown_issuer"
    UNKNOWN_VALIDATOR = "unknown_validator"
    VALIDATOR_NOT_MEMBER = "validator_not_member"
    INVALID_VALIDATOR_SET = "invalid_validator_set"

    # holders and keys
    SUBJECT_EXISTS = "subject_exists"
    NOT_ENTERPRISE = "not_enterprise"
    DELEGATE_EXISTS = "delegate_exists"
    UNKNOWN_DELEGATE = "unknown_delegate"
    TOO_MANY_DELEGATES = "too_many_delegates"
    KEY_IN_USE = "key_in_use"

    # assets
    UNKNOWN_SCHEMA = "unknown_schema"
    ISSUER_NOT_AUTHORIZED = "issuer_not_authorized"
    UNKNOWN_HOLDER = "unknown_holder"
    UNKNOWN_FIELD = "unknown_field"
    UNKNOWN_ASSET = "unknown_asset"
    NOT_ASSET_HOLDER = "not_asset_holder"
    NOT_ASSET_ISSUER = "not_asset_issuer"
    ASSET_NOT_ACTIVE = "asset_not_active"
    ASSET_ERASED = "asset_erased"
    CANNOT_SUPERSEDE = "cannot_supersede"
    UNKNOWN_REQUEST = "unknown_request"
    REQUEST_NOT_PENDING = "request_not_pending"
    REQUEST_MISMATCH = "request_mismatch"

    # consent
    GRANTEE_NOT_CONSUMER = "grantee_not_consumer"
    FIELD_NOT_IN_ASSETS = "field_not_in_assets"
    NOT_AFTER_IN_PAST = "not_after_in_past"
    NOT_AFTER_TOO_FAR = "not_after_too_far"
    UNKNOWN_GRANT = "unknown_grant"
    NOT_GRANT_HOLDER = "not_grant_holder"
    GRANT_NOT_ACTIVE = "grant_not_active"

    # evidence
    NOT_MEMBER = "not_member"
    INVALID_EVIDENCE = "invalid_evidence"
    DUPLICATE_EVIDENCE = "duplicate_evidence"

    # access
    NOT_GRANTEE = "not_grantee"
    GRANT_REVOKED = "grant_revoked"
    GRANT_EXPIRED = "grant_expired"
    GRANT_USED_UP = "grant_used_up"
    ASSET_NOT_COVERED = "asset_not_covered"
    ASSET_REVOKED = "asset_revoked"
    ASSET_SUPERSEDED = "asset_superseded"


class Failure(Exception):
    """Raised inside a contract to refuse a transaction; caught by the executor, never by anyone else."""

    def __init__(self, code: Code, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else str(code))
        self.code = code
        self.detail = detail


def require(condition: bool, code: Code, detail: str = "") -> None:
    if not condition:
        raise Failure(code, detail)
