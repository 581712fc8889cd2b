"""The boundary between consensus (and the node) and the application (contracts/).

Modelled on CometBFT's ABCI, reduced to what a chain that executes a block *before* voting for it needs:

    init_chain(genesis)          -> the state root and validator set of height 0
    check_tx(raw)                -> may this transaction enter the mempool? (stateless + cheap stateful)
    prepare_proposal(ctx, txs)   -> which of the waiting transactions go into the proposer's block
    execute(ctx, txs)            -> an `Execution`: results, events, app hash; staged, nothing written
    commit(execution, extra)     -> write the staged state and `extra` (the block itself) in ONE atomic batch

`apply_block` in contracts is `execute` + a check that the header matches + `commit`: the single entry point
for a block that comes from elsewhere (replay, block sync).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from consensus.types import Genesis, ValidatorSet


@dataclass(frozen=True)
class BlockContext:
    """What a block's execution may know about the block: nothing else (no clocks, no randomness)."""

    chain_id: str
    height: int
    time_ms: int
    proposer: bytes


@dataclass(frozen=True)
class CheckResult:
    code: str
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.code == "ok"


class Execution(Protocol):
    """The outcome of executing one block's transactions, staged in memory until committed."""

    @property
    def height(self) -> int: ...

    @property
    def app_hash(self) -> bytes: ...

    @property
    def results(self) -> Sequence[bytes]:
        """One canonical result per transaction, in block order."""
        ...

    @property
    def results_hash(self) -> bytes: ...

    @property
    def validators(self) -> ValidatorSet:
        """The validator set that signs this block."""
        ...

    @property
    def next_validators(self) -> ValidatorSet:
        """The validator set that signs the next block."""
        ...


@dataclass(frozen=True)
class AppInfo:
    height: int
    app_hash: bytes
    validators: ValidatorSet


class Application(Protocol):
    def init_chain(self, genesis: Genesis) -> AppInfo:
        """Build the state of height 0 from the genesis document (once, on an empty store)."""
        ...

    def info(self) -> AppInfo:
        """The last committed height, its app hash and the validator set for the next height."""
        ...

    def check_tx(self, raw_tx: bytes) -> CheckResult:
        """Whether a transaction may wait in the mempool: form, signature, sender known, nonce not used."""
        ...

    def prepare_proposal(self, ctx: BlockContext, raw_txs: Sequence[bytes], max_bytes: int) -> list[bytes]:
        """Choose, in order, the transactions of the block the proposer is building."""
        ...

    def execute(self, ctx: BlockContext, raw_txs: Sequence[bytes]) -> Execution:
        """Run a block's transactions against the committed state without writing anything."""
        ...

    def commit(self, execution: Execution, extra_puts: Mapping[bytes, bytes] = ...) -> None:
        """Write the execution's state changes and `extra_puts` in one atomic batch."""
        ...
