"""An in-process chain with real keys, real blocks and real commit certificates, for tests, benchmarks and
the demo's story. Deterministic: every key comes from a name and a seed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from consensus.app import BlockContext
from consensus.blocks import build_block, sign_commit
from consensus.crypto import Ed25519Signer, account_id
from consensus.encoding import Struct
from consensus.kv import KVStore, MemoryKV
from consensus.types import Block, CommitCertificate, ConsensusParams, Genesis, Tx, Validator, ValidatorSet
from contracts.execute import BlockExecution, Ledger
from contracts.genesis import AppGenesis, GenesisMember, GenesisSchema
from wallet.tx import make_tx


@dataclass
class Identity:
    """A named key pair set: Ed25519 for signing, X25519 for encryption (both from one seed)."""

    name: str
    seed: bytes
    signer: Ed25519Signer = field(init=False)
    enc_secret: bytes = field(init=False)
    enc_pk: bytes = field(init=False)
    nonce: int = 0

    def __post_init__(self) -> None:
        from nacl.public import PrivateKey

        self.signer = Ed25519Signer(self.seed)
        k = PrivateKey(hashlib.sha256(b"enc" + self.seed).digest())
        self.enc_secret, self.enc_pk = bytes(k), bytes(k.public_key)

    @classmethod
    def derive(cls, name: str, seed: bytes = b"") -> Identity:
        return cls(name, hashlib.sha256(b"mydata/dev/" + seed + b"/" + name.encode()).digest())

    @property
    def pk(self) -> bytes:
        return self.signer.public_key

    @property
    def id(self) -> bytes:
        return account_id(self.signer.public_key)

    @property
    def account_id(self) -> bytes:
        return self.id


class DevChain:
    """A ledger driven by a local proposer and validators; `blocks` keeps every block for replay."""

    def __init__(self, genesis: Genesis, validators: Sequence[Identity], store: KVStore | None = None,
                 block_interval_ms: int = 1000) -> None:
        self.genesis = genesis
        self.validators = list(validators)
        self.ledger = Ledger(store if store is not None else MemoryKV())
        self.ledger.init_chain(genesis)
        self.blocks: list[Block] = []
        self.last_commit: CommitCertificate | None = None
        self.time_ms = genesis.genesis_time_ms
        self.interval = block_interval_ms

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def tx(self, who: Identity, body: Struct, *, sender: Identity | None = None, tx_type: str | None = None,
           nonce: int | None = None) -> Tx:
        """Sign a transaction for `who` (or for `sender`, signed by its delegate `who`) with the next nonce."""
        acct = sender or who
        n = acct.nonce if nonce is None else nonce
        if nonce is None:
            acct.nonce += 1
        return make_tx(who.signer, self.chain_id, n, body, sender=acct.id, tx_type=tx_type)

    def produce(self, txs: Iterable[Tx | bytes], advance_ms: int | None = None) -> BlockExecution:
        """Make the next block from `txs`, commit it, and sign its commit certificate."""
        raw = [t if isinstance(t, bytes) else t.encode() for t in txs]
        self.time_ms += self.interval if advance_ms is None else advance_ms
        last = self.ledger.last
        vs = self.ledger.state().validators()
        proposer = vs.validators[last.height % len(vs.validators)].address
        ctx = BlockContext(self.chain_id, last.height + 1, self.time_ms, proposer)
        block, ex = build_block(self.ledger, ctx, last.block_hash, raw, self.last_commit)
        assert isinstance(ex, BlockExecution)
        self.ledger.commit(ex, block_hash=block.hash)
        signers = [v.signer for v in self.validators if v.signer.public_key in {x.pubkey for x in vs.validators}]
        self.last_commit = sign_commit(block, signers, 0, self.time_ms)
        self.blocks.append(block)
        return ex


def dev_genesis(chain_id: str, validators: Sequence[Identity], members: Sequence[tuple[Identity, tuple[str, ...]]],
                schemas: Sequence[tuple[str, tuple[str, ...], Sequence[Identity]]], admin_threshold: int = 1,
                genesis_time_ms: int = 1_767_225_600_000, params: ConsensusParams | None = None) -> Genesis:
    app = AppGenesis(
        tuple(GenesisMember(i.name, tuple(sorted(roles)), i.pk, i.enc_pk) for i, roles in members),
        admin_threshold,
        tuple(GenesisSchema(name, tuple(sorted(fields)), tuple(sorted(i.id for i in issuers)))
              for name, fields, issuers in schemas),
    )
    vs = ValidatorSet.of([Validator(v.pk, 10, v.name) for v in validators])
    return Genesis(chain_id, genesis_time_ms, vs, params or ConsensusParams.default(), app.encode())
