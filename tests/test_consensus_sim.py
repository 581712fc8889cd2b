"""The Tendermint machine (consensus/tendermint.py): unit tests named after the lines of Algorithm 1 of
"The latest gossip on BFT consensus" (arXiv:1807.04938), the message types, proposer rotation, timeouts,
evidence, and 10,000 seeded adversarial schedules on the simulated network of tests/consensus_sim.py."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import Domain, Ed25519Signer, account_id, verify
from consensus.errors import DecodeError, SignatureError, ValidationError
from consensus.tendermint import (
    MAX_FUTURE_HEIGHTS,
    MAX_PROPOSALS_PER_ROUND,
    MAX_ROUNDS_AHEAD,
    NO_POL_ROUND,
    Action,
    Broadcast,
    Decide,
    Event,
    Evidence,
    EvidenceFound,
    Hooks,
    Proposal,
    ProposalMessage,
    ProposalReceived,
    ProposerRotation,
    ScheduleTimeout,
    SigningRefused,
    Step,
    Tendermint,
    TimeoutFired,
    VoteReceived,
)
from consensus.types import PRECOMMIT, PREVOTE, Block, Validator, ValidatorSet, Vote
from tests.consensus_sim import (
    CHAIN_ID,
    GENESIS_TIME_MS,
    PARAMS,
    Config,
    SimFailure,
    Simulation,
    ToyChain,
    VerifyCache,
    repro,
    run_range,
    signer_of,
    validator_set,
)

NIL = b""


# ------------------------------------------------------------------------------------------ one machine


class Bench:
    """One machine under test (`me`), the other validators' keys to forge its inputs, and a clock."""

    def __init__(self, n: int = 4, me: int | None = None, powers: list[int] | None = None,
                 valid: Callable[[Block], bool] | None = None, observer: bool = False,
                 signer: object | None = None, want_proposer_at_0: bool = False) -> None:
        self.signers = [signer_of(i) for i in range(n)]
        self.vals = validator_set(self.signers, powers)
        self.by_addr = {account_id(s.public_key): s for s in self.signers}
        rot = ProposerRotation(self.vals)
        addrs = [account_id(s.public_key) for s in self.signers]
        if me is None and want_proposer_at_0:
            me = addrs.index(rot.proposer(1, 0).address)
        elif me is None:  # by default: not the proposer of rounds 0, 1, 2 at height 1 (with n=4: of round 3)
            busy = {rot.proposer(1, r).address for r in range(3)}
            me = next(i for i, a in enumerate(addrs) if a not in busy)
        self.me = me
        self.others = [i for i in range(n) if i != me]
        self.address = account_id(self.signers[me].public_key)
        self.chain = ToyChain(me, self.address, self.vals, VerifyCache())
        self.validated: list[bytes] = []

        def validate(block: Block) -> bool:
            self.validated.append(block.hash)
            return self.chain.validate_block(block) if valid is None else valid(block)

        self.now = GENESIS_TIME_MS + 1000
        the_signer = None if observer else (signer if signer is not None else self.signers[me])
        self.m = Tendermint(CHAIN_ID, 1, self.vals, the_signer, PARAMS,  # type: ignore[arg-type]
                            Hooks(self.chain.propose_block, validate), prev_time_ms=GENESIS_TIME_MS)

    # ---- making inputs --------------------------------------------------------------------------

    def proposer_index(self, round: int, height: int = 1) -> int:
        addr = ProposerRotation(self.vals).proposer(height, round).address
        return next(i for i, s in enumerate(self.signers) if account_id(s.public_key) == addr)

    def block(self, round: int, tag: str = "p", time_ms: int | None = None, height: int = 1) -> Block:
        author = self.proposer_index(round, height)
        chain = ToyChain(author, account_id(self.signers[author].public_key), self.vals, VerifyCache())
        if height > 1:
            chain.last_hash, chain.last_commit = self.chain.last_hash, self.chain.last_commit
            chain.last_app_hash, chain.blocks = self.chain.last_app_hash, list(self.chain.blocks)
        return chain.build(height, round, self.now if time_ms is None else time_ms, tag=tag)

    def proposal(self, round: int, block: Block, valid_round: int = -1, by: int | None = None,
                 height: int = 1) -> ProposalMessage:
        signer = self.signers[self.proposer_index(round, height) if by is None else by]
        return ProposalMessage(Proposal.create(signer, CHAIN_ID, height, round, block.hash, self.now, valid_round),
                               block)

    def vote(self, who: int, type: int, round: int, block_hash: bytes, height: int = 1) -> Vote:
        return Vote.create(self.signers[who], CHAIN_ID, type, height, round, block_hash, self.now)

    # ---- driving --------------------------------------------------------------------------------

    def start(self) -> list[Action]:
        return self.m.start(self.now)

    def feed(self, *events: Event) -> list[Action]:
        out: list[Action] = []
        for e in events:
            out += self.m.step(e, self.now)
        return out

    def propose(self, round: int, block: Block, valid_round: int = -1) -> list[Action]:
        return self.feed(ProposalReceived(self.proposal(round, block, valid_round)))

    def votes(self, type: int, round: int, block_hash: bytes, who: list[int], height: int = 1) -> list[Action]:
        return self.feed(*(VoteReceived(self.vote(i, type, round, block_hash, height)) for i in who))

    def timeout(self, step: Step, round: int | None = None, height: int = 1) -> list[Action]:
        return self.feed(TimeoutFired(height, self.m.round if round is None else round, step))

    def lock_on(self, round: int, block: Block) -> list[Action]:
        """Bring the machine (in `round`) to lock `block`: its proposal and a polka with our own prevote."""
        out = self.propose(round, block)
        out += self.votes(PREVOTE, round, block.hash, self.others[:2])
        return out

    def next_round_by_precommit_timeout(self) -> list[Action]:
        r = self.m.round
        out = self.votes(PRECOMMIT, r, NIL, self.others)
        out += self.timeout(Step.PRECOMMIT, r)
        return out


