"""Stateful test of the whole ledger: random sequences of every transaction type, from many accounts, in
blocks of one to a few transactions, against the reference model of tests/model.py.

Accounts: three admins (threshold 2), a registrar, two issuers of different schemas, three consumers, an
auditor (a member whose role allows nothing here), persons and enterprises registered on the way, enterprise
delegates, rotated keys, members registered and suspended by governance, and keys nobody registered.

After every block the test checks, against the model: the exact result code and object id of every
transaction; that an access succeeds exactly when an active grant authorizes it (and consumes one use); the
grants' expiry on both sides of not_after; the validator sets, and the history's set of this height and the
next; the whole authenticated state byte for byte (the validator-set history included) and every index key;
membership and non-membership proofs against the app hash; that replays and other envelope failures change
nothing. At the end of every example the blocks are replayed with `apply_block` on a fresh MemoryKV and on a
LevelDB store: the same app hashes, results and stored bytes; and the history gives, for every height, the
set its block header names.

Double-sign evidence meets validator sets that changed (val4 joins at height 4 and val3 leaves at height 5 in
the setup; then the admins remove, add back and re-weight validators): evidence against a validator removed
since, against a key of today's set from before it joined, exactly at and just past the age bound (EVD-2,
patched from 100,000 heights down to EVIDENCE_AGE for the run).

Validator keys are member keys (GOV-7): the genesis validators are genesis members, val4 is registered by
governance before it joins, val5 only if governance happens to register it. The admins also try to give
power to keys the peer network would not admit: nobody's key, a holder's or a delegate's, a member's key
rotated away, a suspended member's key (refused with `validator_not_member`); and they remove the validator
of a suspended member (allowed).

Runs derandomized (a fixed seed): a failure prints the rules and draws that produced it.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
import warnings
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from consensus.encoding import Struct, encode_value
from consensus.errors import DecodeError, ValidationError
from consensus.kv import MemoryKV
from consensus.statetree import verify_state_proof
from consensus.tendermint import Evidence
from consensus.types import PRECOMMIT, Tx, Vote
from contracts import evidence
from contracts.codes import Code
from contracts.execute import BlockExecution, Ledger, TxResult, apply_block
from contracts.records import Grant
from contracts.txs import (
    MAX_DURATION_MS,
    TX_BODIES,
    Approve,
    Delegate,
    EraseAsset,
    GrantConsent,
    IssueAsset,
    Propose,
    RecordAccess,
    RefuseRequest,
    RegisterHolder,
    RegisterMember,
    RegisterSchema,
    RejectConsent,
    RequestAsset,
    RequestConsent,
    RequestCorrection,
    RevokeAsset,
    RevokeConsent,
    RotateKeys,
    SetThreshold,
    SetValidator,
    SubmitEvidence,
    UpdateMember,
)
from node.kvstore import LevelDBKV
from wallet.devchain import DevChain, Identity, dev_genesis
from wallet.tx import make_tx
from wallet.tx import propose as wrap_proposal

try:
    from model import CREATES, ENVELOPE_CODES, BlockOutcome, Model, describe, object_id, sha
except ImportError:  # tests/ imported as a package
    from tests.model import CREATES, ENVELOPE_CODES, BlockOutcome, Model, describe, object_id, sha

CHAIN = "mydata-lifecycle"


def _ident(name: str) -> Identity:
    return Identity.derive(name, b"lifecycle")


# Every key is derived once, here: Ed25519 key setup is the expensive part of an Identity.
#: val0..val3: the genesis set, genesis members; val4: registered as a member in the setup, then added by
#: validator.set; val5: no member unless governance registers it (validator.set refuses it until then).
VALIDATORS = [_ident(f"val{i}") for i in range(6)]
ADMINS = [_ident(f"admin{i}") for i in range(3)]
REGISTRAR = _ident("registrar")
ISSUER_HEALTH = _ident("issuer-health")
ISSUER_TAX = _ident("issuer-tax")
CONSUMERS = [_ident("bank"), _ident("notary"), _ident("insurer")]
AUDITOR = _ident("auditor")
NEW_ORGS = [_ident(f"org{i}") for i in range(4)]  # registered by governance, if at all
PERSONS = [_ident(f"person{i}") for i in range(4)]
ENTERPRISES = [_ident("enterprise0"), _ident("enterprise1")]
DELEGATES = [_ident(f"delegate{i}") for i in range(3)]
ROTATED = [_ident(f"rotated{i}") for i in range(3)]
STRANGER = _ident("stranger")

EVERYONE = [*VALIDATORS, *ADMINS, REGISTRAR, ISSUER_HEALTH, ISSUER_TAX, *CONSUMERS, AUDITOR, *NEW_ORGS, *PERSONS,
            *ENTERPRISES, *DELEGATES, *ROTATED, STRANGER]
BY_PK = {i.pk: i for i in EVERYONE}
BY_ID = {i.id: i for i in EVERYONE}
ACTORS = [i.id for i in EVERYONE if i not in VALIDATORS]
HOLDER_KEYS = [*PERSONS, *ENTERPRISES]

HEALTH, TAX, MARRIAGE = "health.record", "tax.return", "civil.marriage"
SCHEMAS = {HEALTH: ("blood_type", "diagnosis", "name"), TAX: ("income", "name", "year")}
NATURAL_ISSUER = {HEALTH: ISSUER_HEALTH.id, TAX: ISSUER_TAX.id, MARRIAGE: ISSUER_HEALTH.id}
ALL_FIELDS = ("blood_type", "diagnosis", "extra", "income", "name", "partner", "year")

#: The evidence age bound of the run (EVD-2): the contract's 100,000 heights, patched down to what an example
#: reaches, in the ledger and in the model alike.
EVIDENCE_AGE = 8

GENESIS = dev_genesis(
    CHAIN, VALIDATORS[:4],
    [*((a, ("admin",)) for a in ADMINS), (REGISTRAR, ("registrar",)), (ISSUER_HEALTH, ("issuer",)),
     (ISSUER_TAX, ("issuer",)), *((c, ("consumer",)) for c in CONSUMERS), (AUDITOR, ("auditor",)),
     *((v, ("validator",)) for v in VALIDATORS[:4])],
    [(HEALTH, SCHEMAS[HEALTH], [ISSUER_HEALTH]), (TAX, SCHEMAS[TAX], [ISSUER_TAX])],
    admin_threshold=2,
)


def subject(ident: Identity) -> bytes:
    return sha(b"subject/" + ident.name.encode())


def absent_id(tag: str) -> bytes:
    return sha(b"absent/" + tag.encode())


#: What the runs covered: (tx type, code) pairs and named situations. The test asserts the important ones.
COVERAGE: Counter[tuple[str, str]] = Counter()

#: Who may send each transaction type, and the code anyone else gets.
ROLE_OF = {
    "gov.propose": ("admin", Code.NOT_ADMIN), "gov.approve": ("admin", Code.NOT_ADMIN),
    "holder.register": ("registrar", Code.NOT_REGISTRAR), "holder.add_delegate": ("enterprise", Code.NOT_ENTERPRISE),
    "asset.issue": ("issuer", Code.NOT_ISSUER), "asset.refuse": ("issuer", Code.NOT_ISSUER),
    "asset.revoke": ("issuer", Code.NOT_ISSUER), "consent.request": ("consumer", Code.NOT_CONSUMER),
    "access.record": ("consumer", Code.NOT_CONSUMER), "evidence.submit": ("member", Code.NOT_MEMBER),
    **{t: ("holder", Code.NOT_HOLDER) for t in ["asset.request", "asset.request_correction", "asset.erase",
                                                  "consent.grant", "consent.reject", "consent.revoke"]},
}

#: Member-only and holder-only transaction types, with the code a sender of the other kind gets.
MEMBER_ONLY = {"gov.propose": Code.NOT_ADMIN, "gov.approve": Code.NOT_ADMIN,
               "holder.register": Code.NOT_REGISTRAR, "asset.issue": Code.NOT_ISSUER,
               "asset.refuse": Code.NOT_ISSUER, "asset.revoke": Code.NOT_ISSUER,
               "consent.request": Code.NOT_CONSUMER, "access.record": Code.NOT_CONSUMER,
               "evidence.submit": Code.NOT_MEMBER}
HOLDER_ONLY = {"asset.request", "asset.request_correction", "asset.erase", "consent.grant", "consent.reject",
               "consent.revoke"}
PRE_HANDLER_CODES = ENVELOPE_CODES | {Code.ACCOUNT_SUSPENDED, Code.UNKNOWN_TX_TYPE, Code.MALFORMED_BODY}
#: What an evidence report can get from its sender alone (the reporter is sometimes not an active member).
REFUSED_SENDER = frozenset({Code.NOT_MEMBER, Code.ACCOUNT_SUSPENDED, Code.UNKNOWN_SENDER})


def sample(seq: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(list(seq))


class LedgerLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.chain = DevChain(GENESIS, VALIDATORS)
        self.model = Model(GENESIS, max_evidence_age=EVIDENCE_AGE)
        self.app_hashes: list[bytes] = []
        self.results: list[list[bytes]] = []
        self.pending: list[bytes] = []
        self.expect: dict[int, frozenset[str]] = {}  # pending index -> codes the test itself insists on
        self.situations: dict[int, tuple[str, str]] = {}  # pending index -> (situation, the code that shows it)
        self.committed: list[tuple[bytes, str]] = []
        self.cap = 3
        self.counter = 0
        self.turns: Counter[str] = Counter()
        self.healthy = True
        self.shadow = self._new_shadow()

    # ---- building transactions -----------------------------------------------------------------------

    def _new_shadow(self) -> Model:
        """The model as it will be after the pending transactions (at a guessed block time): exact for
        nonces and for the ids of what they create, which is all the planning needs."""
        shadow = copy.deepcopy(self.model)
        shadow.begin_block(self.model.height + 1, self.model.time_ms + 1)
        return shadow

    def _room(self) -> bool:
        return len(self.pending) < self.cap

    def _nonce(self, sender: bytes) -> int:
        a = self.shadow.accounts.get(sender)
        return 0 if a is None else a.nonce

    def _add(self, raw: bytes, *expect: str) -> bytes:
        if expect:
            self.expect[len(self.pending)] = frozenset(expect)
        self.pending.append(raw)
        self.shadow.apply(raw)
        return raw

    def _tx(self, signer: Identity, body: Struct, sender: bytes | None = None, *, tx_type: str | None = None,
            nonce: int | None = None, chain: str = CHAIN) -> Tx:
        sender = signer.id if sender is None else sender
        n = self._nonce(sender) if nonce is None else nonce
        return make_tx(signer.signer, chain, n, body, sender=sender, tx_type=tx_type)

    def _submit(self, signer: Identity, body: Struct, sender: bytes | None = None, *,
                tx_type: str | None = None) -> bytes:
        return self._add(self._tx(signer, body, sender, tx_type=tx_type).encode())

    def _key(self, account: bytes) -> Identity:
        """The identity holding an account's current signing key (its own key if it is not registered)."""
        a = self.shadow.accounts.get(account)
        return BY_ID[account] if a is None else BY_PK[a.sign_pk]

    def _signer(self, data: st.DataObject, account: bytes) -> Identity:
        """The account's current key, or (for an enterprise, often) one of its delegates."""
        a = self.shadow.accounts.get(account)
        if a is not None and a.delegates and data.draw(st.booleans(), label="via delegate"):
            return BY_PK[data.draw(sample(sorted(a.delegates)), label="delegate")]
        return self._key(account)

    def _actor(self, data: st.DataObject, preferred: list[bytes], label: str) -> bytes:
        """Mostly one of `preferred`; sometimes any account (wrong roles, suspended ones), rarely a key
        nobody registered."""
        roll = data.draw(st.integers(0, 19), label=f"{label}: who")
        if preferred and roll < 15:
            return data.draw(sample(preferred), label=label)
        if roll < 19:
            return data.draw(sample(list(self.shadow.accounts)), label=label)
        return data.draw(sample(ACTORS), label=label)

    def _act(self, data: st.DataObject, preferred: list[bytes], body: Struct, label: str, *,
             tx_type: str | None = None) -> bytes:
        sender = self._actor(data, preferred, label)
        return self._submit(self._signer(data, sender), body, sender, tx_type=tx_type)

    def _cycle(self, name: str, options: list[str], pick: int) -> str:
        """Options taken in turn within an example, shifted by a drawn `pick` and by the height, so that
        a few calls of a rule cover all its variants however skewed the draws are."""
        n = self.turns[name]
        self.turns[name] += 1
        return options[(n + pick + self.model.height) % len(options)]

    def _hash(self, tag: bytes) -> bytes:
        self.counter += 1
        return sha(tag + self.counter.to_bytes(4, "big"))

    # ---- views of the shadow ------------------------------------------------------------------------

    def _holders(self) -> list[bytes]:
        return [a.id for a in self.shadow.accounts.values() if a.is_holder]

    def _enterprises(self) -> list[bytes]:
        return [a.id for a in self.shadow.accounts.values() if a.kind == "enterprise"]

    def _members_with(self, role: str) -> list[bytes]:
        return [a.id for a in self.shadow.accounts.values() if a.kind == "member" and role in a.roles]

    def _active_assets(self, holder: bytes | None = None) -> list[bytes]:
        return [a.id for a in self.shadow.assets.values()
                if a.status == "active" and (holder is None or a.holder == holder)]

    def _live_grants(self) -> list[bytes]:
        return [g.id for g in self.shadow.grants.values() if g.status == "granted"]

    def _pick(self, data: st.DataObject, good: list[bytes], every: list[bytes], tag: str, label: str) -> bytes:
        """Mostly one of `good`, sometimes any of `every`, rarely an id that does not exist."""
        return data.draw(sample(good * 4 + every + [absent_id(tag)]), label=label)

    # ---- setup ---------------------------------------------------------------------------------------

    @initialize()
    def setup(self) -> None:
        for ident in [*PERSONS[:3], ENTERPRISES[0]]:
            kind = "enterprise" if ident in ENTERPRISES else "person"
            self._submit(REGISTRAR, RegisterHolder(kind, subject(ident), ident.pk, ident.enc_pk))
        val4 = VALIDATORS[4]  # a member first, then a validator (GOV-7)
        self._govern(RegisterMember(val4.name, ("validator",), val4.pk, val4.enc_pk))
        self._produce(1000, all_ok=True)
        ent = ENTERPRISES[0]
        self._submit(ent, Delegate(DELEGATES[0].pk), tx_type="holder.add_delegate")
        for issuer, schema, holder in [(ISSUER_HEALTH, HEALTH, PERSONS[0]), (ISSUER_TAX, TAX, PERSONS[1]),
                                       (ISSUER_HEALTH, HEALTH, ent), (ISSUER_TAX, TAX, PERSONS[0])]:
            self._submit(issuer, IssueAsset(holder.id, schema, SCHEMAS[schema], self._hash(b"root"),
                                            self._hash(b"payload"), b"", b""))
        # val4 joins the validators at height 4 and val3 leaves at height 5, so that evidence for the first
        # heights meets sets that changed since.
        self._set_validator(VALIDATORS[4], 10)
        self._produce(1000, all_ok=True)
        bank, p0 = CONSUMERS[0], PERSONS[0]
        req = self._submit(bank, RequestConsent(p0.id, (HEALTH,), ("diagnosis",), "loan", 60_000, 3))
        rid = object_id(b"creq/", sha(req))
        assets = tuple(sorted(self._active_assets(p0.id)))
        self._submit(p0, GrantConsent(bank.id, assets, ("diagnosis", "income"), "loan",
                                      self.model.time_ms + 20_000, 3, self._hash(b"pkg"), rid))
        self._set_validator(VALIDATORS[3], 0)
        self._produce(1000, all_ok=True)

    def _set_validator(self, val: Identity, power: int) -> None:
        self._govern(SetValidator(val.pk, power, val.name))

    def _govern(self, action: Struct) -> None:
        """Two genesis admins run an admin action in one block (setup only: both still active admins)."""
        prop = self._submit(ADMINS[0], wrap_proposal(action))
        self._submit(ADMINS[1], Approve(object_id(b"prop/", sha(prop))))

    # ---- governance ----------------------------------------------------------------------------------

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def gov_propose(self, data: st.DataObject) -> None:
        kind = self._cycle("action", ["member.register", "member.update", "schema.register", "validator.set",
                                      "admin.threshold", "malformed"], data.draw(st.integers(0, 5), label="action"))
        body: Struct
        if kind == "member.register":
            key = data.draw(sample([*NEW_ORGS, *NEW_ORGS, CONSUMERS[0], PERSONS[0], DELEGATES[0], VALIDATORS[5]]),
                            label="member key")
            roles = data.draw(sample([("consumer",), ("issuer",), ("admin",), ("consumer", "issuer"),
                                      ("auditor",), ("registrar",)]), label="roles")
            body = wrap_proposal(RegisterMember(key.name, roles, key.pk, key.enc_pk))
        elif kind == "member.update":
            members = [a.id for a in self.shadow.accounts.values() if a.kind == "member"]
            target = data.draw(sample([*members, PERSONS[0].id, STRANGER.id]), label="member")
            acct = self.shadow.accounts.get(target)
            current = acct.roles if acct is not None else ("consumer",)
            roles = data.draw(sample([current, current, ("consumer",), ("issuer",), ("admin",), ()]),
                              label="roles")
            status = data.draw(sample(["active", "active", "suspended"]), label="status")
            body = wrap_proposal(UpdateMember(target, tuple(sorted(roles)), status))
        elif kind == "schema.register":
            name = data.draw(sample([HEALTH, TAX, MARRIAGE]), label="schema")
            old = self.shadow.schemas.get(name)
            base = old.fields if old is not None else ("name", "partner")
            fields = data.draw(sample([base, (*base, "extra"), base[1:] or ("name",)]), label="fields")
            extra = data.draw(sample([(), (), (ISSUER_TAX.id,), (NEW_ORGS[0].id,), (CONSUMERS[0].id,)]),
                              label="more issuers")
            issuers = tuple(sorted({NATURAL_ISSUER[name], *extra}))
            body = wrap_proposal(RegisterSchema(name, tuple(sorted(set(fields))), issuers))
        elif kind == "validator.set":
            val = data.draw(sample(VALIDATORS), label="validator")
            power = data.draw(sample([0, 1, 10, 25]), label="power")
            body = wrap_proposal(SetValidator(val.pk, power, val.name))
        elif kind == "admin.threshold":
            body = wrap_proposal(SetThreshold(data.draw(st.integers(1, 4), label="threshold")))
        else:
            body = data.draw(sample([
                Propose("member.delete", b"\x90"),  # no such admin action
                Propose("admin.threshold", encode_value([0])),  # a threshold of 0
                Propose("member.register", b"\xc1"),  # not msgpack
            ]), label="malformed proposal")
        self._act(data, sorted(self.shadow.admins), body, "proposer")

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def suspend_or_reinstate(self, data: st.DataObject) -> None:
        """Governance suspends a member (not an admin) or makes it active again, in one block."""
        suspend = data.draw(st.booleans(), label="suspend?")
        members = [a for a in self.shadow.accounts.values() if a.kind == "member" and "admin" not in a.roles]
        suspended = [a for a in members if a.status == "suspended"]
        m = data.draw(sample(members if suspend or not suspended else suspended), label="member")
        body = wrap_proposal(UpdateMember(m.id, m.roles, "suspended" if suspend else "active"))
        admins = sorted(a for a in self.shadow.admins if self.shadow.accounts[a].status == "active")
        if len(admins) >= 2:
            first, second = data.draw(st.lists(sample(admins), min_size=2, max_size=2, unique=True),
                                      label="admins")
            raw = self._submit(self._key(first), body, first)
            self._submit(self._key(second), Approve(object_id(b"prop/", sha(raw))), second)

    @precondition(lambda self: self._room() and any(
        a.status == "suspended" for a in self.shadow.accounts.values()))
    @rule(data=st.data())
    def suspended_member_acts(self, data: st.DataObject) -> None:
        """A suspended member tries what its roles would allow: refused, its nonce consumed."""
        m = data.draw(sample([a for a in self.shadow.accounts.values() if a.status == "suspended"]),
                      label="member")
        p0 = PERSONS[0]
        body: Struct = RecordAccess(next(iter(self.shadow.grants), absent_id("grant")), absent_id("asset"))
        if "issuer" in m.roles:
            body = IssueAsset(p0.id, HEALTH, ("name",), self._hash(b"root"), self._hash(b"payload"), b"", b"")
        elif "admin" in m.roles:
            body = wrap_proposal(SetThreshold(1))
        elif "registrar" in m.roles:
            body = RegisterHolder("person", subject(PERSONS[3]), PERSONS[3].pk, PERSONS[3].enc_pk)
        self._add(self._tx(self._key(m.id), body, m.id).encode(), Code.ACCOUNT_SUSPENDED)

    @precondition(lambda self: self._room() and self.shadow.proposals)
    @rule(data=st.data())
    def gov_approve(self, data: st.DataObject) -> None:
        """An admin approves a proposal (`again`: one who approved it already)."""
        again = data.draw(st.booleans(), label="one who approved already?")
        props = list(self.shadow.proposals.values())
        pid = self._pick(data, [p.id for p in props if p.status == "open"], [p.id for p in props], "prop",
                         "proposal")
        p = self.shadow.proposals.get(pid)
        approved = sorted(p.approvals) if p is not None else []
        fresh = sorted(self.shadow.admins - set(approved))
        self._act(data, approved if again and approved else fresh, Approve(pid), "approver")

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def gov_propose_and_approve(self, data: st.DataObject) -> None:
        """One admin proposes, another approves in the same block: at threshold 2 the action runs."""
        self.gov_propose(data)
        pid = object_id(b"prop/", sha(self.pending[-1]))
        p = self.shadow.proposals.get(pid)
        if p is not None and p.status == "open":
            fresh = sorted(self.shadow.admins - p.approvals)
            self._act(data, fresh, Approve(pid), "approver")

    def _member_of_key(self, pk: bytes) -> Any:
        """The member whose current signing key `pk` is, in the shadow, if any."""
        return next((a for a in self.shadow.accounts.values() if a.kind == "member" and a.sign_pk == pk), None)

    def _future_validators(self) -> dict[bytes, tuple[int, str]]:
        """The validator set once every change scheduled so far (pending transactions included) applies."""
        future = dict(self.shadow.validators)
        for h in sorted(self.shadow.pending_validators):
            for pk, (power, name) in self.shadow.pending_validators[h].items():
                if power == 0:
                    future.pop(pk, None)
                else:
                    future[pk] = (power, name)
        return future

    @precondition(lambda self: self._room() and not self.shadow.pending_validators)
    @rule(data=st.data())
    def change_validators(self, data: st.DataObject) -> None:
        """Two admins remove, add (back) or re-weight a validator in one block, so that evidence meets sets
        that changed since the height it is for; or they try to give power to a key the peer network would
        not admit (GOV-7): no member's current key."""
        future = self._future_validators()
        variant = self._cycle("validator change", ["change", "change", "change", "no member's key"],
                              data.draw(st.integers(0, 3), label="variant"))
        outside = [v for v in VALIDATORS if v.pk not in future]
        situation = ""
        if variant == "no member's key":
            # Nobody's key, a holder's, a delegate's, a validator's or member's key rotated away, or val5.
            keys = [i for i in [STRANGER, *PERSONS, *ENTERPRISES, *DELEGATES, *VALIDATORS, CONSUMERS[1],
                                ISSUER_TAX] if self._member_of_key(i.pk) is None]
            val = data.draw(sample(keys), label="no member's key")
            power, situation = 10, "validator.set refused: no member's key"
        elif outside and (len(future) <= 2 or data.draw(st.booleans(), label="add one?")):
            val, power = data.draw(sample(outside), label="validator"), 10
        else:
            val = data.draw(sample([v for v in VALIDATORS if v.pk in future]), label="validator")
            remove = len(future) > 1 and data.draw(st.booleans(), label="remove?")
            power = 0 if remove else data.draw(sample([10, 20]), label="power")
        admins = [a for a in sorted(self.shadow.admins) if self.shadow.accounts[a].status == "active"]
        if not admins:
            return
        proposer = data.draw(sample(admins), label="proposer")
        first = len(self.pending)
        self._submit(self._key(proposer), wrap_proposal(SetValidator(val.pk, power, val.name)), proposer)
        pid = object_id(b"prop/", sha(self.pending[-1]))
        p = self.shadow.proposals.get(pid)
        if p is not None and p.status == "open" and (fresh := [a for a in admins if a not in p.approvals]):
            approver = data.draw(sample(fresh), label="approver")
            self._submit(self._key(approver), Approve(p.id), approver)
        if situation:  # shown by whichever transaction ran the action
            for i in range(first, len(self.pending)):
                self.situations[i] = (situation, Code.VALIDATOR_NOT_MEMBER)

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def validator_of_a_suspended_member(self, data: st.DataObject) -> None:
        """Two admins suspend the member whose key is a validator (the suspension is allowed and leaves the
        set alone, D-38), or pick a member suspended already; in the same block they remove its validator
        (allowed: power 0 asks for no membership) or try to give its key power (refused, GOV-7)."""
        future = self._future_validators()
        admins = sorted(a for a in self.shadow.admins if self.shadow.accounts[a].status == "active")
        members = [a for a in self.shadow.accounts.values() if a.kind == "member" and "admin" not in a.roles]
        operators = [a for a in members if a.sign_pk in future or a.status == "suspended"]
        if len(admins) < 2 or not operators:
            return
        m = data.draw(sample(operators), label="member")
        first, second = data.draw(st.lists(sample(admins), min_size=2, max_size=2, unique=True), label="admins")

        def govern(action: Struct) -> tuple[int, bytes]:
            start = len(self.pending)
            raw = self._submit(self._key(first), wrap_proposal(action), first)
            pid = object_id(b"prop/", sha(raw))
            p = self.shadow.proposals.get(pid)
            if p is not None and p.status == "open":
                self._submit(self._key(second), Approve(pid), second)
            return start, pid

        if m.status == "active":
            govern(UpdateMember(m.id, m.roles, "suspended"))
        key = BY_PK[m.sign_pk]
        if m.sign_pk in future and len(future) > 1 and data.draw(st.booleans(), label="remove it?"):
            _, pid = govern(SetValidator(key.pk, 0, key.name))
            p = self.shadow.proposals.get(pid)
            if p is not None and p.status == "executed" and self.shadow.accounts[m.id].status == "suspended":
                self.situations[len(self.pending) - 1] = ("a suspended member's validator removed", Code.OK)
        else:
            start, _ = govern(SetValidator(key.pk, data.draw(sample([10, 20]), label="power"), key.name))
            for i in range(start, len(self.pending)):
                self.situations[i] = ("validator.set refused: a suspended member's key", Code.VALIDATOR_NOT_MEMBER)

    # ---- holders and keys ----------------------------------------------------------------------------

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def register_holder(self, data: st.DataObject) -> None:
        key = data.draw(sample([*HOLDER_KEYS, ROTATED[0], ADMINS[1]]), label="holder key")
        kind = data.draw(sample(["person", "enterprise"]), label="kind")
        ref = data.draw(sample([subject(key)] * 3 + [subject(PERSONS[0])]), label="subject")
        self._act(data, [REGISTRAR.id], RegisterHolder(kind, ref, key.pk, key.enc_pk), "registrar")

    @precondition(lambda self: self._room() and self._enterprises())
    @rule(data=st.data())
    def delegate(self, data: st.DataObject) -> None:
        remove = data.draw(st.booleans(), label="remove?")
        others = [*self._holders()[:2], CONSUMERS[0].id]  # not enterprises: not_enterprise
        sender = data.draw(sample(self._enterprises() * 4 + others), label="enterprise")
        acct = self.shadow.accounts[sender]
        current = sorted(acct.delegates)
        if remove:
            pk = data.draw(sample([*current, *current, *current, *(d.pk for d in DELEGATES)]), label="delegate")
        else:
            pk = data.draw(sample([*(d.pk for d in DELEGATES), acct.sign_pk, PERSONS[0].pk]), label="delegate")
        # Only the enterprise's own key may change its delegates; now and then a delegate tries.
        signer = self._key(sender)
        if current and data.draw(st.integers(0, 3), label="delegate signs?") == 0:
            signer = BY_PK[data.draw(sample(current), label="signing delegate")]
        self._submit(signer, Delegate(pk), sender,
                     tx_type="holder.remove_delegate" if remove else "holder.add_delegate")

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def rotate_keys(self, data: st.DataObject) -> None:
        sender = self._actor(data, [*self._holders(), CONSUMERS[1].id, ISSUER_TAX.id], "account")
        acct = self.shadow.accounts.get(sender)
        own_delegates = [BY_PK[d] for d in sorted(acct.delegates)] if acct is not None else []
        new = data.draw(sample([*ROTATED, *ROTATED, BY_ID[sender], PERSONS[1], *own_delegates]), label="new key")
        self._submit(self._signer(data, sender), RotateKeys(new.pk, new.enc_pk), sender)

    # ---- assets --------------------------------------------------------------------------------------

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def issue_asset(self, data: st.DataObject) -> None:
        name = data.draw(sample([*sorted(self.shadow.schemas), "no.such"]), label="schema")
        schema = self.shadow.schemas.get(name)
        fields = schema.fields if schema is not None else ("name",)
        chosen = data.draw(st.lists(sample(fields), min_size=1, unique=True), label="fields")
        if data.draw(st.integers(0, 9), label="bogus field?") == 0:
            chosen.append("bogus")
        holder = data.draw(sample(self._holders() * 3 + [ADMINS[0].id, PERSONS[3].id]), label="holder")
        assets = list(self.shadow.assets.values())
        same = [a.id for a in assets if a.status == "active" and a.holder == holder and a.schema == name]
        supersedes = data.draw(sample([b""] * 4 + same * 2 + [a.id for a in assets] + [absent_id("asset")]),
                               label="supersedes")
        reqs = list(self.shadow.asset_requests.values())
        answers = data.draw(sample([b""] * 6 + [r.id for r in reqs if r.status == "pending"]
                                   + [r.id for r in reqs] + [absent_id("areq")]), label="answers")
        body = IssueAsset(holder, name, tuple(sorted(set(chosen))), self._hash(b"root"), self._hash(b"payload"),
                          supersedes, answers)
        self._act(data, schema.issuers if schema is not None else [], body, "issuer")

    @precondition(lambda self: self._room()
                  and any(r.status == "pending" for r in self.shadow.asset_requests.values()))
    @rule(data=st.data())
    def answer_request(self, data: st.DataObject) -> None:
        r = data.draw(sample([r for r in self.shadow.asset_requests.values() if r.status == "pending"]),
                      label="request")
        schema = self.shadow.schemas.get(r.schema)
        fields = data.draw(st.lists(sample(schema.fields if schema else ("name",)), min_size=1, unique=True),
                           label="fields")
        same = [a.id for a in self.shadow.assets.values()
                if a.status == "active" and a.holder == r.holder and a.schema == r.schema]
        supersedes = r.asset_id if r.kind == "correction" else data.draw(sample([b"", b"", *same]),
                                                                          label="supersedes")
        body = IssueAsset(r.holder, r.schema, tuple(sorted(fields)), self._hash(b"root"), self._hash(b"payload"),
                          supersedes, r.id)
        self._act(data, [r.issuer], body, "issuer")

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def request_asset(self, data: st.DataObject) -> None:
        name = data.draw(sample([*sorted(self.shadow.schemas) * 3, "no.such"]), label="schema")
        schema = self.shadow.schemas.get(name)
        issuer = data.draw(sample([*(schema.issuers * 3 if schema else ()), ISSUER_HEALTH.id, ISSUER_TAX.id,
                                   NEW_ORGS[0].id, CONSUMERS[0].id]), label="issuer")
        note = data.draw(sample([b"", sha(b"note")]), label="note")
        self._act(data, self._holders(), RequestAsset(issuer, name, note), "holder")

    @precondition(lambda self: self._room() and self.shadow.assets)
    @rule(data=st.data())
    def request_correction(self, data: st.DataObject) -> None:
        aid = self._pick(data, self._active_assets(), list(self.shadow.assets), "asset", "asset")
        a = self.shadow.assets.get(aid)
        fields = data.draw(st.lists(sample(a.fields if a else ("name",)), min_size=1, unique=True), label="fields")
        if data.draw(st.integers(0, 4), label="a field it does not have?") == 0:
            fields.append("bogus")
        self._act(data, [a.holder] if a else [], RequestCorrection(aid, tuple(sorted(set(fields))), b""), "holder")

    @precondition(lambda self: self._room() and self.shadow.asset_requests)
    @rule(data=st.data())
    def refuse_request(self, data: st.DataObject) -> None:
        reqs = list(self.shadow.asset_requests.values())
        rid = self._pick(data, [r.id for r in reqs if r.status == "pending"], [r.id for r in reqs], "areq",
                         "request")
        r = self.shadow.asset_requests.get(rid)
        self._act(data, [r.issuer] if r else [], RefuseRequest(rid, "no such record"), "issuer")

    @precondition(lambda self: self._room() and self.shadow.assets)
    @rule(data=st.data())
    def revoke_or_erase_asset(self, data: st.DataObject) -> None:
        erase = data.draw(st.booleans(), label="erase?")
        aid = self._pick(data, self._active_assets(), list(self.shadow.assets), "asset", "asset")
        a = self.shadow.assets.get(aid)
        if erase:
            self._act(data, [a.holder] if a else [], EraseAsset(aid), "holder")
        else:
            self._act(data, [a.issuer] if a else [], RevokeAsset(aid, "issued in error"), "issuer")

    @precondition(lambda self: self._room() and self._live_grants())
    @rule(data=st.data())
    def access_after_asset_change(self, data: st.DataObject) -> None:
        """An asset under a live grant is revoked, erased or superseded; then the grantee pulls it."""
        pick = data.draw(st.integers(0, 2), label="variant")
        change = self._cycle("change", ["revoke", "erase", "supersede"], pick)
        sh = self.shadow
        def active(account: bytes) -> bool:
            return sh.accounts[account].status == "active"

        # Active assets of active issuers under lasting grants to active grantees first.
        pairs = sorted(((sh.grants[gid], aid) for gid in self._live_grants() for aid in sh.grants[gid].assets),
                       key=lambda p: (sh.assets[p[1]].status != "active", not active(sh.assets[p[1]].issuer),
                                      not active(p[0].grantee), -p[0].not_after_ms))
        g, aid = data.draw(sample(pairs[:4]), label="grant and asset")
        a = sh.assets[aid]
        if change == "revoke":
            self._submit(self._key(a.issuer), RevokeAsset(a.id, "withdrawn"), a.issuer)
        elif change == "erase":
            self._submit(self._key(a.holder), EraseAsset(a.id), a.holder)
        else:
            body = IssueAsset(a.holder, a.schema, a.fields, self._hash(b"root"), self._hash(b"payload"), a.id, b"")
            self._submit(self._key(a.issuer), body, a.issuer)
        self._submit(self._key(g.grantee), RecordAccess(g.id, a.id), g.grantee)

    # ---- consent -------------------------------------------------------------------------------------

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def consent_request(self, data: st.DataObject) -> None:
        holder = data.draw(sample(self._holders() * 3 + [ADMINS[0].id, STRANGER.id]), label="holder")
        schemas = data.draw(st.lists(sample([HEALTH, TAX]), unique=True), label="schemas")
        fields = data.draw(st.lists(sample(["diagnosis", "income", "name"]), min_size=0 if schemas else 1,
                                    unique=True), label="fields")
        body = RequestConsent(holder, tuple(sorted(schemas)), tuple(sorted(fields)), "loan",
                              data.draw(st.integers(1, 20_000), label="duration"),
                              data.draw(st.integers(1, 3), label="max uses"))
        self._act(data, self._members_with("consumer"), body, "consumer")

    def _grant(self, data: st.DataObject, holder: bytes, grantee: bytes, request_id: bytes) -> None:
        mine = self._active_assets(holder)
        assets = data.draw(st.lists(sample(mine), min_size=1, max_size=2, unique=True), label="assets")
        covered = sorted({f for aid in assets for f in self.shadow.assets[aid].fields})
        fields = data.draw(st.lists(sample(covered), min_size=1, max_size=2, unique=True), label="fields")
        not_after = self.model.time_ms + data.draw(st.integers(1, 60_000), label="lifetime")
        if data.draw(st.integers(0, 24), label="ten years and more?") == 0:
            not_after = self.model.time_ms + MAX_DURATION_MS + 30_001  # past the limit whatever the block time
        body = GrantConsent(grantee, tuple(sorted(assets)), tuple(sorted(fields)), "loan", not_after,
                            data.draw(sample([1, 1, 2, 3, 5]), label="max uses"), self._hash(b"pkg"), request_id)
        self._submit(self._signer(data, holder), body, holder)

    @precondition(lambda self: self._room() and self._active_assets())
    @rule(data=st.data())
    def grant(self, data: st.DataObject) -> None:
        holders = sorted({self.shadow.assets[a].holder for a in self._active_assets()})
        holder = data.draw(sample(holders), label="holder")
        consumers = [c for c in self._members_with("consumer") if self.shadow.accounts[c].status == "active"]
        grantee = data.draw(sample(consumers * 4 + [AUDITOR.id, PERSONS[1].id, CONSUMERS[2].id]),
                            label="grantee")
        theirs = [r for r in self.shadow.consent_requests.values() if r.holder == holder and r.consumer == grantee]
        asked = [r.id for r in theirs if r.status == "requested"]
        answered = [r.id for r in theirs if r.status != "requested"]
        self._grant(data, holder, grantee, data.draw(sample([b"", b"", *asked, *asked, *answered]),
                                                     label="request"))

    @precondition(lambda self: self._room() and any(
        self._active_assets(r.holder) for r in self.shadow.consent_requests.values()))
    @rule(data=st.data())
    def grant_for_request(self, data: st.DataObject) -> None:
        """Answer a consent request with a grant (mostly one still open; sometimes one answered already)."""
        usable = [r for r in self.shadow.consent_requests.values() if self._active_assets(r.holder)]
        open_ = [r for r in usable if r.status == "requested"]
        r = data.draw(sample(open_ * 3 + usable), label="request")
        self._grant(data, r.holder, r.consumer, r.id)

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def wrong_role(self, data: st.DataObject) -> None:
        """An account of the wrong kind or role tries a transaction: refused with the named code."""
        pick = data.draw(st.integers(0, len(ROLE_OF) - 1), label="variant")
        tx_type = self._cycle("wrong role", sorted(ROLE_OF), pick)
        role, code = ROLE_OF[tx_type]
        accounts = list(self.shadow.accounts.values())
        if role == "holder":
            wrong = [a.id for a in accounts if not a.is_holder]
        elif role == "member":
            wrong = [a.id for a in accounts if a.is_holder]
        elif role == "enterprise":
            wrong = [a.id for a in accounts if a.kind != "enterprise"]
        else:
            wrong = [a.id for a in accounts if a.is_holder or role not in a.roles]
        sender = data.draw(sample(wrong), label="sender")
        any_asset = next(iter(self.shadow.assets), absent_id("asset"))
        any_grant = next(iter(self.shadow.grants), absent_id("grant"))
        p0 = PERSONS[0]
        body: Struct = {
            "gov.propose": lambda: wrap_proposal(SetThreshold(1)),
            "gov.approve": lambda: Approve(next(iter(self.shadow.proposals), absent_id("prop"))),
            "holder.register": lambda: RegisterHolder("person", subject(PERSONS[3]), PERSONS[3].pk,
                                                      PERSONS[3].enc_pk),
            "holder.add_delegate": lambda: Delegate(DELEGATES[2].pk),
            "asset.issue": lambda: IssueAsset(p0.id, HEALTH, ("name",), self._hash(b"root"),
                                              self._hash(b"payload"), b"", b""),
            "asset.refuse": lambda: RefuseRequest(absent_id("areq"), "no"),
            "asset.revoke": lambda: RevokeAsset(any_asset, "no"),
            "asset.request": lambda: RequestAsset(ISSUER_HEALTH.id, HEALTH, b""),
            "asset.request_correction": lambda: RequestCorrection(any_asset, ("name",), b""),
            "asset.erase": lambda: EraseAsset(any_asset),
            "consent.request": lambda: RequestConsent(p0.id, (HEALTH,), (), "loan", 1000, 1),
            "consent.grant": lambda: GrantConsent(CONSUMERS[0].id, (any_asset,), ("name",), "loan",
                                                  self.model.time_ms + 5000, 1, self._hash(b"pkg"), b""),
            "consent.reject": lambda: RejectConsent(absent_id("creq"), ""),
            "consent.revoke": lambda: RevokeConsent(any_grant),
            "access.record": lambda: RecordAccess(any_grant, any_asset),
            "evidence.submit": lambda: SubmitEvidence(self._double_sign(VALIDATORS[0], 1)),
        }[tx_type]()
        raw = self._tx(self._key(sender), body, sender, tx_type=tx_type).encode()
        self._add(raw, code, Code.ACCOUNT_SUSPENDED)

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def grant_anything(self, data: st.DataObject) -> None:
        grantee = data.draw(sample([*ACTORS, *self._members_with("consumer")]), label="grantee")
        assets = data.draw(st.lists(sample([*self.shadow.assets, absent_id("asset")]), min_size=1, max_size=2,
                                    unique=True), label="assets")
        fields = data.draw(st.lists(sample(ALL_FIELDS), min_size=1, max_size=2, unique=True), label="fields")
        lifetime = st.one_of(st.integers(-1_000, 3_000), sample([MAX_DURATION_MS, MAX_DURATION_MS + 1]))
        not_after = self.model.time_ms + data.draw(lifetime, label="lifetime")
        reqs = list(self.shadow.consent_requests)
        request_id = data.draw(sample([b"", b"", *reqs, absent_id("creq")]), label="request")
        body = GrantConsent(grantee, tuple(sorted(assets)), tuple(sorted(fields)), "anything",
                            max(not_after, 0), data.draw(st.integers(1, 2), label="max uses"), self._hash(b"pkg"),
                            request_id)
        self._act(data, self._holders(), body, "holder")

    @precondition(lambda self: self._room() and self.shadow.consent_requests)
    @rule(data=st.data())
    def reject_request(self, data: st.DataObject) -> None:
        reqs = list(self.shadow.consent_requests.values())
        rid = self._pick(data, [r.id for r in reqs if r.status == "requested"], [r.id for r in reqs], "creq",
                         "request")
        r = self.shadow.consent_requests.get(rid)
        reason = data.draw(sample(["", "not now"]), label="reason")
        self._act(data, [r.holder] if r else [], RejectConsent(rid, reason), "holder")

    @precondition(lambda self: self._room() and self.shadow.grants)
    @rule(data=st.data())
    def revoke_grant(self, data: st.DataObject) -> None:
        gid = self._pick(data, self._live_grants(), list(self.shadow.grants), "grant", "grant")
        g = self.shadow.grants.get(gid)
        self._act(data, [g.holder] if g else [], RevokeConsent(gid), "holder")

    # ---- access --------------------------------------------------------------------------------------

    @precondition(lambda self: self._room() and self._live_grants())
    @rule(data=st.data())
    def access(self, data: st.DataObject) -> None:
        """The grantee pulls an asset of a live grant (stray == 0: an asset the grant does not cover)."""
        stray = data.draw(st.integers(0, 3), label="stray (0: an asset not covered)")
        g = self.shadow.grants[data.draw(sample(self._live_grants()), label="grant")]
        others = [a for a in self.shadow.assets if a not in g.assets]
        aid = data.draw(sample(others if stray == 0 and others else g.assets), label="asset")
        self._submit(self._key(g.grantee), RecordAccess(g.id, aid), g.grantee)

    @precondition(lambda self: any(g.status == "granted" and g.not_after_ms > self.model.time_ms
                                   for g in self.shadow.grants.values()))
    @rule(data=st.data())
    def access_at_not_after(self, data: st.DataObject) -> None:
        """The grantee pulls in a block whose time is exactly the grant's not_after (authorized), or one
        millisecond later (the grant expired at the start of that block)."""
        late = data.draw(st.booleans(), label="one ms late?")
        live = [g for g in self.shadow.grants.values()
                if g.status == "granted" and g.not_after_ms > self.model.time_ms]
        g = data.draw(sample(live), label="grant")
        self._submit(self._key(g.grantee), RecordAccess(g.id, g.assets[0]), g.grantee)
        self._produce(g.not_after_ms + late - self.model.time_ms)

    @precondition(lambda self: self._room() and self.shadow.grants)
    @rule(data=st.data())
    def access_anything(self, data: st.DataObject) -> None:
        gid = self._pick(data, list(self.shadow.grants), [], "grant", "grant")
        g = self.shadow.grants.get(gid)
        aid = data.draw(sample([*(g.assets if g else ()), *self.shadow.assets]), label="asset")
        self._act(data, self._members_with("consumer"), RecordAccess(gid, aid), "consumer")

    @precondition(lambda self: self._room() and self._live_grants())
    @rule(data=st.data())
    def access_race_with_revoke(self, data: st.DataObject) -> None:
        """A revoke and an access of the same grant in one block, in either order."""
        revoke_first = data.draw(st.booleans(), label="revoke first?")
        g = self.shadow.grants[data.draw(sample(self._live_grants()), label="grant")]
        aid = data.draw(sample(g.assets), label="asset")
        pull = self._tx(self._key(g.grantee), RecordAccess(g.id, aid), g.grantee)
        if revoke_first:
            self._submit(self._key(g.holder), RevokeConsent(g.id), g.holder)
            self._add(pull.encode())
        else:
            self._add(pull.encode())
            self._submit(self._key(g.holder), RevokeConsent(g.id), g.holder)

    @precondition(lambda self: self._room() and self._live_grants())
    @rule(data=st.data())
    def access_until_used_up(self, data: st.DataObject) -> None:
        """The grantee pulls once more than the grant has uses left, all in one block (grants with the
        fewest uses left first): the last pull finds the grant used up."""
        grants = self.shadow.grants
        live = sorted(self._live_grants(), key=lambda gid: grants[gid].max_uses - grants[gid].uses)
        g = grants[data.draw(sample(live[:3]), label="grant")]
        for _ in range(min(g.max_uses - g.uses, 3) + 1):
            self._submit(self._key(g.grantee), RecordAccess(g.id, g.assets[0]), g.grantee)

    # ---- evidence of double signing -------------------------------------------------------------------

    def _double_sign(self, signer: Identity, height: int, chain: str = CHAIN) -> Evidence:
        """Two precommits of `signer` for different blocks at one height and round."""
        votes = [Vote.create(signer.signer, chain, PRECOMMIT, height, 0, self._hash(b"block"), self.model.time_ms)
                 for _ in range(2)]
        return Evidence.of(*votes)

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def submit_evidence(self, data: st.DataObject) -> None:
        """A member reports a validator's double signing (valid, again, from a non-validator, for a future
        height, or signed for another chain), at a height within the age bound."""
        pick = data.draw(st.integers(0, 5), label="variant")
        variant = self._cycle("evidence", ["valid", "valid", "again", "not a validator", "future", "other chain"],
                              pick)
        val = data.draw(sample(VALIDATORS), label="validator")  # in the set of that height or not
        top = self.model.height + 1  # the height of the block that will execute it
        height = data.draw(st.integers(max(1, top - EVIDENCE_AGE), top), label="height")
        if variant == "again" and self.shadow.evidence:
            ev = data.draw(sample([e for e, _, _ in self.shadow.evidence.values()]), label="evidence")
        elif variant == "not a validator":
            ev = self._double_sign(STRANGER, height)
        elif variant == "future":
            ev = self._double_sign(val, top + 1)
        else:
            ev = self._double_sign(val, height, "mydata-other" if variant == "other chain" else CHAIN)
        self._report(data, ev)

    def _report(self, data: st.DataObject, ev: Evidence, expect: frozenset[str] = frozenset(),
                situation: tuple[str, str] | None = None) -> None:
        """Mostly an active member submits `ev`; `expect`: the codes the test insists on; `situation`: what
        the result shows when its code is the one named."""
        if situation is not None:
            self.situations[len(self.pending)] = situation
        if expect:
            self.expect[len(self.pending)] = expect
        members = [a.id for a in self.shadow.accounts.values() if a.kind == "member" and a.status == "active"]
        self._act(data, members, SubmitEvidence(ev), "reporter")

    def _validator_heights(self, then: bool, now: bool) -> list[tuple[Identity, int]]:
        """(validator, height) within the evidence age bound of the next block, such that the validator was
        (`then`) or was not in the set of that height, and is (`now`) or is not in the next block's."""
        top = self.model.height + 1
        current = self.model.validators_of(top)
        return [(v, h) for h in range(max(1, top - EVIDENCE_AGE), top + 1) for v in VALIDATORS
                if (v.pk in self.model.validators_of(h)) == then and (v.pk in current) == now]

    @precondition(lambda self: self._room() and (self.model.height >= EVIDENCE_AGE
                                                 or self._validator_heights(then=True, now=False)
                                                 or self._validator_heights(then=False, now=True)))
    @rule(data=st.data())
    def submit_evidence_across_heights(self, data: st.DataObject) -> None:
        """Evidence against a validator removed since (accepted: it signed that height; and then again:
        a duplicate), against a key of today's set for a height before it joined (refused: no validator
        then), exactly as old as the bound allows (accepted) or one height older (refused)."""
        removed = self._validator_heights(then=True, now=False)
        joined = self._validator_heights(then=False, now=True)
        variants = [*(["removed since"] if removed else []), *(["before it joined"] if joined else []),
                    *(["age bound"] if self.model.height >= EVIDENCE_AGE else [])]
        variant = self._cycle("evidence across heights", variants,
                              data.draw(st.integers(0, len(variants) - 1), label="variant"))
        if variant == "removed since":
            val, height = data.draw(sample(removed), label="removed validator")
            ev = self._double_sign(val, height)
            self._report(data, ev, REFUSED_SENDER | {Code.OK},
                         ("evidence against a validator removed since", Code.OK))
            self._report(data, ev, REFUSED_SENDER | {Code.OK, Code.DUPLICATE_EVIDENCE},
                         ("evidence against a validator removed since, again", Code.DUPLICATE_EVIDENCE))
        elif variant == "before it joined":
            val, height = data.draw(sample(joined), label="validator that joined later")
            self._report(data, self._double_sign(val, height), REFUSED_SENDER | {Code.INVALID_EVIDENCE},
                         ("evidence against a current validator from before it joined", Code.INVALID_EVIDENCE))
        else:
            too_old = self.model.height > EVIDENCE_AGE and data.draw(st.booleans(), label="too old?")
            height = self.model.height + 1 - EVIDENCE_AGE - (1 if too_old else 0)
            pk = data.draw(sample(sorted(self.model.validators_of(height))), label="validator then")
            if too_old:
                self._report(data, self._double_sign(BY_PK[pk], height), REFUSED_SENDER | {Code.INVALID_EVIDENCE},
                             ("evidence older than the age bound", Code.INVALID_EVIDENCE))
            else:
                self._report(data, self._double_sign(BY_PK[pk], height), REFUSED_SENDER | {Code.OK},
                             ("evidence exactly at the age bound", Code.OK))

    # ---- replays and envelope failures ----------------------------------------------------------------

    @precondition(lambda self: self._room() and self.committed)
    @rule(data=st.data())
    def replay_committed(self, data: st.DataObject) -> None:
        """Re-submit a committed transaction: once its nonce is used it can never run again."""
        consumed = [raw for raw, code in self.committed if code not in ENVELOPE_CODES]
        raw = data.draw(sample(consumed), label="replayed tx")
        # A key rotated (or a delegate removed) since is refused even before the nonce is looked at.
        self._add(raw, Code.BAD_NONCE, Code.KEY_NOT_AUTHORIZED)

    @precondition(lambda self: self._room())
    @rule(data=st.data())
    def envelope_fault(self, data: st.DataObject) -> None:
        """A transaction that is not a valid act of a known account (or, for the last two, not a valid
        transaction once the nonce is consumed)."""
        pick = data.draw(st.integers(0, 7), label="variant")
        fault = self._cycle("fault", ["bad_signature", "wrong_chain", "unknown_sender", "key_not_authorized",
                                      "bad_nonce", "malformed_tx", "unknown_tx_type", "malformed_body"], pick)
        sender = data.draw(sample([*self._holders(), *(m for m in self._members_with("consumer"))]),
                           label="sender")
        key = self._key(sender)
        body = RevokeConsent(absent_id("grant"))
        if fault == "bad_signature":
            tx = self._tx(key, body, sender)
            raw = replace(tx, signature=bytes([tx.signature[0] ^ 1]) + tx.signature[1:]).encode()
            self._add(raw, Code.BAD_SIGNATURE)
        elif fault == "wrong_chain":
            self._add(self._tx(key, body, sender, chain="mydata-other").encode(), Code.WRONG_CHAIN)
        elif fault == "unknown_sender":
            self._add(self._tx(STRANGER, body).encode(), Code.UNKNOWN_SENDER)
        elif fault == "key_not_authorized":
            acct = self.shadow.accounts[sender]
            wrong = [i for i in EVERYONE if i.pk != acct.sign_pk and i.pk not in acct.delegates]
            signer = data.draw(sample([BY_ID[sender], STRANGER, *DELEGATES, *wrong[:3]]), label="wrong key")
            allowed = signer.pk == acct.sign_pk or signer.pk in acct.delegates
            self._add(self._tx(signer, body, sender).encode(), *(() if allowed else (Code.KEY_NOT_AUTHORIZED,)))
        elif fault == "bad_nonce":
            delta = data.draw(sample([1, 2, -1]), label="nonce offset")
            n = self._nonce(sender) + delta
            if n >= 0:
                self._add(self._tx(key, body, sender, nonce=n).encode(), Code.BAD_NONCE)
        elif fault == "malformed_tx":
            good = self._tx(key, body, sender).encode()
            raw = data.draw(sample([good[:-1], good + b"\x00", b"\x93\x01\x02\x03", b"", b"\xc1"]), label="bytes")
            self._add(raw, Code.MALFORMED_TX)
        elif fault == "unknown_tx_type":  # (a suspended sender is refused first)
            tx = Tx.create(key.signer, CHAIN, sender, self._nonce(sender), "vault.delete", b"\x90")
            self._add(tx.encode(), Code.UNKNOWN_TX_TYPE, Code.ACCOUNT_SUSPENDED)
        else:
            bad = data.draw(sample([b"\xc1", encode_value([sender, [], [], "x", 0, 0]), body.encode() + b"\x00"]),
                            label="body")
            tx = Tx.create(key.signer, CHAIN, sender, self._nonce(sender), "consent.request", bad)
            self._add(tx.encode(), Code.MALFORMED_BODY, Code.ACCOUNT_SUSPENDED)

    # ---- blocks --------------------------------------------------------------------------------------

    @rule(data=st.data())
    def produce_block(self, data: st.DataObject) -> None:
        mode = data.draw(sample(["short", "short", "boundary", "boundary", "long"]), label="time step")
        advance = 0
        if mode == "boundary":
            live = {g.id: g.not_after_ms for g in self.shadow.grants.values() if g.status == "granted"}
            touched = [live[gid] for gid in self._pending_grants() if gid in live]
            ends = sorted(set(touched or live.values()))
            if ends:
                target = data.draw(sample(ends), label="not_after") + data.draw(sample([-1, 0, 1]), label="offset")
                advance = target - self.model.time_ms
        if advance < 1:
            advance = data.draw(st.integers(1, 3_000) if mode != "long" else st.integers(3_000, 30_000),
                                label="advance")
        self.cap = data.draw(st.integers(1, 4), label="next block size")
        self._produce(advance)

    def _produce(self, advance: int, all_ok: bool = False) -> None:
        raws, expect, situations = self.pending, self.expect, self.situations
        self.pending, self.expect, self.situations = [], {}, {}
        self.healthy = False
        m = self.model
        height, time_ms = m.height + 1, m.time_ms + advance
        before = {gid: (g.status, g.uses, g.not_after_ms) for gid, g in m.grants.items()}
        had_pending_validators = height + 1 in m.pending_validators
        prev_hash = self.chain.ledger.last.app_hash

        outcome = m.run_block(height, time_ms, raws)
        ex = self.chain.produce(raws, advance_ms=advance)
        assert ex.height == height and ex.time_ms == time_ms

        self._check_results(ex, outcome, raws, expect, all_ok)
        for i, (situation, code) in situations.items():
            if ex.result(i).code == code:
                COVERAGE["situation", situation] += 1
        state = self.chain.ledger.state()
        assert state.validators_at(height) == ex.validators, "the history's set of this height differs"
        assert state.validators_at(height + 1) == ex.next_validators, "the history's next set differs"
        self._check_accesses(outcome, before, time_ms)
        self._check_expiry(before, time_ms)
        assert ex.validators == outcome.validators, "the validators of this block differ from the model"
        assert ex.next_validators == outcome.next_validators, "the next validator set differs from the model"
        self._check_state()
        self._check_proofs(ex.app_hash, raws, height)
        if all(r.code in ENVELOPE_CODES for r in outcome.results) and not outcome.expired \
                and not had_pending_validators:
            assert ex.app_hash == prev_hash, "a block of envelope failures only changed the state"
            if raws:
                COVERAGE["situation", "block of envelope failures keeps the app hash"] += 1

        for p in m.proposals.values():
            if p.status == "executed" and p.executed_height == height:
                COVERAGE["executed", p.action] += 1
                if p.action == "validator.set" and p.decoded.power > 0:  # GOV-7 let it: a member's key
                    COVERAGE["situation", "validator.set gives power to a member's key"] += 1
        self.app_hashes.append(ex.app_hash)
        self.results.append(list(ex.results))
        self.committed.extend(zip(raws, ex.codes(), strict=True))
        self.shadow = self._new_shadow()
        self.healthy = True

    # ---- checks ----------------------------------------------------------------------------------------

    def _pending_grants(self) -> list[bytes]:
        """The grants that pending accesses and revocations name."""
        return self._pending_grants_of(self.pending)

    @staticmethod
    def _pending_grants_of(raws: list[bytes]) -> list[bytes]:
        out = []
        for raw in raws:
            try:
                tx = Tx.decode(raw)
                if tx.type in ("access.record", "consent.revoke"):
                    out.append(TX_BODIES[tx.type].decode(tx.body).grant_id)
            except (DecodeError, ValidationError):
                continue
        return out

    def _check_results(self, ex: BlockExecution, outcome: BlockOutcome, raws: list[bytes],
                       expect: dict[int, frozenset[str]], all_ok: bool) -> None:
        got = [TxResult.decode(r) for r in ex.results]
        want = outcome.results
        listing = "\n".join(f"  #{i} {w.type or '?':26} model={w.code:24} ledger={g.code}"
                            for i, (w, g) in enumerate(zip(want, got, strict=True)))
        assert [g.code for g in got] == [w.code for w in want], f"result codes differ:\n{listing}"
        assert [g.object_id for g in got] == [w.object_id for w in want], f"object ids differ:\n{listing}"
        for i, codes in expect.items():
            assert got[i].code in codes, f"tx #{i} should give one of {sorted(codes)}:\n{listing}"
        if all_ok:
            assert all(g.code == Code.OK for g in got), f"setup failed:\n{listing}"
        for w in want:
            COVERAGE[w.type or "?", w.code] += 1
            COVERAGE["any", w.code] += 1
        # Wrong kind of account: the named code, whatever else is wrong with the transaction.
        for raw, w in zip(raws, want, strict=True):
            if w.code in PRE_HANDLER_CODES or not w.type:
                continue
            sender = self.model.accounts[Tx.decode(raw).sender]
            if sender.is_holder and w.type in MEMBER_ONLY:
                assert w.code == MEMBER_ONLY[w.type], f"a holder's {w.type} gave {w.code}"
            if not sender.is_holder and w.type in HOLDER_ONLY:
                assert w.code == Code.NOT_HOLDER, f"a member's {w.type} gave {w.code}"

    def _check_accesses(self, outcome: BlockOutcome, before: dict[bytes, tuple[str, int, int]],
                        time_ms: int) -> None:
        """An access succeeds iff an active grant authorizes it; each success consumes exactly one use."""
        ok_per_grant: Counter[bytes] = Counter()
        for r in outcome.results:
            if r.authorized is None:
                continue
            assert (r.code == Code.OK) == r.authorized, f"access gave {r.code}, authorized={r.authorized}"
            if r.code == Code.OK:
                x = self.model.accesses[r.object_id]
                ok_per_grant[x.grant] += 1
                if self.model.grants[x.grant].not_after_ms == time_ms:
                    COVERAGE["situation", "access at exactly not_after"] += 1
        state = self.chain.ledger.state()
        for gid, n in ok_per_grant.items():
            g = state.get(Grant, b"grant/", gid)
            assert g is not None
            start = before[gid][1] if gid in before else 0
            assert g.uses == start + n, f"grant used {g.uses - start} times for {n} successful accesses"
            assert g.uses <= g.max_uses
            if g.uses == g.max_uses:
                assert g.status == "used_up"
                COVERAGE["situation", "grant used up"] += 1

    def _check_expiry(self, before: dict[bytes, tuple[str, int, int]], time_ms: int) -> None:
        """Both sides of not_after: a live grant whose not_after is before the block time is expired at
        the block's start; one whose not_after equals the block time is not."""
        state = self.chain.ledger.state()
        for gid, (status, _, not_after) in before.items():
            if status != "granted":
                continue
            g = state.get(Grant, b"grant/", gid)
            assert g is not None
            if time_ms > not_after:
                assert g.status == "expired", f"grant past its not_after is {g.status}"
                if time_ms == not_after + 1:
                    COVERAGE["situation", "expired at not_after + 1"] += 1
            else:
                assert g.status != "expired", "grant expired before its not_after"
                if time_ms == not_after:
                    COVERAGE["situation", "still live at exactly not_after"] += 1

    def _check_state(self) -> None:
        store = self.chain.ledger.store
        actual = {k[2:]: v for k, v in store.iterate(b"s/")}
        expected = self.model.expected_state()
        if actual != expected:
            lines = []
            for k in sorted(set(actual) | set(expected)):
                if actual.get(k) != expected.get(k):
                    lines.append(f"  {k[:12]!r}...\n    ledger: {describe(k, actual.get(k))}\n"
                                 f"    model:  {describe(k, expected.get(k))}")
            raise AssertionError("state differs from the model:\n" + "\n".join(lines[:8]))
        indexes = {k for k, _ in store.iterate(b"i/")}
        assert indexes == self.model.expected_indexes(), (
            f"index keys differ: extra {len(indexes - self.model.expected_indexes())}, "
            f"missing {len(self.model.expected_indexes() - indexes)}")

    def _check_proofs(self, app_hash: bytes, raws: list[bytes], height: int) -> None:
        """Proofs for what this block's transactions created (or would have, had they succeeded), for
        the grants and accounts they touched, and for ids that never existed."""
        ledger = self.chain.ledger
        keys: list[bytes] = [b"grant/" + absent_id(f"proof{height}"), b"asset/" + absent_id("asset")]
        for raw in raws:
            try:
                tx = Tx.decode(raw)
            except (DecodeError, ValidationError):
                continue
            keys.append(b"acct/" + tx.sender)
            if tx.type in CREATES:
                kind = CREATES[tx.type]
                keys.append(kind + object_id(kind, sha(raw)))
            if tx.type == "evidence.submit":
                with contextlib.suppress(DecodeError, ValidationError):
                    keys.append(b"evidence/" + SubmitEvidence.decode(tx.body).evidence.hash)
        keys.extend(b"grant/" + gid for gid in self._pending_grants_of(raws))
        assert ledger.tree.root == app_hash
        for key in keys:
            value = ledger.store.get(b"s/" + key)
            proof = ledger.tree.prove(key)
            assert verify_state_proof(app_hash, key, value, proof), f"proof of {key[:10]!r} fails"
            if value is None:
                COVERAGE["situation", "non-membership proof"] += 1
                assert not verify_state_proof(app_hash, key, b"x", proof)
            else:
                COVERAGE["situation", "membership proof"] += 1
                assert not verify_state_proof(app_hash, key, value + b"x", proof)
                assert not verify_state_proof(app_hash, key, None, proof)

    # ---- replay --------------------------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.healthy or not self.chain.blocks:
            return
        state = self.chain.ledger.state()
        for block in self.chain.blocks:  # the history gives, for every height, the set its header names
            vs = state.validators_at(block.header.height)
            assert vs is not None and vs.hash == block.header.validators_hash, "history and headers differ"
        original = list(self.chain.ledger.store.iterate())
        mem = Ledger(MemoryKV())
        self._replay(mem)
        assert list(mem.store.iterate()) == original, "replay on MemoryKV stored different bytes"
        with tempfile.TemporaryDirectory(prefix="mydata-lifecycle-") as d:
            db = LevelDBKV(d)
            try:
                self._replay(Ledger(db))
                assert list(db.iterate()) == original, "replay on LevelDB stored different bytes"
            finally:
                db.close()
            reopened = LevelDBKV(d)
            try:
                again = Ledger(reopened)
                assert again.last.app_hash == self.app_hashes[-1]
                assert again.last.height == len(self.app_hashes)
            finally:
                reopened.close()
        COVERAGE["situation", "replayed on MemoryKV and LevelDB"] += 1

    def _replay(self, ledger: Ledger) -> None:
        ledger.init_chain(GENESIS)
        for block, app_hash, results in zip(self.chain.blocks, self.app_hashes, self.results, strict=True):
            ex = apply_block(ledger, block)
            assert ex.app_hash == app_hash == block.header.app_hash
            assert list(ex.results) == results


