"""Example tests, named after the contract rules they check (GOV, HLD, AST, CON, ACC, EVD, AUD and EXE in the
docstrings of contracts/*.py and in docs/contracts.md), each asserting the exact result code and the exact
change of state, or that nothing but the sender's nonce changed (EXE-3), or nothing at all (EXE-2).

Every test runs its own in-process chain (wallet.devchain.DevChain) with real keys and real blocks. Tests
marked xfail(strict=True) state contract bugs found while writing them: they pass once the bug is fixed (and
then fail as XPASS until the mark is removed).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from consensus.app import BlockContext
from consensus.crypto import account_id
from consensus.encoding import Struct, encode_value
from consensus.kv import MemoryKV
from consensus.merkle import merkle_root
from consensus.statetree import verify_state_proof
from consensus.tendermint import Evidence
from consensus.types import PRECOMMIT, ConsensusParams, Genesis, Tx, Validator, ValidatorSet, Vote
from contracts import audit, evidence
from contracts.codes import Code
from contracts.evidence import EvidenceRecord
from contracts.execute import BlockExecution, BlockRejected, Ledger, TxResult, apply_block
from contracts.records import (
    Access,
    Account,
    AdminProposal,
    Asset,
    AssetRequest,
    ConsentRequest,
    Grant,
    Kind,
    PendingValidators,
    Schema,
)
from contracts.txs import (
    MAX_DURATION_MS,
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
from wallet.devchain import DevChain, Identity, dev_genesis
from wallet.tx import created_id, make_tx, propose

CHAIN = "mydata-contracts"
R = TypeVar("R", bound=Struct)
DAY = 86_400_000


def _ident(name: str) -> Identity:
    return Identity.derive(name, b"contracts")


VALS = [_ident(f"val{i}") for i in range(5)]  # all five are members (GOV-7); val4 joins through validator.set
ADMIN_A, ADMIN_B, ADMIN_C = _ident("admin-a"), _ident("admin-b"), _ident("admin-c")
REGISTRAR = _ident("registrar")
ISS_H, ISS_T = _ident("issuer-health"), _ident("issuer-tax")
BANK, NOTARY = _ident("bank"), _ident("notary")
AUDITOR = _ident("auditor")
ALICE, BOB, ACME = _ident("alice"), _ident("bob"), _ident("acme")
DEL1, DEL2 = _ident("delegate1"), _ident("delegate2")
NEWKEY, ORG, STRANGER = _ident("alice-new-key"), _ident("new-org"), _ident("stranger")
MANY_DELEGATES = [_ident(f"delegate-extra{i}") for i in range(16)]

HEALTH, TAX = "health.record", "tax.return"
HEALTH_FIELDS = ("blood_type", "diagnosis", "name")
TAX_FIELDS = ("income", "name", "year")


def genesis(threshold: int = 2, delay: int = 2) -> Genesis:
    return dev_genesis(
        CHAIN, VALS[:4],
        [(ADMIN_A, ("admin",)), (ADMIN_B, ("admin",)), (ADMIN_C, ("admin",)), (REGISTRAR, ("registrar",)),
         (ISS_H, ("issuer",)), (ISS_T, ("issuer",)), (BANK, ("consumer",)), (NOTARY, ("consumer",)),
         (AUDITOR, ("auditor",)), *((v, ("validator",)) for v in VALS)],
        [(HEALTH, HEALTH_FIELDS, [ISS_H]), (TAX, TAX_FIELDS, [ISS_T])],
        admin_threshold=threshold,
        params=replace(ConsensusParams.default(), validator_update_delay=delay),
    )


def subject(i: Identity) -> bytes:
    return account_id(b"subject/" + i.name.encode())


class Net:
    """A DevChain plus the bookkeeping a test needs: nonces, one-transaction blocks, state snapshots."""

    def __init__(self, threshold: int = 2, delay: int = 2) -> None:
        self.genesis = genesis(threshold, delay)
        self.chain = DevChain(self.genesis, VALS)
        self._next: dict[bytes, int] = {}
        self.alice_health = self.alice_tax = self.bob_health = self.acme_health = b""

    @property
    def ledger(self) -> Ledger:
        return self.chain.ledger

    @property
    def now(self) -> int:
        return self.chain.time_ms

    def account(self, i: Identity | bytes) -> Account:
        a = self.ledger.state().account(i if isinstance(i, bytes) else i.id)
        assert a is not None
        return a

    def get(self, cls: type[R], kind: bytes, oid: bytes) -> R:
        """A record that must exist."""
        rec = self.ledger.state().get(cls, kind, oid)
        assert rec is not None, f"no {cls.__name__} {oid.hex()[:16]}"
        return rec

    def grant_rec(self, gid: bytes) -> Grant:
        g = self.ledger.state().get(Grant, Kind.GRANT, gid)
        assert g is not None
        return g

    def asset_rec(self, aid: bytes) -> Asset:
        a = self.ledger.state().get(Asset, Kind.ASSET, aid)
        assert a is not None
        return a

    def nonce(self, sid: bytes) -> int:
        a = self.ledger.state().account(sid)
        base = 0 if a is None else a.nonce
        return max(base, self._next.get(sid, base))

    def tx(self, who: Identity, body: Struct, *, sender: Identity | None = None, tx_type: str | None = None,
           nonce: int | None = None, chain: str = CHAIN) -> Tx:
        sid = (sender or who).id
        n = self.nonce(sid) if nonce is None else nonce
        if nonce is None:
            self._next[sid] = n + 1
        return make_tx(who.signer, chain, n, body, sender=sid, tx_type=tx_type)

    def block(self, *txs: Tx | bytes, advance: int = 1000) -> BlockExecution:
        self._next.clear()
        return self.chain.produce(list(txs), advance_ms=advance)

    def run(self, who: Identity, body: Struct, *, sender: Identity | None = None, tx_type: str | None = None,
            nonce: int | None = None, chain: str = CHAIN) -> TxResult:
        return self.block(self.tx(who, body, sender=sender, tx_type=tx_type, nonce=nonce, chain=chain)).result(0)

    def ok(self, who: Identity, body: Struct, *, sender: Identity | None = None, tx_type: str | None = None) -> bytes:
        r = self.run(who, body, sender=sender, tx_type=tx_type)
        assert r.code == Code.OK, r.code
        return r.object_id

    def dump(self) -> dict[bytes, bytes]:
        """The authenticated state and the indexes (not the tree nodes or the chain metadata)."""
        store = self.ledger.store
        return {**dict(store.iterate(b"s/")), **dict(store.iterate(b"i/"))}

    def refused(self, who: Identity, body: Struct, code: Code, *, sender: Identity | None = None,
                tx_type: str | None = None) -> None:
        """The transaction fails with `code` and changes nothing but its sender's nonce."""
        before = self.dump()
        r = self.run(who, body, sender=sender, tx_type=tx_type)
        assert r.code == code
        assert r.object_id == b""
        assert_only_nonce_changed(before, self.dump(), (sender or who).id)

    def govern(self, action: Struct, *approvers: Identity) -> TxResult:
        """ADMIN_A proposes; each approver approves in a block of its own. The last result is returned."""
        r = self.run(ADMIN_A, propose(action))
        pid = r.object_id
        for a in approvers:
            r = self.run(a, Approve(pid))
        return r

    # -- the usual cast --------------------------------------------------------------------------------

    def register(self, i: Identity, kind: str = "person") -> bytes:
        return self.ok(REGISTRAR, RegisterHolder(kind, subject(i), i.pk, i.enc_pk))

    def issue(self, issuer: Identity, holder: Identity, schema: str, fields: tuple[str, ...], *,
              supersedes: bytes = b"", answers: bytes = b"") -> TxResult:
        return self.run(issuer, IssueAsset(holder.id, schema, fields, account_id(b"root" + fields[0].encode()),
                                           account_id(b"payload"), supersedes, answers))

    def grant_body(self, grantee: Identity, assets: tuple[bytes, ...], fields: tuple[str, ...] = ("name",), *,
                   not_after: int | None = None, max_uses: int = 5, request_id: bytes = b"") -> GrantConsent:
        na = self.now + DAY if not_after is None else not_after
        return GrantConsent(grantee.id, tuple(sorted(assets)), fields, "loan", na, max_uses,
                            account_id(b"package"), request_id)


def assert_only_nonce_changed(before: dict[bytes, bytes], after: dict[bytes, bytes], sender: bytes) -> None:
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    key = b"s/" + Kind.ACCOUNT + sender
    assert changed == {key}, f"changed: {sorted(k[:16] for k in changed)}"
    old, new = Account.decode(before[key]), Account.decode(after[key])
    assert replace(old, nonce=old.nonce + 1) == new


@pytest.fixture
def net() -> Net:
    """Alice and Bob (persons) and Acme (an enterprise with delegate DEL1) are registered; Alice holds a
    health and a tax asset, Bob and Acme a health asset each."""
    n = Net()
    n.block(*(n.tx(REGISTRAR, RegisterHolder(kind, subject(i), i.pk, i.enc_pk))
              for i, kind in [(ALICE, "person"), (BOB, "person"), (ACME, "enterprise")]))
    txs = [n.tx(ACME, Delegate(DEL1.pk), tx_type="holder.add_delegate")]
    issues = [(ISS_H, ALICE, HEALTH, HEALTH_FIELDS), (ISS_T, ALICE, TAX, TAX_FIELDS),
              (ISS_H, BOB, HEALTH, HEALTH_FIELDS), (ISS_H, ACME, HEALTH, HEALTH_FIELDS)]
    for issuer, holder, schema, fields in issues:
        txs.append(n.tx(issuer, IssueAsset(holder.id, schema, fields, account_id(b"root" + holder.pk),
                                           account_id(b"payload" + holder.pk), b"", b"")))
    ex = n.block(*txs)
    assert ex.codes() == ["ok"] * 5
    n.alice_health, n.alice_tax, n.bob_health, n.acme_health = (created_id(Kind.ASSET, t) for t in txs[1:])
    return n


def grant_to_bank(net: Net, *, not_after: int | None = None, max_uses: int = 5) -> bytes:
    return net.ok(ALICE, net.grant_body(BANK, (net.alice_health,), ("diagnosis",), not_after=not_after,
                                        max_uses=max_uses))