def sent(actions: list[Action]) -> list[Vote | ProposalMessage]:
    return [a.message for a in actions if isinstance(a, Broadcast)]


def sent_votes(actions: list[Action], type: int | None = None) -> list[Vote]:
    return [m for m in sent(actions) if isinstance(m, Vote) and (type is None or m.type == type)]


def timeouts(actions: list[Action]) -> list[ScheduleTimeout]:
    return [a for a in actions if isinstance(a, ScheduleTimeout)]


def decisions(actions: list[Action]) -> list[Decide]:
    return [a for a in actions if isinstance(a, Decide)]


def one_vote(actions: list[Action], type: int) -> Vote:
    votes = sent_votes(actions, type)
    assert len(votes) == 1, actions
    return votes[0]


# ------------------------------------------------------------------------------------------ StartRound


def test_line_10_start_round_0_and_line_21_schedule_propose_timeout() -> None:
    b = Bench()
    actions = b.start()
    assert actions == [ScheduleTimeout(1, 0, Step.PROPOSE, 300, b.now + 300)]
    assert (b.m.round, b.m.current_step) == (0, Step.PROPOSE)


def test_line_18_19_proposer_broadcasts_a_fresh_block_and_line_22_prevotes_it() -> None:
    b = Bench(want_proposer_at_0=True)
    actions = b.start()
    msg = sent(actions)[0]
    assert isinstance(msg, ProposalMessage)
    p = msg.proposal
    assert (p.height, p.round, p.pol_round, p.valid_round) == (1, 0, NO_POL_ROUND, -1)
    assert p.proposer == b.address and p.block_hash == msg.block.hash
    assert p.signature_valid(CHAIN_ID, b.signers[b.me].public_key)
    assert msg.block.header.time_ms == b.now and msg.block.header.proposer == b.address
    assert one_vote(actions, PREVOTE).block_hash == msg.block.hash
    assert b.m.current_step == Step.PREVOTE


def test_line_18_block_time_is_after_the_previous_block_even_with_a_slow_clock() -> None:
    b = Bench(want_proposer_at_0=True)
    b.now = GENESIS_TIME_MS - 5000  # our clock is behind the previous block
    msg = sent(b.start())[0]
    assert isinstance(msg, ProposalMessage)
    assert msg.block.header.time_ms == GENESIS_TIME_MS + 1


def test_line_15_16_proposer_reproposes_valid_value_with_its_valid_round() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    b.lock_on(0, a)
    assert b.m.valid_round == 0
    r = next(r for r in range(1, 40) if b.proposer_index(r) == b.me)
    actions = b.votes(PREVOTE, r - 1, NIL, b.others)  # f+1 in round r-1: skip there, then time out
    actions += b.votes(PRECOMMIT, r - 1, NIL, b.others) + b.timeout(Step.PRECOMMIT, r - 1)
    props = [m for m in sent(actions) if isinstance(m, ProposalMessage)]
    assert len(props) == 1 and props[0].block.hash == a.hash
    assert props[0].proposal.round == r and props[0].proposal.valid_round == 0


def test_line_18_no_block_from_the_app_means_waiting_like_everyone_else() -> None:
    b = Bench(want_proposer_at_0=True)
    b.m.hooks = Hooks(lambda h, r, t: None, lambda blk: True)
    assert [type(a) for a in b.start()] == [ScheduleTimeout]


# ------------------------------------------------------------------------------------------ prevote


def test_line_22_prevote_for_a_valid_proposal() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    actions = b.propose(0, a)
    assert one_vote(actions, PREVOTE).block_hash == a.hash
    assert b.m.current_step == Step.PREVOTE


def test_line_22_prevote_nil_for_an_invalid_block() -> None:
    b = Bench(valid=lambda blk: False)
    b.start()
    assert one_vote(b.propose(0, b.block(0)), PREVOTE).block_hash == NIL


def test_line_22_prevote_nil_for_a_block_not_after_the_previous_one() -> None:
    b = Bench()
    b.start()
    assert one_vote(b.propose(0, b.block(0, time_ms=GENESIS_TIME_MS)), PREVOTE).block_hash == NIL


def test_line_22_prevote_nil_for_a_block_too_far_in_the_future() -> None:
    b = Bench()
    b.start()
    late = b.block(0, time_ms=b.now + PARAMS.max_clock_drift_ms + 1)
    assert one_vote(b.propose(0, late), PREVOTE).block_hash == NIL
    b2 = Bench()
    b2.start()
    ok = b2.block(0, time_ms=b2.now + PARAMS.max_clock_drift_ms)
    assert one_vote(b2.propose(0, ok), PREVOTE).block_hash == ok.hash


def test_line_22_prevote_nil_when_locked_on_another_block_and_for_the_locked_one() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    b.lock_on(0, a)
    b.next_round_by_precommit_timeout()
    assert b.m.round == 1 and b.m.locked_round == 0
    other = b.block(1, tag="q")
    assert one_vote(b.propose(1, other), PREVOTE).block_hash == NIL
    # the locked block itself, proposed fresh in a later round, gets our prevote
    b.votes(PREVOTE, 1, NIL, b.others)
    b.next_round_by_precommit_timeout()
    assert b.m.round == 2
    assert one_vote(b.propose(2, a), PREVOTE).block_hash == a.hash


