"""The view a contract has of the world: typed state of the block being executed, and its transaction.

Contracts read and write records through `State` and learn who acts through `TxContext`; they never see the
store, the clock or the network. Everything they can know is in the block (height, time) and the state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from consensus.app import BlockContext
from consensus.encoding import U32, Struct, decode_value, encode_value
from consensus.kv import Overlay
from consensus.types import ConsensusParams, ValidatorSet
from contracts.codes import Code, Failure
from contracts.records import (
    ADMIN_IDS,
    STATE,
    Account,
    AccountKind,
    Index,
    Kind,
    Role,
    Status,
    index_key,
)

R = TypeVar("R", bound=Struct)
ADMIN_LIST = ADMIN_IDS


class RecordCache:
    """Decoded records by key, each with the bytes it was decoded from. A hit requires the bytes in the store
    to be equal, so the cache can never return a stale record: it only saves decoding the same bytes twice."""

    __slots__ = ("entries", "limit")

    def __init__(self, limit: int = 200_000) -> None:
        self.entries: dict[bytes, tuple[bytes, Struct]] = {}
        self.limit = limit

    def remember(self, key: bytes, raw: bytes, record: Struct) -> None:
        if len(self.entries) >= self.limit:
            self.entries.clear()
        self.entries[key] = (raw, record)


class State:
    """Typed reads and writes of the authenticated state and the indexes, staged in an `Overlay`."""

    __slots__ = ("cache", "overlay")

    def __init__(self, overlay: Overlay, cache: RecordCache | None = None) -> None:
        self.overlay = overlay
        self.cache = cache if cache is not None else RecordCache()

    def get(self, cls: type[R], kind: bytes, id: bytes = b"") -> R | None:
        key = STATE + kind + id
        raw = self.overlay.get(key)
        if raw is None:
            return None
        return self._decoded(cls, key, raw)

    def _decoded(self, cls: type[R], key: bytes, raw: bytes) -> R:
        hit = self.cache.entries.get(key)
        if hit is not None and hit[0] == raw and type(hit[1]) is cls:
            return hit[1]
        record = cls.decode(raw)
        self.cache.remember(key, raw, record)
        return record

    def put(self, kind: bytes, id: bytes, record: Struct) -> None:
        key = STATE + kind + id
        raw = record.encode()
        self.overlay.put(key, raw)
        self.cache.remember(key, raw, record)

    def get_raw(self, key: bytes) -> bytes | None:
        return self.overlay.get(STATE + key)

    def put_raw(self, key: bytes, value: bytes) -> None:
        self.overlay.put(STATE + key, value)

    def delete_raw(self, key: bytes) -> None:
        self.overlay.delete(STATE + key)

    def scan(self, kind: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key without `s/` and kind, value) of one kind, in key order."""
        n = len(STATE) + len(kind)
        for k, v in self.overlay.iterate(STATE + kind):
            yield k[n:], v

    def index(self, name: bytes, owner: bytes, height: int, object_id: bytes) -> None:
        self.overlay.put(index_key(name, owner, height, object_id), b"")

    # ---- frequently used records -------------------------------------------------------------------

    def account(self, id: bytes) -> Account | None:
        return self.get(Account, Kind.ACCOUNT, id)

    def put_account(self, a: Account) -> None:
        self.put(Kind.ACCOUNT, a.id, a)

    # ---- signing keys in use (HLD-4): every current signing key and delegate key -> its account ---------

    def key_owner(self, pubkey: bytes) -> bytes | None:
        return self.get_raw(Kind.KEY + pubkey)

    def claim_key(self, pubkey: bytes, account: bytes) -> None:
        """Bind a signing key to an account, refusing a key that already signs for another one."""
        owner = self.key_owner(pubkey)
        if owner is not None and owner != account:
            raise Failure(Code.KEY_IN_USE, "this key already signs for another account")
        self.put_raw(Kind.KEY + pubkey, account)

    def release_key(self, pubkey: bytes) -> None:
        self.delete_raw(Kind.KEY + pubkey)

    def active_member_by_key(self, pubkey: bytes) -> Account | None:
        """The active member whose current signing key is `pubkey`, if any: the peer network admits a node
        only under such a key (the membership rule, protocol.md section 13), so only such a key may be given
        voting power (GOV-7)."""
        owner = self.key_owner(pubkey)
        a = None if owner is None else self.account(owner)
        if a is None or a.kind != AccountKind.MEMBER or a.status != Status.ACTIVE or a.sign_pk != pubkey:
            return None
        return a

    def params(self) -> ConsensusParams:
        p = self.get(ConsensusParams, Kind.PARAMS)
        assert p is not None, "state has no consensus parameters: init_chain did not run"
        return p

    def validators(self) -> ValidatorSet:
        v = self.get(ValidatorSet, Kind.VALSET)
        assert v is not None, "state has no validator set: init_chain did not run"
        return v

    def validators_at(self, height: int) -> ValidatorSet | None:
        """The validator set that signs block `height` (>= 1): the `valhist/` record with the greatest first
        height at or below it, found with one reverse seek. None only for a height below 1."""
        prefix = STATE + Kind.VALHIST
        for key, raw in self.overlay.iterate(prefix, prefix + height.to_bytes(8, "big"), reverse=True):
            return self._decoded(ValidatorSet, key, raw)
        return None

    def record_validators(self, first_height: int, vs: ValidatorSet) -> None:
        """Keep `vs` as the set in force from `first_height` on (until the next record)."""
        self.put(Kind.VALHIST, first_height.to_bytes(8, "big"), vs)

    def threshold(self) -> int:
        raw = self.get_raw(Kind.THRESHOLD)
        assert raw is not None, "state has no admin threshold: init_chain did not run"
        return int.from_bytes(raw, "big")

    def admins(self) -> tuple[bytes, ...]:
        raw = self.get_raw(Kind.ADMINS)
        return () if raw is None else ADMIN_LIST.check(decode_value(raw), "admins")

    def set_admins(self, ids: tuple[bytes, ...]) -> None:
        self.put_raw(Kind.ADMINS, encode_value(sorted(set(ids))))

    def set_threshold(self, t: int) -> None:
        U32.check(t, "threshold")
        self.put_raw(Kind.THRESHOLD, t.to_bytes(4, "big"))