# ================================================================================================ GOV


def test_GOV_1_only_active_admins_propose_and_approve(net: Net) -> None:
    net.refused(BANK, propose(SetThreshold(1)), Code.NOT_ADMIN)
    net.refused(ALICE, propose(SetThreshold(1)), Code.NOT_ADMIN)
    pid = net.run(ADMIN_A, propose(RegisterMember("org", ("consumer",), ORG.pk, ORG.enc_pk))).object_id
    net.refused(AUDITOR, Approve(pid), Code.NOT_ADMIN)
    # ADMIN_C is suspended (A proposes, B approves): it can neither approve nor propose any more.
    assert net.govern(UpdateMember(ADMIN_C.id, ("admin",), "suspended"), ADMIN_B).code == Code.OK
    net.refused(ADMIN_C, Approve(pid), Code.ACCOUNT_SUSPENDED)
    net.refused(ADMIN_C, propose(SetThreshold(1)), Code.ACCOUNT_SUSPENDED)
    assert net.get(AdminProposal, Kind.PROPOSAL, pid).status == "open"


def test_GOV_2_proposal_runs_exactly_at_the_threshold(net: Net) -> None:
    body = RegisterMember("org", ("consumer",), ORG.pk, ORG.enc_pk)
    r = net.run(ADMIN_A, propose(body))
    assert r.code == Code.OK
    pid = r.object_id
    p = net.get(AdminProposal, Kind.PROPOSAL, pid)
    assert (p.status, p.approvals) == ("open", (ADMIN_A.id,))
    assert net.ledger.state().account(ORG.id) is None  # 1 of 2: not yet
    net.refused(ADMIN_A, Approve(pid), Code.ALREADY_APPROVED)  # the proposer's approval already counts
    assert net.run(ADMIN_B, Approve(pid)) == TxResult(Code.OK, pid)  # 2 of 2: runs in this transaction
    p = net.get(AdminProposal, Kind.PROPOSAL, pid)
    assert (p.status, p.executed_height) == ("executed", net.ledger.last.height)
    assert net.account(ORG).roles == ("consumer",)
    net.refused(ADMIN_C, Approve(pid), Code.PROPOSAL_CLOSED)
    net.refused(ADMIN_C, Approve(b"\x01" * 32), Code.UNKNOWN_PROPOSAL)


def test_GOV_2_three_of_three_runs_at_the_third_approval(net: Net) -> None:
    assert net.govern(SetThreshold(3), ADMIN_B).code == Code.OK
    pid = net.run(ADMIN_A, propose(SetThreshold(1))).object_id
    assert net.run(ADMIN_B, Approve(pid)).code == Code.OK
    assert net.ledger.state().threshold() == 3
    assert net.get(AdminProposal, Kind.PROPOSAL, pid).status == "open"
    assert net.run(ADMIN_C, Approve(pid)).code == Code.OK
    assert net.ledger.state().threshold() == 1


def test_GOV_2_approvals_of_suspended_admins_no_longer_count(net: Net) -> None:
    pid = net.run(ADMIN_B, propose(SetThreshold(1))).object_id  # B's approval
    assert net.govern(UpdateMember(ADMIN_B.id, ("admin",), "suspended"), ADMIN_C).code == Code.OK
    assert net.run(ADMIN_A, Approve(pid)).code == Code.OK  # B (suspended) + A: only one live approval
    p = net.get(AdminProposal, Kind.PROPOSAL, pid)
    assert (p.status, p.approvals) == ("open", tuple(sorted((ADMIN_A.id, ADMIN_B.id))))
    assert net.run(ADMIN_C, Approve(pid)).code == Code.OK
    assert net.ledger.state().threshold() == 1


def test_GOV_3_failing_action_leaves_the_proposal_open_and_unchanged(net: Net) -> None:
    pid = net.run(ADMIN_A, propose(RegisterMember("dup", ("consumer",), BANK.pk, BANK.enc_pk))).object_id
    before_prop = net.get(AdminProposal, Kind.PROPOSAL, pid)
    net.refused(ADMIN_B, Approve(pid), Code.ACCOUNT_EXISTS)
    assert net.get(AdminProposal, Kind.PROPOSAL, pid) == before_prop
    # With threshold 1, a failing action fails its gov.propose: no proposal is stored at all.
    one = Net(threshold=1)
    tx = one.tx(ADMIN_A, propose(RegisterMember("dup", ("consumer",), BANK.pk, BANK.enc_pk)))
    assert one.block(tx).codes() == [Code.ACCOUNT_EXISTS]
    assert one.ledger.state().get(AdminProposal, Kind.PROPOSAL, created_id(Kind.PROPOSAL, tx)) is None


def test_GOV_4_at_most_256_admins() -> None:
    net = Net(threshold=1)
    orgs = [_ident(f"admin-org{i}") for i in range(254)]
    ex = net.block(*(net.tx(ADMIN_A, propose(RegisterMember(o.name, ("admin",), o.pk, o.enc_pk)))
                     for o in orgs[:253]))
    assert ex.codes() == [Code.OK] * 253
    assert len(net.ledger.state().admins()) == 256
    last = orgs[253]
    net.refused(ADMIN_A, propose(RegisterMember(last.name, ("admin",), last.pk, last.enc_pk)), Code.TOO_MANY_ADMINS)
    net.refused(ADMIN_A, propose(UpdateMember(BANK.id, ("admin", "consumer"), "active")), Code.TOO_MANY_ADMINS)
    assert net.run(ADMIN_A, propose(RegisterMember(last.name, ("consumer",), last.pk, last.enc_pk))).code == "ok"
    assert net.run(ADMIN_A, propose(SetThreshold(2))).code == Code.OK  # the list still reads


def test_GOV_4_member_register(net: Net) -> None:
    r = net.govern(RegisterMember("new-org", ("admin", "consumer"), ORG.pk, ORG.enc_pk), ADMIN_B)
    assert r.code == Code.OK
    m = net.account(ORG)
    assert (m.id, m.kind, m.name, m.roles, m.status, m.nonce) == (
        account_id(ORG.pk), "member", "new-org", ("admin", "consumer"), "active", 0)
    assert ORG.id in net.ledger.state().admins()
    # At least one role: an empty role list does not decode as an action.
    net.refused(ADMIN_A, Propose("member.register", encode_value(["x", [], STRANGER.pk, STRANGER.enc_pk])),
                Code.MALFORMED_BODY)
    pid = net.run(ADMIN_A, propose(RegisterMember("again", ("consumer",), ORG.pk, ORG.enc_pk))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.ACCOUNT_EXISTS)


def test_GOV_5_member_update(net: Net) -> None:
    assert net.govern(UpdateMember(BANK.id, ("consumer", "issuer"), "suspended"), ADMIN_B).code == Code.OK
    bank = net.account(BANK)
    assert (bank.roles, bank.status) == (("consumer", "issuer"), "suspended")
    pid = net.run(ADMIN_A, propose(UpdateMember(ALICE.id, ("consumer",), "active"))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.UNKNOWN_MEMBER)  # holders are not members
    # Threshold 2 of 3 admins: suspending one is fine, a second would leave 1 < 2.
    assert net.govern(UpdateMember(ADMIN_C.id, ("admin",), "suspended"), ADMIN_B).code == Code.OK
    pid = net.run(ADMIN_A, propose(UpdateMember(ADMIN_B.id, ("admin",), "suspended"))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.THRESHOLD_UNREACHABLE)
    pid = net.run(ADMIN_A, propose(UpdateMember(ADMIN_B.id, ("consumer",), "active"))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.THRESHOLD_UNREACHABLE)  # losing the role counts the same
    assert net.account(ADMIN_B).status == "active"


def test_GOV_6_schema_register(net: Net) -> None:
    assert net.govern(RegisterSchema("civil.marriage", ("name", "partner"), (ISS_H.id,)), ADMIN_B).code == "ok"
    s = net.get(Schema, Kind.SCHEMA, b"civil.marriage")
    assert s == Schema("civil.marriage", ("name", "partner"), (ISS_H.id,), 1)
    assert net.govern(RegisterSchema("civil.marriage", ("name", "partner", "since"),
                                     tuple(sorted((ISS_H.id, ISS_T.id)))), ADMIN_B).code == "ok"
    s = net.get(Schema, Kind.SCHEMA, b"civil.marriage")
    assert (s.fields, s.version) == (("name", "partner", "since"), 2)
    pid = net.run(ADMIN_A, propose(RegisterSchema("civil.marriage", ("name", "since"), (ISS_H.id,)))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.SCHEMA_FIELDS_REMOVED)
    pid = net.run(ADMIN_A, propose(RegisterSchema("pets", ("name",), (BANK.id,)))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.UNKNOWN_ISSUER)  # a member without the issuer role
    pid = net.run(ADMIN_A, propose(RegisterSchema("pets", ("name",), (STRANGER.id,)))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.UNKNOWN_ISSUER)


def _valset(*pairs: tuple[Identity, int]) -> ValidatorSet:
    return ValidatorSet.of([Validator(v.pk, p, v.name) for v, p in pairs])


def test_GOV_7_validator_set_takes_effect_after_the_delay(net: Net) -> None:
    old = _valset(*((v, 10) for v in VALS[:4]))
    new = _valset(*((v, 10) for v in VALS[:5]))
    pid = net.run(ADMIN_A, propose(SetValidator(VALS[4].pk, 10, VALS[4].name))).object_id
    ex = net.block(net.tx(ADMIN_B, Approve(pid)))  # height h
    h = ex.height
    assert ex.codes() == ["ok"]
    assert ex.validators == ex.next_validators == old
    pend = net.ledger.state().get(PendingValidators, Kind.VALPEND, (h + 2).to_bytes(8, "big"))
    assert pend is not None and pend.updates[0].pubkey == VALS[4].pk
    ex = net.block()  # h + 1: the change is applied at its end, so the set that signs h + 2 is the new one
    assert (ex.validators, ex.next_validators) == (old, new)
    assert net.chain.blocks[-1].header.next_validators_hash == new.hash
    assert net.ledger.state().get(PendingValidators, Kind.VALPEND, (h + 2).to_bytes(8, "big")) is None
    ex = net.block()  # h + 2
    assert ex.height == h + 2 and ex.validators == new
    assert net.ledger.state().validators() == new