def test_line_28_prevote_for_a_reproposal_backed_by_a_polka_after_our_lock() -> None:
    b = Bench()
    b.start()
    a, c = b.block(0), b.block(1, tag="q")
    b.lock_on(0, a)
    b.next_round_by_precommit_timeout()
    b.timeout(Step.PROPOSE, 1)  # we prevote nil in round 1, the others a polka for c (we lack its proposal)
    b.votes(PREVOTE, 1, c.hash, b.others)
    assert b.m.locked_round == 0
    b.votes(PRECOMMIT, 1, NIL, b.others)
    b.timeout(Step.PRECOMMIT, 1)
    actions = b.feed(ProposalReceived(b.proposal(2, c, valid_round=1)))
    assert one_vote(actions, PREVOTE).block_hash == c.hash  # lockedRound 0 <= vr 1


def test_line_28_prevote_nil_for_a_reproposal_older_than_our_lock() -> None:
    b = Bench()
    b.start()
    a, c = b.block(0), b.block(1, tag="q")
    b.timeout(Step.PROPOSE, 0)
    b.votes(PREVOTE, 0, c.hash, b.others)  # a polka for c in round 0 that we could not use
    b.votes(PRECOMMIT, 0, NIL, b.others)
    b.timeout(Step.PRECOMMIT, 0)
    b.lock_on(1, a)
    assert (b.m.locked_round, b.m.locked_hash) == (1, a.hash)
    b.next_round_by_precommit_timeout()
    actions = b.feed(ProposalReceived(b.proposal(2, c, valid_round=0)))
    assert one_vote(actions, PREVOTE).block_hash == NIL  # lockedRound 1 > vr 0 and c is not locked


def test_line_28_waits_for_the_polka_of_the_valid_round() -> None:
    b = Bench()
    b.start()
    c = b.block(0)
    b.timeout(Step.PROPOSE, 0)
    b.votes(PRECOMMIT, 0, NIL, b.others)
    b.timeout(Step.PRECOMMIT, 0)
    assert sent_votes(b.feed(ProposalReceived(b.proposal(1, c, valid_round=0)))) == []
    assert b.m.current_step == Step.PROPOSE
    actions = b.votes(PREVOTE, 0, c.hash, b.others)
    assert one_vote(actions, PREVOTE).block_hash == c.hash and one_vote(actions, PREVOTE).round == 1


def test_line_34_prevote_timeout_scheduled_once_on_any_quorum() -> None:
    b = Bench()
    b.start()
    b.timeout(Step.PROPOSE, 0)  # our nil prevote
    first = b.votes(PREVOTE, 0, b"\x01" * 32, b.others[:1])
    assert timeouts(first) == []
    actions = b.votes(PREVOTE, 0, b"\x02" * 32, b.others[1:2])
    assert timeouts(actions) == [ScheduleTimeout(1, 0, Step.PREVOTE, 200, b.now + 200)]
    assert timeouts(b.votes(PREVOTE, 0, b"\x03" * 32, b.others[2:])) == []


def test_line_36_lock_on_polka() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    actions = b.lock_on(0, a)
    pc = one_vote(actions, PRECOMMIT)
    assert (pc.round, pc.block_hash) == (0, a.hash)
    assert (b.m.locked_round, b.m.locked_hash, b.m.valid_round, b.m.valid_hash) == (0, a.hash, 0, a.hash)
    assert b.m.current_step == Step.PRECOMMIT


def test_line_36_polka_after_precommitting_nil_updates_only_the_valid_value() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    b.timeout(Step.PROPOSE, 0)
    b.votes(PREVOTE, 0, NIL, b.others[:1])
    b.votes(PREVOTE, 0, a.hash, b.others[1:2])
    b.timeout(Step.PREVOTE, 0)  # L61: precommit nil
    assert b.m.current_step == Step.PRECOMMIT
    actions = b.propose(0, a) + b.votes(PREVOTE, 0, a.hash, b.others[2:]) + b.votes(PREVOTE, 0, a.hash, [b.others[0]])
    assert sent_votes(actions) == []
    assert (b.m.locked_round, b.m.valid_round, b.m.valid_hash) == (-1, 0, a.hash)


def test_line_36_needs_the_proposal_and_a_valid_block() -> None:
    b = Bench(valid=lambda blk: False)
    b.start()
    a = b.block(0)
    b.timeout(Step.PROPOSE, 0)
    b.votes(PREVOTE, 0, a.hash, b.others)  # a polka, but no proposal yet
    assert b.m.locked_round == -1
    b.propose(0, a)  # the block is invalid for us
    assert b.m.locked_round == -1 and b.m.valid_round == -1


def test_line_44_precommit_nil_on_a_nil_polka() -> None:
    b = Bench()
    b.start()
    b.timeout(Step.PROPOSE, 0)
    actions = b.votes(PREVOTE, 0, NIL, b.others[:2])
    assert one_vote(actions, PRECOMMIT).block_hash == NIL
    assert b.m.current_step == Step.PRECOMMIT


def test_line_47_precommit_timeout_scheduled_once_on_any_quorum() -> None:
    b = Bench()
    b.start()
    b.votes(PRECOMMIT, 0, NIL, b.others[:2])
    actions = b.votes(PRECOMMIT, 0, b"\x05" * 32, b.others[2:])
    assert timeouts(actions) == [ScheduleTimeout(1, 0, Step.PRECOMMIT, 200, b.now + 200)]
    assert b.m.current_step == Step.PROPOSE  # this rule does not need any step


