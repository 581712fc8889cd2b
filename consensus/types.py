"""The chain's own structures: transactions (opaque envelopes), headers, blocks, votes, commit
certificates, validator sets, consensus parameters and the genesis document.

Byte formats are in docs/protocol.md; every structure here is a canonical array (consensus.encoding).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Self

from consensus.crypto import Domain, Signer, account_id, verify
from consensus.encoding import (
    HASH,
    HASH_OR_EMPTY,
    PUBKEY,
    SIGNATURE,
    U8,
    U32,
    U64,
    Bytes,
    ListOf,
    Nested,
    Optional,
    Struct,
    Text,
    encode_value,
    field_,
    pack,
)
from consensus.errors import SignatureError, ValidationError
from consensus.merkle import EMPTY_ROOT, merkle_root

_CHAIN_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TX_TYPE_RE = re.compile(r"^[a-z][a-z_]{0,23}\.[a-z][a-z_]{0,23}$")

CHAIN_ID = Text(64, min=1, allowed=lambda s: _CHAIN_ID_RE.fullmatch(s) is not None,
                what="a chain id (lowercase letters, digits, '.', '_', '-'; at most 64)")
TX_TYPE = Text(49, min=3, allowed=lambda s: _TX_TYPE_RE.fullmatch(s) is not None,
               what="a transaction type like 'consent.grant'")
NAME = Text(64, min=1)

#: Hard caps that hold whatever the genesis parameters say (decoding must be bounded before state is known).
MAX_TX_BYTES = 64 * 1024
MAX_BLOCK_TXS = 20_000
MAX_VALIDATORS = 128
#: Voting power is capped so that sums never leave 64 bits (CometBFT uses the same bound idea).
MAX_TOTAL_POWER = 2**60

PREVOTE = 1
PRECOMMIT = 2


# ------------------------------------------------------------------------------------------ transaction


@dataclass(frozen=True)
class Tx(Struct):
    """A signed transaction envelope. Consensus treats `type` and `body` as opaque; contracts decode them.

    `pubkey` is the key that signed; the state decides whether it may act for `sender` (the account's
    current key, or one of an enterprise's delegate keys), so the signature itself is checked statelessly.
    """

    chain_id: str = field_(CHAIN_ID)
    sender: bytes = field_(HASH)
    pubkey: bytes = field_(PUBKEY)
    nonce: int = field_(U64)
    type: str = field_(TX_TYPE)
    body: bytes = field_(Bytes(max=MAX_TX_BYTES))
    signature: bytes = field_(SIGNATURE)

    @staticmethod
    def signing_payload_of(sender: bytes, pubkey: bytes, nonce: int, type: str, body: bytes) -> bytes:
        return encode_value([sender, pubkey, nonce, type, body])

    @cached_property
    def signing_payload(self) -> bytes:
        # The fields are checked already: pack them directly (same bytes as signing_payload_of).
        return pack([self.sender, self.pubkey, self.nonce, self.type, self.body])

    def signature_valid(self) -> bool:
        return verify(self.pubkey, Domain.TX, self.chain_id, self.signing_payload, self.signature)

    @classmethod
    def create(cls, signer: Signer, chain_id: str, sender: bytes, nonce: int, type: str, body: bytes) -> Self:
        payload = cls.signing_payload_of(sender, signer.public_key, nonce, type, body)
        sig = signer.sign(Domain.TX, chain_id, payload)
        return cls(chain_id, sender, signer.public_key, nonce, type, body, sig)


# ------------------------------------------------------------------------------------------ validators


@dataclass(frozen=True)
class Validator(Struct):
    pubkey: bytes = field_(PUBKEY)
    power: int = field_(U64)
    name: str = field_(NAME)

    @cached_property
    def address(self) -> bytes:
        return account_id(self.pubkey)

    def validate_basic(self) -> None:
        if not 1 <= self.power <= MAX_TOTAL_POWER:
            raise ValidationError(f"validator {self.name!r}: power must be in 1..2**60")


@dataclass(frozen=True)
class ValidatorSet(Struct):
    """Validators in ascending order of address; 2f+1 means more than two thirds of the total power."""

    validators: tuple[Validator, ...] = field_(ListOf(Nested(Validator), MAX_VALIDATORS))

    def validate_basic(self) -> None:
        if not self.validators:
            raise ValidationError("a validator set cannot be empty")
        addrs = [v.address for v in self.validators]
        if any(addrs[i] >= addrs[i + 1] for i in range(len(addrs) - 1)):
            raise ValidationError("validators must be unique and sorted by address")
        if self.total_power > MAX_TOTAL_POWER:
            raise ValidationError("total voting power exceeds 2**60")

    @classmethod
    def of(cls, validators: list[Validator] | tuple[Validator, ...]) -> Self:
        return cls(tuple(sorted(validators, key=lambda v: v.address)))

    @cached_property
    def total_power(self) -> int:
        return sum(v.power for v in self.validators)

    @cached_property
    def quorum(self) -> int:
        """The smallest power that is more than two thirds of the total."""
        return self.total_power * 2 // 3 + 1

    @cached_property
    def by_address(self) -> dict[bytes, Validator]:
        return {v.address: v for v in self.validators}

    def index_of(self, address: bytes) -> int:
        for i, v in enumerate(self.validators):
            if v.address == address:
                return i
        raise KeyError(address.hex())


# ------------------------------------------------------------------------------------------ votes


@dataclass(frozen=True)
class Vote(Struct):
    """A prevote or precommit for `block_hash` (b"" votes for nothing: nil)."""

    type: int = field_(U8)
    height: int = field_(U64)
    round: int = field_(U32)
    block_hash: bytes = field_(HASH_OR_EMPTY)
    timestamp_ms: int = field_(U64)
    validator: bytes = field_(HASH)
    signature: bytes = field_(SIGNATURE)

    def validate_basic(self) -> None:
        if self.type not in (PREVOTE, PRECOMMIT):
            raise ValidationError(f"unknown vote type {self.type}")
        if self.height < 1:
            raise ValidationError("vote height must be at least 1")

    @staticmethod
    def signing_payload_of(type: int, height: int, round: int, block_hash: bytes, timestamp_ms: int,
                           validator: bytes) -> bytes:
        return encode_value([type, height, round, block_hash, timestamp_ms, validator])

    @cached_property
    def signing_payload(self) -> bytes:
        return self.signing_payload_of(self.type, self.height, self.round, self.block_hash,
                                       self.timestamp_ms, self.validator)

    def signature_valid(self, chain_id: str, pubkey: bytes) -> bool:
        return verify(pubkey, Domain.VOTE, chain_id, self.signing_payload, self.signature)

    @classmethod
    def create(cls, signer: Signer, chain_id: str, type: int, height: int, round: int, block_hash: bytes,
               timestamp_ms: int) -> Self:
        validator = account_id(signer.public_key)
        payload = cls.signing_payload_of(type, height, round, block_hash, timestamp_ms, validator)
        return cls(type, height, round, block_hash, timestamp_ms, validator,
                   signer.sign(Domain.VOTE, chain_id, payload))


@dataclass(frozen=True)
class CommitSig(Struct):
    validator: bytes = field_(HASH)
    timestamp_ms: int = field_(U64)
    signature: bytes = field_(SIGNATURE)


@dataclass(frozen=True)
class CommitCertificate(Struct):
    """Precommits of more than two thirds of the power for one block: proof that it is final."""

    height: int = field_(U64)
    round: int = field_(U32)
    block_hash: bytes = field_(HASH)
    sigs: tuple[CommitSig, ...] = field_(ListOf(Nested(CommitSig), MAX_VALIDATORS))

    def validate_basic(self) -> None:
        if self.height < 1:
            raise ValidationError("commit height must be at least 1")
        addrs = [s.validator for s in self.sigs]
        if any(addrs[i] >= addrs[i + 1] for i in range(len(addrs) - 1)):
            raise ValidationError("commit signatures must be unique and sorted by validator address")

    @classmethod
    def from_votes(cls, votes: list[Vote]) -> Self:
        v0 = votes[0]
        sigs = sorted((CommitSig(v.validator, v.timestamp_ms, v.signature) for v in votes),
                      key=lambda s: s.validator)
        return cls(v0.height, v0.round, v0.block_hash, tuple(sigs))

    def votes(self) -> list[Vote]:
        return [Vote(PRECOMMIT, self.height, self.round, self.block_hash, s.timestamp_ms, s.validator,
                     s.signature) for s in self.sigs]

    def verify(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise unless every signature is a valid precommit by a member and they reach the quorum."""
        power = 0
        by_addr = validators.by_address
        for vote in self.votes():
            v = by_addr.get(vote.validator)
            if v is None:
                raise SignatureError(f"commit signed by {vote.validator.hex()[:16]}, not a validator")
            if not vote.signature_valid(chain_id, v.pubkey):
                raise SignatureError(f"bad precommit signature from validator {v.name!r}")
            power += v.power
        if power < validators.quorum:
            raise SignatureError(f"commit has power {power}, below the quorum {validators.quorum}")


# ------------------------------------------------------------------------------------------ blocks


@dataclass(frozen=True)
class Header(Struct):
    """A block header. Its hash is the block's hash. `app_hash` and `results_hash` are the state root and
    the root of the per-transaction results *after* executing this block (validators execute a proposal
    before they vote for it). `prev_hash` of block 1 is the hash of the genesis document."""

    chain_id: str = field_(CHAIN_ID)
    height: int = field_(U64)
    time_ms: int = field_(U64)
    prev_hash: bytes = field_(HASH)
    txs_root: bytes = field_(HASH)
    num_txs: int = field_(U32)
    last_commit_hash: bytes = field_(HASH)
    results_hash: bytes = field_(HASH)
    app_hash: bytes = field_(HASH)
    validators_hash: bytes = field_(HASH)
    next_validators_hash: bytes = field_(HASH)
    proposer: bytes = field_(HASH)

    def validate_basic(self) -> None:
        if self.height < 1:
            raise ValidationError("block height must be at least 1")


@dataclass(frozen=True)
class Block(Struct):
    header: Header = field_(Nested(Header))
    txs: tuple[bytes, ...] = field_(ListOf(Bytes(max=MAX_TX_BYTES + 1024), MAX_BLOCK_TXS))
    last_commit: CommitCertificate | None = field_(Optional(CommitCertificate))

    def validate_basic(self) -> None:
        h = self.header
        if h.num_txs != len(self.txs):
            raise ValidationError(f"header counts {h.num_txs} transactions, block has {len(self.txs)}")
        if h.txs_root != merkle_root(self.txs):
            raise ValidationError("transactions do not match the header's txs_root")
        if h.height == 1:
            if self.last_commit is not None:
                raise ValidationError("block 1 carries no previous commit")
            if h.last_commit_hash != EMPTY_ROOT:
                raise ValidationError("block 1 must have the empty last_commit_hash")
        else:
            c = self.last_commit
            if c is None:
                raise ValidationError(f"block {h.height} lacks the commit of block {h.height - 1}")
            if c.height != h.height - 1 or c.block_hash != h.prev_hash:
                raise ValidationError("last commit is not for the previous block")
            if h.last_commit_hash != c.hash:
                raise ValidationError("last commit does not match the header's last_commit_hash")

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height


# ------------------------------------------------------------------------------------------ genesis


@dataclass(frozen=True)
class ConsensusParams(Struct):
    max_block_bytes: int = field_(U32)
    max_block_txs: int = field_(U32)
    max_tx_bytes: int = field_(U32)
    timeout_propose_ms: int = field_(U32)
    timeout_vote_ms: int = field_(U32)
    timeout_delta_ms: int = field_(U32)
    max_clock_drift_ms: int = field_(U32)
    validator_update_delay: int = field_(U32)

    def validate_basic(self) -> None:
        if not 1 <= self.max_tx_bytes <= MAX_TX_BYTES:
            raise ValidationError(f"max_tx_bytes must be in 1..{MAX_TX_BYTES}")
        if not 1 <= self.max_block_txs <= MAX_BLOCK_TXS:
            raise ValidationError(f"max_block_txs must be in 1..{MAX_BLOCK_TXS}")
        if self.max_block_bytes < self.max_tx_bytes:
            raise ValidationError("max_block_bytes must hold at least one transaction")
        if self.validator_update_delay < 1:
            raise ValidationError("validator changes take effect at least one block later")

    @classmethod
    def default(cls) -> Self:
        return cls(
            max_block_bytes=16 * 1024 * 1024,
            max_block_txs=5000,
            max_tx_bytes=MAX_TX_BYTES,
            timeout_propose_ms=1000,
            timeout_vote_ms=500,
            timeout_delta_ms=250,
            max_clock_drift_ms=2000,
            validator_update_delay=2,
        )


@dataclass(frozen=True)
class Genesis(Struct):
    """The chain's first document. `app_state` is the application's own canonical genesis (contracts decode
    it); its hash is the `prev_hash` of block 1, so every block is bound to this exact genesis."""

    chain_id: str = field_(CHAIN_ID)
    genesis_time_ms: int = field_(U64)
    validators: ValidatorSet = field_(Nested(ValidatorSet))
    params: ConsensusParams = field_(Nested(ConsensusParams))
    app_state: bytes = field_(Bytes(max=16 * 1024 * 1024))