def test_GOV_7_power_zero_removes_and_the_set_stays_valid() -> None:
    net = Net(threshold=1, delay=20)  # nothing takes effect while the refusals are checked
    assert net.run(ADMIN_A, propose(SetValidator(VALS[3].pk, 0, "x"))).code == Code.OK
    net.refused(ADMIN_A, propose(SetValidator(VALS[4].pk, 0, "x")), Code.UNKNOWN_VALIDATOR)
    net.refused(ADMIN_A, propose(SetValidator(VALS[3].pk, 0, "x")), Code.UNKNOWN_VALIDATOR)  # already going
    assert net.run(ADMIN_A, propose(SetValidator(VALS[2].pk, 0, "x"))).code == Code.OK
    assert net.run(ADMIN_A, propose(SetValidator(VALS[1].pk, 0, "x"))).code == Code.OK
    net.refused(ADMIN_A, propose(SetValidator(VALS[0].pk, 0, "x")), Code.INVALID_VALIDATOR_SET)  # empty set
    while any(True for _ in net.ledger.state().scan(Kind.VALPEND)):
        net.block()
    assert net.ledger.state().validators() == _valset((VALS[0], 10))


def test_GOV_7_no_validator_change_can_make_execution_raise() -> None:
    net = Net(threshold=1, delay=20)
    # A power above 2**60 is not a valid action at all (it once escaped execution as an exception).
    net.refused(ADMIN_A, Propose("validator.set", encode_value([VALS[0].pk, 2**61, VALS[0].name])),
                Code.MALFORMED_BODY)
    # Powers that are each valid but sum past 2**60 make an invalid set.
    assert net.run(ADMIN_A, propose(SetValidator(VALS[0].pk, 2**59, VALS[0].name))).code == Code.OK
    net.refused(ADMIN_A, propose(SetValidator(VALS[1].pk, 2**59, VALS[1].name)), Code.INVALID_VALIDATOR_SET)


def test_GOV_7_many_changes_for_one_height_fail_the_transaction_instead_of_the_block() -> None:
    net = Net(threshold=1)
    newcomers = [_ident(f"validator-new{i}") for i in range(127)]
    ex = net.block(*(net.tx(ADMIN_A, propose(RegisterMember(v.name, ("validator",), v.pk, v.enc_pk)))
                     for v in newcomers))  # members first (GOV-7)
    assert set(ex.codes()) == {Code.OK}
    # Remove three of the four, re-weight the fourth, add 127: the set stays valid (128 validators), but
    # the changes scheduled for that height number 131.
    bodies = [SetValidator(v.pk, 0, v.name) for v in VALS[1:4]] + [SetValidator(VALS[0].pk, 20, VALS[0].name)]
    bodies += [SetValidator(v.pk, 10, v.name) for v in newcomers]
    ex = net.block(*(net.tx(ADMIN_A, propose(b)) for b in bodies))
    assert ex.codes()[:128] == [Code.OK] * 128
    assert Code.OK not in ex.codes()[128:]


def test_GOV_7_voting_power_only_for_an_active_members_current_signing_key(net: Net) -> None:
    """A key the peer network would not admit (node/server.py `is_member`) gets no power: no account's key,
    a holder's key, an enterprise's delegate key, a suspended member's key, a member's key rotated away."""
    net.govern(SetThreshold(1), ADMIN_B)
    for key in [STRANGER, ALICE, DEL1]:  # nobody's, a person's, Acme's delegate
        net.refused(ADMIN_A, propose(SetValidator(key.pk, 10, key.name)), Code.VALIDATOR_NOT_MEMBER)
    # A member's current key: accepted, and the member's roles do not matter (as for peers).
    assert net.run(ADMIN_A, propose(SetValidator(BANK.pk, 10, BANK.name))).code == Code.OK
    # A member registered earlier in the same block counts; one registered later does not, yet.
    op1, op2 = _ident("operator1"), _ident("operator2")
    ex = net.block(net.tx(ADMIN_A, propose(RegisterMember(op1.name, ("validator",), op1.pk, op1.enc_pk))),
                   net.tx(ADMIN_A, propose(SetValidator(op1.pk, 10, op1.name))),
                   net.tx(ADMIN_A, propose(SetValidator(op2.pk, 10, op2.name))),
                   net.tx(ADMIN_A, propose(RegisterMember(op2.name, ("validator",), op2.pk, op2.enc_pk))))
    assert ex.codes() == [Code.OK, Code.OK, Code.VALIDATOR_NOT_MEMBER, Code.OK]
    # A suspended member: no new power (val4 is a member but no validator) and no re-weighting (val3 is both).
    for v in (VALS[4], VALS[3]):
        assert net.run(ADMIN_A, propose(UpdateMember(v.id, ("validator",), "suspended"))).code == Code.OK
        net.refused(ADMIN_A, propose(SetValidator(v.pk, 20, v.name)), Code.VALIDATOR_NOT_MEMBER)
    assert net.run(ADMIN_A, propose(UpdateMember(VALS[4].id, ("validator",), "active"))).code == Code.OK
    assert net.run(ADMIN_A, propose(SetValidator(VALS[4].pk, 20, VALS[4].name))).code == Code.OK
    # A member that rotated its key: the old key signs for nobody (HLD-4), the new one is the member's.
    assert net.run(NOTARY, RotateKeys(NEWKEY.pk, NEWKEY.enc_pk)).code == Code.OK
    net.refused(ADMIN_A, propose(SetValidator(NOTARY.pk, 10, NOTARY.name)), Code.VALIDATOR_NOT_MEMBER)
    assert net.run(ADMIN_A, propose(SetValidator(NEWKEY.pk, 10, NEWKEY.name))).code == Code.OK
    # The rule is checked when the action runs (GOV-3): with several approvals needed, the approval that
    # reaches the threshold fails while the key is no member's, and the proposal stays open until it is.
    assert net.govern(SetThreshold(2)).code == Code.OK
    pid = net.run(ADMIN_A, propose(SetValidator(ORG.pk, 10, ORG.name))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.VALIDATOR_NOT_MEMBER)
    assert net.get(AdminProposal, Kind.PROPOSAL, pid).approvals == (ADMIN_A.id,)
    assert net.govern(RegisterMember(ORG.name, ("validator",), ORG.pk, ORG.enc_pk), ADMIN_C).code == Code.OK
    assert net.run(ADMIN_B, Approve(pid)).code == Code.OK
    while any(True for _ in net.ledger.state().scan(Kind.VALPEND)):
        net.block()
    assert {v.pubkey for v in net.ledger.state().validators().validators} == {
        *(v.pk for v in VALS), BANK.pk, op1.pk, NEWKEY.pk, ORG.pk}


def test_GOV_7_a_suspended_or_rotated_members_validator_keeps_its_power_until_removed() -> None:
    """Suspending a validator's member, or rotating its key, is allowed and leaves the validator set alone
    (D-38): the admins remove its power with power 0, which needs no membership."""
    net = Net(threshold=1, delay=1)
    assert net.run(ADMIN_A, propose(UpdateMember(VALS[3].id, ("validator",), "suspended"))).code == Code.OK
    assert net.run(VALS[2], RotateKeys(ORG.pk, ORG.enc_pk)).code == Code.OK
    net.block()
    assert net.ledger.state().validators() == _valset(*((v, 10) for v in VALS[:4]))
    assert net.ledger.state().active_member_by_key(VALS[3].pk) is None
    assert net.ledger.state().active_member_by_key(VALS[2].pk) is None
    assert net.ledger.state().active_member_by_key(ORG.pk) == net.account(VALS[2])
    for v in (VALS[3], VALS[2]):
        assert net.run(ADMIN_A, propose(SetValidator(v.pk, 0, v.name))).code == Code.OK
    net.block()
    assert net.ledger.state().validators() == _valset((VALS[0], 10), (VALS[1], 10))


def test_GOV_2_a_threshold_above_64_admins_still_works() -> None:
    net = Net(threshold=1)
    admins = [_ident(f"big-admin{i}") for i in range(67)]
    ex = net.block(*(net.tx(ADMIN_A, propose(RegisterMember(a.name, ("admin",), a.pk, a.enc_pk))) for a in admins))
    assert set(ex.codes()) == {Code.OK}
    assert net.run(ADMIN_A, propose(SetThreshold(70))).code == Code.OK  # 70 active admins
    pid = net.run(ADMIN_A, propose(SetThreshold(1))).object_id
    ex = net.block(*(net.tx(a, Approve(pid)) for a in [ADMIN_B, ADMIN_C, *admins]))
    assert ex.codes() == [Code.OK] * 69  # the last one reaches 70 and runs it
    assert net.ledger.state().threshold() == 1


def test_GOV_8_admin_threshold(net: Net) -> None:
    pid = net.run(ADMIN_A, propose(SetThreshold(4))).object_id
    net.refused(ADMIN_B, Approve(pid), Code.THRESHOLD_UNREACHABLE)  # only 3 active admins
    net.refused(ADMIN_A, Propose("admin.threshold", encode_value([0])), Code.MALFORMED_BODY)
    assert net.govern(SetThreshold(1), ADMIN_B).code == Code.OK
    assert net.ledger.state().threshold() == 1
    # From now on a single approval (the proposer's) runs an action.
    assert net.run(ADMIN_C, propose(SetThreshold(3))).code == Code.OK
    assert net.ledger.state().threshold() == 3


# ================================================================================================ HLD


def test_HLD_1_registrar_registers_holders_one_per_subject(net: Net) -> None:
    before = net.dump()
    carol = _ident("carol")
    r = net.run(REGISTRAR, RegisterHolder("person", subject(carol), carol.pk, carol.enc_pk))
    assert r == TxResult(Code.OK, account_id(carol.pk))
    a = net.account(carol)
    assert (a.kind, a.roles, a.sign_pk, a.enc_pk, a.subject_ref, a.status, a.nonce) == (
        "person", (), carol.pk, carol.enc_pk, subject(carol), "active", 0)
    assert net.ledger.state().get_raw(Kind.SUBJECT + subject(carol)) == carol.id
    assert {k for k in net.dump() if k not in before} == {
        b"s/acct/" + carol.id, b"s/subj/" + subject(carol), b"s/key/" + carol.pk}
    dave = _ident("dave")
    net.refused(BANK, RegisterHolder("person", subject(dave), dave.pk, dave.enc_pk), Code.NOT_REGISTRAR)
    net.refused(ALICE, RegisterHolder("person", subject(dave), dave.pk, dave.enc_pk), Code.NOT_REGISTRAR)
    net.refused(REGISTRAR, RegisterHolder("person", subject(carol), dave.pk, dave.enc_pk), Code.SUBJECT_EXISTS)