# ------------------------------------------------------------------------------------------ decide


def test_line_49_decide_with_a_commit_certificate() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    b.lock_on(0, a)
    actions = b.votes(PRECOMMIT, 0, a.hash, b.others[:2])
    [d] = decisions(actions)
    assert d.block == a and b.m.decision == (a, d.commit)
    assert (d.commit.height, d.commit.round, d.commit.block_hash) == (1, 0, a.hash)
    d.commit.verify(CHAIN_ID, b.vals)
    assert b.address in [s.validator for s in d.commit.sigs]
    assert b.feed(VoteReceived(b.vote(b.others[2], PRECOMMIT, 0, a.hash))) == []  # decided: height closed


def test_line_49_decide_on_precommits_of_an_earlier_round_without_voting() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    for r in range(3):
        b.timeout(Step.PRECOMMIT, r)
    assert b.m.round == 3
    b.propose(0, a)
    [d] = decisions(b.votes(PRECOMMIT, 0, a.hash, b.others))
    assert d.commit.round == 0 and d.block.hash == a.hash


def test_line_49_waits_for_the_block_and_never_decides_an_invalid_one() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    assert decisions(b.votes(PRECOMMIT, 0, a.hash, b.others)) == []
    assert len(decisions(b.propose(0, a))) == 1
    bad = Bench(valid=lambda blk: False)
    bad.start()
    assert decisions(bad.votes(PRECOMMIT, 0, a.hash, bad.others) + bad.propose(0, a)) == []


def test_line_52_54_new_height_resets_state_and_starts_round_0() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    b.lock_on(0, a)
    [d] = decisions(b.votes(PRECOMMIT, 0, a.hash, b.others[:2]))
    b.chain.commit(d.block, d.commit)
    b.now += 100
    actions = b.m.new_height(2, b.vals, b.now)
    assert (b.m.height, b.m.round, b.m.current_step, b.m.decision) == (2, 0, Step.PROPOSE, None)
    assert (b.m.locked_round, b.m.locked_block, b.m.valid_round, b.m.valid_block) == (-1, None, -1, None)
    assert b.m.prev_time_ms == a.header.time_ms
    assert timeouts(actions) or sent(actions)
    with pytest.raises(ValueError):
        b.m.new_height(2, b.vals, b.now)


# ------------------------------------------------------------------------------------------ rounds


def test_line_55_skip_to_a_round_with_f_plus_1_senders() -> None:
    b = Bench()
    b.start()
    assert b.votes(PREVOTE, 2, NIL, b.others[:1]) == [] and b.m.round == 0  # 1/4 of the power: not enough
    actions = b.votes(PRECOMMIT, 2, b"\x09" * 32, b.others[1:2])             # 2/4 > 1/3: skip
    assert b.m.round == 2
    assert actions == [ScheduleTimeout(1, 2, Step.PROPOSE, 500, b.now + 500)]


def test_line_55_skip_counts_power_not_heads() -> None:
    b = Bench(powers=[1, 1, 1, 5])
    assert b.me != 3  # the heavy validator proposes round 0
    b.start()
    light = [i for i in b.others if i != 3]
    b.votes(PREVOTE, 2, NIL, light[:1])
    b.votes(PREVOTE, 2, NIL, light[1:])
    assert b.m.round == 0  # two heads, but 2/8 of the power
    b.votes(PREVOTE, 3, NIL, [3])  # one head, 5/8 of the power
    assert b.m.round == 3


def test_line_55_far_rounds_beyond_the_log_window_still_pull_us_forward() -> None:
    b = Bench()
    b.start()
    far = MAX_ROUNDS_AHEAD + 30
    b.votes(PREVOTE, far, NIL, b.others[:1])
    b.votes(PREVOTE, far + 5, NIL, b.others[1:2])
    assert b.m.round == far  # both senders have reached at least `far`


def test_line_57_timeout_propose_prevotes_nil() -> None:
    b = Bench()
    b.start()
    actions = b.timeout(Step.PROPOSE, 0)
    assert one_vote(actions, PREVOTE).block_hash == NIL and b.m.current_step == Step.PREVOTE


def test_line_61_timeout_prevote_precommits_nil() -> None:
    b = Bench()
    b.start()
    b.timeout(Step.PROPOSE, 0)
    actions = b.timeout(Step.PREVOTE, 0)
    assert one_vote(actions, PRECOMMIT).block_hash == NIL and b.m.current_step == Step.PRECOMMIT


def test_line_65_timeout_precommit_starts_the_next_round() -> None:
    b = Bench()
    b.start()
    actions = b.timeout(Step.PRECOMMIT, 0)
    assert (b.m.round, b.m.current_step) == (1, Step.PROPOSE)
    assert actions == [ScheduleTimeout(1, 1, Step.PROPOSE, 400, b.now + 400)]


def test_stale_and_mismatched_timeouts_are_ignored() -> None:
    b = Bench()
    b.start()
    b.timeout(Step.PRECOMMIT, 0)
    assert b.m.round == 1
    assert b.timeout(Step.PROPOSE, 0) == [] and b.timeout(Step.PRECOMMIT, 0) == []
    assert b.timeout(Step.PROPOSE, 1, height=2) == []
    assert b.timeout(Step.PREVOTE, 1) == []  # we are in propose, not prevote
    assert b.m.round == 1 and b.m.current_step == Step.PROPOSE


