"""The auditor's side of a replay: fetch the genesis-to-tip chain from a node (signed as an auditor) and
verify it independently with contracts.audit.replay. The node is not trusted: every block is re-verified."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from consensus.types import Block, CommitCertificate, Genesis
from contracts.audit import AuditReport, replay
from wallet.client import ApiError, Client


class FetchError(Exception):
    pass


def fetch_blocks(client: Client, height: int) -> Iterator[Block]:
    for h in range(1, height + 1):
        data = client.block(h)
        if "raw" not in data:
            raise FetchError("the node sends full blocks only to auditors and validators: sign as one")
        yield Block.decode(bytes.fromhex(data["raw"]))


def replay_from_node(client: Client, genesis: Genesis,
                     progress: Callable[[int, int], None] | None = None) -> AuditReport:
    """Replay the node's chain up to its current height, verifying its last commit too."""
    status = client.status()
    if status["chain_id"] != genesis.chain_id:
        raise FetchError(f"the node serves chain {status['chain_id']!r}, the genesis is for {genesis.chain_id!r}")
    height = int(status["height"])
    final: CommitCertificate | None = None
    if height > 0:
        try:
            last = client.block(height)
        except ApiError as e:
            raise FetchError(f"cannot fetch block {height}: {e}") from None
        if last.get("commit_raw"):
            final = CommitCertificate.decode(bytes.fromhex(last["commit_raw"]))
    return replay(genesis, fetch_blocks(client, height), final,
                  progress=None if progress is None else (lambda h: progress(h, height)))