def test_HLD_2_enterprise_delegates(net: Net) -> None:
    # A delegate acts for the enterprise in holder actions, with the enterprise's nonce.
    acme_nonce = net.account(ACME).nonce
    r = net.run(DEL1, net.grant_body(BANK, (net.acme_health,)), sender=ACME)
    assert r.code == Code.OK
    assert net.grant_rec(r.object_id).holder == ACME.id
    assert net.account(ACME).nonce == acme_nonce + 1
    assert net.ledger.state().account(DEL1.id) is None
    # ... but cannot change the delegates or the keys.
    net.refused(DEL1, Delegate(DEL2.pk), Code.DELEGATE_NOT_ALLOWED, sender=ACME, tx_type="holder.add_delegate")
    net.refused(DEL1, Delegate(DEL1.pk), Code.DELEGATE_NOT_ALLOWED, sender=ACME, tx_type="holder.remove_delegate")
    net.refused(DEL1, RotateKeys(DEL1.pk, DEL1.enc_pk), Code.DELEGATE_NOT_ALLOWED, sender=ACME)
    # Only enterprises have delegates; no duplicates; the enterprise's own key is not a delegate.
    net.refused(ALICE, Delegate(DEL2.pk), Code.NOT_ENTERPRISE, tx_type="holder.add_delegate")
    net.refused(BANK, Delegate(DEL2.pk), Code.NOT_ENTERPRISE, tx_type="holder.add_delegate")
    net.refused(ACME, Delegate(DEL1.pk), Code.DELEGATE_EXISTS, tx_type="holder.add_delegate")
    net.refused(ACME, Delegate(ACME.pk), Code.DELEGATE_EXISTS, tx_type="holder.add_delegate")
    net.refused(ACME, Delegate(DEL2.pk), Code.UNKNOWN_DELEGATE, tx_type="holder.remove_delegate")
    # Removed: the key is refused before anything else.
    assert net.run(ACME, Delegate(DEL1.pk), tx_type="holder.remove_delegate").code == Code.OK
    assert net.account(ACME).delegates == ()
    before = net.dump()
    assert net.run(DEL1, RevokeConsent(r.object_id), sender=ACME).code == Code.KEY_NOT_AUTHORIZED
    assert net.dump() == before


def test_HLD_2_at_most_16_delegates(net: Net) -> None:
    ex = net.block(*(net.tx(ACME, Delegate(d.pk), tx_type="holder.add_delegate") for d in MANY_DELEGATES[:15]))
    assert ex.codes() == ["ok"] * 15
    assert len(net.account(ACME).delegates) == 16
    net.refused(ACME, Delegate(MANY_DELEGATES[15].pk), Code.TOO_MANY_DELEGATES, tx_type="holder.add_delegate")


def test_HLD_3_rotate_keys_old_key_refused(net: Net) -> None:
    r = net.run(ALICE, RotateKeys(NEWKEY.pk, NEWKEY.enc_pk))
    assert r == TxResult(Code.OK, b"")
    a = net.account(ALICE)
    assert (a.id, a.sign_pk, a.enc_pk) == (ALICE.id, NEWKEY.pk, NEWKEY.enc_pk)
    before = net.dump()
    assert net.run(ALICE, RevokeConsent(b"\x02" * 32)).code == Code.KEY_NOT_AUTHORIZED  # the old key
    assert net.dump() == before
    assert net.run(NEWKEY, net.grant_body(BANK, (net.alice_health,)), sender=ALICE).code == Code.OK
    # Rotation back to the original key is allowed; to one of the account's delegates is not.
    assert net.run(NEWKEY, RotateKeys(ALICE.pk, ALICE.enc_pk), sender=ALICE).code == Code.OK
    net.refused(ACME, RotateKeys(DEL1.pk, DEL1.enc_pk), Code.KEY_IN_USE)
    # Members rotate too.
    assert net.run(BANK, RotateKeys(NEWKEY.pk, NEWKEY.enc_pk)).code == Code.OK
    assert net.run(BANK, RevokeConsent(b"\x02" * 32)).code == Code.KEY_NOT_AUTHORIZED


def test_HLD_4_key_of_another_account_cannot_be_reused(net: Net) -> None:
    net.refused(REGISTRAR, RegisterHolder("person", subject(_ident("eve")), BANK.pk, BANK.enc_pk),
                Code.ACCOUNT_EXISTS)
    net.refused(REGISTRAR, RegisterHolder("person", subject(_ident("eve")), BOB.pk, BOB.enc_pk),
                Code.ACCOUNT_EXISTS)
    net.refused(ALICE, RotateKeys(BOB.pk, BOB.enc_pk), Code.KEY_IN_USE)
    net.refused(ALICE, RotateKeys(BANK.pk, BANK.enc_pk), Code.KEY_IN_USE)


def test_HLD_4_a_key_signs_for_one_account_only(net: Net) -> None:
    before = net.dump()
    assert net.run(ALICE, RotateKeys(NEWKEY.pk, NEWKEY.enc_pk)).code == Code.OK
    assert net.ledger.state().key_owner(NEWKEY.pk) == ALICE.id
    assert net.ledger.state().key_owner(ALICE.pk) is None  # released
    assert {k for k in net.dump() if k not in before} == {b"s/key/" + NEWKEY.pk}
    # Alice's current key (its hash is no account id) cannot start an account, join as a delegate or be
    # rotated into by anyone else.
    net.refused(REGISTRAR, RegisterHolder("person", subject(NEWKEY), NEWKEY.pk, NEWKEY.enc_pk), Code.KEY_IN_USE)
    net.refused(ACME, Delegate(NEWKEY.pk), Code.KEY_IN_USE, tx_type="holder.add_delegate")
    net.refused(BOB, RotateKeys(NEWKEY.pk, NEWKEY.enc_pk), Code.KEY_IN_USE)
    net.refused(ACME, Delegate(BANK.pk), Code.KEY_IN_USE, tx_type="holder.add_delegate")  # a member's key
    # A delegate key is taken too, until the enterprise lets it go.
    net.refused(REGISTRAR, RegisterHolder("person", subject(DEL1), DEL1.pk, DEL1.enc_pk), Code.KEY_IN_USE)
    net.refused(BOB, RotateKeys(DEL1.pk, DEL1.enc_pk), Code.KEY_IN_USE)
    assert net.run(ACME, Delegate(DEL1.pk), tx_type="holder.remove_delegate").code == Code.OK
    assert net.ledger.state().key_owner(DEL1.pk) is None
    assert net.run(BOB, RotateKeys(DEL1.pk, DEL1.enc_pk)).code == Code.OK
    # Alice's original key is free again: her own rotation back to it is allowed.
    assert net.run(NEWKEY, RotateKeys(ALICE.pk, ALICE.enc_pk), sender=ALICE).code == Code.OK


def test_HLD_5_suspended_accounts_can_do_nothing(net: Net) -> None:
    gid = grant_to_bank(net)
    assert net.govern(UpdateMember(BANK.id, ("consumer",), "suspended"), ADMIN_B).code == Code.OK
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.ACCOUNT_SUSPENDED)
    net.refused(BANK, RequestConsent(ALICE.id, (HEALTH,), (), "loan", DAY, 1), Code.ACCOUNT_SUSPENDED)
    net.refused(BANK, RotateKeys(NEWKEY.pk, NEWKEY.enc_pk), Code.ACCOUNT_SUSPENDED)
    assert net.grant_rec(gid).uses == 0
    # A suspended consumer cannot be granted to either.
    net.refused(ALICE, net.grant_body(BANK, (net.alice_health,)), Code.GRANTEE_NOT_CONSUMER)
    assert net.govern(UpdateMember(BANK.id, ("consumer",), "active"), ADMIN_B).code == Code.OK
    assert net.run(BANK, RecordAccess(gid, net.alice_health)).code == Code.OK
    assert net.grant_rec(gid).uses == 1


# ================================================================================================ AST


def test_AST_1_issue(net: Net) -> None:
    r = net.issue(ISS_H, BOB, HEALTH, ("diagnosis", "name"))
    assert r.code == Code.OK
    a = net.asset_rec(r.object_id)
    assert (a.holder, a.issuer, a.schema, a.version, a.fields, a.status, a.supersedes) == (
        BOB.id, ISS_H.id, HEALTH, 1, ("diagnosis", "name"), "active", b"")
    assert (a.issued_height, a.issued_time_ms) == (net.ledger.last.height, net.now)
    net.refused(BANK, IssueAsset(BOB.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b""), Code.NOT_ISSUER)
    net.refused(ISS_H, IssueAsset(BOB.id, "pets", ("name",), b"\x01" * 32, b"\x02" * 32, b"", b""),
                Code.UNKNOWN_SCHEMA)
    net.refused(ISS_T, IssueAsset(BOB.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b""),
                Code.ISSUER_NOT_AUTHORIZED)
    net.refused(ISS_H, IssueAsset(BANK.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b""),
                Code.UNKNOWN_HOLDER)
    net.refused(ISS_H, IssueAsset(STRANGER.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b""),
                Code.UNKNOWN_HOLDER)
    net.refused(ISS_H, IssueAsset(BOB.id, HEALTH, ("income",), b"\x01" * 32, b"\x02" * 32, b"", b""),
                Code.UNKNOWN_FIELD)
    # A suspended issuer issues nothing.
    assert net.govern(UpdateMember(ISS_H.id, ("issuer",), "suspended"), ADMIN_B).code == Code.OK
    net.refused(ISS_H, IssueAsset(BOB.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b""),
                Code.ACCOUNT_SUSPENDED)