def test_round_timeouts_grow_by_delta_per_round() -> None:
    b = Bench()
    for r in range(6):
        assert b.m.timeout(Step.PROPOSE, r) == 300 + 100 * r
        assert b.m.timeout(Step.PREVOTE, r) == b.m.timeout(Step.PRECOMMIT, r) == 200 + 100 * r
    b.start()
    seen = []
    for r in range(5):
        actions = b.timeout(Step.PRECOMMIT, r)
        seen += [t.duration_ms for t in timeouts(actions) if t.step == Step.PROPOSE]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


# ------------------------------------------------------------------------------------------ proposer


def test_proposer_rotation_is_weighted_by_power_and_smooth() -> None:
    signers = [signer_of(i) for i in range(4)]
    vals = validator_set(signers, [1, 2, 3, 4])
    rot = ProposerRotation(vals)
    assert rot.period == 10
    seq = [rot.index(k) for k in range(30)]
    assert seq[:10] == seq[10:20] == seq[20:]
    counts = Counter(seq[:10])
    assert [counts[i] for i in range(4)] == [v.power for v in vals.validators]
    # smooth: the heaviest validator never proposes more than twice in a row
    assert all(not seq[k] == seq[k + 1] == seq[k + 2] for k in range(28))
    # (h, r) walks the same sequence: the next round and the next height share a proposer
    assert rot.proposer(5, 1) == rot.proposer(6, 0) == vals.validators[seq[5]]


def test_proposer_rotation_first_choices_follow_cometbft_priorities() -> None:
    """Powers (1, 2, 3) in address order, by hand: each step adds the power, the highest priority (ties: the
    lowest address) proposes and loses the total 6.
        (1,2,3)->v2 (1,2,-3)   (2,4,0)->v1 (2,-2,0)   (3,0,3)->v0 by address (-3,0,3)
        (-2,2,6)->v2 (-2,2,0)  (-1,4,3)->v1 (-1,-2,3)  (0,0,6)->v2 (0,0,0): back to zero after 6"""
    keys = sorted((signer_of(i).public_key for i in range(3)), key=account_id)
    vals = ValidatorSet.of([Validator(k, p, f"v{p}") for k, p in zip(keys, (1, 2, 3), strict=True)])
    assert [v.power for v in vals.validators] == [1, 2, 3]
    rot = ProposerRotation(vals)
    assert [rot.index(k) for k in range(12)] == [2, 1, 0, 2, 1, 2] * 2
    assert rot.proposer(1, 0).power == 3 and rot.proposer(2, 0).power == 2 and rot.proposer(1, 2).power == 1


def test_proposer_rotation_equal_powers_is_round_robin_by_address() -> None:
    vals = validator_set([signer_of(i) for i in range(7)])
    rot = ProposerRotation(vals)
    assert [rot.proposer(1, r) for r in range(7)] == list(vals.validators)
    assert rot.proposer(8, 0) == vals.validators[0] and rot.proposer(3, 2) == vals.validators[4]


def test_proposer_rotation_with_huge_powers_stays_bounded_and_fair() -> None:
    powers = [2**40 + 7, 3 * 2**40 + 1, 2**41 + 3]
    vals = validator_set([signer_of(i) for i in range(3)], powers)
    rot = ProposerRotation(vals)
    assert rot.period <= (1 << 14) + 3
    counts = Counter(rot.index(k) for k in range(rot.period))
    total = sum(powers)
    for i, v in enumerate(vals.validators):
        assert abs(counts[i] / rot.period - v.power / total) < 1e-3
    assert rot.proposer(10**12, 7) == ProposerRotation(vals).proposer(10**12, 7)  # deterministic, cheap


def test_proposals_from_anyone_but_the_rounds_proposer_are_ignored() -> None:
    b = Bench()
    b.start()
    a = b.block(0)
    wrong = next(i for i in b.others if i != b.proposer_index(0))
    assert b.feed(ProposalReceived(b.proposal(0, a, by=wrong))) == []
    forged = b.proposal(0, a, by=wrong)
    forged = ProposalMessage(forged.proposal.evolve(proposer=account_id(b.signers[b.proposer_index(0)].public_key)), a)
    assert b.feed(ProposalReceived(forged)) == []  # right name, wrong key
    p = b.proposal(0, a)
    assert b.feed(ProposalReceived(ProposalMessage(p.proposal, b.block(0, tag="other")))) == []  # hash mismatch
    assert b.m.current_step == Step.PROPOSE
    assert one_vote(b.feed(ProposalReceived(p)), PREVOTE).block_hash == a.hash


def test_a_proposal_signature_is_not_a_vote_signature() -> None:
    s = signer_of(0)
    p = Proposal.create(s, CHAIN_ID, 1, 0, b"\x01" * 32, 5)
    assert p.signature_valid(CHAIN_ID, s.public_key)
    assert not p.signature_valid("other-chain", s.public_key)
    assert not verify(s.public_key, Domain.VOTE, CHAIN_ID, p.signing_payload, p.signature)


def test_proposal_encoding_and_pol_round() -> None:
    s = signer_of(1)
    p = Proposal.create(s, CHAIN_ID, 7, 3, b"\x02" * 32, 123, valid_round=1)
    assert p.pol_round == 2 and p.valid_round == 1
    assert Proposal.decode(p.encode()) == p
    assert Proposal.create(s, CHAIN_ID, 7, 0, b"\x02" * 32, 123).pol_round == NO_POL_ROUND
    with pytest.raises(ValidationError):
        Proposal.create(s, CHAIN_ID, 7, 3, b"\x02" * 32, 123, valid_round=3)  # not earlier than the round
    with pytest.raises(DecodeError):
        Proposal.decode(p.encode() + b"\x00")
    blk = Bench().block(0)
    msg = ProposalMessage(p, blk)
    assert ProposalMessage.decode(msg.encode()) == msg


