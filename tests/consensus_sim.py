"""A simulated network for the Tendermint machine (consensus/tendermint.py), in the manner of raft-rs's test
harness: N machines with real Ed25519 keys, a toy deterministic application, one virtual clock, one event
queue, and a seeded adversarial scheduler.

Network model (the paper's, section 2): before GST the scheduler drops, delays (0..max_delay), reorders and
duplicates messages, and cuts the network into partitions (a split, an isolated node, a heal). A dropped
transmission is lost, but the gossip layer re-sends what a peer lacks, so every message lost before GST is
delivered by GST + delta; a message an honest node received is relayed to every honest node (the paper's
gossip property: byzantine senders cannot show a message to some honest nodes only). After GST every
transmission arrives within delta (still reordered, sometimes duplicated). A node that was too many heights
behind to buffer a message gets it again when it reaches that height (gossip by height, as CometBFT's
reactor does).

Byzantine validators (at most f of the power): `silent` never sends (a crashed node); `equivocate` runs the
algorithm but signs a second proposal (another block, valid or not) and a second vote (another known block,
nil, or garbage) for every one it makes and shows each to a random part of the network.

Properties checked on every schedule: agreement (honest nodes never decide different blocks at one height),
validity (a decided block was proposed by some proposer and accepted by an honest node's application; its
commit certificate verifies), integrity (an honest node never signs two different votes for one
(height, round, type); evidence is only ever found against byzantine validators and verifies), and
liveness (every honest node decides every height of the schedule by GST + LIVENESS_BOUND_MS).

Reproduce one schedule:  python -m tests.consensus_sim --seed N --n 4   (add --trace to see every step)
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from consensus.crypto import Domain, Ed25519Signer, account_id, sha256
from consensus.crypto import verify as ed25519_verify
from consensus.merkle import EMPTY_ROOT, merkle_root
from consensus.tendermint import (
    MAX_FUTURE_HEIGHTS,
    Action,
    Broadcast,
    Decide,
    EvidenceFound,
    Hooks,
    Proposal,
    ProposalMessage,
    ProposalReceived,
    ScheduleTimeout,
    Tendermint,
    TimeoutFired,
    VoteReceived,
)
from consensus.types import Block, CommitCertificate, ConsensusParams, Header, Validator, ValidatorSet, Vote

CHAIN_ID = "sim-chain"
GENESIS_TIME_MS = 1_700_000_000_000
GENESIS_HASH = sha256(b"sim-genesis")
GENESIS_APP_HASH = sha256(b"sim-app-state-0")
PARAMS = ConsensusParams.default().evolve(
    timeout_propose_ms=300, timeout_vote_ms=200, timeout_delta_ms=100, max_clock_drift_ms=1000)
#: After GST, every transmission takes 1..DELTA_MS.
DELTA_MS = 50
#: Every honest node must have decided every height of the schedule by GST + this (virtual ms). Measured over
#: the 10,000 schedules of the test suite: median 0.24 s, 99th percentile 2.3 s, worst 4.4 s after GST.
LIVENESS_BOUND_MS = 15_000
#: A schedule that processes more events than this is reported as stuck.
MAX_EVENTS = 400_000

NIL = b""


def repro(seed: int, n: int) -> str:
    return f"python -m tests.consensus_sim --seed {seed} --n {n}"


class SimFailure(AssertionError):
    """A property was violated; the message names the seed and how to reproduce it."""


# ------------------------------------------------------------------------------------------ keys, app


def signer_of(i: int) -> Ed25519Signer:
    return Ed25519Signer(sha256(b"sim-validator-%d" % i))


def validator_set(signers: list[Ed25519Signer], powers: list[int] | None = None) -> ValidatorSet:
    powers = powers or [10] * len(signers)
    return ValidatorSet.of([Validator(s.public_key, p, f"v{i}") for i, (s, p) in enumerate(zip(signers, powers,
                                                                                               strict=True))])


class VerifyCache:
    """Ed25519 verification shared by all simulated nodes: each distinct (key, message, signature) is
    checked once for real (the machines still see every forgery rejected)."""

    def __init__(self) -> None:
        self.memo: dict[tuple[bytes, Domain, str, bytes, bytes], bool] = {}
        self.commits: dict[tuple[bytes, bytes], bool] = {}

    def __call__(self, pubkey: bytes, domain: Domain, chain_id: str, payload: bytes, sig: bytes) -> bool:
        key = (pubkey, domain, chain_id, payload, sig)
        ok = self.memo.get(key)
        if ok is None:
            ok = self.memo[key] = ed25519_verify(pubkey, domain, chain_id, payload, sig)
        return ok


def app_hash_after(prev_app_hash: bytes, txs_root: bytes) -> bytes:
    return sha256(prev_app_hash + txs_root)


def results_hash_of(txs_root: bytes) -> bytes:
    return sha256(b"results" + txs_root)


def make_block(height: int, time_ms: int, prev_hash: bytes, prev_app_hash: bytes, txs: tuple[bytes, ...],
               last_commit: CommitCertificate | None, proposer: bytes, validators: ValidatorSet,
               corrupt: bool = False) -> Block:
    root = merkle_root(txs)
    app_hash = sha256(b"corrupt") if corrupt else app_hash_after(prev_app_hash, root)
    header = Header(CHAIN_ID, height, time_ms, prev_hash, root, len(txs),
                    EMPTY_ROOT if last_commit is None else last_commit.hash, results_hash_of(root), app_hash,
                    validators.hash, validators.hash, proposer)
    return Block(header, txs, last_commit)


def commit_valid(commit: CommitCertificate, validators: ValidatorSet, verify: VerifyCache) -> bool:
    key = (commit.hash, validators.hash)
    ok = verify.commits.get(key)
    if ok is None:
        ok = verify.commits[key] = _commit_valid(commit, validators, verify)
    return ok


def _commit_valid(commit: CommitCertificate, validators: ValidatorSet, verify: VerifyCache) -> bool:
    power = 0
    for vote in commit.votes():
        v = validators.by_address.get(vote.validator)
        if v is None or not verify(v.pubkey, Domain.VOTE, CHAIN_ID, vote.signing_payload, vote.signature):
            return False
        power += v.power
    return power >= validators.quorum


class ToyChain:
    """One node's committed chain and its trivial deterministic application: a block's app hash is
    H(previous app hash || txs root); it must extend this node's last block and carry a valid commit."""

    def __init__(self, index: int, address: bytes, validators: ValidatorSet, verify: VerifyCache,
                 on_valid: Callable[[bytes], None] | None = None) -> None:
        self.index, self.address, self.validators, self.verify = index, address, validators, verify
        self.on_valid = on_valid
        self.last_hash, self.last_app_hash, self.last_time_ms = GENESIS_HASH, GENESIS_APP_HASH, GENESIS_TIME_MS
        self.last_commit: CommitCertificate | None = None
        self.blocks: list[Block] = []

    def build(self, height: int, round: int, time_ms: int, tag: str = "p", corrupt: bool = False) -> Block:
        txs = (f"h{height}r{round}{tag}{self.index}".encode(),)
        return make_block(height, time_ms, self.last_hash, self.last_app_hash, txs, self.last_commit,
                          self.address, self.validators, corrupt)

    def propose_block(self, height: int, round: int, time_ms: int) -> Block | None:
        return self.build(height, round, time_ms)

    def validate_block(self, block: Block) -> bool:
        h = block.header
        ok = (h.prev_hash == self.last_hash and h.height == len(self.blocks) + 1
              and h.app_hash == app_hash_after(self.last_app_hash, h.txs_root)
              and h.results_hash == results_hash_of(h.txs_root)
              and h.next_validators_hash == self.validators.hash
              and (block.last_commit is None or commit_valid(block.last_commit, self.validators, self.verify)))
        if ok and self.on_valid is not None:
            self.on_valid(block.hash)
        return ok

    def commit(self, block: Block, commit: CommitCertificate) -> None:
        self.blocks.append(block)
        self.last_hash, self.last_time_ms, self.last_commit = block.hash, block.header.time_ms, commit
        self.last_app_hash = block.header.app_hash

    def hooks(self) -> Hooks:
        return Hooks(self.propose_block, self.validate_block)


