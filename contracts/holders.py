"""Holders (persons and enterprises), enterprise delegates, and key rotation for every account.

Rules (docs/contracts.md, HLD-1..HLD-5):

- HLD-1  Only an active registrar registers a holder. The account id is the hash of the holder's signing
         key; the salted subject reference (computed off chain from the national ID or credit code) binds
         one account per subject: a second registration of the same reference fails.
- HLD-2  Only an enterprise adds or removes delegate keys, and only with its own key (not a delegate's);
         at most 16 delegates. A delegate signs for the enterprise in every holder action.
- HLD-3  Every account rotates its own signing and encryption keys, with its current own key. The account
         id does not change. A new signing key must not be a delegate key of the same account.
- HLD-4  A signing key signs for one account only: registering, rotating to or adding as a delegate a key
         that is already the current or a delegate key of another account fails with key_in_use (and a
         key whose hash is an existing account id cannot start a new account: account_exists).
- HLD-5  Suspended accounts can do nothing (checked for every transaction by the executor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.crypto import account_id
from contracts.codes import Code, require
from contracts.context import TxContext
from contracts.records import Account, AccountKind, Kind, Role, Status
from contracts.txs import Delegate, RegisterHolder, RotateKeys


def register_holder(ctx: TxContext, body: RegisterHolder) -> None:
    """HLD-1, HLD-4."""
    ctx.require_role(Role.REGISTRAR)
    st = ctx.state
    aid = account_id(body.sign_pk)
    require(st.account(aid) is None, Code.ACCOUNT_EXISTS, f"account {aid.hex()[:16]} exists")
    require(st.get_raw(Kind.SUBJECT + body.subject_ref) is None, Code.SUBJECT_EXISTS,
            "this subject already has an account")
    st.claim_key(body.sign_pk, aid)
    st.put_account(Account(aid, body.kind, "", (), body.sign_pk, body.enc_pk, Status.ACTIVE, 0,
                           body.subject_ref, (), ctx.block.height))
    st.put_raw(Kind.SUBJECT + body.subject_ref, aid)
    ctx.object_id = aid
    ctx.emit("holder_registered", aid, aid)


def add_delegate(ctx: TxContext, body: Delegate) -> None:
    """HLD-2."""
    a = _own_enterprise(ctx)
    require(body.pubkey not in a.delegates and body.pubkey != a.sign_pk, Code.DELEGATE_EXISTS)
    require(len(a.delegates) < 16, Code.TOO_MANY_DELEGATES)
    ctx.state.claim_key(body.pubkey, a.id)
    ctx.state.put_account(a.evolve(delegates=tuple(sorted((*a.delegates, body.pubkey)))))
    ctx.emit("delegate_added", a.id, a.id)


def remove_delegate(ctx: TxContext, body: Delegate) -> None:
    """HLD-2."""
    a = _own_enterprise(ctx)
    require(body.pubkey in a.delegates, Code.UNKNOWN_DELEGATE)
    ctx.state.release_key(body.pubkey)
    ctx.state.put_account(a.evolve(delegates=tuple(d for d in a.delegates if d != body.pubkey)))
    ctx.emit("delegate_removed", a.id, a.id)


def _own_enterprise(ctx: TxContext) -> Account:
    ctx.require_own_key()
    a = ctx.sender
    require(a.kind == AccountKind.ENTERPRISE, Code.NOT_ENTERPRISE)
    return a


def rotate_keys(ctx: TxContext, body: RotateKeys) -> None:
    """HLD-3, HLD-4."""
    ctx.require_own_key()
    a = ctx.sender
    require(body.sign_pk not in a.delegates, Code.KEY_IN_USE, "the new key is one of this account's delegates")
    other = ctx.state.account(account_id(body.sign_pk))
    require(other is None or other.id == a.id, Code.KEY_IN_USE, "the new key is another account's id key")
    if body.sign_pk != a.sign_pk:
        ctx.state.claim_key(body.sign_pk, a.id)
        ctx.state.release_key(a.sign_pk)
    ctx.state.put_account(a.evolve(sign_pk=body.sign_pk, enc_pk=body.enc_pk))
    ctx.emit("keys_rotated", a.id, a.id)


HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {
    "holder.register": register_holder,
    "holder.add_delegate": add_delegate,
    "holder.remove_delegate": remove_delegate,
    "account.rotate_keys": rotate_keys,
}