SETTINGS = settings(
    max_examples=200,
    stateful_step_count=50,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

#: What every run must have exercised, or the machine has degenerated (the run is derandomized, so the
#: outcome is stable for a given version of this file).
REQUIRED = {
    *((t, Code.OK) for t in TX_BODIES),
    *(("any", c) for c in [Code.BAD_NONCE, Code.UNKNOWN_SENDER, Code.ACCOUNT_SUSPENDED, Code.NOT_HOLDER,
                           Code.NOT_ADMIN, Code.MALFORMED_BODY]),
    *(("access.record", c) for c in [Code.GRANT_REVOKED, Code.GRANT_EXPIRED, Code.GRANT_USED_UP,
                                     Code.NOT_GRANTEE]),
    ("consent.grant", Code.NOT_AFTER_IN_PAST), ("consent.grant", Code.GRANTEE_NOT_CONSUMER),
    ("consent.revoke", Code.GRANT_NOT_ACTIVE),
    *(("situation", s) for s in ["access at exactly not_after", "still live at exactly not_after",
                                 "expired at not_after + 1", "grant used up", "membership proof",
                                 "non-membership proof", "block of envelope failures keeps the app hash",
                                 "replayed on MemoryKV and LevelDB", "evidence against a validator removed since",
                                 "evidence against a current validator from before it joined",
                                 "evidence exactly at the age bound", "evidence older than the age bound",
                                 "validator.set refused: no member's key",
                                 "validator.set refused: a suspended member's key",
                                 "validator.set gives power to a member's key",
                                 "a suspended member's validator removed"]),
    ("gov.approve", Code.VALIDATOR_NOT_MEMBER),
}

#: What a run should reach too; a miss is reported as a warning (each is also an example test in
#: tests/test_contracts.py).
WANTED = {
    *(("executed", a) for a in ["member.register", "member.update", "schema.register", "validator.set",
                                "admin.threshold"]),
    *(("any", c) for c in [*ENVELOPE_CODES, Code.UNKNOWN_TX_TYPE, Code.NOT_REGISTRAR, Code.NOT_ISSUER,
                           Code.NOT_CONSUMER, Code.NOT_ENTERPRISE, Code.DELEGATE_NOT_ALLOWED, Code.KEY_IN_USE]),
    *(("access.record", c) for c in [Code.ASSET_NOT_COVERED, Code.ASSET_REVOKED, Code.ASSET_ERASED,
                                     Code.ASSET_SUPERSEDED, Code.UNKNOWN_GRANT]),
    ("consent.grant", Code.REQUEST_NOT_PENDING), ("gov.approve", Code.ALREADY_APPROVED),
    ("gov.approve", Code.PROPOSAL_CLOSED), ("consent.grant", Code.NOT_AFTER_TOO_FAR),
    *(("evidence.submit", c) for c in [Code.INVALID_EVIDENCE, Code.DUPLICATE_EVIDENCE, Code.NOT_MEMBER]),
    ("situation", "evidence against a validator removed since, again"),
}


def test_lifecycle_against_reference_model(monkeypatch: pytest.MonkeyPatch) -> None:
    COVERAGE.clear()
    monkeypatch.setattr(evidence, "MAX_EVIDENCE_AGE", EVIDENCE_AGE)
    run_state_machine_as_test(LedgerLifecycle, settings=SETTINGS)
    missing = sorted(REQUIRED - set(COVERAGE))
    assert not missing, f"the run never reached: {missing}"
    rare = sorted(WANTED - set(COVERAGE))
    if rare:
        warnings.warn(f"the stateful run never reached {rare}", stacklevel=1)
