"""Governance: members and their roles, data schemas, the validator set, and the m-of-n admin rule.

Rules (docs/contracts.md, GOV-1..GOV-8):

- GOV-1  Only an active admin proposes (`gov.propose`) or approves (`gov.approve`) an admin action.
- GOV-2  The proposer's approval counts; an admin approves a proposal once; a proposal runs in the
         transaction whose approval reaches the threshold, and is closed after.
- GOV-3  If the action breaks a rule when it runs, the transaction fails with the action's code and the
         approval is not recorded: the proposal stays open, unchanged.
- GOV-4  `member.register`: a new account id (the hash of the member's signing key), a signing key that
         signs for no other account (HLD-4: key_in_use); at least one role.
- GOV-5  `member.update`: only members (not holders); the active admins must still reach the threshold.
- GOV-6  `schema.register`: creates, or updates a schema keeping all its fields (fields are never
         removed, since issued assets use them); every issuer is an existing member with the issuer role.
- GOV-7  `validator.set`: takes effect at height h + validator_update_delay (h = this block); power 0
         removes (any key of the set, a suspended member's too); a power above 0 needs the key to be the
         current signing key of an active member (HLD-4's key index), the only keys the peer network admits;
         the set that results must stay non-empty and valid.
- GOV-8  `admin.threshold`: between 1 and the number of active admins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.crypto import account_id
from consensus.encoding import Struct
from consensus.errors import DecodeError, ValidationError
from consensus.types import Validator, ValidatorSet
from contracts.codes import Code, Failure, require
from contracts.context import State, TxContext
from contracts.records import (
    MAX_ADMINS,
    MAX_VALIDATOR_CHANGES,
    Account,
    AccountKind,
    AdminProposal,
    Kind,
    PendingValidators,
    Role,
    Schema,
    Status,
    ValidatorUpdate,
)
from contracts.txs import (
    ADMIN_ACTIONS,
    Approve,
    Propose,
    RegisterMember,
    RegisterSchema,
    SetThreshold,
    SetValidator,
    UpdateMember,
)

OPEN, EXECUTED = "open", "executed"


def propose(ctx: TxContext, body: Propose) -> None:
    """GOV-1, GOV-2."""
    ctx.require_role(Role.ADMIN)
    cls = ADMIN_ACTIONS.get(body.action)
    require(cls is not None, Code.MALFORMED_BODY, f"unknown admin action {body.action!r}")
    assert cls is not None
    try:
        action = cls.decode(body.payload)
    except (DecodeError, ValidationError) as e:
        raise Failure(Code.MALFORMED_BODY, f"{body.action}: {e}") from None
    pid = ctx.new_id(Kind.PROPOSAL)
    proposal = AdminProposal(pid, ctx.sender.id, body.action, body.payload, (ctx.sender.id,), OPEN,
                        ctx.block.height, 0)
    ctx.object_id = pid
    _approve_and_maybe_run(ctx, proposal, action)


def approve(ctx: TxContext, body: Approve) -> None:
    """GOV-1, GOV-2, GOV-3."""
    ctx.require_role(Role.ADMIN)
    p = ctx.state.get(AdminProposal, Kind.PROPOSAL, body.proposal_id)
    require(p is not None, Code.UNKNOWN_PROPOSAL)
    assert p is not None
    require(p.status == OPEN, Code.PROPOSAL_CLOSED)
    require(ctx.sender.id not in p.approvals, Code.ALREADY_APPROVED)
    ctx.object_id = p.id
    action = ADMIN_ACTIONS[p.action].decode(p.payload)
    _approve_and_maybe_run(ctx, p.evolve(approvals=tuple(sorted((*p.approvals, ctx.sender.id)))), action)


def _approve_and_maybe_run(ctx: TxContext, p: AdminProposal, action: Struct) -> None:
    # Approvals of admins who have since lost the role or been suspended no longer count.
    live = sum(1 for a in p.approvals if ctx.active_member(a, Role.ADMIN) is not None)
    if live >= ctx.state.threshold():
        ACTION_HANDLERS[p.action](ctx, action)
        p = p.evolve(status=EXECUTED, executed_height=ctx.block.height)
        ctx.emit("proposal_executed", p.id, *p.approvals)
    else:
        ctx.emit("proposal_pending", p.id, *_admins(ctx.state))
    ctx.state.put(Kind.PROPOSAL, p.id, p)


def _admins(state: State) -> list[bytes]:
    return list(state.admins())


def register_member(ctx: TxContext, a: RegisterMember) -> None:
    """GOV-4."""
    st = ctx.state
    aid = account_id(a.sign_pk)
    require(st.account(aid) is None, Code.ACCOUNT_EXISTS, f"account {aid.hex()[:16]} exists")
    st.claim_key(a.sign_pk, aid)
    st.put_account(Account(aid, AccountKind.MEMBER, a.name, a.roles, a.sign_pk, a.enc_pk, Status.ACTIVE, 0,
                           b"", (), ctx.block.height))
    if Role.ADMIN in a.roles:
        require(len(st.admins()) < MAX_ADMINS, Code.TOO_MANY_ADMINS, f"at most {MAX_ADMINS} admins")
        st.set_admins((*st.admins(), aid))
    ctx.emit("member_registered", aid, aid)


def update_member(ctx: TxContext, a: UpdateMember) -> None:
    """GOV-5."""
    st = ctx.state
    m = st.account(a.account)
    require(m is not None and m.kind == AccountKind.MEMBER, Code.UNKNOWN_MEMBER)
    assert m is not None
    st.put_account(m.evolve(roles=a.roles, status=a.status))
    admins = set(st.admins())
    admins.discard(m.id)
    if Role.ADMIN in a.roles:
        admins.add(m.id)
    require(len(admins) <= MAX_ADMINS, Code.TOO_MANY_ADMINS, f"at most {MAX_ADMINS} admins")
    st.set_admins(tuple(admins))
    require(active_admin_count(st) >= st.threshold(), Code.THRESHOLD_UNREACHABLE,
            "the change would leave fewer active admins than the threshold")
    ctx.emit("member_updated", m.id, m.id)


def active_admin_count(st: State) -> int:
    """Admins are few; `gov/admins` lists every member holding the role, active or not."""
    n = 0
    for aid in st.admins():
        a = st.account(aid)
        if a is not None and a.status == Status.ACTIVE:
            n += 1
    return n


def register_schema(ctx: TxContext, a: RegisterSchema) -> None:
    """GOV-6."""
    st = ctx.state
    for issuer in a.issuers:
        acct = st.account(issuer)
        require(acct is not None and acct.kind == AccountKind.MEMBER and Role.ISSUER in acct.roles,
                Code.UNKNOWN_ISSUER, f"{issuer.hex()[:16]} is not an issuer")
    old = st.get(Schema, Kind.SCHEMA, a.name.encode())
    if old is not None:
        require(set(old.fields) <= set(a.fields), Code.SCHEMA_FIELDS_REMOVED,
                "a schema's fields can be added to, never removed")
    version = 1 if old is None else old.version + 1
    st.put(Kind.SCHEMA, a.name.encode(), Schema(a.name, a.fields, a.issuers, version))
    ctx.emit("schema_registered", a.name.encode(), *a.issuers)


def set_validator(ctx: TxContext, a: SetValidator) -> None:
    """GOV-7."""
    st = ctx.state
    at = ctx.block.height + st.params().validator_update_delay
    key = Kind.VALPEND + at.to_bytes(8, "big")
    raw = st.get_raw(key)
    pending = PendingValidators(()) if raw is None else PendingValidators.decode(raw)
    updates = (*[u for u in pending.updates if u.pubkey != a.pubkey], ValidatorUpdate(a.pubkey, a.power, a.name))
    require(len(updates) <= MAX_VALIDATOR_CHANGES, Code.INVALID_VALIDATOR_SET,
            f"at most {MAX_VALIDATOR_CHANGES} validator changes take effect at one height")
    # The set must still be valid after every change scheduled up to and including that height.
    future = st.validators()
    for _, raw_p in st.scan(Kind.VALPEND):
        future = apply_validator_updates(future, PendingValidators.decode(raw_p).updates)
    known = {v.pubkey for v in future.validators}
    require(a.power > 0 or a.pubkey in known, Code.UNKNOWN_VALIDATOR)
    # Power for a key no peer would admit could never vote: enough of it would halt the chain.
    require(a.power == 0 or st.active_member_by_key(a.pubkey) is not None, Code.VALIDATOR_NOT_MEMBER,
            "a validator's key must be the current signing key of an active member")
    apply_validator_updates(future, (ValidatorUpdate(a.pubkey, a.power, a.name),))
    st.put_raw(key, PendingValidators(tuple(sorted(updates, key=lambda u: u.pubkey))).encode())
    ctx.emit("validator_change_scheduled", a.pubkey)


def apply_validator_updates(vs: ValidatorSet, updates: tuple[ValidatorUpdate, ...]) -> ValidatorSet:
    by_pk = {v.pubkey: v for v in vs.validators}
    try:
        for u in updates:
            if u.power == 0:
                by_pk.pop(u.pubkey, None)
            else:
                by_pk[u.pubkey] = Validator(u.pubkey, u.power, u.name)
        return ValidatorSet.of(list(by_pk.values()))
    except (ValidationError, DecodeError) as e:
        raise Failure(Code.INVALID_VALIDATOR_SET, str(e)) from None


def set_threshold(ctx: TxContext, a: SetThreshold) -> None:
    """GOV-8."""
    require(a.threshold <= active_admin_count(ctx.state), Code.THRESHOLD_UNREACHABLE)
    ctx.state.set_threshold(a.threshold)
    ctx.emit("threshold_changed", a.threshold.to_bytes(4, "big"))


ACTION_HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {
    "member.register": register_member,
    "member.update": update_member,
    "schema.register": register_schema,
    "validator.set": set_validator,
    "admin.threshold": set_threshold,
}

HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {
    "gov.propose": propose,
    "gov.approve": approve,
}