# ------------------------------------------------------------------------------------------ schedules


@dataclass
class Config:
    seed: int
    n: int
    heights: int
    byzantine: dict[int, str]          # node index -> "silent" | "equivocate"
    gst_ms: int
    drop: float
    dup: float
    max_delay_ms: int
    skews_ms: list[int]
    controls: list[tuple[int, tuple[frozenset[int], ...]]]  # (time, partition groups) before GST
    slow_kind: str = ""                # before GST, "proposal" | "prevote" | "precommit" messages ...
    slow_to: frozenset[int] = frozenset()  # ... to these nodes take up to slow_ms more
    slow_ms: int = 0
    powers: list[int] | None = None

    @classmethod
    def random(cls, seed: int, n: int, heights: int = 2) -> Config:
        rng = random.Random(f"config/{seed}/{n}")
        powers = [rng.randint(1, 5) for _ in range(n)] if rng.random() < 0.25 else None
        weights = powers or [1] * n
        faulty_power = sum(weights) - (sum(weights) * 2 // 3 + 1)  # f: the most a quorum can tolerate
        byz: dict[int, str] = {}
        budget = rng.randint(0, faulty_power)
        for i in rng.sample(range(n), n):
            if weights[i] <= budget:
                budget -= weights[i]
                byz[i] = rng.choice(("silent", "equivocate"))
        gst = rng.choice((0, rng.randint(0, 1500), rng.randint(0, 4000)))
        controls: list[tuple[int, tuple[frozenset[int], ...]]] = []
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            if gst == 0:
                break
            t = rng.randint(0, gst)
            kind = rng.choice(("split", "isolate", "heal"))
            if kind == "heal":
                groups: tuple[frozenset[int], ...] = (frozenset(range(n)),)
            elif kind == "isolate":
                x = rng.randrange(n)
                groups = (frozenset({x}), frozenset(range(n)) - {x})
            else:
                side = frozenset(rng.sample(range(n), rng.randint(1, n - 1)))
                groups = (side, frozenset(range(n)) - side)
            controls.append((t, groups))
        controls.sort(key=lambda c: c[0])
        slow_kind = rng.choice(("", "proposal", "prevote", "precommit")) if gst else ""
        return cls(seed=seed, n=n, heights=heights, byzantine=byz, gst_ms=gst,
                   drop=rng.choice((0.0, 0.05, 0.2, 0.5)), dup=rng.choice((0.0, 0.02, 0.1)),
                   max_delay_ms=rng.choice((20, 200, 1000)), skews_ms=[rng.randint(-200, 200) for _ in range(n)],
                   controls=controls, slow_kind=slow_kind,
                   slow_to=frozenset(rng.sample(range(n), rng.randint(1, n - 1))) if slow_kind else frozenset(),
                   slow_ms=rng.choice((400, 1500)) if slow_kind else 0, powers=powers)


# ------------------------------------------------------------------------------------------ the network


DELIVER, TIMER, CONTROL, GST = 0, 1, 2, 3


def kind_of(msg: ProposalMessage | Vote) -> str:
    if isinstance(msg, ProposalMessage):
        return "proposal"
    return "prevote" if msg.type == 1 else "precommit"


def height_of(msg: ProposalMessage | Vote) -> int:
    return msg.proposal.height if isinstance(msg, ProposalMessage) else msg.height


@dataclass
class SimNode:
    index: int
    signer: Ed25519Signer
    kind: str                       # "honest" | "silent" | "equivocate"
    chain: ToyChain
    machine: Tendermint | None
    skew_ms: int
    done: bool = False
    received: set[int] = field(default_factory=set)
    too_far: list[tuple[int, ProposalMessage | Vote]] = field(default_factory=list)
    known: dict[tuple[int, int], list[bytes]] = field(default_factory=dict)  # byzantine: hashes seen

    @property
    def honest(self) -> bool:
        return self.kind == "honest"


@dataclass
class Result:
    seed: int
    n: int
    decided_at_ms: int
    rounds: int           # highest round any honest node reached at a decided height
    events: int
    evidence: int


class Simulation:
    def __init__(self, config: Config, trace: Callable[[str], None] | None = None) -> None:
        self.cfg = config
        self.trace = trace
        self.rng = random.Random(f"net/{config.seed}/{config.n}")
        self.verify = VerifyCache()
        signers = [signer_of(i) for i in range(config.n)]
        self.validators = validator_set(signers, config.powers)
        self.quorum = self.validators.quorum
        self.queue: list[tuple[int, int, int, Any, Any]] = []
        self.seq = 0
        self.now = 0
        self.gst_passed = config.gst_ms == 0
        self.groups: tuple[frozenset[int], ...] = (frozenset(range(config.n)),)
        self.missed: list[tuple[int, int, int, ProposalMessage | Vote]] = []
        self.sent_to: dict[int, set[int]] = {}
        self.next_mid = 0
        self.proposed: set[bytes] = set()
        self.honest_valid: set[bytes] = set()
        self.decided: dict[int, Block] = {}
        self.signed: dict[tuple[bytes, int, int, int], bytes] = {}
        self.evidence = 0
        self.max_round = 0
        self.events = 0
        self.last_decision_ms = 0
        self.nodes: list[SimNode] = []
        for i, s in enumerate(signers):
            kind = config.byzantine.get(i, "honest")
            chain = ToyChain(i, account_id(s.public_key), self.validators, self.verify,
                             self.honest_valid.add if kind == "honest" else None)
            machine = None if kind == "silent" else Tendermint(
                CHAIN_ID, 1, self.validators, s, PARAMS, chain.hooks(), prev_time_ms=GENESIS_TIME_MS,
                verify=self.verify)
            self.nodes.append(SimNode(i, s, kind, chain, machine, config.skews_ms[i]))
        self.honest = [nd for nd in self.nodes if nd.honest]

    # ---- plumbing ---------------------------------------------------------------------------------

    def fail(self, what: str) -> SimFailure:
        c = self.cfg
        return SimFailure(f"seed {c.seed} n={c.n}: {what} (byzantine={c.byzantine}, gst={c.gst_ms}ms)\n"
                          f"  reproduce: {repro(c.seed, c.n)}")

    def push(self, at: int, kind: int, a: Any, b: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, a, b))

    def clock(self, node: SimNode) -> int:
        return GENESIS_TIME_MS + self.now + node.skew_ms

    def log(self, text: str) -> None:
        if self.trace is not None:
            self.trace(f"{self.now:>7}ms {text}")

    def send(self, frm: int, to: int, mid: int, msg: ProposalMessage | Vote) -> None:
        if self.nodes[to].kind == "silent":
            return
        self.sent_to[mid].add(to)
        rng = self.rng
        if not self.gst_passed:
            same = any(frm in g and to in g for g in self.groups)
            if not same or rng.random() < self.cfg.drop:
                self.missed.append((frm, to, mid, msg))
                return
            delay = rng.randint(0, self.cfg.max_delay_ms)
            if to in self.cfg.slow_to and kind_of(msg) == self.cfg.slow_kind:
                delay += rng.randint(0, self.cfg.slow_ms)
        else:
            delay = rng.randint(1, DELTA_MS)
        self.push(self.now + delay, DELIVER, to, (mid, msg))
        if self.cfg.dup and rng.random() < self.cfg.dup:
            self.push(self.now + delay + rng.randint(0, 2 * DELTA_MS), DELIVER, to, (mid, msg))

    def multicast(self, frm: int, msg: ProposalMessage | Vote, to: list[int]) -> None:
        mid = self.next_mid
        self.next_mid += 1
        self.sent_to[mid] = set()
        for j in to:
            self.send(frm, j, mid, msg)

    # ---- running --------------------------------------------------------------------------------------

    def run(self) -> Result:
        cfg = self.cfg
        for t, groups in cfg.controls:
            self.push(t, CONTROL, groups, None)
        if not self.gst_passed:
            self.push(cfg.gst_ms, GST, None, None)
        for nd in self.nodes:
            if nd.machine is not None:
                self.handle(nd, nd.machine.start(self.clock(nd)))
        deadline = cfg.gst_ms + LIVENESS_BOUND_MS
        queue = self.queue
        while not all(nd.done for nd in self.honest):
            if not queue:
                raise self.fail("the event queue ran dry before every honest node decided (deadlock)")
            at, _, kind, a, b = heapq.heappop(queue)
            self.now = at
            if at > deadline:
                raise self.fail(self.liveness_report())
            self.events += 1
            if self.events > MAX_EVENTS:
                raise self.fail(f"more than {MAX_EVENTS} events (livelock?) " + self.liveness_report())
            if kind == DELIVER:
                self.deliver(a, *b)
            elif kind == TIMER:
                nd = self.nodes[a]
                if not nd.done and nd.machine is not None:
                    self.handle(nd, nd.machine.step(b, self.clock(nd)))
            elif kind == CONTROL:
                if not self.gst_passed:
                    self.groups = a
                    self.log(f"network groups {[sorted(g) for g in a]}")
            else:
                self.gst_passed = True
                self.groups = (frozenset(range(cfg.n)),)
                self.log(f"GST: healing, re-sending {len(self.missed)} lost messages")
                missed, self.missed = self.missed, []
                for _, to, mid, msg in missed:
                    self.push(self.now + self.rng.randint(1, DELTA_MS), DELIVER, to, (mid, msg))
        return Result(cfg.seed, cfg.n, self.last_decision_ms - cfg.gst_ms, self.max_round, self.events,
                      self.evidence)

    def liveness_report(self) -> str:
        parts = []
        for nd in self.honest:
            m = nd.machine
            assert m is not None
            parts.append(f"node {nd.index}: h={m.height} r={m.round} {m.current_step.name} "
                         f"decided={len(nd.chain.blocks)}")
        return f"liveness: not every honest node decided {self.cfg.heights} heights by GST+" \
               f"{LIVENESS_BOUND_MS}ms [{'; '.join(parts)}]"

    def deliver(self, to: int, mid: int, msg: ProposalMessage | Vote) -> None:
        nd = self.nodes[to]
        if nd.done or nd.machine is None:
            return
        if mid not in nd.received:
            nd.received.add(mid)
            if nd.honest:  # gossip: what one honest node has, every honest node gets
                sent = self.sent_to[mid]
                for other in self.honest:
                    if other.index != to and other.index not in sent:
                        self.send(to, other.index, mid, msg)
            if not nd.honest and isinstance(msg, ProposalMessage):
                p = msg.proposal
                nd.known.setdefault((p.height, p.round), []).append(p.block_hash)
        m = nd.machine
        h = height_of(msg)
        if h > m.height + MAX_FUTURE_HEIGHTS:
            nd.too_far.append((h, msg))
        event = ProposalReceived(msg) if isinstance(msg, ProposalMessage) else VoteReceived(msg)
        self.handle(nd, m.step(event, self.clock(nd)))

    def handle(self, nd: SimNode, actions: list[Action]) -> None:
        work = list(actions)
        while work:
            a = work.pop(0)
            if isinstance(a, Broadcast):
                self.broadcast(nd, a.message)
            elif isinstance(a, ScheduleTimeout):
                self.push(self.now + a.duration_ms, TIMER, nd.index, TimeoutFired(a.height, a.round, a.step))
            elif isinstance(a, Decide):
                work.extend(self.decide(nd, a.block, a.commit))
            elif isinstance(a, EvidenceFound):
                self.check_evidence(nd, a)

    def others(self, nd: SimNode) -> list[int]:
        return [j for j in range(self.cfg.n) if j != nd.index]

    def broadcast(self, nd: SimNode, msg: ProposalMessage | Vote) -> None:
        if isinstance(msg, ProposalMessage):
            self.proposed.add(msg.block.hash)
        if nd.honest:
            if isinstance(msg, Vote):
                key = (msg.validator, msg.height, msg.round, msg.type)
                prev = self.signed.setdefault(key, msg.block_hash)
                if prev != msg.block_hash:
                    raise self.fail(f"honest node {nd.index} signed two votes for {key[1:]}")
            if self.trace:
                self.log(f"node {nd.index} sends {describe(msg)}")
            self.multicast(nd.index, msg, self.others(nd))
            return
        self.equivocate(nd, msg)

    def equivocate(self, nd: SimNode, msg: ProposalMessage | Vote) -> None:
        rng = self.rng
        others = self.others(nd)
        rng.shuffle(others)
        cut = rng.randint(0, len(others))
        both = rng.random() < 0.3  # show both messages to everyone (counted for two values everywhere)
        if isinstance(msg, ProposalMessage):
            p = msg.proposal
            block = nd.chain.build(p.height, p.round, msg.block.header.time_ms + rng.randint(0, 5), tag="x",
                                   corrupt=rng.random() < 0.3)
            alt: ProposalMessage | Vote = ProposalMessage(
                Proposal.create(nd.signer, CHAIN_ID, p.height, p.round, block.hash, p.timestamp_ms),
                block)
            self.proposed.add(block.hash)
            nd.known.setdefault((p.height, p.round), []).extend([p.block_hash, block.hash])
        else:
            choices = [h for h in nd.known.get((msg.height, msg.round), []) if h != msg.block_hash]
            if msg.block_hash != NIL:
                choices.append(NIL)
            choices.append(sha256(b"garbage%d" % rng.randrange(1 << 30)))
            alt = Vote.create(nd.signer, CHAIN_ID, msg.type, msg.height, msg.round, rng.choice(choices),
                              msg.timestamp_ms)
        if self.trace:
            self.log(f"byzantine {nd.index} sends {describe(msg)} to {sorted(others[:cut])}, "
                     f"{describe(alt)} to {sorted(others[cut:])}")
        self.multicast(nd.index, msg, others if both else others[:cut])
        self.multicast(nd.index, alt, others if both else others[cut:])

    def check_evidence(self, nd: SimNode, a: EvidenceFound) -> None:
        ev = a.evidence
        culprit = next(x for x in self.nodes if account_id(x.signer.public_key) == ev.validator)
        if culprit.honest:
            raise self.fail(f"node {nd.index} found evidence against honest node {culprit.index}")
        for vote in (ev.vote_a, ev.vote_b):
            v = self.validators.by_address[vote.validator]
            if not self.verify(v.pubkey, Domain.VOTE, CHAIN_ID, vote.signing_payload, vote.signature):
                raise self.fail("evidence with a bad signature")
        self.evidence += 1

    def decide(self, nd: SimNode, block: Block, commit: CommitCertificate) -> list[Action]:
        m = nd.machine
        assert m is not None
        h = block.height
        if nd.honest:
            first = self.decided.setdefault(h, block)
            if first.hash != block.hash:
                raise self.fail(f"agreement: honest nodes decided different blocks at height {h}")
            if block.hash not in self.proposed or block.hash not in self.honest_valid:
                raise self.fail(f"validity: decided block at height {h} was not proposed and validated")
            if commit.block_hash != block.hash or commit.height != h \
                    or not commit_valid(commit, self.validators, self.verify):
                raise self.fail(f"node {nd.index} decided height {h} with a bad commit certificate")
            self.max_round = max(self.max_round, m.round)
            self.last_decision_ms = max(self.last_decision_ms, self.now)
            if self.trace:
                self.log(f"node {nd.index} decides height {h} in round {commit.round}: {block.hash.hex()[:8]}")
        nd.chain.commit(block, commit)
        if h >= self.cfg.heights:
            nd.done = True
            return []
        actions = m.new_height(h + 1, self.validators, self.clock(nd))
        # gossip by height: what the node could not buffer, it gets again now
        again = [msg for hh, msg in nd.too_far if hh == h + 1]
        nd.too_far = [(hh, msg) for hh, msg in nd.too_far if hh > h + 1]
        for msg in again:
            mid = self.next_mid
            self.next_mid += 1
            self.sent_to[mid] = {nd.index}
            self.push(self.now + 1, DELIVER, nd.index, (mid, msg))
        return actions