def test_AST_2_supersede(net: Net) -> None:
    r = net.issue(ISS_H, ALICE, HEALTH, HEALTH_FIELDS, supersedes=net.alice_health)
    assert r.code == Code.OK
    old, new = net.asset_rec(net.alice_health), net.asset_rec(r.object_id)
    assert (old.status, old.superseded_by) == ("superseded", r.object_id)
    assert (new.version, new.supersedes, new.status) == (2, net.alice_health, "active")
    for issuer, holder, schema, supersedes in [
        (ISS_H, ALICE, HEALTH, net.alice_health),  # no longer active
        (ISS_H, ALICE, HEALTH, net.bob_health),  # another holder's
        (ISS_T, ALICE, TAX, r.object_id),  # another issuer's and schema's
    ]:
        net.refused(issuer, IssueAsset(holder.id, schema, ("name",), b"\x01" * 32, b"\x02" * 32, supersedes, b""),
                    Code.CANNOT_SUPERSEDE)
    net.refused(ISS_H, IssueAsset(ALICE.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"\x05" * 32, b""),
                Code.UNKNOWN_ASSET)


def test_AST_3_issue_answers_a_request(net: Net) -> None:
    rid = net.ok(ALICE, RequestAsset(ISS_T.id, TAX, b""))
    net.refused(ISS_T, IssueAsset(BOB.id, TAX, ("name",), b"\x01" * 32, b"\x02" * 32, b"", rid),
                Code.REQUEST_MISMATCH)  # another holder
    r = net.issue(ISS_T, ALICE, TAX, ("income",), answers=rid)
    assert r.code == Code.OK
    req = net.get(AssetRequest, Kind.ASSET_REQUEST, rid)
    assert (req.status, req.result_asset, req.resolved_height) == (
        "fulfilled", r.object_id, net.ledger.last.height)
    net.refused(ISS_T, IssueAsset(ALICE.id, TAX, ("name",), b"\x01" * 32, b"\x02" * 32, b"", rid),
                Code.REQUEST_NOT_PENDING)
    net.refused(ISS_T, IssueAsset(ALICE.id, TAX, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b"\x07" * 32),
                Code.UNKNOWN_REQUEST)
    # A correction is answered by a new version of the asset whose correction was asked.
    cid = net.ok(ALICE, RequestCorrection(net.alice_health, ("diagnosis",), b""))
    net.refused(ISS_H, IssueAsset(ALICE.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", cid),
                Code.REQUEST_MISMATCH)
    r = net.issue(ISS_H, ALICE, HEALTH, HEALTH_FIELDS, supersedes=net.alice_health, answers=cid)
    assert r.code == Code.OK
    req = net.get(AssetRequest, Kind.ASSET_REQUEST, cid)
    assert (req.kind, req.status, req.result_asset) == ("correction", "fulfilled", r.object_id)
    assert net.asset_rec(net.alice_health).status == "superseded"


def test_AST_4_request_asset(net: Net) -> None:
    r = net.run(BOB, RequestAsset(ISS_T.id, TAX, b"\x09" * 32))
    assert r.code == Code.OK
    req = net.get(AssetRequest, Kind.ASSET_REQUEST, r.object_id)
    assert req == AssetRequest(r.object_id, "issue", BOB.id, ISS_T.id, TAX, b"", (), b"\x09" * 32, "pending",
                               b"", "", net.ledger.last.height, 0)
    net.refused(BANK, RequestAsset(ISS_T.id, TAX, b""), Code.NOT_HOLDER)
    net.refused(BOB, RequestAsset(ISS_T.id, "pets", b""), Code.UNKNOWN_SCHEMA)
    net.refused(BOB, RequestAsset(ISS_H.id, TAX, b""), Code.ISSUER_NOT_AUTHORIZED)
    net.refused(BOB, RequestAsset(BANK.id, TAX, b""), Code.ISSUER_NOT_AUTHORIZED)
    assert net.govern(UpdateMember(ISS_T.id, ("issuer",), "suspended"), ADMIN_B).code == Code.OK
    net.refused(BOB, RequestAsset(ISS_T.id, TAX, b""), Code.ISSUER_NOT_AUTHORIZED)
    assert net.run(DEL1, RequestAsset(ISS_H.id, HEALTH, b""), sender=ACME).code == Code.OK


def test_AST_5_request_correction(net: Net) -> None:
    r = net.run(ALICE, RequestCorrection(net.alice_health, ("diagnosis", "name"), b""))
    assert r.code == Code.OK
    req = net.get(AssetRequest, Kind.ASSET_REQUEST, r.object_id)
    assert (req.kind, req.issuer, req.schema, req.asset_id, req.fields) == (
        "correction", ISS_H.id, HEALTH, net.alice_health, ("diagnosis", "name"))
    net.refused(BOB, RequestCorrection(net.alice_health, ("name",), b""), Code.NOT_ASSET_HOLDER)
    net.refused(ALICE, RequestCorrection(net.alice_tax, ("diagnosis",), b""), Code.UNKNOWN_FIELD)
    net.refused(ALICE, RequestCorrection(b"\x03" * 32, ("name",), b""), Code.UNKNOWN_ASSET)
    net.refused(ISS_H, RequestCorrection(net.alice_health, ("name",), b""), Code.NOT_HOLDER)
    assert net.run(ISS_T, RevokeAsset(net.alice_tax, "wrong")).code == Code.OK
    net.refused(ALICE, RequestCorrection(net.alice_tax, ("name",), b""), Code.ASSET_NOT_ACTIVE)


def test_AST_6_refuse(net: Net) -> None:
    rid = net.ok(ALICE, RequestAsset(ISS_T.id, TAX, b""))
    net.refused(ISS_H, RefuseRequest(rid, "not mine"), Code.REQUEST_MISMATCH)
    net.refused(BANK, RefuseRequest(rid, "no"), Code.NOT_ISSUER)
    assert net.run(ISS_T, RefuseRequest(rid, "no record")) == TxResult(Code.OK, rid)
    req = net.get(AssetRequest, Kind.ASSET_REQUEST, rid)
    assert (req.status, req.reason, req.resolved_height) == (
        "refused", "no record", net.ledger.last.height)
    net.refused(ISS_T, RefuseRequest(rid, "again"), Code.REQUEST_NOT_PENDING)
    net.refused(ISS_T, RefuseRequest(b"\x04" * 32, "?"), Code.UNKNOWN_REQUEST)


def test_AST_7_revoke(net: Net) -> None:
    gid = grant_to_bank(net)
    net.refused(ISS_T, RevokeAsset(net.alice_health, "no"), Code.NOT_ASSET_ISSUER)
    net.refused(BANK, RevokeAsset(net.alice_health, "no"), Code.NOT_ISSUER)
    assert net.run(ISS_H, RevokeAsset(net.alice_health, "issued in error")) == TxResult(Code.OK, net.alice_health)
    a = net.asset_rec(net.alice_health)
    assert (a.status, a.reason) == ("revoked", "issued in error")
    net.refused(ISS_H, RevokeAsset(net.alice_health, "again"), Code.ASSET_NOT_ACTIVE)
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.ASSET_REVOKED)
    # A superseded asset can be revoked too.
    new = net.issue(ISS_H, BOB, HEALTH, HEALTH_FIELDS, supersedes=net.bob_health).object_id
    assert new
    assert net.run(ISS_H, RevokeAsset(net.bob_health, "old version")).code == Code.OK
    net.refused(ISS_H, RevokeAsset(b"\x06" * 32, "?"), Code.UNKNOWN_ASSET)


def test_AST_8_erase(net: Net) -> None:
    gid = grant_to_bank(net)
    net.refused(BOB, EraseAsset(net.alice_health), Code.NOT_ASSET_HOLDER)
    net.refused(ISS_H, EraseAsset(net.alice_health), Code.NOT_HOLDER)
    assert net.run(ALICE, EraseAsset(net.alice_health)) == TxResult(Code.OK, net.alice_health)
    assert net.asset_rec(net.alice_health).status == "erased"
    assert net.asset_rec(net.alice_health).field_root  # the commitments stay
    net.refused(ALICE, EraseAsset(net.alice_health), Code.ASSET_ERASED)
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.ASSET_ERASED)  # no grant authorizes it
    assert net.grant_rec(gid).status == "granted"
    net.refused(ISS_H, RevokeAsset(net.alice_health, "too late"), Code.ASSET_NOT_ACTIVE)
    # Revoked assets can still be erased, by a delegate too.
    assert net.run(ISS_H, RevokeAsset(net.acme_health, "x")).code == Code.OK
    assert net.run(DEL1, EraseAsset(net.acme_health), sender=ACME).code == Code.OK


# ================================================================================================ CON


def test_CON_1_consent_request(net: Net) -> None:
    body = RequestConsent(ALICE.id, (HEALTH,), ("diagnosis",), "mortgage", 30 * DAY, 2)
    r = net.run(BANK, body)
    assert r.code == Code.OK
    req = net.get(ConsentRequest, Kind.CONSENT_REQUEST, r.object_id)
    assert req == ConsentRequest(r.object_id, BANK.id, ALICE.id, (HEALTH,), ("diagnosis",), "mortgage", 30 * DAY,
                                 2, "requested", b"", "", net.ledger.last.height, net.now)
    net.refused(ISS_H, body, Code.NOT_CONSUMER)
    net.refused(ALICE, body, Code.NOT_CONSUMER)
    net.refused(BANK, replace(body, holder=NOTARY.id), Code.UNKNOWN_HOLDER)
    net.refused(BANK, replace(body, holder=STRANGER.id), Code.UNKNOWN_HOLDER)