# ------------------------------------------------------------------------------------------ votes, evidence


def test_evidence_on_equivocation_once_and_canonical() -> None:
    b = Bench()
    b.start()
    x = b.others[0]
    b.votes(PREVOTE, 0, b"\x07" * 32, [x])
    actions = b.votes(PREVOTE, 0, NIL, [x])
    [ev] = [a.evidence for a in actions if isinstance(a, EvidenceFound)]
    assert ev.vote_a.block_hash == NIL and ev.vote_b.block_hash == b"\x07" * 32
    assert ev.validator == account_id(b.signers[x].public_key) and ev.height == 1
    ev.validate(CHAIN_ID, b.vals)
    assert Evidence.decode(ev.encode()) == ev
    assert Evidence.of(ev.vote_b, ev.vote_a) == ev
    again = b.votes(PREVOTE, 0, NIL, [x]) + b.votes(PREVOTE, 0, b"\x08" * 32, [x])
    assert not any(isinstance(a, EvidenceFound) for a in again)
    # the equivocator is counted once for "any"
    assert b.m._rounds[0].prevotes.power_any == 10


def test_evidence_validation_rejects_what_is_not_double_signing() -> None:
    s, vals = signer_of(0), validator_set([signer_of(i) for i in range(4)])
    v1 = Vote.create(s, CHAIN_ID, PREVOTE, 1, 0, b"\x01" * 32, 1)
    v2 = Vote.create(s, CHAIN_ID, PREVOTE, 1, 0, b"\x02" * 32, 1)
    Evidence.of(v1, v2).validate(CHAIN_ID, vals)
    with pytest.raises(ValidationError):
        Evidence(v2, v1)  # not canonical
    with pytest.raises(ValidationError):
        Evidence.of(v1, v1)  # same block
    with pytest.raises(ValidationError):
        Evidence.of(v1, Vote.create(s, CHAIN_ID, PRECOMMIT, 1, 0, b"\x02" * 32, 1))
    with pytest.raises(ValidationError):
        Evidence.of(v1, Vote.create(s, CHAIN_ID, PREVOTE, 1, 1, b"\x02" * 32, 1))
    with pytest.raises(ValidationError):
        Evidence.of(v1, v2).validate(CHAIN_ID, validator_set([signer_of(i) for i in range(1, 5)]))
    with pytest.raises(SignatureError):
        Evidence.of(v1, v2.evolve(signature=v1.signature)).validate(CHAIN_ID, vals)
    with pytest.raises(SignatureError):
        Evidence.of(v1, v2).validate("other-chain", vals)


def test_votes_from_strangers_with_bad_signatures_or_repeated_are_ignored() -> None:
    b = Bench()
    b.start()
    stranger = Ed25519Signer(b"\x42" * 32)
    a = b"\x03" * 32
    v = Vote.create(stranger, CHAIN_ID, PREVOTE, 1, 0, a, b.now)
    forged = b.vote(b.others[0], PREVOTE, 0, a).evolve(signature=v.signature)
    other_chain = Vote.create(b.signers[b.others[1]], "other-chain", PREVOTE, 1, 0, a, b.now)
    assert b.feed(VoteReceived(v), VoteReceived(forged), VoteReceived(other_chain)) == []
    assert 0 not in b.m._rounds or b.m._rounds[0].prevotes.power_any == 0
    good = b.vote(b.others[0], PREVOTE, 0, a)
    b.feed(VoteReceived(good), VoteReceived(good), VoteReceived(good))
    assert b.m._rounds[0].prevotes.power_any == 10


def test_an_equivocator_is_counted_for_both_values_but_once_for_any() -> None:
    b = Bench()
    b.start()
    a, c = b.block(0), b.block(0, tag="c")
    b.timeout(Step.PROPOSE, 0)  # we prevote nil
    x, y, z = b.others
    b.votes(PREVOTE, 0, a.hash, [x, y])
    b.votes(PREVOTE, 0, c.hash, [x, z])
    pv = b.m._rounds[0].prevotes
    assert pv.power_for[a.hash] == 20 and pv.power_for[c.hash] == 20 and pv.power_any == 40


# ------------------------------------------------------------------------------------------ never double sign


class CountingSigner:
    def __init__(self, inner: Ed25519Signer, refuse: bool = False) -> None:
        self.inner, self.refuse, self.signed = inner, refuse, 0

    @property
    def public_key(self) -> bytes:
        return self.inner.public_key

    def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes:
        if self.refuse:
            raise SigningRefused("guard")
        self.signed += 1
        return self.inner.sign(domain, chain_id, payload)


_HASHES = [NIL, b"\x01" * 32, b"\x02" * 32]
# ("vote", sender, type, round, hash) | ("timeout", step, round, 0, 0) | ("proposal", round, block, valid_round+1, 0)
_event = st.one_of(
    st.tuples(st.just("vote"), st.integers(0, 2), st.sampled_from([PREVOTE, PRECOMMIT]), st.integers(0, 3),
              st.integers(0, 2)),
    st.tuples(st.just("timeout"), st.sampled_from([int(s) for s in Step]), st.integers(0, 3), st.just(0),
              st.just(0)),
    st.tuples(st.just("proposal"), st.integers(0, 2), st.integers(0, 1), st.integers(0, 2), st.just(0)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_event, max_size=40))