def describe(msg: ProposalMessage | Vote) -> str:
    if isinstance(msg, ProposalMessage):
        p = msg.proposal
        return f"PROPOSAL(h{p.height} r{p.round} vr{p.valid_round} {p.block_hash.hex()[:8]})"
    kind = "PREVOTE" if msg.type == 1 else "PRECOMMIT"
    return f"{kind}(h{msg.height} r{msg.round} {msg.block_hash.hex()[:8] or 'nil'})"


def run_schedule(seed: int, n: int, heights: int = 2, trace: Callable[[str], None] | None = None) -> Result:
    return Simulation(Config.random(seed, n, heights), trace).run()


def run_range(args: tuple[int, int, int, int]) -> list[Result]:
    """Schedules seed0 .. seed0+count-1 of size n (a unit of work for a process pool)."""
    seed0, count, n, heights = args
    return [run_schedule(s, n, heights) for s in range(seed0, seed0 + count)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--heights", type=int, default=2)
    ap.add_argument("--trace", action="store_true")
    a = ap.parse_args(argv)
    cfg = Config.random(a.seed, a.n, a.heights)
    print(cfg)
    try:
        r = Simulation(cfg, print if a.trace else None).run()
    except SimFailure as e:
        print(f"FAILED: {e}")
        return 1
    print(f"ok: {r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
