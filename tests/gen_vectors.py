"""Golden test vectors: one fixed instance of every canonical structure, and the signing bytes of a Tx and a
Vote, with their exact bytes and SHA-256.

    PYTHONPATH=. python tests/gen_vectors.py            # (re)write docs/test-vectors.md
    PYTHONPATH=. python tests/gen_vectors.py --python   # print the GOLDEN constants for tests/test_golden.py

Everything is deterministic: keys come from fixed seeds (`bytes([i]) * 32`), ids are SHA-256 of fixed labels,
times are fixed, and Ed25519 signatures are deterministic. `tests/test_golden.py` pins the bytes and checks
that docs/test-vectors.md is exactly what `render()` produces.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nacl.public

import consensus.tendermint as tm
from consensus.crypto import Domain, Ed25519Signer, account_id, signing_bytes
from consensus.encoding import Struct
from consensus.merkle import EMPTY_ROOT, merkle_root
from consensus.types import (
    PRECOMMIT,
    PREVOTE,
    Block,
    CommitCertificate,
    ConsensusParams,
    Genesis,
    Header,
    Tx,
    Validator,
    ValidatorSet,
    Vote,
)
from contracts.evidence import EvidenceRecord
from contracts.execute import LastBlock, TxResult
from contracts.genesis import AppGenesis, GenesisMember, GenesisSchema
from contracts.records import (
    Access,
    Account,
    AdminProposal,
    Asset,
    AssetRequest,
    ConsentRequest,
    Grant,
    PendingValidators,
    Schema,
    ValidatorUpdate,
)
from contracts.txs import (
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

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "test-vectors.md"

CHAIN_ID = "mydata-test"
T0 = 1_700_000_000_000  # genesis time, ms since the epoch


def signer(i: int) -> Ed25519Signer:
    """The fixed Ed25519 key with seed `bytes([i]) * 32`."""
    return Ed25519Signer(bytes([i]) * 32)


def enc_pk(i: int) -> bytes:
    """The fixed X25519 public key with secret `bytes([0x80 + i]) * 32`."""
    return bytes(nacl.public.PrivateKey(bytes([0x80 + i]) * 32).public_key)


def h(label: str) -> bytes:
    """A fixed 32-byte id: SHA-256 of a label."""
    return hashlib.sha256(label.encode()).digest()


#: Seeds: validators 1..4, then the parties of the story.
VALIDATORS = [signer(i) for i in (1, 2, 3, 4)]
ADMIN, REGISTRAR, ISSUER, HOLDER, BANK = (signer(i) for i in (5, 6, 7, 8, 9))
ADMIN_ID, REGISTRAR_ID, ISSUER_ID, HOLDER_ID, BANK_ID = (
    account_id(s.public_key) for s in (ADMIN, REGISTRAR, ISSUER, HOLDER, BANK))


def instances() -> dict[str, Struct]:
    """One fixed instance of every Struct subclass, keyed by class name (in a stable order)."""
    out: dict[str, Struct] = {}

    # ---- consensus.types
    validators = [Validator(s.public_key, 10 * (i + 1), f"v{i + 1}") for i, s in enumerate(VALIDATORS)]
    valset = ValidatorSet.of(validators)
    params = ConsensusParams.default()
    app = AppGenesis(
        members=(
            GenesisMember("bureau", ("admin",), ADMIN.public_key, enc_pk(5)),
            GenesisMember("public-security", ("registrar",), REGISTRAR.public_key, enc_pk(6)),
            GenesisMember("social-security", ("issuer",), ISSUER.public_key, enc_pk(7)),
            GenesisMember("bank", ("consumer",), BANK.public_key, enc_pk(9)),
        ),
        admin_threshold=1,
        schemas=(GenesisSchema("social.insurance", ("employer", "monthly_base", "since"), (ISSUER_ID,)),),
    )
    genesis = Genesis(CHAIN_ID, T0, valset, params, app.encode())

    grant_body = GrantConsent(
        grantee=BANK_ID,
        assets=(h("asset-1"),),
        fields=("employer", "monthly_base"),
        purpose="mortgage application",
        not_after_ms=T0 + 30 * 86_400_000,
        max_uses=3,
        package_hash=h("package-1"),
        request_id=h("consent-request-1"),
    )
    tx1 = Tx.create(HOLDER, CHAIN_ID, HOLDER_ID, 3, "consent.grant", grant_body.encode())
    tx2 = Tx.create(BANK, CHAIN_ID, BANK_ID, 0, "access.record",
                    RecordAccess(h("grant-1"), h("asset-1")).encode())
    results1 = [TxResult("ok", h("grant-1")).encode(), TxResult("ok", h("access-1")).encode()]
    header1 = Header(
        chain_id=CHAIN_ID, height=1, time_ms=T0 + 1000, prev_hash=genesis.hash,
        txs_root=merkle_root([tx1.encode(), tx2.encode()]), num_txs=2, last_commit_hash=EMPTY_ROOT,
        results_hash=merkle_root(results1), app_hash=h("app-hash-1"), validators_hash=valset.hash,
        next_validators_hash=valset.hash, proposer=valset.validators[0].address,
    )
    block1 = Block(header1, (tx1.encode(), tx2.encode()), None)
    votes = [Vote.create(s, CHAIN_ID, PRECOMMIT, 1, 0, block1.hash, T0 + 1500 + i)
             for i, s in enumerate(VALIDATORS[:3])]
    commit1 = CommitCertificate.from_votes(votes)
    tx3 = Tx.create(HOLDER, CHAIN_ID, HOLDER_ID, 4, "consent.revoke", RevokeConsent(h("grant-1")).encode())
    header2 = Header(
        chain_id=CHAIN_ID, height=2, time_ms=T0 + 2000, prev_hash=block1.hash,
        txs_root=merkle_root([tx3.encode()]), num_txs=1, last_commit_hash=commit1.hash,
        results_hash=merkle_root([TxResult("ok", h("grant-1")).encode()]), app_hash=h("app-hash-2"),
        validators_hash=valset.hash, next_validators_hash=valset.hash, proposer=valset.validators[1].address,
    )
    block2 = Block(header2, (tx3.encode(),), commit1)

    out["Tx"] = tx1
    out["Validator"] = validators[0]
    out["ValidatorSet"] = valset
    out["Vote"] = votes[0]
    out["CommitSig"] = commit1.sigs[0]
    out["CommitCertificate"] = commit1
    out["Header"] = header2
    out["Block"] = block2
    out["ConsensusParams"] = params
    out["Genesis"] = genesis

    # ---- contracts.records
    out["Account"] = Account(
        id=HOLDER_ID, kind="enterprise", name="Weihai Example Co., Ltd.", roles=(),
        sign_pk=HOLDER.public_key, enc_pk=enc_pk(8), status="active", nonce=5, subject_ref=h("subject-ref"),
        delegates=tuple(sorted([signer(10).public_key, signer(11).public_key])), created_height=1,
    )
    out["Schema"] = Schema("social.insurance", ("employer", "monthly_base", "since"), (ISSUER_ID,), 2)
    out["ValidatorUpdate"] = ValidatorUpdate(signer(12).public_key, 0, "v5")
    out["PendingValidators"] = PendingValidators((
        ValidatorUpdate(signer(12).public_key, 5, "v5"), ValidatorUpdate(VALIDATORS[3].public_key, 0, "v4")))
    out["AdminProposal"] = AdminProposal(
        id=h("proposal-1"), proposer=ADMIN_ID, action="validator.set",
        payload=SetValidator(signer(12).public_key, 5, "v5").encode(), approvals=(ADMIN_ID,), status="open",
        created_height=7, executed_height=0,
    )
    out["Asset"] = Asset(
        id=h("asset-2"), holder=HOLDER_ID, issuer=ISSUER_ID, schema="social.insurance", version=2,
        fields=("employer", "monthly_base", "since"), field_root=h("field-root"), payload_hash=h("payload"),
        supersedes=h("asset-1"), superseded_by=b"", status="active", reason="", issued_height=9,
        issued_time_ms=T0 + 9000,
    )
    out["AssetRequest"] = AssetRequest(
        id=h("asset-request-1"), kind="correction", holder=HOLDER_ID, issuer=ISSUER_ID,
        schema="social.insurance", asset_id=h("asset-1"), fields=("monthly_base",), note_hash=h("note"),
        status="fulfilled", result_asset=h("asset-2"), reason="", created_height=8, resolved_height=9,
    )
    out["ConsentRequest"] = ConsentRequest(
        id=h("consent-request-1"), consumer=BANK_ID, holder=HOLDER_ID, schemas=("social.insurance",),
        fields=("employer", "monthly_base"), purpose="mortgage application", duration_ms=30 * 86_400_000,
        max_uses=3, status="granted", grant_id=h("grant-1"), reason="", created_height=10,
        created_time_ms=T0 + 10_000,
    )
    out["Grant"] = Grant(
        id=h("grant-1"), holder=HOLDER_ID, grantee=BANK_ID, assets=(h("asset-1"),),
        fields=("employer", "monthly_base"), purpose="mortgage application",
        not_after_ms=T0 + 30 * 86_400_000, max_uses=3, uses=1, package_hash=h("package-1"),
        request_id=h("consent-request-1"), status="granted", created_height=11,
        created_time_ms=T0 + 11_000, closed_height=0,
    )
    out["Access"] = Access(
        id=h("access-1"), grant=h("grant-1"), asset=h("asset-1"), holder=HOLDER_ID, consumer=BANK_ID,
        purpose="mortgage application", use=1, height=12, time_ms=T0 + 12_000,
    )

    # ---- contracts.txs
    out["Propose"] = Propose("validator.set", SetValidator(signer(12).public_key, 5, "v5").encode())
    out["Approve"] = Approve(h("proposal-1"))
    out["RegisterMember"] = RegisterMember("notary", ("consumer",), signer(13).public_key, enc_pk(13))
    out["UpdateMember"] = UpdateMember(BANK_ID, ("auditor", "consumer"), "suspended")
    out["RegisterSchema"] = RegisterSchema("civil.marriage", ("registered_on", "spouse_ref"), (ISSUER_ID,))
    out["SetValidator"] = SetValidator(signer(12).public_key, 5, "v5")
    out["SetThreshold"] = SetThreshold(2)
    out["RegisterHolder"] = RegisterHolder("person", h("subject-ref"), HOLDER.public_key, enc_pk(8))
    out["Delegate"] = Delegate(signer(10).public_key)
    out["RotateKeys"] = RotateKeys(signer(14).public_key, enc_pk(14))
    out["IssueAsset"] = IssueAsset(
        holder=HOLDER_ID, schema="social.insurance", fields=("employer", "monthly_base", "since"),
        field_root=h("field-root"), payload_hash=h("payload"), supersedes=h("asset-1"),
        answers=h("asset-request-1"),
    )
    out["RequestAsset"] = RequestAsset(ISSUER_ID, "social.insurance", b"")
    out["RequestCorrection"] = RequestCorrection(h("asset-1"), ("monthly_base",), h("note"))
    out["RefuseRequest"] = RefuseRequest(h("asset-request-1"), "no record for this period")
    out["RevokeAsset"] = RevokeAsset(h("asset-1"), "issued in error")
    out["EraseAsset"] = EraseAsset(h("asset-1"))
    out["RequestConsent"] = RequestConsent(
        holder=HOLDER_ID, schemas=("social.insurance",), fields=("employer", "monthly_base"),
        purpose="mortgage application", duration_ms=30 * 86_400_000, max_uses=3,
    )
    out["GrantConsent"] = grant_body
    out["RejectConsent"] = RejectConsent(h("consent-request-2"), "")
    out["RevokeConsent"] = RevokeConsent(h("grant-1"))
    out["RecordAccess"] = RecordAccess(h("grant-1"), h("asset-1"))

    ev = tm.Evidence.of(Vote.create(VALIDATORS[0], CHAIN_ID, PREVOTE, 2, 0, block2.hash, T0 + 2100),
                        Vote.create(VALIDATORS[0], CHAIN_ID, PREVOTE, 2, 0, b"", T0 + 2101))
    out["SubmitEvidence"] = SubmitEvidence(ev)

    # ---- consensus.tendermint
    proposal = tm.Proposal.create(VALIDATORS[1], CHAIN_ID, 2, 0, block2.hash, T0 + 2000)
    out["Proposal"] = proposal
    out["ProposalMessage"] = tm.ProposalMessage(proposal, block2)
    out["Evidence"] = ev

    # ---- contracts.evidence
    out["EvidenceRecord"] = EvidenceRecord(ev, ADMIN_ID, 3)

    # ---- contracts.genesis
    out["GenesisMember"] = app.members[0]
    out["GenesisSchema"] = app.schemas[0]
    out["AppGenesis"] = app

    # ---- contracts.execute
    out["TxResult"] = TxResult("ok", h("grant-1"))
    out["LastBlock"] = LastBlock(2, block2.hash, header2.time_ms, header2.app_hash, valset)
    return out


def vectors() -> list[tuple[str, bytes]]:
    """(name, bytes) of every golden vector: each structure, then the signing bytes of a Tx and a Vote."""
    inst = instances()
    out = [(name, x.encode()) for name, x in inst.items()]
    tx = inst["Tx"]
    vote = inst["Vote"]
    assert isinstance(tx, Tx) and isinstance(vote, Vote)
    out.append(("Tx signing bytes", signing_bytes(Domain.TX, tx.chain_id, tx.signing_payload)))
    out.append(("Vote signing bytes", signing_bytes(Domain.VOTE, CHAIN_ID, vote.signing_payload)))
    return out


def _wrap(hex_: str, width: int = 64) -> list[str]:
    return [hex_[i:i + width] for i in range(0, len(hex_), width)] or [""]


def render() -> str:
    """The whole of docs/test-vectors.md."""
    inst = instances()
    vecs = vectors()
    lines = [
        "# Test vectors",
        "",
        "Exact canonical bytes (msgpack arrays, docs/protocol.md ENC-1..ENC-5) and SHA-256 of one fixed",
        "instance of every structure, plus the signing bytes (SIG-1: `u8 len(domain) || domain ||",
        "u8 len(chain_id) || chain_id || payload`) of a transaction and of a vote. An implementation in",
        "another language is compatible if it produces these bytes from these values, and decodes them back.",
        "",
        "Generated by `PYTHONPATH=. python tests/gen_vectors.py`; `tests/test_golden.py` fails if this file",
        "or the bytes drift. Inputs:",
        "",
        f"- chain id `{CHAIN_ID}`, genesis time `{T0}` ms;",
        "- Ed25519 keys from seeds `bytes([i]) * 32`: validators v1..v4 are i = 1..4, then admin 5,",
        "  registrar 6, issuer 7, holder 8, bank 9, delegates 10 and 11, new validator v5 12, notary 13,",
        "  rotated key 14; an account id is SHA-256 of the Ed25519 public key;",
        "- X25519 keys from secrets `bytes([0x80 + i]) * 32` with the same i;",
        "- other ids are SHA-256 of a label (e.g. `sha256(\"grant-1\")`);",
        "- the block is block 2 of a chain whose block 1 holds two transactions; it carries the",
        "  commit certificate of block 1 (precommits of v1..v3). A block's *hash* is its header's hash; the",
        "  SHA-256 below is over the block's own bytes.",
        "",
        "## Summary",
        "",
        "| structure | bytes | SHA-256 |",
        "|---|---:|---|",
    ]
    for name, data in vecs:
        lines.append(f"| {name} | {len(data)} | `{hashlib.sha256(data).hexdigest()}` |")
    lines.append("")
    lines.append("## Vectors")
    for name, data in vecs:
        lines += ["", f"### {name}", "", f"SHA-256 `{hashlib.sha256(data).hexdigest()}`", ""]
        if name in inst:
            lines += ["Value (JSON form, bytes as lowercase hex):", "", "```json",
                      json.dumps(inst[name].to_json(), indent=1), "```", ""]
        lines += ["Bytes:", "", "```", *_wrap(data.hex()), "```"]
    lines.append("")
    return "\n".join(lines)


def python_constants() -> str:
    """The GOLDEN dict, formatted for pasting into tests/test_golden.py."""
    lines = ["GOLDEN: dict[str, tuple[str, str]] = {"]
    for name, data in vectors():
        lines.append(f"    \"{name}\": (")
        chunks = _wrap(data.hex(), 96)
        for i, c in enumerate(chunks):
            lines.append(f"        \"{c}\"" + ("," if i == len(chunks) - 1 else ""))
        lines.append(f"        \"{hashlib.sha256(data).hexdigest()}\",")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if "--python" in argv:
        print(python_constants())
        return 0
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(render(), encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
