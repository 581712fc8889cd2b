"""Making blocks and their commit certificates: what a proposer and its validators do with an Application."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.app import Application, BlockContext, Execution
from consensus.crypto import Signer
from consensus.merkle import EMPTY_ROOT, merkle_root
from consensus.types import PRECOMMIT, Block, CommitCertificate, Header, Vote


def build_block(app: Application, ctx: BlockContext, prev_hash: bytes, txs: Sequence[bytes],
                last_commit: CommitCertificate | None) -> tuple[Block, Execution]:
    """Execute `txs` (staged, not committed) and wrap them in a block whose header states the outcome."""
    ex = app.execute(ctx, txs)
    header = Header(
        chain_id=ctx.chain_id,
        height=ctx.height,
        time_ms=ctx.time_ms,
        prev_hash=prev_hash,
        txs_root=merkle_root(txs),
        num_txs=len(txs),
        last_commit_hash=EMPTY_ROOT if last_commit is None else last_commit.hash,
        results_hash=ex.results_hash,
        app_hash=ex.app_hash,
        validators_hash=ex.validators.hash,
        next_validators_hash=ex.next_validators.hash,
        proposer=ctx.proposer,
    )
    return Block(header, tuple(txs), last_commit), ex


def sign_commit(block: Block, signers: Sequence[Signer], round: int, timestamp_ms: int) -> CommitCertificate:
    """Precommits of `signers` for `block`, gathered into a certificate (the caller knows they are 2f+1)."""
    h = block.header
    votes = [Vote.create(s, h.chain_id, PRECOMMIT, h.height, round, block.hash, timestamp_ms) for s in signers]
    return CommitCertificate.from_votes(votes)
