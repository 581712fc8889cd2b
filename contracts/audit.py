"""The auditor's replay: trust nothing but the genesis document, re-verify and re-execute every block, and
report every grant and every access, refused attempts included.

What `replay` checks (docs/contracts.md, AUD-1..AUD-4):

- AUD-1  Each block follows the previous one: chain id, height, prev_hash, advancing time (apply_block).
- AUD-2  Each block carries the commit certificate of its predecessor, verified against the validator set
         of that height; the last block's certificate, when given, is verified too.
- AUD-3  Every transaction's signature is verified again (no cache), and each block re-executed from
         genesis must give the app hash, results hash and next validator set its header states.
- AUD-4  Any disagreement stops the replay with the height and the reason; nothing is reported as verified
         beyond the last block that passed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from consensus.errors import DecodeError, LedgerError, ValidationError
from consensus.kv import KVStore, MemoryKV
from consensus.types import Block, CommitCertificate, Genesis, Tx
from contracts.codes import Code
from contracts.execute import BlockExecution, BlockRejected, Ledger, TxResult, apply_block
from contracts.records import Grant, Kind
from contracts.txs import GrantConsent, RecordAccess, RevokeConsent


class AuditFailure(Exception):
    """The chain does not verify; `height` is the first block that failed."""

    def __init__(self, height: int, reason: str) -> None:
        super().__init__(f"block {height}: {reason}")
        self.height = height
        self.reason = reason


@dataclass
class GrantEntry:
    height: int
    time_ms: int
    tx_hash: str
    code: str
    grant_id: str
    holder: str
    grantee: str
    assets: list[str]
    fields: list[str]
    purpose: str
    not_after_ms: int
    max_uses: int


@dataclass
class AccessEntry:
    height: int
    time_ms: int
    tx_hash: str
    code: str
    access_id: str
    consumer: str
    holder: str
    grant_id: str
    asset_id: str
    purpose: str


@dataclass
class RevocationEntry:
    height: int
    time_ms: int
    tx_hash: str
    code: str
    holder: str
    grant_id: str


@dataclass
class FailureEntry:
    height: int
    tx_index: int
    tx_hash: str
    type: str
    sender: str
    code: str


@dataclass
class AuditReport:
    chain_id: str
    genesis_hash: str
    height: int = 0
    app_hash: str = ""
    last_block_hash: str = ""
    blocks: int = 0
    transactions: int = 0
    final_commit_verified: bool = False
    grants: list[GrantEntry] = field(default_factory=list)
    accesses: list[AccessEntry] = field(default_factory=list)
    revocations: list[RevocationEntry] = field(default_factory=list)
    failures: list[FailureEntry] = field(default_factory=list)

    def by_holder(self) -> dict[str, dict[str, list[Any]]]:
        out: dict[str, dict[str, list[Any]]] = {}
        for g in self.grants:
            out.setdefault(g.holder, {"grants": [], "accesses": []})["grants"].append(g)
        for a in self.accesses:
            out.setdefault(a.holder, {"grants": [], "accesses": []})["accesses"].append(a)
        return dict(sorted(out.items()))

    def by_consumer(self) -> dict[str, dict[str, list[Any]]]:
        out: dict[str, dict[str, list[Any]]] = {}
        for g in self.grants:
            out.setdefault(g.grantee, {"grants": [], "accesses": []})["grants"].append(g)
        for a in self.accesses:
            out.setdefault(a.consumer, {"grants": [], "accesses": []})["accesses"].append(a)
        return dict(sorted(out.items()))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def replay(genesis: Genesis, blocks: Iterable[Block], final_commit: CommitCertificate | None = None,
           store: KVStore | None = None, progress: Callable[[int], None] | None = None) -> AuditReport:
    """Verify and re-execute `blocks` (in height order, from 1) on a fresh ledger; raise AuditFailure at the
    first block that does not verify. `progress` is called with each verified height."""
    ledger = Ledger(store if store is not None else MemoryKV())
    ledger.init_chain(genesis)
    report = AuditReport(genesis.chain_id, genesis.hash.hex())
    for block in blocks:
        h = block.header.height
        try:
            ex = apply_block(ledger, block, sync=False)
        except BlockRejected as e:
            raise AuditFailure(h, str(e)) from None
        _record(report, ledger, block, ex)
        report.height, report.app_hash, report.last_block_hash = h, ex.app_hash.hex(), block.hash.hex()
        report.blocks += 1
        report.transactions += len(block.txs)
        if progress is not None:
            progress(h)
    if final_commit is not None:
        last = ledger.last
        if final_commit.height != last.height or final_commit.block_hash != last.block_hash:
            raise AuditFailure(last.height, "the final commit is not for the last block")
        assert last.validators is not None
        try:
            final_commit.verify(ledger.chain_id, last.validators)
        except LedgerError as e:
            raise AuditFailure(last.height, f"the final commit does not verify: {e}") from None
        report.final_commit_verified = True
    return report


def _record(report: AuditReport, ledger: Ledger, block: Block, ex: BlockExecution) -> None:
    st = ledger.state()
    t = block.header.time_ms
    for i, raw in enumerate(block.txs):
        res = TxResult.decode(ex.results[i])
        tx_hash = ex.tx_hashes[i].hex()
        try:
            tx = Tx.decode(raw)
        except (DecodeError, ValidationError):
            report.failures.append(FailureEntry(block.height, i, tx_hash, "?", "", res.code))
            continue
        if res.code != Code.OK:
            report.failures.append(FailureEntry(block.height, i, tx_hash, tx.type, tx.sender.hex(), res.code))
        try:
            if tx.type == "consent.grant":
                g = GrantConsent.decode(tx.body)
                report.grants.append(GrantEntry(
                    block.height, t, tx_hash, res.code, res.object_id.hex(), tx.sender.hex(), g.grantee.hex(),
                    [a.hex() for a in g.assets], list(g.fields), g.purpose, g.not_after_ms, g.max_uses))
            elif tx.type == "access.record":
                a = RecordAccess.decode(tx.body)
                grant = st.get(Grant, Kind.GRANT, a.grant_id)
                report.accesses.append(AccessEntry(
                    block.height, t, tx_hash, res.code, res.object_id.hex(), tx.sender.hex(),
                    grant.holder.hex() if grant else "", a.grant_id.hex(), a.asset_id.hex(),
                    grant.purpose if grant else ""))
            elif tx.type == "consent.revoke":
                r = RevokeConsent.decode(tx.body)
                report.revocations.append(RevocationEntry(block.height, t, tx_hash, res.code, tx.sender.hex(),
                                                          r.grant_id.hex()))
        except (DecodeError, ValidationError):
            pass  # a malformed body is already listed among the failures with its code
