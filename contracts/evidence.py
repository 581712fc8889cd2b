"""Evidence of double signing, committed on chain (docs/contracts.md, EVD-1..EVD-3).

- EVD-1  Any active member (a validator's node key is a member) submits `evidence.submit` with two
         conflicting votes of one validator (consensus.tendermint.Evidence): same type, height and round,
         different blocks, both validly signed for this chain.
- EVD-2  The votes' height is at most the current block's and at most MAX_EVIDENCE_AGE heights below it;
         the validator is in the set that signed that height (the validator-set history, `valhist/`), and
         both votes verify with its key. A validator removed or re-weighted since is still caught; a key
         that joined the set later is not a validator of that height.
- EVD-3  Each piece of evidence is recorded once (`evidence/<hash>`, by the hash of its canonical bytes),
         with the height it was committed at; the admins hear of it. Punishment (removing the validator)
         is the admins' decision, through `validator.set`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from consensus.encoding import HASH, U64, Nested, Struct, field_
from consensus.errors import LedgerError
from consensus.tendermint import Evidence
from contracts.codes import Code, Failure, require
from contracts.context import TxContext
from contracts.records import Kind, Status
from contracts.txs import SubmitEvidence

#: EVD-2: evidence of a double sign more than this many heights below the block that would record it is
#: refused (CometBFT's default `max_age_num_blocks`; docs/decisions.md, D-37).
MAX_EVIDENCE_AGE = 100_000


@dataclass(frozen=True)
class EvidenceRecord(Struct):
    evidence: Evidence = field_(Nested(Evidence))
    reporter: bytes = field_(HASH)
    height: int = field_(U64)


def submit(ctx: TxContext, body: SubmitEvidence) -> None:
    """EVD-1..EVD-3."""
    require(ctx.sender.kind == "member" and ctx.sender.status == Status.ACTIVE, Code.NOT_MEMBER)
    ev = body.evidence
    h = ctx.block.height
    require(ev.height <= h, Code.INVALID_EVIDENCE, "evidence from the future")
    require(h - ev.height <= MAX_EVIDENCE_AGE, Code.INVALID_EVIDENCE,
            f"evidence more than {MAX_EVIDENCE_AGE} heights old")
    validators = ctx.state.validators_at(ev.height)
    require(validators is not None, Code.INVALID_EVIDENCE, "no validator set at that height")
    assert validators is not None
    try:
        ev.validate(ctx.block.chain_id, validators)
    except LedgerError as e:
        raise Failure(Code.INVALID_EVIDENCE, str(e)) from None
    require(ctx.state.get_raw(Kind.EVIDENCE + ev.hash) is None, Code.DUPLICATE_EVIDENCE)
    ctx.state.put(Kind.EVIDENCE, ev.hash, EvidenceRecord(ev, ctx.sender.id, ctx.block.height))
    ctx.object_id = ev.hash
    ctx.emit("double_sign_evidence", ev.hash, *ctx.state.admins())


HANDLERS: dict[str, Callable[[TxContext, Any], None]] = {"evidence.submit": submit}