def test_never_signs_two_different_votes_for_one_height_round_type(script: list[tuple[str, int, int, int, int]],
                                                                   ) -> None:
    b = Bench()
    blocks = [b.block(0, tag="a"), b.block(0, tag="b")]
    votes: dict[tuple[int, int, int], bytes] = {}
    proposals: dict[int, bytes] = {}

    def check(actions: list[Action]) -> None:
        for m in sent(actions):
            if isinstance(m, Vote):
                assert votes.setdefault((m.height, m.round, m.type), m.block_hash) == m.block_hash
            else:
                assert proposals.setdefault(m.proposal.round, m.block.hash) == m.block.hash

    check(b.start())
    for kind, x, y, z, w in script:
        if kind == "vote":
            check(b.votes(y, z, _HASHES[w], [b.others[x]]))
        elif kind == "timeout":
            check(b.timeout(Step(x), y))
        else:
            valid_round = z - 1 if z - 1 < x else -1
            check(b.feed(ProposalReceived(b.proposal(x, blocks[y], valid_round))))
        if b.m.decision is not None:
            break


def test_own_votes_replayed_from_the_wal_are_reused_not_signed_again() -> None:
    b = Bench()
    counting = CountingSigner(b.signers[b.me])
    b2 = Bench(me=b.me, signer=counting)
    old = Vote.create(b.signers[b.me], CHAIN_ID, PREVOTE, 1, 0, NIL, b.now - 50)  # what we sent before a crash
    b2.start()
    b2.feed(VoteReceived(old))
    a = b2.block(0)
    actions = b2.propose(0, a)  # would prevote a, but the prevote of round 0 exists: re-send it
    assert sent_votes(actions) == [old] and counting.signed == 0


def test_a_refusing_signer_means_silence_but_the_step_advances() -> None:
    b0 = Bench()
    guard = CountingSigner(b0.signers[b0.me], refuse=True)
    b = Bench(me=b0.me, signer=guard)
    b.start()
    assert sent(b.propose(0, b.block(0))) == [] and b.m.current_step == Step.PREVOTE


def test_observer_follows_and_decides_without_signing() -> None:
    b = Bench(observer=True)
    assert not b.m.is_validator
    b.start()
    a = b.block(0)
    actions = b.propose(0, a) + b.votes(PREVOTE, 0, a.hash, [0, 1, 2]) + b.votes(PRECOMMIT, 0, a.hash, [0, 1, 2])
    assert sent(actions) == [] and decisions(actions)[0].block == a


# ------------------------------------------------------------------------------------------ other heights


def _decide_height_1(b: Bench) -> Decide:
    b.start()
    a = b.block(0)
    b.lock_on(0, a)
    [d] = decisions(b.votes(PRECOMMIT, 0, a.hash, b.others[:2]))
    b.chain.commit(d.block, d.commit)
    return d


def test_future_height_messages_are_buffered_and_replayed_by_new_height() -> None:
    b = Bench()
    b.start()
    # height 2 votes arrive while we are still at height 1 (f+1 of them at round 1: a skip once replayed)
    early = [b.vote(i, PREVOTE, 1, NIL, height=2) for i in b.others[:2]]
    assert b.feed(*(VoteReceived(v) for v in early)) == []
    far = b.vote(b.others[2], PREVOTE, 1, NIL, height=2 + MAX_FUTURE_HEIGHTS)
    assert b.feed(VoteReceived(far)) == []
    # finish height 1 the normal way
    a = b.block(0)
    b.lock_on(0, a)
    [d] = decisions(b.votes(PRECOMMIT, 0, a.hash, b.others[:2]))
    b.chain.commit(d.block, d.commit)
    b.m.new_height(2, b.vals, b.now + 10)
    assert b.m.height == 2 and b.m.round == 1  # the buffered votes were counted
    assert b.feed(VoteReceived(b.vote(b.others[0], PREVOTE, 0, NIL, height=1))) == []  # past: dropped


def test_far_future_heights_are_dropped() -> None:
    b = Bench()
    b.start()
    b.feed(VoteReceived(b.vote(b.others[0], PREVOTE, 0, NIL, height=2 + MAX_FUTURE_HEIGHTS)))
    assert b.m._future == {}


def test_proposals_per_round_are_capped_unless_votes_back_them() -> None:
    b = Bench()
    b.start()
    b.timeout(Step.PROPOSE, 0)
    blocks = [b.block(0, tag=f"t{i}") for i in range(MAX_PROPOSALS_PER_ROUND + 2)]
    for blk in blocks:
        b.propose(0, blk)
    assert len(b.m._rounds[0].proposals) == MAX_PROPOSALS_PER_ROUND
    backed = blocks[-1]
    b.votes(PRECOMMIT, 0, backed.hash, b.others)
    [d] = decisions(b.propose(0, backed))
    assert d.block == backed


def test_new_height_requires_the_previous_time_after_a_jump() -> None:
    b = Bench()
    b.start()
    with pytest.raises(ValueError):
        b.m.new_height(5, b.vals, b.now)
    b.m.new_height(5, b.vals, b.now, prev_time_ms=b.now - 10)
    assert b.m.height == 5 and b.m.prev_time_ms == b.now - 10


def test_step_before_start_is_an_error() -> None:
    b = Bench()
    with pytest.raises(RuntimeError):
        b.m.step(TimeoutFired(1, 0, Step.PROPOSE), b.now)
    b.start()
    with pytest.raises(RuntimeError):
        b.start()


def test_machine_is_deterministic() -> None:
    def trace() -> list[bytes]:
        b = Bench(want_proposer_at_0=True)
        out = b.start()
        a = sent(out)[0]
        assert isinstance(a, ProposalMessage)
        out += b.votes(PREVOTE, 0, a.block.hash, b.others[:2]) + b.votes(PRECOMMIT, 0, a.block.hash, b.others[:2])
        return [m.encode() for m in sent(out)] + [d.commit.encode() for d in decisions(out)]
    assert trace() == trace()