@dataclass
class Event:
    """Something an account should hear about (asset received, consent requested, data accessed...).

    Events are derived from execution and not part of the app hash; the node serves them as server-sent
    events. `tx_index` is the transaction's position in the block, or -1 for the block's own work
    (expiries at the start of the block).
    """

    kind: str
    object_id: bytes
    accounts: tuple[bytes, ...]
    tx_index: int = -1

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "object_id": self.object_id.hex(),
                "accounts": [a.hex() for a in self.accounts], "tx_index": self.tx_index}


@dataclass
class TxContext:
    """One transaction's execution: who sent it (already authenticated), in which block, what it emits."""

    state: State
    block: BlockContext
    tx_hash: bytes
    tx_index: int
    sender: Account
    via_delegate: bool
    events: list[Event] = field(default_factory=list)
    object_id: bytes = b""

    def new_id(self, kind: bytes) -> bytes:
        """A fresh object id: SHA-256 over the kind and the transaction hash, so a wallet can compute it."""
        return new_object_id(kind, self.tx_hash)

    def emit(self, kind: str, object_id: bytes, *accounts: bytes) -> None:
        self.events.append(Event(kind, object_id, tuple(dict.fromkeys(accounts)), self.tx_index))

    # ---- who may act -------------------------------------------------------------------------------

    def require_role(self, role: Role) -> Account:
        s = self.sender
        if s.kind != "member" or role not in s.roles:
            raise Failure(_ROLE_CODES[role], f"sender lacks the {role} role")  # only these roles act
        return s

    def require_holder(self) -> Account:
        if not self.sender.is_holder:
            raise Failure(Code.NOT_HOLDER, "only a person or an enterprise can do this")
        return self.sender

    def require_own_key(self) -> None:
        if self.via_delegate:
            raise Failure(Code.DELEGATE_NOT_ALLOWED, "an enterprise's own key must sign this")

    def active_member(self, id: bytes, role: Role) -> Account | None:
        a = self.state.account(id)
        if a is None or a.status != Status.ACTIVE or role not in a.roles:
            return None
        return a


_ROLE_CODES = {
    Role.ADMIN: Code.NOT_ADMIN,
    Role.REGISTRAR: Code.NOT_REGISTRAR,
    Role.ISSUER: Code.NOT_ISSUER,
    Role.CONSUMER: Code.NOT_CONSUMER,
}


def new_object_id(kind: bytes, tx_hash: bytes) -> bytes:
    return hashlib.sha256(encode_value([kind, tx_hash])).digest()


__all__ = ["Event", "Index", "State", "TxContext", "new_object_id"]