def test_CON_2_grant_rules(net: Net) -> None:
    body = net.grant_body(BANK, (net.alice_health, net.alice_tax), ("diagnosis", "income"), max_uses=2)
    r = net.run(ALICE, body)
    assert r.code == Code.OK
    g = net.grant_rec(r.object_id)
    assert g == Grant(r.object_id, ALICE.id, BANK.id, body.assets, body.fields, "loan", body.not_after_ms, 2, 0,
                      body.package_hash, b"", "granted", net.ledger.last.height, net.now, 0)
    expiry = Kind.EXPIRY + body.not_after_ms.to_bytes(8, "big") + r.object_id
    assert net.ledger.state().get_raw(expiry) == b""
    net.refused(BANK, body, Code.NOT_HOLDER)
    net.refused(ALICE, replace(body, grantee=ISS_H.id), Code.GRANTEE_NOT_CONSUMER)
    net.refused(ALICE, replace(body, grantee=BOB.id), Code.GRANTEE_NOT_CONSUMER)
    net.refused(ALICE, replace(body, assets=(b"\x08" * 32,)), Code.UNKNOWN_ASSET)
    net.refused(ALICE, replace(body, assets=(net.bob_health,), fields=("name",)), Code.NOT_ASSET_HOLDER)
    net.refused(ALICE, replace(body, assets=(net.alice_health,)), Code.FIELD_NOT_IN_ASSETS)  # income
    net.refused(ALICE, replace(body, not_after_ms=net.now + 1000), Code.NOT_AFTER_IN_PAST)  # == block time
    net.refused(ALICE, replace(body, not_after_ms=net.now + 1000 + MAX_DURATION_MS + 1), Code.NOT_AFTER_TOO_FAR)
    bad_uses = encode_value([BANK.id, [net.alice_health], ["name"], "loan", net.now + DAY, 0, b"\x01" * 32, b""])
    before = net.dump()
    ex = net.block(Tx.create(ALICE.signer, CHAIN, ALICE.id, net.nonce(ALICE.id), "consent.grant", bad_uses))
    assert ex.codes() == [Code.MALFORMED_BODY]  # max_uses 0
    assert_only_nonce_changed(before, net.dump(), ALICE.id)
    assert net.run(ISS_H, RevokeAsset(net.alice_health, "x")).code == Code.OK
    net.refused(ALICE, replace(body, assets=(net.alice_health,), fields=("name",)), Code.ASSET_NOT_ACTIVE)
    short = replace(body, assets=(net.alice_tax,), fields=("income",), not_after_ms=net.now + 1001)
    assert net.run(ALICE, short).code == Code.OK  # one millisecond after the block time is enough


def test_CON_3_grant_answers_a_request(net: Net) -> None:
    rid = net.ok(BANK, RequestConsent(ALICE.id, (HEALTH,), (), "loan", DAY, 1))
    other = net.ok(NOTARY, RequestConsent(ALICE.id, (HEALTH,), (), "deed", DAY, 1))
    bobs = net.ok(BANK, RequestConsent(BOB.id, (HEALTH,), (), "loan", DAY, 1))
    base = net.grant_body(BANK, (net.alice_health,))
    net.refused(ALICE, replace(base, request_id=other), Code.REQUEST_MISMATCH)  # filed by another consumer
    net.refused(ALICE, replace(base, request_id=bobs), Code.REQUEST_MISMATCH)  # addressed to another holder
    net.refused(ALICE, replace(base, request_id=b"\x0a" * 32), Code.UNKNOWN_REQUEST)
    r = net.run(ALICE, replace(base, request_id=rid))
    assert r.code == Code.OK
    req = net.get(ConsentRequest, Kind.CONSENT_REQUEST, rid)
    assert (req.status, req.grant_id) == ("granted", r.object_id)
    assert net.grant_rec(r.object_id).request_id == rid
    net.refused(ALICE, replace(base, request_id=rid), Code.REQUEST_NOT_PENDING)
    assert net.run(ALICE, RejectConsent(other, "no")).code == Code.OK
    net.refused(ALICE, replace(base, grantee=NOTARY.id, request_id=other), Code.REQUEST_NOT_PENDING)


def test_CON_4_reject(net: Net) -> None:
    rid = net.ok(BANK, RequestConsent(ALICE.id, (HEALTH,), (), "loan", DAY, 1))
    net.refused(BOB, RejectConsent(rid, "not mine"), Code.UNKNOWN_REQUEST)
    net.refused(BANK, RejectConsent(rid, "x"), Code.NOT_HOLDER)
    assert net.run(ALICE, RejectConsent(rid, "no thanks")) == TxResult(Code.OK, rid)
    req = net.get(ConsentRequest, Kind.CONSENT_REQUEST, rid)
    assert (req.status, req.reason, req.grant_id) == ("rejected", "no thanks", b"")
    net.refused(ALICE, RejectConsent(rid, "again"), Code.REQUEST_NOT_PENDING)
    net.refused(ALICE, net.grant_body(BANK, (net.alice_health,), request_id=rid), Code.REQUEST_NOT_PENDING)


def test_CON_5_revoke(net: Net) -> None:
    gid = grant_to_bank(net)
    net.refused(BOB, RevokeConsent(gid), Code.NOT_GRANT_HOLDER)
    net.refused(BANK, RevokeConsent(gid), Code.NOT_HOLDER)
    net.refused(ALICE, RevokeConsent(b"\x0b" * 32), Code.UNKNOWN_GRANT)
    g = net.grant_rec(gid)
    assert net.run(ALICE, RevokeConsent(gid)) == TxResult(Code.OK, gid)
    assert net.grant_rec(gid) == replace(g, status="revoked", closed_height=net.ledger.last.height)
    assert net.ledger.state().get_raw(Kind.EXPIRY + g.not_after_ms.to_bytes(8, "big") + gid) is None
    net.refused(ALICE, RevokeConsent(gid), Code.GRANT_NOT_ACTIVE)
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.GRANT_REVOKED)


def test_CON_6_grants_expire_at_block_start(net: Net) -> None:
    not_after = net.now + 5000
    gid = grant_to_bank(net, not_after=not_after)
    # A block whose time is exactly not_after: still granted, and it authorizes.
    ex = net.block(net.tx(BANK, RecordAccess(gid, net.alice_health)), advance=not_after - net.now)
    assert net.now == not_after and ex.codes() == [Code.OK]
    assert net.grant_rec(gid).status == "granted"
    # One millisecond later, a block with no transaction at all expires it.
    ex = net.block(advance=1)
    g = net.grant_rec(gid)
    assert (g.status, g.closed_height, g.uses) == ("expired", ex.height, 1)
    assert [e.kind for e in ex.events] == ["grant_expired"] and ex.events[0].tx_index == -1
    assert net.ledger.state().get_raw(Kind.EXPIRY + not_after.to_bytes(8, "big") + gid) is None
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.GRANT_EXPIRED)
    net.refused(ALICE, RevokeConsent(gid), Code.GRANT_NOT_ACTIVE)


def test_CON_6_grants_expire_in_order_of_not_after() -> None:
    net = Net()
    holders = [ALICE, BOB]
    net.block(*(net.tx(REGISTRAR, RegisterHolder("person", subject(h), h.pk, h.enc_pk)) for h in holders))
    txs = [net.tx(ISS_H, IssueAsset(h.id, HEALTH, ("name",), b"\x01" * 32, b"\x02" * 32, b"", b"")) for h in holders]
    net.block(*txs)
    t = net.now
    grants = [net.tx(BOB, net.grant_body(BANK, (created_id(Kind.ASSET, txs[1]),), not_after=t + 3000)),
              net.tx(ALICE, net.grant_body(BANK, (created_id(Kind.ASSET, txs[0]),), not_after=t + 2000))]
    assert net.block(*grants).codes() == ["ok", "ok"]
    ex = net.block(advance=5000)
    assert [e.object_id for e in ex.events] == [created_id(Kind.GRANT, grants[1]), created_id(Kind.GRANT, grants[0])]


def test_CON_7_used_up(net: Net) -> None:
    gid = grant_to_bank(net, max_uses=2)
    ex = net.block(*(net.tx(BANK, RecordAccess(gid, net.alice_health)) for _ in range(3)))
    assert ex.codes() == [Code.OK, Code.OK, Code.GRANT_USED_UP]
    g = net.grant_rec(gid)
    assert (g.status, g.uses, g.closed_height) == ("used_up", 2, ex.height)
    assert net.ledger.state().get_raw(Kind.EXPIRY + g.not_after_ms.to_bytes(8, "big") + gid) is None
    net.refused(ALICE, RevokeConsent(gid), Code.GRANT_NOT_ACTIVE)


def test_CON_8_only_a_live_grant_authorizes(net: Net) -> None:
    revoked, expired, used = (grant_to_bank(net, not_after=net.now + 1500 if i == 1 else None,
                                            max_uses=1 if i == 2 else 5) for i in range(3))
    assert net.run(ALICE, RevokeConsent(revoked)).code == Code.OK
    assert net.run(BANK, RecordAccess(used, net.alice_health)).code == Code.OK
    rid = net.ok(BANK, RequestConsent(ALICE.id, (HEALTH,), (), "loan", DAY, 1))
    assert net.run(ALICE, RejectConsent(rid, "")).code == Code.OK
    net.refused(ALICE, net.grant_body(BANK, (net.alice_health,), request_id=rid), Code.REQUEST_NOT_PENDING)
    for gid, code in [(revoked, Code.GRANT_REVOKED), (expired, Code.GRANT_EXPIRED), (used, Code.GRANT_USED_UP)]:
        net.refused(BANK, RecordAccess(gid, net.alice_health), code)
    assert [net.grant_rec(g).status for g in (revoked, expired, used)] == ["revoked", "expired", "used_up"]


# ================================================================================================ ACC


def test_ACC_1_sender_is_an_active_consumer_and_the_grantee(net: Net) -> None:
    gid = grant_to_bank(net)
    net.refused(NOTARY, RecordAccess(gid, net.alice_health), Code.NOT_GRANTEE)
    net.refused(ALICE, RecordAccess(gid, net.alice_health), Code.NOT_CONSUMER)
    net.refused(ISS_H, RecordAccess(gid, net.alice_health), Code.NOT_CONSUMER)
    net.refused(BANK, RecordAccess(b"\x0c" * 32, net.alice_health), Code.UNKNOWN_GRANT)
    assert net.govern(UpdateMember(BANK.id, ("auditor",), "active"), ADMIN_B).code == Code.OK
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.NOT_CONSUMER)  # lost the role
    assert net.grant_rec(gid).uses == 0


def test_ACC_2_grant_must_cover_an_active_asset(net: Net) -> None:
    gid = net.ok(ALICE, net.grant_body(BANK, (net.alice_health, net.alice_tax), ("name",)))
    net.refused(BANK, RecordAccess(gid, net.bob_health), Code.ASSET_NOT_COVERED)
    assert net.issue(ISS_H, ALICE, HEALTH, HEALTH_FIELDS, supersedes=net.alice_health).code == Code.OK
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.ASSET_SUPERSEDED)
    assert net.run(BANK, RecordAccess(gid, net.alice_tax)).code == Code.OK  # the other asset still works


