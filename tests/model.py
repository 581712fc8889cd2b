"""A reference model of the MyData ledger's contract rules, for the stateful test.

It is written from the rules (contracts/*.py docstrings, docs) as plain Python over dicts of small mutable
records, and shares nothing with contracts/ but the wire formats: the transaction and body decoders (the
encoding layer decides what is well formed), the record classes (only to render the expected state as the
exact bytes the ledger must hold) and the result code names.

Each handler checks every rule first, in the order the contracts check them, and only then applies its
writes, so a refused transaction changes nothing in the model but its sender's nonce.

    model = Model(genesis)
    outcome = model.run_block(height, time_ms, raw_txs)   # -> per tx (code, object id), expiries, ...
    model.expected_state()     # {state key without "s/": value bytes}, the whole authenticated state
    model.expected_indexes()   # {index key}: every "i/..." key the ledger must hold
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.encoding import encode_value
from consensus.errors import DecodeError, ValidationError
from consensus.types import Genesis, Tx, Validator, ValidatorSet
from contracts import records as R
from contracts.codes import Code
from contracts.evidence import EvidenceRecord
from contracts.genesis import AppGenesis
from contracts.txs import ADMIN_ACTIONS, MAX_DURATION_MS, TX_BODIES

#: Codes that leave the state untouched, nonce included.
ENVELOPE_CODES = frozenset({Code.MALFORMED_TX, Code.WRONG_CHAIN, Code.BAD_SIGNATURE, Code.UNKNOWN_SENDER,
                            Code.KEY_NOT_AUTHORIZED, Code.BAD_NONCE})

MAX_POWER = 2**60
MAX_ADMINS = 256
#: EVD-2: evidence more than this many heights below the block that records it is refused.
MAX_EVIDENCE_AGE = 100_000

# Object kinds, as the key prefixes the ledger uses (the model's ids are sha256([kind, tx hash])).
ACCOUNT, SUBJECT, KEY, SCHEMA, PROPOSAL = b"acct/", b"subj/", b"key/", b"schema/", b"prop/"
ASSET, ASSET_REQUEST, CONSENT_REQUEST, GRANT, EXPIRY, ACCESS, EVIDENCE = (
    b"asset/", b"areq/", b"creq/", b"grant/", b"expiry/", b"access/", b"evidence/")
VALHIST = b"valhist/"

#: Which kind of object each transaction type creates when it succeeds.
CREATES = {
    "gov.propose": PROPOSAL,
    "asset.issue": ASSET,
    "asset.request": ASSET_REQUEST,
    "asset.request_correction": ASSET_REQUEST,
    "consent.request": CONSENT_REQUEST,
    "consent.grant": GRANT,
    "access.record": ACCESS,
}


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def object_id(kind: bytes, tx_hash: bytes) -> bytes:
    return sha(encode_value([kind, tx_hash]))


def index_key(name: bytes, owner: bytes, height: int, oid: bytes) -> bytes:
    return b"i/" + name + b"/" + owner + height.to_bytes(8, "big") + oid


class Refused(Exception):
    def __init__(self, code: Code) -> None:
        super().__init__(str(code))
        self.code = code


def need(condition: bool, code: Code) -> None:
    if not condition:
        raise Refused(code)


# ------------------------------------------------------------------------------------------ records


@dataclass
class MAccount:
    id: bytes
    kind: str
    name: str
    roles: tuple[str, ...]
    sign_pk: bytes
    enc_pk: bytes
    status: str = "active"
    nonce: int = 0
    subject_ref: bytes = b""
    delegates: set[bytes] = field(default_factory=set)
    created_height: int = 0

    @property
    def is_holder(self) -> bool:
        return self.kind != "member"

    def record(self) -> R.Account:
        return R.Account(self.id, self.kind, self.name, self.roles, self.sign_pk, self.enc_pk, self.status,
                         self.nonce, self.subject_ref, tuple(sorted(self.delegates)), self.created_height)


@dataclass
class MSchema:
    name: str
    fields: tuple[str, ...]
    issuers: tuple[bytes, ...]
    version: int = 1


@dataclass
class MProposal:
    id: bytes
    proposer: bytes
    action: str
    payload: bytes
    decoded: Any
    approvals: set[bytes]
    status: str = "open"
    created_height: int = 0
    executed_height: int = 0


@dataclass
class MAsset:
    id: bytes
    holder: bytes
    issuer: bytes
    schema: str
    version: int
    fields: tuple[str, ...]
    field_root: bytes
    payload_hash: bytes
    supersedes: bytes
    superseded_by: bytes = b""
    status: str = "active"
    reason: str = ""
    issued_height: int = 0
    issued_time_ms: int = 0


@dataclass
class MAssetRequest:
    id: bytes
    kind: str  # "issue" | "correction"
    holder: bytes
    issuer: bytes
    schema: str
    asset_id: bytes
    fields: tuple[str, ...]
    note_hash: bytes
    status: str = "pending"
    result_asset: bytes = b""
    reason: str = ""
    created_height: int = 0
    resolved_height: int = 0


@dataclass
class MConsentRequest:
    id: bytes
    consumer: bytes
    holder: bytes
    schemas: tuple[str, ...]
    fields: tuple[str, ...]
    purpose: str
    duration_ms: int
    max_uses: int
    status: str = "requested"
    grant_id: bytes = b""
    reason: str = ""
    created_height: int = 0
    created_time_ms: int = 0


@dataclass
class MGrant:
    id: bytes
    holder: bytes
    grantee: bytes
    assets: tuple[bytes, ...]
    fields: tuple[str, ...]
    purpose: str
    not_after_ms: int
    max_uses: int
    uses: int
    package_hash: bytes
    request_id: bytes
    status: str = "granted"
    created_height: int = 0
    created_time_ms: int = 0
    closed_height: int = 0


@dataclass
class MAccess:
    id: bytes
    grant: bytes
    asset: bytes
    holder: bytes
    consumer: bytes
    purpose: str
    use: int
    height: int
    time_ms: int


@dataclass
class TxCtx:
    sender: MAccount
    via_delegate: bool
    tx_hash: bytes
    height: int
    time_ms: int


@dataclass
class TxOutcome:
    code: str
    object_id: bytes
    type: str = ""
    #: for access.record txs that reached the contract: did a simple "active grant" predicate say yes?
    authorized: bool | None = None


@dataclass
class BlockOutcome:
    results: list[TxOutcome]
    expired: list[bytes]
    validators: ValidatorSet
    next_validators: ValidatorSet


#: The model's handler (a method name) of each transaction type.
HANDLERS = {
    "gov.propose": "_propose",
    "gov.approve": "_approve",
    "holder.register": "_register_holder",
    "holder.add_delegate": "_add_delegate",
    "holder.remove_delegate": "_remove_delegate",
    "account.rotate_keys": "_rotate_keys",
    "asset.issue": "_issue",
    "asset.request": "_request_asset",
    "asset.request_correction": "_request_correction",
    "asset.refuse": "_refuse",
    "asset.revoke": "_revoke_asset",
    "asset.erase": "_erase",
    "consent.request": "_consent_request",
    "consent.grant": "_grant",
    "consent.reject": "_reject",
    "consent.revoke": "_revoke_grant",
    "access.record": "_access",
    "evidence.submit": "_evidence",
}

_ROLE_CODES = {"admin": Code.NOT_ADMIN, "registrar": Code.NOT_REGISTRAR, "issuer": Code.NOT_ISSUER,
               "consumer": Code.NOT_CONSUMER}
_CLOSED_GRANT = {"revoked": Code.GRANT_REVOKED, "expired": Code.GRANT_EXPIRED, "used_up": Code.GRANT_USED_UP}
_INACTIVE_ASSET = {"superseded": Code.ASSET_SUPERSEDED, "revoked": Code.ASSET_REVOKED,
                   "erased": Code.ASSET_ERASED}


# ------------------------------------------------------------------------------------------ the model


class Model:
    def __init__(self, genesis: Genesis, *, max_evidence_age: int = MAX_EVIDENCE_AGE) -> None:
        app = AppGenesis.decode(genesis.app_state)
        self.chain_id = genesis.chain_id
        self.params = genesis.params
        self.delay = genesis.params.validator_update_delay
        self.height = 0
        self.time_ms = genesis.genesis_time_ms
        self.accounts: dict[bytes, MAccount] = {}
        for m in app.members:
            self.accounts[m.id] = MAccount(m.id, "member", m.name, m.roles, m.sign_pk, m.enc_pk)
        self.admins: set[bytes] = {m.id for m in app.members if "admin" in m.roles}
        #: HLD-4: every current signing key and every delegate key, and the one account it signs for.
        self.keys: dict[bytes, bytes] = {m.sign_pk: m.id for m in app.members}
        self.threshold = app.admin_threshold
        self.schemas = {s.name: MSchema(s.name, s.fields, s.issuers) for s in app.schemas}
        self.validators: dict[bytes, tuple[int, str]] = {
            v.pubkey: (v.power, v.name) for v in genesis.validators.validators}
        self.pending_validators: dict[int, dict[bytes, tuple[int, str]]] = {}
        #: first height -> the validators in force from there on: the genesis set from height 1, then one
        #: entry per height whose set differs from the one before.
        self.validator_history: dict[int, dict[bytes, tuple[int, str]]] = {1: dict(self.validators)}
        self.max_evidence_age = max_evidence_age
        self.subjects: dict[bytes, bytes] = {}
        self.proposals: dict[bytes, MProposal] = {}
        self.assets: dict[bytes, MAsset] = {}
        self.asset_requests: dict[bytes, MAssetRequest] = {}
        self.consent_requests: dict[bytes, MConsentRequest] = {}
        self.grants: dict[bytes, MGrant] = {}
        self.accesses: dict[bytes, MAccess] = {}
        self.evidence: dict[bytes, tuple[Any, bytes, int]] = {}  # hash -> (evidence, reporter, height)
        self.indexes: set[bytes] = set()

    # ---- blocks ----------------------------------------------------------------------------------------

    def begin_block(self, height: int, time_ms: int) -> list[bytes]:
        """Start a block: grants whose not_after lies before the block time expire first."""
        assert height == self.height + 1
        self.height, self.time_ms = height, time_ms
        due = sorted((g.not_after_ms, g.id) for g in self.grants.values()
                     if g.status == "granted" and g.not_after_ms < time_ms)
        for _, gid in due:
            g = self.grants[gid]
            g.status, g.closed_height = "expired", height
        return [gid for _, gid in due]

    def end_block(self) -> ValidatorSet:
        """Apply the validator changes scheduled for the next height; return the set that signs it."""
        before = dict(self.validators)
        for pk, (power, name) in sorted(self.pending_validators.pop(self.height + 1, {}).items()):
            if power == 0:
                self.validators.pop(pk, None)
            else:
                self.validators[pk] = (power, name)
        if self.validators != before:
            self.validator_history[self.height + 1] = dict(self.validators)
        return self.validator_set()

    def run_block(self, height: int, time_ms: int, raw_txs: list[bytes]) -> BlockOutcome:
        validators = self.validator_set()
        expired = self.begin_block(height, time_ms)
        results = [self.apply(raw) for raw in raw_txs]
        return BlockOutcome(results, expired, validators, self.end_block())

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet.of([Validator(pk, p, n) for pk, (p, n) in self.validators.items()])

    def validators_of(self, height: int) -> dict[bytes, tuple[int, str]]:
        """The validators that sign block `height` (>= 1): the latest history entry at or before it."""
        return self.validator_history[max(h for h in self.validator_history if h <= height)]

    # ---- one transaction -------------------------------------------------------------------------------

    def apply(self, raw: bytes) -> TxOutcome:
        tx_hash = sha(raw)
        try:
            tx = Tx.decode(raw)
        except (DecodeError, ValidationError):
            return TxOutcome(Code.MALFORMED_TX, b"")
        out = TxOutcome(Code.OK, b"", tx.type)
        if tx.chain_id != self.chain_id:
            out.code = Code.WRONG_CHAIN
        elif not tx.signature_valid():
            out.code = Code.BAD_SIGNATURE
        elif (acct := self.accounts.get(tx.sender)) is None:
            out.code = Code.UNKNOWN_SENDER
        elif tx.pubkey != acct.sign_pk and tx.pubkey not in acct.delegates:
            out.code = Code.KEY_NOT_AUTHORIZED
        elif tx.nonce != acct.nonce:
            out.code = Code.BAD_NONCE
        if out.code != Code.OK:
            if tx.type == "access.record":
                out.authorized = False
            return out
        assert acct is not None
        acct.nonce += 1
        ctx = TxCtx(acct, tx.pubkey != acct.sign_pk, tx_hash, self.height, self.time_ms)
        body: Any = None
        cls = TX_BODIES.get(tx.type)
        if cls is not None:
            try:
                body = cls.decode(tx.body)
            except (DecodeError, ValidationError):
                body = None
        if tx.type == "access.record":
            out.authorized = body is not None and self.authorizes(acct, body.grant_id, body.asset_id)
        try:
            need(acct.status == "active", Code.ACCOUNT_SUSPENDED)
            need(cls is not None, Code.UNKNOWN_TX_TYPE)
            need(body is not None, Code.MALFORMED_BODY)
            handler: Callable[[TxCtx, Any], bytes] = getattr(self, HANDLERS[tx.type])
            out.object_id = handler(ctx, body)
        except Refused as r:
            out.code, out.object_id = r.code, b""
        return out

    def authorizes(self, consumer: MAccount, grant_id: bytes, asset_id: bytes) -> bool:
        """The plain statement of what an access needs: an active consumer, the grantee of a live grant
        (granted, not past not_after at this block's time, uses left) that covers an active asset, none of
        whose assets is erased (its one package went with it)."""
        g = self.grants.get(grant_id)
        a = self.assets.get(asset_id)
        return (consumer.kind == "member" and consumer.status == "active" and "consumer" in consumer.roles
                and g is not None and g.grantee == consumer.id and g.status == "granted"
                and self.time_ms <= g.not_after_ms and g.uses < g.max_uses and asset_id in g.assets
                and a is not None and a.status == "active"
                and all(self.assets[x].status != "erased" for x in g.assets))

    # ---- who may act -----------------------------------------------------------------------------------

    @staticmethod
    def _role(c: TxCtx, role: str) -> MAccount:
        need(c.sender.kind == "member" and role in c.sender.roles, _ROLE_CODES[role])
        return c.sender

    @staticmethod
    def _holder(c: TxCtx) -> MAccount:
        need(c.sender.is_holder, Code.NOT_HOLDER)
        return c.sender

    def _active_member(self, aid: bytes, role: str) -> bool:
        a = self.accounts.get(aid)
        return a is not None and a.status == "active" and role in a.roles

    def _index(self, name: bytes, owner: bytes, oid: bytes) -> None:
        self.indexes.add(index_key(name, owner, self.height, oid))

    # ---- governance ------------------------------------------------------------------------------------

    def _propose(self, c: TxCtx, body: Any) -> bytes:
        self._role(c, "admin")
        cls = ADMIN_ACTIONS.get(body.action)
        need(cls is not None, Code.MALFORMED_BODY)
        assert cls is not None
        try:
            action = cls.decode(body.payload)
        except (DecodeError, ValidationError):
            raise Refused(Code.MALFORMED_BODY) from None
        pid = object_id(PROPOSAL, c.tx_hash)
        p = MProposal(pid, c.sender.id, body.action, body.payload, action, set(), "open", c.height, 0)
        self._approve_and_maybe_run(c, p, {c.sender.id})
        return pid

    def _approve(self, c: TxCtx, body: Any) -> bytes:
        self._role(c, "admin")
        p = self.proposals.get(body.proposal_id)
        need(p is not None, Code.UNKNOWN_PROPOSAL)
        assert p is not None
        need(p.status == "open", Code.PROPOSAL_CLOSED)
        need(c.sender.id not in p.approvals, Code.ALREADY_APPROVED)
        self._approve_and_maybe_run(c, p, p.approvals | {c.sender.id})
        return p.id

    def _approve_and_maybe_run(self, c: TxCtx, p: MProposal, approvals: set[bytes]) -> None:
        live = sum(1 for a in approvals if self._active_member(a, "admin"))
        run = live >= self.threshold
        if run:
            self._check_action(c, p.action, p.decoded)
        p.approvals = approvals
        if run:
            self._do_action(c, p.action, p.decoded)
            p.status, p.executed_height = "executed", c.height
        self.proposals[p.id] = p

    def _admins_after_update(self, a: Any) -> set[bytes]:
        admins = set(self.admins) - {a.account}
        if "admin" in a.roles:
            admins.add(a.account)
        return admins

    def _check_action(self, c: TxCtx, action: str, a: Any) -> None:
        if action == "member.register":
            need(sha(a.sign_pk) not in self.accounts, Code.ACCOUNT_EXISTS)
            self._check_key_free(a.sign_pk, sha(a.sign_pk))
            need("admin" not in a.roles or len(self.admins) < MAX_ADMINS, Code.TOO_MANY_ADMINS)
        elif action == "member.update":
            m = self.accounts.get(a.account)
            need(m is not None and m.kind == "member", Code.UNKNOWN_MEMBER)
            need(len(self._admins_after_update(a)) <= MAX_ADMINS, Code.TOO_MANY_ADMINS)
            active = 0
            for aid in self._admins_after_update(a):
                status = a.status if aid == a.account else self.accounts[aid].status
                active += status == "active"
            need(active >= self.threshold, Code.THRESHOLD_UNREACHABLE)
        elif action == "schema.register":
            for issuer in a.issuers:
                acct = self.accounts.get(issuer)
                need(acct is not None and acct.kind == "member" and "issuer" in acct.roles, Code.UNKNOWN_ISSUER)
            old = self.schemas.get(a.name)
            need(old is None or set(old.fields) <= set(a.fields), Code.SCHEMA_FIELDS_REMOVED)
        elif action == "validator.set":
            future = dict(self.validators)
            for h in sorted(self.pending_validators):
                for pk, (power, name) in self.pending_validators[h].items():
                    if power == 0:
                        future.pop(pk, None)
                    else:
                        future[pk] = (power, name)
            need(a.power > 0 or a.pubkey in future, Code.UNKNOWN_VALIDATOR)
            # Voting power only for a key the peer network admits: an active member's current signing key.
            need(a.power == 0 or any(m.kind == "member" and m.status == "active" and m.sign_pk == a.pubkey
                                     for m in self.accounts.values()), Code.VALIDATOR_NOT_MEMBER)
            if a.power == 0:
                future.pop(a.pubkey, None)
            else:
                future[a.pubkey] = (a.power, a.name)
            total = sum(p for p, _ in future.values())
            need(0 < len(future) <= 128 and total <= MAX_POWER
                 and all(p <= MAX_POWER for p, _ in future.values()), Code.INVALID_VALIDATOR_SET)
        elif action == "admin.threshold":
            active = sum(1 for aid in self.admins if self.accounts[aid].status == "active")
            need(a.threshold <= active, Code.THRESHOLD_UNREACHABLE)
        else:  # pragma: no cover - ADMIN_ACTIONS names exactly these five
            raise AssertionError(action)

    def _do_action(self, c: TxCtx, action: str, a: Any) -> None:
        if action == "member.register":
            aid = sha(a.sign_pk)
            self.accounts[aid] = MAccount(aid, "member", a.name, a.roles, a.sign_pk, a.enc_pk,
                                          created_height=c.height)
            self.keys[a.sign_pk] = aid
            if "admin" in a.roles:
                self.admins.add(aid)
        elif action == "member.update":
            m = self.accounts[a.account]
            m.roles, m.status = a.roles, a.status
            self.admins = self._admins_after_update(a)
        elif action == "schema.register":
            old = self.schemas.get(a.name)
            self.schemas[a.name] = MSchema(a.name, a.fields, a.issuers, 1 if old is None else old.version + 1)
        elif action == "validator.set":
            self.pending_validators.setdefault(c.height + self.delay, {})[a.pubkey] = (a.power, a.name)
        elif action == "admin.threshold":
            self.threshold = a.threshold

    # ---- holders and keys ------------------------------------------------------------------------------

    def _register_holder(self, c: TxCtx, body: Any) -> bytes:
        self._role(c, "registrar")
        aid = sha(body.sign_pk)
        need(aid not in self.accounts, Code.ACCOUNT_EXISTS)
        need(body.subject_ref not in self.subjects, Code.SUBJECT_EXISTS)
        self._check_key_free(body.sign_pk, aid)
        self.keys[body.sign_pk] = aid
        self.accounts[aid] = MAccount(aid, body.kind, "", (), body.sign_pk, body.enc_pk,
                                      subject_ref=body.subject_ref, created_height=c.height)
        self.subjects[body.subject_ref] = aid
        return aid

    def _check_key_free(self, pubkey: bytes, account: bytes) -> None:
        """HLD-4: a key signs for one account only."""
        owner = self.keys.get(pubkey)
        need(owner is None or owner == account, Code.KEY_IN_USE)

    @staticmethod
    def _own_enterprise(c: TxCtx) -> MAccount:
        need(not c.via_delegate, Code.DELEGATE_NOT_ALLOWED)
        need(c.sender.kind == "enterprise", Code.NOT_ENTERPRISE)
        return c.sender

    def _add_delegate(self, c: TxCtx, body: Any) -> bytes:
        a = self._own_enterprise(c)
        need(body.pubkey not in a.delegates and body.pubkey != a.sign_pk, Code.DELEGATE_EXISTS)
        need(len(a.delegates) < 16, Code.TOO_MANY_DELEGATES)
        self._check_key_free(body.pubkey, a.id)
        self.keys[body.pubkey] = a.id
        a.delegates.add(body.pubkey)
        return b""

    def _remove_delegate(self, c: TxCtx, body: Any) -> bytes:
        a = self._own_enterprise(c)
        need(body.pubkey in a.delegates, Code.UNKNOWN_DELEGATE)
        del self.keys[body.pubkey]
        a.delegates.discard(body.pubkey)
        return b""

    def _rotate_keys(self, c: TxCtx, body: Any) -> bytes:
        need(not c.via_delegate, Code.DELEGATE_NOT_ALLOWED)
        a = c.sender
        need(body.sign_pk not in a.delegates, Code.KEY_IN_USE)
        other = self.accounts.get(sha(body.sign_pk))
        need(other is None or other.id == a.id, Code.KEY_IN_USE)
        if body.sign_pk != a.sign_pk:
            self._check_key_free(body.sign_pk, a.id)
            self.keys[body.sign_pk] = a.id
            del self.keys[a.sign_pk]
        a.sign_pk, a.enc_pk = body.sign_pk, body.enc_pk
        return b""

    # ---- assets ----------------------------------------------------------------------------------------

    def _schema(self, name: str) -> MSchema:
        s = self.schemas.get(name)
        need(s is not None, Code.UNKNOWN_SCHEMA)
        assert s is not None
        return s

    def _asset(self, aid: bytes) -> MAsset:
        a = self.assets.get(aid)
        need(a is not None, Code.UNKNOWN_ASSET)
        assert a is not None
        return a

    def _pending_request(self, rid: bytes) -> MAssetRequest:
        r = self.asset_requests.get(rid)
        need(r is not None, Code.UNKNOWN_REQUEST)
        assert r is not None
        need(r.status == "pending", Code.REQUEST_NOT_PENDING)
        return r

    def _issue(self, c: TxCtx, body: Any) -> bytes:
        issuer = self._role(c, "issuer")
        schema = self._schema(body.schema)
        need(issuer.id in schema.issuers, Code.ISSUER_NOT_AUTHORIZED)
        holder = self.accounts.get(body.holder)
        need(holder is not None and holder.is_holder, Code.UNKNOWN_HOLDER)
        need(set(body.fields) <= set(schema.fields), Code.UNKNOWN_FIELD)
        version, old = 1, None
        if body.supersedes:
            old = self._asset(body.supersedes)
            need(old.status == "active" and old.holder == body.holder and old.issuer == issuer.id
                 and old.schema == body.schema, Code.CANNOT_SUPERSEDE)
            version = old.version + 1
        req = None
        if body.answers:
            req = self._pending_request(body.answers)
            need(req.issuer == issuer.id and req.holder == body.holder and req.schema == body.schema,
                 Code.REQUEST_MISMATCH)
            need(req.kind != "correction" or body.supersedes == req.asset_id, Code.REQUEST_MISMATCH)
        aid = object_id(ASSET, c.tx_hash)
        if req is not None:
            req.status, req.result_asset, req.resolved_height = "fulfilled", aid, c.height
        if old is not None:
            old.status, old.superseded_by = "superseded", aid
        self.assets[aid] = MAsset(aid, body.holder, issuer.id, body.schema, version, body.fields,
                                  body.field_root, body.payload_hash, body.supersedes,
                                  issued_height=c.height, issued_time_ms=c.time_ms)
        self._index(b"hasset", body.holder, aid)
        self._index(b"iasset", issuer.id, aid)
        return aid

    def _new_asset_request(self, c: TxCtx, kind: str, holder: bytes, issuer: bytes, schema: str,
                           asset_id: bytes, fields: tuple[str, ...], note_hash: bytes) -> bytes:
        rid = object_id(ASSET_REQUEST, c.tx_hash)
        self.asset_requests[rid] = MAssetRequest(rid, kind, holder, issuer, schema, asset_id, fields, note_hash,
                                                 created_height=c.height)
        self._index(b"hareq", holder, rid)
        self._index(b"iareq", issuer, rid)
        return rid

    def _request_asset(self, c: TxCtx, body: Any) -> bytes:
        holder = self._holder(c)
        schema = self._schema(body.schema)
        need(self._active_member(body.issuer, "issuer") and body.issuer in schema.issuers,
             Code.ISSUER_NOT_AUTHORIZED)
        return self._new_asset_request(c, "issue", holder.id, body.issuer, body.schema, b"", (), body.note_hash)

    def _request_correction(self, c: TxCtx, body: Any) -> bytes:
        holder = self._holder(c)
        a = self._asset(body.asset_id)
        need(a.holder == holder.id, Code.NOT_ASSET_HOLDER)
        need(a.status == "active", Code.ASSET_NOT_ACTIVE)
        need(set(body.fields) <= set(a.fields), Code.UNKNOWN_FIELD)
        return self._new_asset_request(c, "correction", holder.id, a.issuer, a.schema, a.id, body.fields,
                                       body.note_hash)

    def _refuse(self, c: TxCtx, body: Any) -> bytes:
        issuer = self._role(c, "issuer")
        r = self._pending_request(body.request_id)
        need(r.issuer == issuer.id, Code.REQUEST_MISMATCH)
        r.status, r.reason, r.resolved_height = "refused", body.reason, c.height
        return r.id

    def _revoke_asset(self, c: TxCtx, body: Any) -> bytes:
        issuer = self._role(c, "issuer")
        a = self._asset(body.asset_id)
        need(a.issuer == issuer.id, Code.NOT_ASSET_ISSUER)
        need(a.status in ("active", "superseded"), Code.ASSET_NOT_ACTIVE)
        a.status, a.reason = "revoked", body.reason
        return a.id

    def _erase(self, c: TxCtx, body: Any) -> bytes:
        holder = self._holder(c)
        a = self._asset(body.asset_id)
        need(a.holder == holder.id, Code.NOT_ASSET_HOLDER)
        need(a.status != "erased", Code.ASSET_ERASED)
        a.status = "erased"
        return a.id

    # ---- consent ---------------------------------------------------------------------------------------

    def _consent_request(self, c: TxCtx, body: Any) -> bytes:
        consumer = self._role(c, "consumer")
        holder = self.accounts.get(body.holder)
        need(holder is not None and holder.is_holder, Code.UNKNOWN_HOLDER)
        rid = object_id(CONSENT_REQUEST, c.tx_hash)
        self.consent_requests[rid] = MConsentRequest(
            rid, consumer.id, body.holder, body.schemas, body.fields, body.purpose, body.duration_ms,
            body.max_uses, created_height=c.height, created_time_ms=c.time_ms)
        self._index(b"hcreq", body.holder, rid)
        self._index(b"ccreq", consumer.id, rid)
        return rid

    def _grant(self, c: TxCtx, body: Any) -> bytes:
        holder = self._holder(c)
        need(self._active_member(body.grantee, "consumer"), Code.GRANTEE_NOT_CONSUMER)
        covered: set[str] = set()
        for aid in body.assets:
            a = self._asset(aid)
            need(a.holder == holder.id, Code.NOT_ASSET_HOLDER)
            need(a.status == "active", Code.ASSET_NOT_ACTIVE)
            covered.update(a.fields)
        need(set(body.fields) <= covered, Code.FIELD_NOT_IN_ASSETS)
        need(body.not_after_ms > c.time_ms, Code.NOT_AFTER_IN_PAST)
        need(body.not_after_ms <= c.time_ms + MAX_DURATION_MS, Code.NOT_AFTER_TOO_FAR)
        req = None
        if body.request_id:
            req = self.consent_requests.get(body.request_id)
            need(req is not None, Code.UNKNOWN_REQUEST)
            assert req is not None
            need(req.status == "requested", Code.REQUEST_NOT_PENDING)
            need(req.holder == holder.id and req.consumer == body.grantee, Code.REQUEST_MISMATCH)
        gid = object_id(GRANT, c.tx_hash)
        if req is not None:
            req.status, req.grant_id = "granted", gid
        self.grants[gid] = MGrant(gid, holder.id, body.grantee, body.assets, body.fields, body.purpose,
                                  body.not_after_ms, body.max_uses, 0, body.package_hash, body.request_id,
                                  created_height=c.height, created_time_ms=c.time_ms)
        self._index(b"hgrant", holder.id, gid)
        self._index(b"cgrant", body.grantee, gid)
        return gid

    def _reject(self, c: TxCtx, body: Any) -> bytes:
        holder = self._holder(c)
        r = self.consent_requests.get(body.request_id)
        need(r is not None and r.holder == holder.id, Code.UNKNOWN_REQUEST)
        assert r is not None
        need(r.status == "requested", Code.REQUEST_NOT_PENDING)
        r.status, r.reason = "rejected", body.reason
        return r.id

    def _revoke_grant(self, c: TxCtx, body: Any) -> bytes:
        holder = self._holder(c)
        g = self.grants.get(body.grant_id)
        need(g is not None, Code.UNKNOWN_GRANT)
        assert g is not None
        need(g.holder == holder.id, Code.NOT_GRANT_HOLDER)
        need(g.status == "granted" and c.time_ms <= g.not_after_ms, Code.GRANT_NOT_ACTIVE)
        g.status, g.closed_height = "revoked", c.height
        return g.id

    # ---- access ----------------------------------------------------------------------------------------

    def _access(self, c: TxCtx, body: Any) -> bytes:
        consumer = self._role(c, "consumer")
        g = self.grants.get(body.grant_id)
        need(g is not None, Code.UNKNOWN_GRANT)
        assert g is not None
        need(g.grantee == consumer.id, Code.NOT_GRANTEE)
        if g.status != "granted":
            raise Refused(_CLOSED_GRANT[g.status])
        need(c.time_ms <= g.not_after_ms, Code.GRANT_EXPIRED)
        need(g.uses < g.max_uses, Code.GRANT_USED_UP)
        need(body.asset_id in g.assets, Code.ASSET_NOT_COVERED)
        a = self.assets[body.asset_id]
        if a.status != "active":
            raise Refused(_INACTIVE_ASSET[a.status])
        for other in g.assets:
            need(self.assets[other].status != "erased", Code.ASSET_ERASED)
        g.uses += 1
        if g.uses == g.max_uses:
            g.status, g.closed_height = "used_up", c.height
        xid = object_id(ACCESS, c.tx_hash)
        self.accesses[xid] = MAccess(xid, g.id, a.id, g.holder, consumer.id, g.purpose, g.uses, c.height,
                                     c.time_ms)
        self._index(b"haccess", g.holder, xid)
        self._index(b"caccess", consumer.id, xid)
        return xid

    # ---- evidence of double signing --------------------------------------------------------------------

    def _evidence(self, c: TxCtx, body: Any) -> bytes:
        need(c.sender.kind == "member" and c.sender.status == "active", Code.NOT_MEMBER)
        ev = body.evidence
        need(ev.height <= c.height, Code.INVALID_EVIDENCE)
        need(c.height - ev.height <= self.max_evidence_age, Code.INVALID_EVIDENCE)
        keys = [pk for pk in self.validators_of(ev.height) if sha(pk) == ev.validator]
        need(bool(keys), Code.INVALID_EVIDENCE)
        need(all(v.signature_valid(self.chain_id, keys[0]) for v in (ev.vote_a, ev.vote_b)),
             Code.INVALID_EVIDENCE)
        need(ev.hash not in self.evidence, Code.DUPLICATE_EVIDENCE)
        self.evidence[ev.hash] = (ev, c.sender.id, c.height)
        return bytes(ev.hash)

    # ---- the state the ledger must hold ----------------------------------------------------------------

    def expected_state(self) -> dict[bytes, bytes]:
        """Every authenticated state key (without "s/") and its exact value bytes."""
        out: dict[bytes, bytes] = {
            b"gov/threshold": self.threshold.to_bytes(4, "big"),
            b"gov/admins": encode_value(sorted(self.admins)),
            b"params": self.params.encode(),
            b"valset": self.validator_set().encode(),
        }
        for a in self.accounts.values():
            out[ACCOUNT + a.id] = a.record().encode()
        for ref, aid in self.subjects.items():
            out[SUBJECT + ref] = aid
        for pk, aid in self.keys.items():
            out[KEY + pk] = aid
        for s in self.schemas.values():
            out[SCHEMA + s.name.encode()] = R.Schema(s.name, s.fields, s.issuers, s.version).encode()
        for h, vals in self.validator_history.items():
            out[VALHIST + h.to_bytes(8, "big")] = ValidatorSet.of(
                [Validator(pk, p, n) for pk, (p, n) in vals.items()]).encode()
        for h, ups in self.pending_validators.items():
            updates = tuple(R.ValidatorUpdate(pk, p, n) for pk, (p, n) in sorted(ups.items()))
            out[b"valpend/" + h.to_bytes(8, "big")] = R.PendingValidators(updates).encode()
        for p in self.proposals.values():
            out[PROPOSAL + p.id] = R.AdminProposal(
                p.id, p.proposer, p.action, p.payload, tuple(sorted(p.approvals)), p.status, p.created_height,
                p.executed_height).encode()
        for x in self.assets.values():
            out[ASSET + x.id] = R.Asset(x.id, x.holder, x.issuer, x.schema, x.version, x.fields, x.field_root,
                                        x.payload_hash, x.supersedes, x.superseded_by, x.status, x.reason,
                                        x.issued_height, x.issued_time_ms).encode()
        for r in self.asset_requests.values():
            out[ASSET_REQUEST + r.id] = R.AssetRequest(
                r.id, r.kind, r.holder, r.issuer, r.schema, r.asset_id, r.fields, r.note_hash, r.status,
                r.result_asset, r.reason, r.created_height, r.resolved_height).encode()
        for q in self.consent_requests.values():
            out[CONSENT_REQUEST + q.id] = R.ConsentRequest(
                q.id, q.consumer, q.holder, q.schemas, q.fields, q.purpose, q.duration_ms, q.max_uses, q.status,
                q.grant_id, q.reason, q.created_height, q.created_time_ms).encode()
        for g in self.grants.values():
            out[GRANT + g.id] = R.Grant(
                g.id, g.holder, g.grantee, g.assets, g.fields, g.purpose, g.not_after_ms, g.max_uses, g.uses,
                g.package_hash, g.request_id, g.status, g.created_height, g.created_time_ms,
                g.closed_height).encode()
            if g.status == "granted":
                out[EXPIRY + g.not_after_ms.to_bytes(8, "big") + g.id] = b""
        for y in self.accesses.values():
            out[ACCESS + y.id] = R.Access(y.id, y.grant, y.asset, y.holder, y.consumer, y.purpose, y.use,
                                          y.height, y.time_ms).encode()
        for ev_hash, (ev, reporter, height) in self.evidence.items():
            out[EVIDENCE + ev_hash] = EvidenceRecord(ev, reporter, height).encode()
        return out

    def expected_indexes(self) -> set[bytes]:
        return set(self.indexes)


#: The record class stored under each state key prefix (to show readable differences).
RECORD_OF_PREFIX: dict[bytes, type[Any]] = {
    ACCOUNT: R.Account, SCHEMA: R.Schema, PROPOSAL: R.AdminProposal, ASSET: R.Asset, ASSET_REQUEST: R.AssetRequest,
    CONSENT_REQUEST: R.ConsentRequest, GRANT: R.Grant, ACCESS: R.Access, b"valpend/": R.PendingValidators,
    EVIDENCE: EvidenceRecord, VALHIST: ValidatorSet, b"valset": ValidatorSet,
}


def describe(key: bytes, value: bytes | None) -> object:
    """A readable form of a state value, for assertion messages."""
    if value is None:
        return None
    for prefix, cls in RECORD_OF_PREFIX.items():
        if key.startswith(prefix):
            try:
                return cls.decode(value)
            except (DecodeError, ValidationError):
                return value
    return value