# ------------------------------------------------------------------------------------------ simulated network


def test_a_locked_majority_is_not_forked_by_an_equivocating_proposer() -> None:
    """The attack that locking exists for: in round 0, H3 decides A while H1 and H2 (locked on A) time out;
    the byzantine proposer of round 1 offers them a fresh C. They must prevote nil, so C never decides."""
    b = Bench(n=4)
    byz = b.proposer_index(1)
    assert byz not in (b.me, b.proposer_index(0))
    b.start()
    a = b.block(0)
    honest_others = [i for i in b.others if i != byz]
    b.lock_on(0, a)
    assert b.m.locked_hash == a.hash
    # we see only 2 precommits for a (ours, one other) plus a nil one: no decision, precommit timeout
    b.votes(PRECOMMIT, 0, a.hash, honest_others[:1])
    b.votes(PRECOMMIT, 0, NIL, [byz])
    b.timeout(Step.PRECOMMIT, 0)
    assert b.m.round == 1 and b.m.decision is None
    c = b.block(1, tag="evil")
    assert one_vote(b.propose(1, c), PREVOTE).block_hash == NIL


def _sim(config: Config) -> None:
    Simulation(config).run()


def test_sim_no_faults_decides_in_round_0() -> None:
    cfg = Config(seed=1, n=4, heights=3, byzantine={}, gst_ms=0, drop=0.0, dup=0.0, max_delay_ms=10,
                 skews_ms=[0] * 4, controls=[])
    r = Simulation(cfg).run()
    assert r.rounds == 0


def test_sim_isolated_proposer_then_heal() -> None:
    cfg = Config(seed=2, n=4, heights=2, byzantine={}, gst_ms=3000, drop=0.0, dup=0.0, max_delay_ms=30,
                 skews_ms=[0, 50, -50, 100], controls=[(0, (frozenset({0}), frozenset({1, 2, 3})))])
    _sim(cfg)


def test_sim_minority_partition_cannot_decide_alone() -> None:
    cfg = Config(seed=3, n=7, heights=2, byzantine={6: "silent"}, gst_ms=4000, drop=0.0, dup=0.0,
                 max_delay_ms=30, skews_ms=[0] * 7, controls=[(0, (frozenset({0, 1, 2}), frozenset({3, 4, 5, 6})))])
    sim = Simulation(cfg)
    sim.run()
    assert sim.last_decision_ms >= 4000  # nobody could decide before the partition healed at GST


def test_sim_equivocating_byzantines_with_weighted_power() -> None:
    for seed in range(20):
        cfg = Config(seed=seed, n=4, heights=2, byzantine={3: "equivocate"}, gst_ms=2000, drop=0.2, dup=0.1,
                     max_delay_ms=400, skews_ms=[0, 100, -100, 0], controls=[], powers=[3, 3, 3, 2])
        _sim(cfg)


def test_sim_reports_a_violation_with_its_seed_and_a_reproduction_command() -> None:
    cfg = Config.random(5, 4)
    cfg.byzantine = {0: "silent", 1: "silent"}  # more than f: liveness must fail, and say how to replay it
    with pytest.raises(SimFailure) as e:
        Simulation(cfg).run()
    assert "seed 5 n=4" in str(e.value) and repro(5, 4) in str(e.value)


SCHEDULES = int(os.environ.get("CONSENSUS_SIM_SCHEDULES", "10000"))


def _chunks(total: int, size: int = 100) -> list[tuple[int, int, int, int]]:
    """Seeds 0..total-1; every fourth block of seeds runs with n=7, the rest with n=4 (n=7 costs ~2.5x)."""
    out = []
    for k, seed0 in enumerate(range(0, total, size)):
        out.append((seed0, min(size, total - seed0), 7 if k % 4 == 3 else 4, 2))
    return out


def _safe_run_range(args: tuple[int, int, int, int]) -> tuple[list[str], int, float, list[int]]:
    t0 = time.process_time()
    seed0, count, n, heights = args
    failures, rounds = [], []
    for s in range(seed0, seed0 + count):
        try:
            r = run_range((s, 1, n, heights))[0]
            rounds.append(r.rounds)
        except SimFailure as e:
            failures.append(str(e))
    return failures, count, time.process_time() - t0, rounds


def test_ten_thousand_seeded_schedules(capsys: pytest.CaptureFixture[str]) -> None:
    chunks = _chunks(SCHEDULES)
    workers = max(1, min(len(chunks), os.cpu_count() or 1))
    t0 = time.perf_counter()
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(_safe_run_range, chunks, chunksize=1)
    else:
        results = [_safe_run_range(c) for c in chunks]
    wall = time.perf_counter() - t0
    failures = [f for fs, _, _, _ in results for f in fs]
    done = sum(c for _, c, _, _ in results)
    cpu = sum(t for _, _, t, _ in results)
    rounds = Counter(min(r, 4) for _, _, _, rs in results for r in rs)
    with capsys.disabled():
        print(f"\n{done} schedules ({sum(c[1] for c in chunks if c[2] == 4)} with n=4, "
              f"{sum(c[1] for c in chunks if c[2] == 7)} with n=7) in {wall:.1f}s on {workers} processes: "
              f"{done / wall:.0f} schedules/s, {done / cpu:.0f} per CPU-second; highest round reached "
              f"{dict(sorted(rounds.items()))}")
    assert done == SCHEDULES
    assert not failures, f"{len(failures)} schedules failed:\n" + "\n".join(failures[:20])