def test_ACC_2_an_erased_asset_takes_the_whole_package_with_it(net: Net) -> None:
    gid = net.ok(ALICE, net.grant_body(BANK, (net.alice_health, net.alice_tax), ("name",)))
    assert net.run(ALICE, EraseAsset(net.alice_tax)).code == Code.OK
    net.refused(BANK, RecordAccess(gid, net.alice_health), Code.ASSET_ERASED)  # the health asset is active
    net.refused(BANK, RecordAccess(gid, net.alice_tax), Code.ASSET_ERASED)
    assert net.grant_rec(gid).uses == 0


def test_ACC_3_access_record(net: Net) -> None:
    gid = grant_to_bank(net, max_uses=3)
    g = net.grant_rec(gid)
    r = net.run(BANK, RecordAccess(gid, net.alice_health))
    assert r.code == Code.OK
    x = net.get(Access, Kind.ACCESS, r.object_id)
    assert x == Access(r.object_id, gid, net.alice_health, ALICE.id, BANK.id, "loan", 1, net.ledger.last.height,
                       net.now)
    assert net.grant_rec(gid) == replace(g, uses=1)
    index = {k for k, _ in net.ledger.store.iterate(b"i/") if k.endswith(r.object_id)}
    assert len(index) == 2  # the holder's and the consumer's access lists
    r2 = net.run(BANK, RecordAccess(gid, net.alice_health))
    assert net.get(Access, Kind.ACCESS, r2.object_id).use == 2
    assert net.grant_rec(gid).uses == 2


# ================================================================================================ EXE


def test_EXE_1_expiry_runs_before_the_block_transactions(net: Net) -> None:
    gid = grant_to_bank(net, not_after=net.now + 2000)
    ex = net.block(net.tx(BANK, RecordAccess(gid, net.alice_health)), net.tx(ALICE, RevokeConsent(gid)),
                   advance=2001)
    assert ex.codes() == [Code.GRANT_EXPIRED, Code.GRANT_NOT_ACTIVE]
    assert net.grant_rec(gid).status == "expired"


def test_EXE_2_envelope_failures_change_nothing_at_all(net: Net) -> None:
    gid = grant_to_bank(net)
    pull = net.tx(BANK, RecordAccess(gid, net.alice_health))
    net._next.clear()
    bad_sig = replace(pull, signature=bytes([pull.signature[0] ^ 1]) + pull.signature[1:])
    cases: list[tuple[Tx | bytes, Code]] = [
        (bad_sig, Code.BAD_SIGNATURE),
        (net.tx(BANK, RecordAccess(gid, net.alice_health), chain="mydata-other", nonce=0), Code.WRONG_CHAIN),
        (net.tx(STRANGER, RecordAccess(gid, net.alice_health), nonce=0), Code.UNKNOWN_SENDER),
        (net.tx(NOTARY, RecordAccess(gid, net.alice_health), sender=BANK, nonce=0), Code.KEY_NOT_AUTHORIZED),
        (net.tx(BANK, RecordAccess(gid, net.alice_health), nonce=net.nonce(BANK.id) + 1), Code.BAD_NONCE),
        (pull.encode()[:-3], Code.MALFORMED_TX),
        (b"\x93\x01\x02", Code.MALFORMED_TX),
    ]
    for tx, code in cases:
        before, app_hash = net.dump(), net.ledger.last.app_hash
        ex = net.block(tx)
        assert ex.codes() == [code]
        assert ex.result(0).object_id == b""
        assert net.dump() == before
        assert ex.app_hash == app_hash
    # The intact transaction still goes through afterwards, once.
    assert net.block(pull).codes() == [Code.OK]
    assert net.block(pull).codes() == [Code.BAD_NONCE]  # a replay
    assert net.grant_rec(gid).uses == 1


def test_EXE_3_failed_transactions_consume_the_nonce_and_undo_every_other_write(net: Net) -> None:
    # update_member writes the account and the admin list before its threshold check fails.
    assert net.govern(SetThreshold(3), ADMIN_B).code == Code.OK
    pid = net.run(ADMIN_A, propose(UpdateMember(ADMIN_C.id, ("consumer",), "active"))).object_id
    assert net.run(ADMIN_B, Approve(pid)).code == Code.OK
    net.refused(ADMIN_C, Approve(pid), Code.THRESHOLD_UNREACHABLE)
    assert net.account(ADMIN_C).roles == ("admin",)
    assert net.get(AdminProposal, Kind.PROPOSAL, pid).approvals == tuple(sorted((ADMIN_A.id, ADMIN_B.id)))
    # Unknown types and malformed bodies are the sender's acts: the nonce is used.
    for tx_type, body, code in [("vault.delete", b"\x90", Code.UNKNOWN_TX_TYPE),
                                ("consent.revoke", b"\xc1", Code.MALFORMED_BODY)]:
        before = net.dump()
        ex = net.block(Tx.create(ALICE.signer, CHAIN, ALICE.id, net.nonce(ALICE.id), tx_type, body))
        assert ex.codes() == [code]
        assert_only_nonce_changed(before, net.dump(), ALICE.id)


def test_EXE_4_validator_changes_sign_from_the_scheduled_height() -> None:
    net = Net(threshold=1, delay=1)
    old = _valset(*((v, 10) for v in VALS[:4]))
    new = _valset(*((v, 10) for v in VALS[:3]), (VALS[3], 30))
    ex = net.block(net.tx(ADMIN_A, propose(SetValidator(VALS[3].pk, 30, VALS[3].name))))
    assert ex.codes() == ["ok"]
    assert (ex.validators, ex.next_validators) == (old, new)  # delay 1: the very next block
    ex = net.block()
    assert ex.validators == new
    assert net.chain.blocks[-1].header.validators_hash == new.hash


def test_EXE_4_the_validator_set_history_keeps_each_set_from_the_first_height_it_signs() -> None:
    net = Net(threshold=1, delay=2)
    g = net.genesis.validators

    def history() -> dict[int, ValidatorSet]:
        return {int.from_bytes(k, "big"): ValidatorSet.decode(v) for k, v in net.ledger.state().scan(Kind.VALHIST)}

    assert history() == {1: g}
    ex = net.block(net.tx(ADMIN_A, propose(SetValidator(VALS[4].pk, 10, VALS[4].name))))
    joined = ex.height + 2
    assert history() == {1: g}
    new = _valset(*((v, 10) for v in VALS[:5]))
    # Block joined - 1 applies the change at its end (EXE-4), and records the set with it. It also schedules
    # VALS[0] with the same power and name again: the set of joined + 1 is the same, so no record for it.
    ex = net.block(net.tx(ADMIN_A, propose(SetValidator(VALS[0].pk, 10, VALS[0].name))))
    assert ex.height == joined - 1 and ex.next_validators == new
    assert history() == {1: g, joined: new}
    net.block()
    net.block()
    assert history() == {1: g, joined: new}
    state = net.ledger.state()
    for block in net.chain.blocks:  # the set each block names is the one the history gives for its height
        vs = state.validators_at(block.header.height)
        assert vs is not None and vs.hash == block.header.validators_hash
    assert state.validators_at(net.ledger.last.height + 1) == state.validators() == new
    assert state.validators_at(10**9) == new
    assert state.validators_at(0) is None


def test_EXE_5_app_hash_is_the_state_root_with_proofs(net: Net) -> None:
    gid = grant_to_bank(net)
    ex = net.block(net.tx(BANK, RecordAccess(gid, net.alice_health)))
    header = net.chain.blocks[-1].header
    assert header.app_hash == ex.app_hash == net.ledger.tree.root == net.ledger.last.app_hash
    assert ex.results_hash == merkle_root(list(ex.results)) == header.results_hash
    for key in [Kind.GRANT + gid, Kind.ASSET + net.alice_health, Kind.ACCOUNT + ALICE.id, Kind.GRANT + b"\x0d" * 32]:
        value = net.ledger.store.get(b"s/" + key)
        proof = net.ledger.tree.prove(key)
        assert verify_state_proof(ex.app_hash, key, value, proof)
        assert not verify_state_proof(ex.app_hash, key, (value or b"") + b"!", proof)
    assert net.ledger.store.get(b"s/" + Kind.GRANT + b"\x0d" * 32) is None


def test_EXE_6_execute_writes_nothing_until_commit(net: Net) -> None:
    gid = grant_to_bank(net)
    before = list(net.ledger.store.iterate())
    last = net.ledger.last
    ctx = BlockContext(CHAIN, last.height + 1, last.time_ms + 1000, VALS[0].id)
    ex = net.ledger.execute(ctx, [net.tx(BANK, RecordAccess(gid, net.alice_health)).encode()])
    assert ex.codes() == ["ok"]
    assert list(net.ledger.store.iterate()) == before


def test_EXE_6_tampered_block_is_rejected_and_writes_nothing(net: Net) -> None:
    gid = grant_to_bank(net)
    follower = Ledger(MemoryKV())
    follower.init_chain(net.genesis)
    for b in net.chain.blocks:
        apply_block(follower, b)
    net.block(net.tx(BANK, RecordAccess(gid, net.alice_health)))
    block = net.chain.blocks[-1]
    before = list(follower.store.iterate())
    last = follower.last
    for tampered in [replace(block.header, app_hash=bytes(32)), replace(block.header, results_hash=bytes(32)),
                     replace(block.header, next_validators_hash=bytes(32))]:
        with pytest.raises(BlockRejected):
            apply_block(follower, replace(block, header=tampered))
        assert list(follower.store.iterate()) == before
        assert follower.last == last
    apply_block(follower, block)  # the genuine block still applies
    assert follower.last.app_hash == net.ledger.last.app_hash
    assert list(follower.store.iterate()) == list(net.ledger.store.iterate())


# ================================================================================================ EVD


def _double_sign(signer: Identity, height: int, chain: str = CHAIN, tag: bytes = b"") -> Evidence:
    votes = [Vote.create(signer.signer, chain, PRECOMMIT, height, 0, account_id(tag + bytes([i])), 1)
             for i in range(2)]
    return Evidence.of(*votes)


