"""The Tendermint consensus algorithm for one process, as a deterministic sans-I/O state machine.

Reference: E. Buchman, J. Kwon, Z. Milosevic, *The latest gossip on BFT consensus* (arXiv:1807.04938),
Algorithm 1. "L22" below means line 22 of that pseudo-code; every upon-rule names its lines.

Rules of this file
==================

- **Pure.** No clock, no randomness, no I/O, no threads. Time comes in as `now_ms` on every call; keys come in
  as a `Signer`; the application comes in as `Hooks`. The same calls give the same actions, byte for byte.
- **Events in, actions out.** `start(now)`, then `step(event, now)` for every `ProposalReceived`,
  `VoteReceived` and `TimeoutFired`; each returns a list of actions: `Broadcast`, `ScheduleTimeout`,
  `Decide`, `EvidenceFound`. After `Decide` the machine ignores its height until the driver calls
  `new_height(h + 1, next_validators, now)`.
- **The message log is the paper's.** Upon-rules read the log of received *and sent* messages (own votes and
  own proposals are added to the log when made). Voting power is summed per sender; the quorum "2f+1" is
  `ValidatorSet.quorum` (more than 2/3 of the power) and "f+1" is `total - quorum + 1` (more than 1/3).
- **Inputs are checked before use.** Votes: member of the set, valid signature (Domain.VOTE, chain id).
  Proposals: signed (Domain.PROPOSAL) by `proposer(height, round)`, `block_hash` equals the block's header
  hash, same height. Invalid input is dropped silently (it is a peer's fault, never ours).

Encodings and choices
=====================

- **pol_round.** The paper's `validRound` is -1 or a round. On the wire `Proposal.pol_round` is an unsigned
  integer: 0 means "none" (-1) and `r + 1` means round `r`. `Proposal.valid_round` decodes it;
  `validate_basic` demands `pol_round <= round` (the proof-of-lock round is earlier than the proposal's).
- **Proposer selection** (`ProposerRotation`). CometBFT's weighted round-robin: each step every validator's
  priority grows by its power, the highest priority (ties: lowest address, i.e. first in the set) is chosen
  and loses the total power. Started from all-zero priorities this never needs CometBFT's centering or
  rescaling and returns to all zeros after `P / gcd(powers)` steps, choosing each validator exactly
  `power / gcd` times. `proposer(h, r)` is choice number `h - 1 + r` (0-based) of that sequence: for a set
  that never changes this is exactly CometBFT's proposer at (h, r); on a set change the rotation restarts
  from zero instead of carrying priorities, so the proposer is a function of (validator set, h, r) alone and
  needs no persisted state. If `P / gcd` exceeds `ROTATION_PERIOD_LIMIT`, the powers used for rotation are
  first scaled to `max(1, power * LIMIT // P)` (shares stay within 1/LIMIT of the voting shares).
- **Timeouts** grow per round: propose `timeout_propose_ms + r * timeout_delta_ms`, prevote and precommit
  `timeout_vote_ms + r * timeout_delta_ms` (paper section 3: timeoutX(r) = initTimeoutX + r * delta).
- **Block time.** The proposer's header `time_ms`. A fresh block is asked of the app with
  `max(now_ms, prev_time_ms + 1)`. `valid(v)` (deterministic, used by L22, L28, L36, L49) demands
  `time_ms > prev_time_ms`; in addition a process prevotes nil on a *fresh* proposal (L22, `vr = -1`) whose
  time is more than `max_clock_drift_ms` ahead of its own `now_ms` (like CometBFT's proposer-based timestamps:
  a re-proposal with a proof of lock, L28, was already judged timely by 2f+1). The drift check is here; the
  `validate_block` hook checks everything that needs state (prev_hash, app_hash, last commit, txs).
- **Equivocating voters.** A second vote of one validator for another value in the same (round, type) yields
  `EvidenceFound` once, and is counted for its value too (a faulty sender may be counted for two values; the
  quorum-intersection argument of the paper already allows for that); further values are ignored. "Any"
  counts (L34, L47, L55) count each sender once.
- **Other heights.** Messages for heights `height+1 .. height+MAX_FUTURE_HEIGHTS` are buffered unverified
  (at most `MAX_BUFFERED` in all) and replayed by `new_height`; older heights and farther ones are dropped
  (the gossip layer re-sends what a peer at a given height lacks, and block sync covers the rest).
- **Far rounds.** Messages for rounds up to `round + MAX_ROUNDS_AHEAD` are logged; a verified message for a
  farther round only records its sender's highest round, and when senders of more than 1/3 of the power are
  beyond the window the process jumps to the highest round that many of them reached (L55 generalised, so a
  process left far behind still catches up with bounded memory).
- **Proposals per round.** At most `MAX_PROPOSALS_PER_ROUND` distinct blocks from one round's proposer are
  kept, plus any block that more than 1/3 of the power voted for in that round (so a decided block is
  always accepted).

Driver contract (node/): for every action, in order: `Broadcast` -> write the message to the WAL and fsync
*before* sending it (own signatures are what double signing would be made of); `ScheduleTimeout` -> arm a
timer that feeds `TimeoutFired` back; `EvidenceFound` -> gossip it / put it in a block; `Decide` -> persist
the block and its commit, apply it (`Application.commit`), then call `new_height(h + 1, next_validators,
now)`. On restart, build a machine for the stored height, feed the WAL's own votes and proposals back as
`VoteReceived` / `ProposalReceived` (the machine then never signs another vote for those (round, type)
slots, nor another proposal for those rounds), call `start`, then feed the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cached_property
from math import gcd
from typing import Self

from consensus.crypto import Domain, Signer, account_id
from consensus.crypto import verify as ed25519_verify
from consensus.encoding import HASH, SIGNATURE, U32, U64, Nested, Struct, encode_value, field_, pack
from consensus.errors import LedgerError, SignatureError, ValidationError
from consensus.types import (
    PRECOMMIT,
    PREVOTE,
    Block,
    CommitCertificate,
    ConsensusParams,
    Validator,
    ValidatorSet,
    Vote,
)

__all__ = [
    "MAX_BUFFERED",
    "MAX_FUTURE_HEIGHTS",
    "MAX_PROPOSALS_PER_ROUND",
    "MAX_ROUNDS_AHEAD",
    "NO_POL_ROUND",
    "ROTATION_PERIOD_LIMIT",
    "Action",
    "Broadcast",
    "Decide",
    "Event",
    "Evidence",
    "EvidenceFound",
    "Hooks",
    "Proposal",
    "ProposalMessage",
    "ProposalReceived",
    "ProposerRotation",
    "ScheduleTimeout",
    "SigningRefused",
    "Step",
    "Tendermint",
    "TimeoutFired",
    "VerifyFn",
    "VoteReceived",
]

#: `Proposal.pol_round` value meaning "no proof-of-lock round" (the paper's validRound = -1).
NO_POL_ROUND = 0
#: Future heights whose messages are buffered (height+1 .. height+MAX_FUTURE_HEIGHTS).
MAX_FUTURE_HEIGHTS = 2
#: Total number of buffered future-height messages.
MAX_BUFFERED = 4096
#: Rounds beyond the current one whose messages are logged in full.
MAX_ROUNDS_AHEAD = 16
#: Distinct blocks kept per round from its proposer (more only with more than 1/3 of the votes).
MAX_PROPOSALS_PER_ROUND = 2
#: Longest proposer-rotation period computed exactly; larger ones use scaled powers.
ROTATION_PERIOD_LIMIT = 1 << 14

#: How signatures are checked: (pubkey, domain, chain_id, payload, signature) -> valid.
VerifyFn = Callable[[bytes, Domain, str, bytes, bytes], bool]


class SigningRefused(Exception):
    """Raised by a signer (the driver's double-sign guard) that will not sign: the machine then acts as if it
    had sent nothing (it never retries with another value)."""


# ------------------------------------------------------------------------------------------ messages


@dataclass(frozen=True)
class Proposal(Struct):
    """<PROPOSAL, height, round, id(v), validRound> signed by the round's proposer.

    `pol_round` is the proof-of-lock round encoded as 0 = none, `r + 1` = round r (`valid_round` decodes it).
    """

    height: int = field_(U64)
    round: int = field_(U32)
    pol_round: int = field_(U32)
    block_hash: bytes = field_(HASH)
    timestamp_ms: int = field_(U64)
    proposer: bytes = field_(HASH)
    signature: bytes = field_(SIGNATURE)

    def validate_basic(self) -> None:
        if self.height < 1:
            raise ValidationError("proposal height must be at least 1")
        if self.pol_round > self.round:
            raise ValidationError("a proposal's proof-of-lock round must be earlier than its round")

    @property
    def valid_round(self) -> int:
        """The paper's validRound: -1 (none) or the round whose 2f+1 prevotes justify the block."""
        return self.pol_round - 1

    @staticmethod
    def encode_valid_round(valid_round: int) -> int:
        if valid_round < -1:
            raise ValueError("valid_round is -1 (none) or a round")
        return valid_round + 1

    @staticmethod
    def signing_payload_of(height: int, round: int, pol_round: int, block_hash: bytes, timestamp_ms: int,
                           proposer: bytes) -> bytes:
        return encode_value([height, round, pol_round, block_hash, timestamp_ms, proposer])

    @cached_property
    def signing_payload(self) -> bytes:
        return pack([self.height, self.round, self.pol_round, self.block_hash, self.timestamp_ms,
                     self.proposer])

    def signature_valid(self, chain_id: str, pubkey: bytes) -> bool:
        return ed25519_verify(pubkey, Domain.PROPOSAL, chain_id, self.signing_payload, self.signature)

    @classmethod
    def create(cls, signer: Signer, chain_id: str, height: int, round: int, block_hash: bytes,
               timestamp_ms: int, valid_round: int = -1) -> Self:
        proposer = account_id(signer.public_key)
        pol = cls.encode_valid_round(valid_round)
        payload = cls.signing_payload_of(height, round, pol, block_hash, timestamp_ms, proposer)
        return cls(height, round, pol, block_hash, timestamp_ms, proposer,
                   signer.sign(Domain.PROPOSAL, chain_id, payload))


@dataclass(frozen=True)
class ProposalMessage(Struct):
    """A signed proposal with the block it names (the paper's PROPOSAL carries the value itself)."""

    proposal: Proposal = field_(Nested(Proposal))
    block: Block = field_(Nested(Block))


@dataclass(frozen=True)
class Evidence(Struct):
    """Two votes of one validator of the same type, height and round for different blocks (nil counts as a
    block): proof of double signing. Canonical order: `vote_a.block_hash < vote_b.block_hash`."""

    vote_a: Vote = field_(Nested(Vote))
    vote_b: Vote = field_(Nested(Vote))

    def validate_basic(self) -> None:
        a, b = self.vote_a, self.vote_b
        if (a.type, a.height, a.round, a.validator) != (b.type, b.height, b.round, b.validator):
            raise ValidationError("evidence votes must share validator, type, height and round")
        if not a.block_hash < b.block_hash:
            raise ValidationError("evidence votes must be for different blocks, in ascending order of hash")

    @classmethod
    def of(cls, first: Vote, second: Vote) -> Self:
        a, b = sorted((first, second), key=lambda v: v.block_hash)
        return cls(a, b)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def validate(self, chain_id: str, validators: ValidatorSet) -> None:
        """Raise unless both votes are validly signed by a member of `validators` (the set of their height)."""
        v = validators.by_address.get(self.validator)
        if v is None:
            raise ValidationError(f"evidence against {self.validator.hex()[:16]}, not a validator")
        for vote in (self.vote_a, self.vote_b):
            if not vote.signature_valid(chain_id, v.pubkey):
                raise SignatureError(f"bad vote signature in evidence against validator {v.name!r}")


# ------------------------------------------------------------------------------------------ events, actions


class Step(IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3


@dataclass(frozen=True, slots=True)
class ProposalReceived:
    message: ProposalMessage


@dataclass(frozen=True, slots=True)
class VoteReceived:
    vote: Vote


@dataclass(frozen=True, slots=True)
class TimeoutFired:
    height: int
    round: int
    step: Step


Event = ProposalReceived | VoteReceived | TimeoutFired


@dataclass(frozen=True, slots=True)
class Broadcast:
    message: ProposalMessage | Vote


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Feed `TimeoutFired(height, round, step)` back after `duration_ms`, i.e. at `at_ms` on the clock that
    gave the `now_ms` of the call that returned this action."""

    height: int
    round: int
    step: Step
    duration_ms: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class Decide:
    block: Block
    commit: CommitCertificate


@dataclass(frozen=True, slots=True)
class EvidenceFound:
    evidence: Evidence


Action = Broadcast | ScheduleTimeout | Decide | EvidenceFound


@dataclass(frozen=True)
class Hooks:
    """The application, as seen by consensus.

    `propose_block(height, round, time_ms)`: the proposer's block (header time `time_ms`), or None if it has
    none to offer (the round then proceeds as if the proposal was lost). `validate_block(block)`: execute
    the block against the committed state and accept it iff its header states the outcome (the paper's
    valid(v)); called at most once per block per height, the proposer's own blocks included; a `LedgerError`
    it raises counts as "invalid". Both must be deterministic.
    """

    propose_block: Callable[[int, int, int], Block | None]
    validate_block: Callable[[Block], bool]


# ------------------------------------------------------------------------------------------ proposer


class ProposerRotation:
    """Weighted round-robin over one validator set (see the module docstring). `proposer(h, r)` is choice
    number `h - 1 + r` of CometBFT's priority rotation started from all-zero priorities."""

    __slots__ = ("_priorities", "_sequence", "period", "validators", "weights")

    def __init__(self, validators: ValidatorSet) -> None:
        powers = [v.power for v in validators.validators]
        if not powers:
            raise ValueError("a validator set cannot be empty")
        total = sum(powers)
        g = gcd(*powers)
        if total // g > ROTATION_PERIOD_LIMIT:
            powers = [max(1, p * ROTATION_PERIOD_LIMIT // total) for p in powers]
            g = gcd(*powers)
        self.validators = validators
        self.weights: tuple[int, ...] = tuple(p // g for p in powers)
        self.period: int = sum(self.weights)
        self._priorities = [0] * len(powers)
        self._sequence: list[int] = []

    def index(self, k: int) -> int:
        """Index (in the set) of choice number k."""
        k %= self.period
        seq, pr, w, total = self._sequence, self._priorities, self.weights, self.period
        n = len(w)
        while len(seq) <= k:
            best = 0
            for i in range(n):
                pr[i] += w[i]
                if pr[i] > pr[best]:
                    best = i
            pr[best] -= total
            seq.append(best)
        return seq[k]

    def proposer(self, height: int, round: int) -> Validator:
        return self.validators.validators[self.index(height - 1 + round)]


# ------------------------------------------------------------------------------------------ the log


class _VoteSet:
    """The votes of one (round, type): per validator at most two values (the second one is evidence)."""

    __slots__ = ("by_validator", "power_any", "power_for")

    def __init__(self) -> None:
        self.by_validator: dict[bytes, list[Vote]] = {}
        self.power_for: dict[bytes, int] = {}
        self.power_any = 0

    def has(self, validator: bytes, block_hash: bytes) -> bool:
        votes = self.by_validator.get(validator)
        return votes is not None and any(v.block_hash == block_hash for v in votes)

    def add(self, vote: Vote, power: int) -> tuple[bool, Vote | None]:
        """(counted, the earlier conflicting vote if this one is the first conflict)."""
        votes = self.by_validator.get(vote.validator)
        if votes is None:
            self.by_validator[vote.validator] = [vote]
            self.power_any += power
            self.power_for[vote.block_hash] = self.power_for.get(vote.block_hash, 0) + power
            return True, None
        if len(votes) >= 2 or any(v.block_hash == vote.block_hash for v in votes):
            return False, None
        votes.append(vote)
        self.power_for[vote.block_hash] = self.power_for.get(vote.block_hash, 0) + power
        return True, votes[0]

    def for_block(self, block_hash: bytes) -> list[Vote]:
        return [v for votes in self.by_validator.values() for v in votes if v.block_hash == block_hash]


class _RoundLog:
    __slots__ = ("precommits", "prevotes", "proposals", "sender_power", "senders")

    def __init__(self) -> None:
        self.prevotes = _VoteSet()
        self.precommits = _VoteSet()
        self.proposals: dict[bytes, tuple[Proposal, Block]] = {}  # by block hash, in arrival order
        self.senders: set[bytes] = set()
        self.sender_power = 0


NIL = b""


# ------------------------------------------------------------------------------------------ the machine


class Tendermint:
    """Algorithm 1 for one process at one height at a time. `signer=None` (or a signer outside the set)
    makes a non-voting observer that still follows rounds and decides."""

    def __init__(self, chain_id: str, height: int, validators: ValidatorSet, signer: Signer | None,
                 params: ConsensusParams, hooks: Hooks, *, prev_time_ms: int = 0,
                 verify: VerifyFn = ed25519_verify) -> None:
        if height < 1:
            raise ValueError("height must be at least 1")
        self.chain_id = chain_id
        self.params = params
        self.hooks = hooks
        self.signer = signer
        self.address: bytes | None = None if signer is None else account_id(signer.public_key)
        self._verify = verify
        self._rotation: ProposerRotation | None = None
        self._started = False
        self._now = 0
        self._actions: list[Action] = []
        self._future: dict[int, list[Event]] = {}
        self._future_count = 0
        self._enter_height(height, validators, prev_time_ms)

    # ---- public surface -------------------------------------------------------------------------

    @property
    def is_validator(self) -> bool:
        return self.address is not None and self.address in self.validators.by_address

    @property
    def decision(self) -> tuple[Block, CommitCertificate] | None:
        return self._decision

    @property
    def locked_hash(self) -> bytes | None:
        return None if self.locked_block is None else self.locked_block.hash

    @property
    def valid_hash(self) -> bytes | None:
        return None if self.valid_block is None else self.valid_block.hash

    def proposer(self, round: int) -> Validator:
        """proposer(h_p, round) of the paper, for the current height."""
        return self._rotation_for(self.validators).proposer(self.height, round)

    def timeout(self, step: Step, round: int) -> int:
        """timeoutPropose/Prevote/Precommit(round) in ms."""
        base = self.params.timeout_propose_ms if step == Step.PROPOSE else self.params.timeout_vote_ms
        return base + round * self.params.timeout_delta_ms

    def start(self, now_ms: int) -> list[Action]:
        """L10: upon start do StartRound(0)."""
        if self._started:
            raise RuntimeError("start() was called already")
        self._started = True
        self._now = now_ms
        self._start_round(0)
        self._run()
        return self._take()

    def restore(self, events: list[Event]) -> None:
        """Before `start`: feed back the messages of this height replayed from the WAL (own and received).
        They enter the message log without any rule running; `start` then acts on all of them at once, and
        re-broadcasts our own proposal and votes for the slots they fill instead of signing anything anew."""
        if self._started:
            raise RuntimeError("restore() comes before start()")
        for event in events:
            if not isinstance(event, TimeoutFired):
                self._dispatch(event)

    def step(self, event: Event, now_ms: int) -> list[Action]:
        if not self._started:
            raise RuntimeError("call start() before step()")
        self._now = now_ms
        self._dispatch(event)
        self._run()
        return self._take()

    def new_height(self, height: int, validators: ValidatorSet, now_ms: int,
                   prev_time_ms: int | None = None) -> list[Action]:
        """L52-54 after a decision (or a jump after block sync): enter `height` with its validator set, reset
        the round state and the message log, StartRound(0), and replay buffered messages of that height.
        `prev_time_ms` (the previous block's header time) defaults to the block this machine decided."""
        if height <= self.height:
            raise ValueError(f"new height {height} is not above the current height {self.height}")
        if prev_time_ms is None:
            if self._decision is None or height != self.height + 1:
                raise ValueError("prev_time_ms is required unless entering the height after a decision")
            prev_time_ms = self._decision[0].header.time_ms
        self._now = now_ms
        self._enter_height(height, validators, prev_time_ms)
        buffered = self._future.pop(height, [])
        for h in [h for h in self._future if h < height]:
            del self._future[h]
        self._future_count = sum(len(v) for v in self._future.values())
        self._started = True
        self._start_round(0)
        for event in buffered:
            self._dispatch(event)
        self._run()
        return self._take()

    # ---- height and round state -----------------------------------------------------------------

    def _enter_height(self, height: int, validators: ValidatorSet, prev_time_ms: int) -> None:
        self.height = height
        self.validators = validators
        self.prev_time_ms = prev_time_ms
        self.quorum = validators.quorum                                  # 2f+1
        self.weak_quorum = validators.total_power - validators.quorum + 1  # f+1
        # L2-L9
        self.round = 0
        self.current_step = Step.PROPOSE
        self._decision: tuple[Block, CommitCertificate] | None = None
        self.locked_block: Block | None = None
        self.locked_round = -1
        self.valid_block: Block | None = None
        self.valid_round = -1
        self._rounds: dict[int, _RoundLog] = {}
        self._validity: dict[bytes, bool] = {}
        self._own_votes: dict[tuple[int, int], Vote] = {}
        self._own_proposals: dict[int, ProposalMessage] = {}
        self._far_rounds: dict[bytes, int] = {}
        self._fired_34 = self._fired_36 = self._fired_47 = -1
        self._dirty: set[int] = set()
        self._skip: set[int] = set()

    def _rotation_for(self, validators: ValidatorSet) -> ProposerRotation:
        rot = self._rotation
        if rot is None or (rot.validators is not validators and rot.validators.hash != validators.hash):
            rot = self._rotation = ProposerRotation(validators)
        return rot

    def _log(self, round: int) -> _RoundLog:
        log = self._rounds.get(round)
        if log is None:
            log = self._rounds[round] = _RoundLog()
        return log

    def _take(self) -> list[Action]:
        out, self._actions = self._actions, []
        return out

    def _schedule(self, step: Step) -> None:
        d = self.timeout(step, self.round)
        self._actions.append(ScheduleTimeout(self.height, self.round, step, d, self._now + d))

    # ---- validity -------------------------------------------------------------------------------

    def _valid(self, block: Block) -> bool:
        """valid(v): deterministic checks here, then the application's execution (cached per block)."""
        h = block.hash
        ok = self._validity.get(h)
        if ok is None:
            ok = self._check_block(block)
            self._validity[h] = ok
        return ok

    def _check_block(self, block: Block) -> bool:
        hd = block.header
        if hd.chain_id != self.chain_id or hd.height != self.height or hd.time_ms <= self.prev_time_ms:
            return False
        if hd.validators_hash != self.validators.hash or hd.proposer not in self.validators.by_address:
            return False
        try:
            block.validate_basic()
            return bool(self.hooks.validate_block(block))
        except LedgerError:  # a malformed block is the proposer's fault: invalid, never a crash
            return False

    def _timely(self, block: Block) -> bool:
        return block.header.time_ms <= self._now + self.params.max_clock_drift_ms

    # ---- inputs ---------------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, VoteReceived):
            self._on_vote(event.vote)
        elif isinstance(event, ProposalReceived):
            self._on_proposal(event.message)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event)
        else:
            raise TypeError(f"not a consensus event: {type(event).__name__}")

    def _buffer(self, height: int, event: Event) -> None:
        if self.height < height <= self.height + MAX_FUTURE_HEIGHTS and self._future_count < MAX_BUFFERED:
            self._future.setdefault(height, []).append(event)
            self._future_count += 1

    def _on_vote(self, vote: Vote) -> None:
        if vote.height != self.height:
            self._buffer(vote.height, VoteReceived(vote))
            return
        if self._decision is not None or vote.type not in (PREVOTE, PRECOMMIT):
            return
        val = self.validators.by_address.get(vote.validator)
        if val is None:
            return
        if vote.round > self.round + MAX_ROUNDS_AHEAD:
            self._far_message(val, vote.round, Domain.VOTE, vote.signing_payload, vote.signature)
            return
        log = self._log(vote.round)
        vs = log.prevotes if vote.type == PREVOTE else log.precommits
        if vs.has(vote.validator, vote.block_hash):
            return  # duplicate: nothing new (checked before the costly signature check)
        if not self._verify(val.pubkey, Domain.VOTE, self.chain_id, vote.signing_payload, vote.signature):
            return
        if vote.validator == self.address:  # our own vote, replayed from the WAL or echoed by a peer
            self._own_votes.setdefault((vote.round, vote.type), vote)
        self._add_vote(log, vs, vote, val.power)

    def _add_vote(self, log: _RoundLog, vs: _VoteSet, vote: Vote, power: int) -> None:
        counted, conflict = vs.add(vote, power)
        if conflict is not None:
            self._actions.append(EvidenceFound(Evidence.of(conflict, vote)))
        if counted:
            self._note_sender(log, vote.round, vote.validator, power)
            if vote.type == PRECOMMIT:
                self._dirty.add(vote.round)

    def _note_sender(self, log: _RoundLog, round: int, sender: bytes, power: int) -> None:
        if sender not in log.senders:
            log.senders.add(sender)
            log.sender_power += power
            if round > self.round:
                self._skip.add(round)

    def _on_proposal(self, msg: ProposalMessage) -> None:
        p, block = msg.proposal, msg.block
        if p.height != self.height:
            self._buffer(p.height, ProposalReceived(msg))
            return
        if self._decision is not None:
            return
        expected = self.proposer(p.round)
        if p.proposer != expected.address:
            return
        if p.round > self.round + MAX_ROUNDS_AHEAD:
            self._far_message(expected, p.round, Domain.PROPOSAL, p.signing_payload, p.signature)
            return
        if p.block_hash != block.hash or block.header.height != p.height:
            return
        log = self._log(p.round)
        if p.block_hash in log.proposals:
            return
        if len(log.proposals) >= MAX_PROPOSALS_PER_ROUND and max(
                log.prevotes.power_for.get(p.block_hash, 0),
                log.precommits.power_for.get(p.block_hash, 0)) < self.weak_quorum:
            return
        if not self._verify(expected.pubkey, Domain.PROPOSAL, self.chain_id, p.signing_payload, p.signature):
            return
        if p.proposer == self.address:
            self._own_proposals.setdefault(p.round, msg)
        log.proposals[p.block_hash] = (p, block)
        self._note_sender(log, p.round, p.proposer, expected.power)
        self._dirty.add(p.round)

    def _far_message(self, sender: Validator, round: int, domain: Domain, payload: bytes, sig: bytes) -> None:
        """A message for a round beyond the logged window: remember only its sender's highest round."""
        if self._far_rounds.get(sender.address, -1) >= round:
            return
        if not self._verify(sender.pubkey, domain, self.chain_id, payload, sig):
            return
        self._far_rounds[sender.address] = round
        self._skip.add(round)

    def _on_timeout(self, t: TimeoutFired) -> None:
        if t.height != self.height or t.round != self.round or self._decision is not None:
            return
        if t.step == Step.PROPOSE and self.current_step == Step.PROPOSE:
            # L57-L60 OnTimeoutPropose
            self._vote(PREVOTE, NIL)
            self.current_step = Step.PREVOTE
        elif t.step == Step.PREVOTE and self.current_step == Step.PREVOTE:
            # L61-L64 OnTimeoutPrevote
            self._vote(PRECOMMIT, NIL)
            self.current_step = Step.PRECOMMIT
        elif t.step == Step.PRECOMMIT:
            # L65-L67 OnTimeoutPrecommit
            self._start_round(self.round + 1)

    # ---- outputs --------------------------------------------------------------------------------

    def _vote(self, type: int, block_hash: bytes) -> None:
        """Broadcast our vote of `type` in the current round; a slot already used (this run or one replayed
        from the WAL) is re-broadcast as it is, never signed again."""
        key = (self.round, type)
        vote = self._own_votes.get(key)
        if vote is None:
            if self.signer is None or not self.is_validator:
                return
            try:
                vote = Vote.create(self.signer, self.chain_id, type, self.height, self.round, block_hash, self._now)
            except SigningRefused:
                return
            self._own_votes[key] = vote
            log = self._log(self.round)
            power = self.validators.by_address[vote.validator].power
            self._add_vote(log, log.prevotes if type == PREVOTE else log.precommits, vote, power)
        self._actions.append(Broadcast(vote))

    def _start_round(self, round: int) -> None:
        """L11-L21 StartRound(round)."""
        self.round = round
        self.current_step = Step.PROPOSE
        self._skip = {r for r in self._skip if r > round}
        if self.address is not None and self.proposer(round).address == self.address and self._propose():
            return
        self._schedule(Step.PROPOSE)  # L21

    def _propose(self) -> bool:
        """L14-L19: propose validValue (with validRound) or a fresh block; False if nothing was sent."""
        existing = self._own_proposals.get(self.round)
        if existing is not None:
            self._actions.append(Broadcast(existing))
            return True
        assert self.signer is not None
        if self.valid_block is not None:                                      # L15-L16
            block, valid_round = self.valid_block, self.valid_round
        else:                                                                 # L18 getValue()
            fresh = self.hooks.propose_block(self.height, self.round, max(self._now, self.prev_time_ms + 1))
            if fresh is None:
                return False
            block, valid_round = fresh, -1
        try:
            proposal = Proposal.create(self.signer, self.chain_id, self.height, self.round, block.hash,
                                       self._now, valid_round)
        except SigningRefused:
            return False
        msg = ProposalMessage(proposal, block)
        self._own_proposals[self.round] = msg
        log = self._log(self.round)
        log.proposals[block.hash] = (proposal, block)
        self._note_sender(log, self.round, proposal.proposer, self.validators.by_address[proposal.proposer].power)
        self._dirty.add(self.round)
        self._actions.append(Broadcast(msg))                                  # L19
        return True

    # ---- the upon-rules -------------------------------------------------------------------------

    def _run(self) -> None:
        """Fire upon-rules until none applies (the paper's rules are atomic and order-independent)."""
        while self._decision is None:
            if self._dirty:
                rounds = sorted(self._dirty)
                self._dirty.clear()
                if any(self._try_decide(r) for r in rounds):
                    return
                continue
            if self._skip and self._try_skip():
                continue
            if not self._round_rules():
                return

    def _try_decide(self, round: int) -> bool:
        """L49-L54: upon <PROPOSAL, h_p, r, v, *> from proposer(h_p, r) AND 2f+1 <PRECOMMIT, h_p, r, id(v)>
        while decision_p[h_p] = nil: if valid(v), decide v (the driver applies it and calls new_height)."""
        log = self._rounds.get(round)
        if log is None:
            return False
        for h, (_, block) in log.proposals.items():
            if log.precommits.power_for.get(h, 0) >= self.quorum and self._valid(block):
                commit = CommitCertificate.from_votes(log.precommits.for_block(h))
                self._decision = (block, commit)
                self._actions.append(Decide(block, commit))
                return True
        return False

    def _try_skip(self) -> bool:
        """L55-L56: upon f+1 <*, h_p, round, *, *> with round > round_p: StartRound(round). Several rounds may
        qualify at once; the highest is taken. Beyond the logged window, a sender counts for every round up
        to the highest it was seen in."""
        candidates, self._skip = self._skip, set()
        target = -1
        for r in candidates:
            log = self._rounds.get(r)
            if r > self.round and log is not None and log.sender_power >= self.weak_quorum:
                target = max(target, r)
        if self._far_rounds:
            power = 0
            by = self.validators.by_address
            for addr, r in sorted(self._far_rounds.items(), key=lambda kv: (-kv[1], kv[0])):
                power += by[addr].power
                if power >= self.weak_quorum:
                    target = max(target, r)
                    break
        if target > self.round:
            self._start_round(target)
            return True
        return False

    def _round_rules(self) -> bool:
        """The rules about the current round; True if one fired."""
        r, step = self.round, self.current_step
        log = self._log(r)
        prevotes = log.prevotes
        if step == Step.PROPOSE:
            for h, (proposal, block) in log.proposals.items():
                vr = proposal.valid_round
                if vr == -1:
                    # L22-L27: upon <PROPOSAL, h_p, round_p, v, -1> from proposer(h_p, round_p) while
                    # step_p = propose: prevote id(v) if valid(v) and (not locked or locked on v), else nil.
                    ok = self._valid(block) and self._timely(block) and (
                        self.locked_round == -1 or self.locked_hash == h)
                elif vr < r and self._prevote_power(vr, h) >= self.quorum:
                    # L28-L33: ... AND 2f+1 <PREVOTE, h_p, vr, id(v)> while step_p = propose and 0 <= vr <
                    # round_p: prevote id(v) if valid(v) and (lockedRound_p <= vr or locked on v), else nil.
                    ok = self._valid(block) and (self.locked_round <= vr or self.locked_hash == h)
                else:
                    continue
                self._vote(PREVOTE, h if ok else NIL)
                self.current_step = Step.PREVOTE
                return True
        if step == Step.PREVOTE and self._fired_34 != r and prevotes.power_any >= self.quorum:
            # L34-L35: upon 2f+1 <PREVOTE, h_p, round_p, *> while step_p = prevote for the first time:
            # schedule OnTimeoutPrevote.
            self._fired_34 = r
            self._schedule(Step.PREVOTE)
            return True
        if step != Step.PROPOSE and self._fired_36 != r:
            for h, (_, block) in log.proposals.items():
                if prevotes.power_for.get(h, 0) >= self.quorum and self._valid(block):
                    # L36-L43: upon <PROPOSAL, h_p, round_p, v, *> AND 2f+1 <PREVOTE, h_p, round_p, id(v)>
                    # while valid(v) and step_p >= prevote for the first time: if step_p = prevote, lock v
                    # and precommit id(v); in any case v becomes validValue of validRound round_p.
                    self._fired_36 = r
                    if step == Step.PREVOTE:
                        self.locked_block, self.locked_round = block, r
                        self._vote(PRECOMMIT, h)
                        self.current_step = Step.PRECOMMIT
                    self.valid_block, self.valid_round = block, r
                    return True
        if step == Step.PREVOTE and prevotes.power_for.get(NIL, 0) >= self.quorum:
            # L44-L46: upon 2f+1 <PREVOTE, h_p, round_p, nil> while step_p = prevote: precommit nil.
            self._vote(PRECOMMIT, NIL)
            self.current_step = Step.PRECOMMIT
            return True
        if self._fired_47 != r and log.precommits.power_any >= self.quorum:
            # L47-L48: upon 2f+1 <PRECOMMIT, h_p, round_p, *> for the first time: schedule OnTimeoutPrecommit.
            self._fired_47 = r
            self._schedule(Step.PRECOMMIT)
            return True
        return False

    def _prevote_power(self, round: int, block_hash: bytes) -> int:
        log = self._rounds.get(round)
        return 0 if log is None else log.prevotes.power_for.get(block_hash, 0)