def test_EVD_1_any_active_member_reports_double_signing(net: Net) -> None:
    ev = _double_sign(VALS[1], net.ledger.last.height)
    net.refused(ALICE, SubmitEvidence(ev), Code.NOT_MEMBER)
    r = net.run(BANK, SubmitEvidence(ev))
    assert r == TxResult(Code.OK, ev.hash)
    rec = net.get(EvidenceRecord, Kind.EVIDENCE, ev.hash)
    assert rec == EvidenceRecord(ev, BANK.id, net.ledger.last.height)
    net.refused(NOTARY, SubmitEvidence(_double_sign(VALS[1], 1, chain="mydata-other")), Code.INVALID_EVIDENCE)
    same = _double_sign(VALS[1], 1).vote_a
    bad = encode_value([same.to_value(), same.to_value()])  # one vote twice: not evidence at all
    before = net.dump()
    ex = net.block(Tx.create(BANK.signer, CHAIN, BANK.id, net.nonce(BANK.id), "evidence.submit", bad))
    assert ex.codes() == [Code.MALFORMED_BODY]
    assert_only_nonce_changed(before, net.dump(), BANK.id)
    assert net.govern(UpdateMember(NOTARY.id, ("consumer",), "suspended"), ADMIN_B).code == Code.OK
    net.refused(NOTARY, SubmitEvidence(_double_sign(VALS[2], 1)), Code.ACCOUNT_SUSPENDED)


def test_EVD_2_votes_from_the_future_are_refused() -> None:
    net = Net(threshold=1, delay=1)
    h = net.ledger.last.height + 1  # the height of the next block
    net.refused(BANK, SubmitEvidence(_double_sign(VALS[3], h + 1)), Code.INVALID_EVIDENCE)  # executed at h
    assert net.run(BANK, SubmitEvidence(_double_sign(VALS[3], h + 1))).code == Code.OK  # at h + 1: its own height
    net.refused(BANK, SubmitEvidence(_double_sign(VALS[4], 1)), Code.INVALID_EVIDENCE)  # never a validator
    net.refused(BANK, SubmitEvidence(_double_sign(STRANGER, 1)), Code.INVALID_EVIDENCE)


def test_EVD_2_a_validator_removed_since_is_still_caught() -> None:
    """Removed at `gone`, back at `back`: it answers for the heights it signed, and only for those."""
    net = Net(threshold=1, delay=1)
    net.block()
    assert net.run(ADMIN_A, propose(SetValidator(VALS[3].pk, 0, VALS[3].name))).code == Code.OK
    gone = net.ledger.last.height + 1  # delay 1: the first height VALS[3] does not sign
    net.block()
    assert net.run(ADMIN_A, propose(SetValidator(VALS[3].pk, 10, VALS[3].name))).code == Code.OK
    back = net.ledger.last.height + 1
    net.block()
    assert net.run(ADMIN_A, propose(SetValidator(VALS[3].pk, 0, VALS[3].name))).code == Code.OK
    net.block()
    assert VALS[3].id not in net.ledger.state().validators().by_address

    ev = _double_sign(VALS[3], gone - 1)  # its last height before it left
    r = net.run(BANK, SubmitEvidence(ev))
    assert r == TxResult(Code.OK, ev.hash)
    assert net.get(EvidenceRecord, Kind.EVIDENCE, ev.hash) == EvidenceRecord(ev, BANK.id, net.ledger.last.height)
    net.refused(NOTARY, SubmitEvidence(ev), Code.DUPLICATE_EVIDENCE)
    for h in (gone, back - 1):  # out of the set then
        net.refused(BANK, SubmitEvidence(_double_sign(VALS[3], h)), Code.INVALID_EVIDENCE)
    for h in (1, back):
        assert net.run(BANK, SubmitEvidence(_double_sign(VALS[3], h))).code == Code.OK


def test_EVD_2_a_key_of_the_current_set_is_no_validator_of_heights_before_it_joined() -> None:
    net = Net(threshold=1, delay=1)
    net.block()
    assert net.run(ADMIN_A, propose(SetValidator(VALS[4].pk, 10, VALS[4].name))).code == Code.OK
    joined = net.ledger.last.height + 1  # the first height VALS[4] signs
    net.block()
    assert VALS[4].id in net.ledger.state().validators().by_address
    for h in (1, joined - 1):  # validly signed by a key in today's set, but not a validator of that height
        net.refused(BANK, SubmitEvidence(_double_sign(VALS[4], h)), Code.INVALID_EVIDENCE)
    ev = _double_sign(VALS[4], joined)
    assert net.run(BANK, SubmitEvidence(ev)) == TxResult(Code.OK, ev.hash)
    net.refused(BANK, SubmitEvidence(ev), Code.DUPLICATE_EVIDENCE)


def test_EVD_2_the_vote_must_verify_with_the_key_of_that_height() -> None:
    """Votes under a validator's address but signed with another validator's key do not verify."""
    net = Net(threshold=1, delay=1)
    good = _double_sign(VALS[2], 1)
    forged_votes = [replace(v, signature=Vote.create(VALS[1].signer, CHAIN, v.type, v.height, v.round,
                                                     v.block_hash, v.timestamp_ms).signature)
                    for v in (good.vote_a, good.vote_b)]
    net.refused(BANK, SubmitEvidence(Evidence.of(*forged_votes)), Code.INVALID_EVIDENCE)


def test_EVD_2_evidence_older_than_the_bound_is_refused(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    assert evidence.MAX_EVIDENCE_AGE == 100_000
    monkeypatch.setattr(evidence, "MAX_EVIDENCE_AGE", 3)  # 100,000 blocks are too many for an example
    net.block()
    net.block()
    h = net.ledger.last.height + 1  # the block that executes the next transaction
    net.refused(BANK, SubmitEvidence(_double_sign(VALS[0], h - 4)), Code.INVALID_EVIDENCE)
    h = net.ledger.last.height + 1
    assert net.run(BANK, SubmitEvidence(_double_sign(VALS[0], h - 3))).code == Code.OK


def test_EVD_3_each_piece_of_evidence_is_recorded_once(net: Net) -> None:
    ev = _double_sign(VALS[0], 1)
    ex = net.block(net.tx(BANK, SubmitEvidence(ev)))
    assert ex.codes() == [Code.OK]
    assert [e.kind for e in ex.events] == ["double_sign_evidence"]
    assert set(ex.events[0].accounts) == {ADMIN_A.id, ADMIN_B.id, ADMIN_C.id}
    net.refused(NOTARY, SubmitEvidence(ev), Code.DUPLICATE_EVIDENCE)
    assert net.get(EvidenceRecord, Kind.EVIDENCE, ev.hash).reporter == BANK.id
    # The validator stays until the admins remove it.
    assert VALS[0].pk in {v.pubkey for v in net.ledger.state().validators().validators}


# ================================================================================================ AUD


def _story(net: Net) -> bytes:
    gid = grant_to_bank(net, max_uses=1)
    net.block(net.tx(BANK, RecordAccess(gid, net.alice_health)), net.tx(BANK, RecordAccess(gid, net.alice_health)))
    net.block(net.tx(ALICE, RevokeConsent(gid)))
    return gid


def test_AUD_1_blocks_must_follow_each_other(net: Net) -> None:
    _story(net)
    blocks = net.chain.blocks
    report = audit.replay(net.genesis, blocks)
    assert (report.height, report.app_hash) == (len(blocks), net.ledger.last.app_hash.hex())
    # The failure names the height of the block that does not fit.
    for broken, height in [(blocks[:2] + blocks[3:], 4), (blocks[1:], 2), ([*blocks[:3], blocks[2]], 3)]:
        with pytest.raises(audit.AuditFailure) as e:
            audit.replay(net.genesis, broken)
        assert e.value.height == height


def test_AUD_2_commit_certificates_are_verified(net: Net) -> None:
    _story(net)
    blocks = list(net.chain.blocks)
    assert audit.replay(net.genesis, blocks, final_commit=net.chain.last_commit).final_commit_verified
    cert = blocks[3].last_commit
    assert cert is not None
    sig = cert.sigs[0]
    forged = replace(cert, sigs=(replace(sig, signature=bytes(64)), *cert.sigs[1:]))
    header = replace(blocks[3].header, last_commit_hash=forged.hash)
    blocks[3] = replace(blocks[3], header=header, last_commit=forged)
    with pytest.raises(audit.AuditFailure) as e:
        audit.replay(net.genesis, blocks)
    assert e.value.height == 4
    with pytest.raises(audit.AuditFailure):  # the final certificate must be for the last block
        audit.replay(net.genesis, net.chain.blocks[:-1], final_commit=net.chain.last_commit)


def test_AUD_3_signatures_are_verified_again_and_every_attempt_is_reported(net: Net) -> None:
    gid = _story(net)
    report = audit.replay(net.genesis, net.chain.blocks)
    assert [(g.code, g.grant_id) for g in report.grants] == [(Code.OK, gid.hex())]
    assert [a.code for a in report.accesses] == [Code.OK, Code.GRANT_USED_UP]
    assert [(r.code, r.grant_id) for r in report.revocations] == [(Code.GRANT_NOT_ACTIVE, gid.hex())]
    assert {(f.type, f.code) for f in report.failures} == {("access.record", Code.GRANT_USED_UP),
                                                           ("consent.revoke", Code.GRANT_NOT_ACTIVE)}
    # A producer that trusted a cached "verified" hash for a forged signature: the replay catches it.
    pull = net.tx(BANK, RecordAccess(gid, net.alice_health))
    forged = replace(pull, signature=bytes(63) + b"\x01")
    net.ledger.verified = frozenset({forged.hash})
    ex = net.block(forged)
    assert ex.codes() == [Code.GRANT_USED_UP]  # executed as if signed
    with pytest.raises(audit.AuditFailure) as e:
        audit.replay(net.genesis, net.chain.blocks)
    assert e.value.height == net.ledger.last.height


def test_AUD_4_a_failure_stops_the_replay_at_its_height(net: Net) -> None:
    _story(net)
    blocks = list(net.chain.blocks)
    bad = blocks[2]
    blocks[2] = replace(bad, header=replace(bad.header, app_hash=bytes(32)))
    seen: list[int] = []
    with pytest.raises(audit.AuditFailure) as e:
        audit.replay(net.genesis, blocks, progress=seen.append)
    assert e.value.height == 3 and "app hash" in e.value.reason
    assert seen == [1, 2]
