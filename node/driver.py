"""The consensus driver: one task, one input queue, WAL first (STYLE.md; the Tendermint machine's contract
in consensus/tendermint.py).

Inputs (in the order they arrive on one asyncio.Queue): messages from peers (proposals, votes, transactions,
status, block-sync requests and blocks), timeouts the machine scheduled, and "kicks" when a transaction
arrived through the API. For each proposal or vote: append it to the WAL, then `machine.step`. For each
action: `Broadcast` -> append to the WAL and fsync, then send (the validator's own signatures are persisted
by the PrivValidator before they exist, and in the WAL before they leave); `ScheduleTimeout` -> a timer that
feeds `TimeoutFired` back; `Decide` -> verify the commit, write the block with its state in one fsynced
batch (off the event loop), mark the end of the height in the WAL, publish events, then enter the next
height; `EvidenceFound` -> an `evidence.submit` transaction signed by the node key.

A height starts only when there is work: an executable waiting transaction, a validator's message of that
height, or a grant due to expire. An idle chain therefore makes no blocks. A node that falls behind (status
gossip shows a higher height) asks a peer for the missing blocks and applies each after checking its commit
certificate. Transactions travel in batches, relayed only where a link is missing (D-35); vault ciphertexts
are node/replication.py's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any

from consensus.crypto import Domain, Signer, account_id
from consensus.errors import LedgerError
from consensus.tendermint import (
    Broadcast,
    Decide,
    Evidence,
    EvidenceFound,
    Hooks,
    ProposalMessage,
    ProposalReceived,
    ScheduleTimeout,
    SigningRefused,
    Tendermint,
    TimeoutFired,
    VoteReceived,
)
from consensus.types import Block, CommitCertificate, Tx, Vote
from contracts.evidence import MAX_EVIDENCE_AGE
from contracts.execute import BlockRejected
from contracts.records import Kind
from contracts.txs import SubmitEvidence
from node import messages as m
from node.core import NodeError
from node.p2p import PeerManager
from node.privval import PrivValError, PrivValidator
from node.replication import VaultReplication
from node.service import NodeService
from node.wal import WAL

#: Peer messages read but not yet handled by the driver.
MAX_QUEUED_MESSAGES = 2048
#: Distinct consensus messages relayed per height (a bound against a flooding validator).
MAX_SEEN = 100_000

log = logging.getLogger("mydata.consensus")


class GuardedSigner:
    """The machine's signer: the PrivValidator, whose refusals become the machine's SigningRefused."""

    def __init__(self, pv: PrivValidator) -> None:
        self.pv = pv

    @property
    def public_key(self) -> bytes:
        return self.pv.public_key

    def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes:
        try:
            return self.pv.sign(domain, chain_id, payload)
        except PrivValError as e:
            log.warning("refusing to sign: %s", e)
            raise SigningRefused(str(e)) from None


class ConsensusDriver:
    def __init__(self, service: NodeService, peers: PeerManager, signer: Signer | None, wal: WAL, *,
                 clock: Callable[[], float] = time.time, status_interval: float = 1.0) -> None:
        self.service = service
        self.core = service.core
        self.peers = peers
        self.signer = signer
        self.wal = wal
        self.clock = clock
        self.status_interval = status_interval
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._net_slots = asyncio.Semaphore(MAX_QUEUED_MESSAGES)  # peer messages waiting in the queue
        self.machine: Tendermint | None = None
        self.started = False  # has the machine started its current height?
        self._machine_started = False
        self.tasks: list[asyncio.Task[None]] = []
        self.peer_heights: dict[bytes, int] = {}
        self._sync_asked: tuple[int, float] = (0, 0.0)
        self._served: dict[bytes, float] = {}
        self._seen: set[bytes] = set()  # consensus messages of the current height already relayed
        self._reported: set[bytes] = set()  # evidence this node has submitted
        self._own: list[bytes] = []  # our proposals and votes of the current height, to send again
        self._wal_dirty = False  # peers' records appended since the WAL's last fsync
        self._stopping = False
        self.vault = VaultReplication(self.core, peers, self._is_validator)
        self._handlers: dict[int, Callable[[bytes, m.Envelope, bytes], list[Any]]] = {
            m.PROPOSAL: self._on_consensus, m.VOTE: self._on_consensus, m.TX: self._on_txs,
            m.STATUS: self._on_status, m.SYNC_REQUEST: self._on_sync_request, m.SYNC_BLOCK: self._on_sync_block,
            m.VAULT_BLOB: self._on_vault_blob, m.VAULT_REQUEST: self._on_vault_request}
        self.peer_links: dict[bytes, frozenset[bytes]] = {}  # peer -> the peers it said it is linked to
        self._tx_out: list[bytes] = []  # transactions admitted here, to gossip at the end of this loop turn

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- life cycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.peers.subscribe(on_peer_up=lambda peer: self.queue.put_nowait(("peer_up", peer)))
        await self.peers.start()
        self.vault.start()
        core = self.core
        last = core.ledger.last
        hooks = Hooks(propose_block=core.propose, validate_block=core.validate)
        self.machine = Tendermint(core.chain_id, last.height + 1, core.validators(), self.signer,
                                  core.ledger.state().params(), hooks, prev_time_ms=last.time_ms)
        replay_height, records = self.wal.recover()
        if records and replay_height == last.height:
            # Messages of the unfinished height, own ones included: into the machine's log BEFORE it starts,
            # so it re-sends what it signed before the crash instead of signing anything anew (the
            # PrivValidator would refuse a conflicting signature anyway). Then start, and handle what it says.
            log.info("replaying %d WAL records of height %d", len(records), last.height + 1)
            events = [e for e in (self._wal_event(rec) for rec in records) if e is not None]
            self.machine.restore(events)
            self.queue.put_nowait(("actions", self._start_height()))
        self.tasks = [asyncio.create_task(self._run(), name="consensus"),
                      asyncio.create_task(self._read_peers(), name="p2p-reader"),
                      asyncio.create_task(self._gossip_status(), name="status")]

    async def stop(self) -> None:
        self._stopping = True
        await self.vault.stop()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.peers.stop()
        self.wal.close()

    def kick(self) -> None:
        """A transaction arrived (API or gossip): the current height has work."""
        self.queue.put_nowait(("kick", None))

    def _is_validator(self, peer: bytes) -> bool:
        """Peer ids are node ids: the SHA-256 of the node key, the same as a validator's address."""
        return peer in self.core.validators().by_address

    def on_local_blob(self, blob_hash: bytes, data: bytes) -> None:
        """A ciphertext uploaded through this node's API (node/replication.py pushes it to the validators)."""
        self.vault.on_local_blob(blob_hash, data)

    def on_local_tx(self, raw: bytes) -> None:
        """A transaction admitted through the API (or made here): gossiped to every peer in one batch with
        the others admitted in the same turn of the event loop."""
        if not self._tx_out:
            asyncio.get_running_loop().call_soon(self._flush_txs)
        self._tx_out.append(raw)
        self.kick()

    def _flush_txs(self) -> None:
        for msg in m.tx_batches(self._tx_out):
            self.peers.broadcast(msg)
        self._tx_out.clear()

    def _send_mempool(self, peer: bytes) -> None:
        """A peer just connected (or reconnected): it gets every waiting transaction, in batches. Relay skips a
        peer that reports a link to the sender, so what was lost on a link that went down and came back
        between two statuses (or dropped on a full queue) is offered again this way."""
        for msg in m.tx_batches(self.core.mempool.waiting()):
            self.peers.send(peer, msg)

    def _relay_targets(self, source: bytes) -> list[bytes]:
        """The peers to pass on what `source` sent us: those with no direct link to `source` (by their last
        status; a peer that has not said is assumed to lack one). `source` sent it to its own peers, so in a
        full mesh nothing is relayed, and a missing link is bridged by every common neighbour."""
        links = self.peer_links
        return [p for p in self.peers.connected() if p != source and source not in links.get(p, ())]

    # ---- the loop --------------------------------------------------------------------------------------

    async def _read_peers(self) -> None:
        while True:
            peer, data = await self.peers.recv()
            await self._net_slots.acquire()  # backpressure: the peer layer's inbound queue fills, then TCP
            self.queue.put_nowait(("msg", (peer, data)))

    async def _gossip_status(self) -> None:
        while True:
            try:
                await self._status_round()
            except Exception:  # a store or vault error must not silently end status, resends and expiry
                log.exception("status round failed; trying again in %.1f s", self.status_interval)
            await asyncio.sleep(self.status_interval)

    async def _status_round(self) -> None:
        linked = self.peers.connected()
        for gone in set(self.peer_links) - set(linked):
            del self.peer_links[gone]
        self.service.metrics.peers.set(len(linked))
        status = m.Status(self.core.height, tuple(linked[:m.MAX_STATUS_LINKS]))
        self.peers.broadcast(m.envelope(m.STATUS, status.encode()))
        due = self.core.next_expiry_ms()
        if due is not None and due < self.now_ms() and not self.started:
            self.queue.put_nowait(("expire", None))
        if self.started and self._own:
            self.queue.put_nowait(("resend", None))
        self.vault.request_due()
        if self._wal_dirty:
            # Peers' records are appended without fsync; a node that signs nothing (an observer) would
            # otherwise leave them to the page cache until a segment rotates.
            self._wal_dirty = False
            await asyncio.to_thread(self.wal.sync)
        await self.peers.disconnect_non_members()  # a member suspended on chain loses its links

    async def _run(self) -> None:
        while not self._stopping:
            kind, item = await self.queue.get()
            try:
                if kind == "msg":
                    self._net_slots.release()
                    peer, data = item
                    await self._handle(self._on_message(peer, data))
                elif kind == "timeout":
                    if self.started and self.machine is not None:
                        await self._handle(self.machine.step(item, self.now_ms()))
                elif kind == "actions":
                    await self._handle(item)
                elif kind == "peer_up":
                    self._send_mempool(item)
                elif kind == "resend":
                    # Votes and proposals get lost (a peer restarting, a full queue): while a height is
                    # undecided, send ours again now and then, as CometBFT's gossip does.
                    for data in self._own:
                        self.peers.broadcast(data)
                elif kind in ("kick", "expire") and not self.started and (
                        kind == "expire" or self.core.mempool.has_ready()):
                    # Work for the next height: transactions, or a grant due to expire (an empty block
                    # makes it expire on time).
                    await self._handle(self._start_height())
            except Exception:
                log.exception("consensus driver failed on a %s input; stopping the node", kind)
                import os
                import signal

                os.kill(os.getpid(), signal.SIGTERM)
                return

    def _start_height(self) -> list[Any]:
        """Start consensus on the next height (the machine's first `start`, or `new_height` after that)."""
        assert self.machine is not None
        self.started = True
        now = self.now_ms()
        last = self.core.ledger.last
        if not self._machine_started and self.machine.height == last.height + 1:
            self._machine_started = True
            return self.machine.start(now)
        self._machine_started = True  # new_height starts the machine too (e.g. after block sync from scratch)
        return self.machine.new_height(last.height + 1, self.core.validators(), now, prev_time_ms=last.time_ms)

    def _wal_event(self, rec: bytes) -> Any:
        """A WAL record as a machine event (None for what is not a proposal or vote of the next height)."""
        try:
            env = m.Envelope.decode(rec, max_bytes=m.MAX_MESSAGE + 64)
            if env.kind == m.PROPOSAL:
                ev: Any = ProposalReceived(ProposalMessage.decode(env.payload))
                h = ev.message.proposal.height
            elif env.kind == m.VOTE:
                ev = VoteReceived(Vote.decode(env.payload))
                h = ev.vote.height
            else:
                return None
        except LedgerError:
            return None
        return ev if h == self.core.height + 1 else None

    def _on_message(self, peer: bytes, data: bytes) -> list[Any]:
        """One message from a peer: decoded, handled by its kind; returns the actions for `_handle`. A message
        that does not decode (or breaks a rule) is logged and dropped: never an exception."""
        try:
            env = m.Envelope.decode(data, max_bytes=m.MAX_MESSAGE + 64)
        except LedgerError:
            log.info("dropping an undecodable message from peer %s", peer.hex()[:12])
            return []
        handler = self._handlers.get(env.kind)
        if handler is None:
            return []
        try:
            return handler(peer, env, data)
        except LedgerError as e:
            log.info("dropping a bad message (kind %d) from peer %s: %s", env.kind, peer.hex()[:12], e)
            return []

    def _on_consensus(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        """A proposal or a vote: kept (WAL first) and relayed once if it is a validator's, for the next two
        heights, and new; then handed to the machine."""
        counted = self.service.metrics.consensus_msgs
        if not self._is_validator(peer):
            counted.labels(result="ignored").inc()
            return []  # only validators' consensus messages count; observers just listen
        digest = hashlib.sha256(data).digest()
        if digest in self._seen or len(self._seen) > MAX_SEEN:
            counted.labels(result="duplicate").inc()
            return []  # a copy relayed by another peer: not decoded again
        event: Any = (ProposalReceived(ProposalMessage.decode(env.payload)) if env.kind == m.PROPOSAL
                      else VoteReceived(Vote.decode(env.payload)))
        msg_height = event.message.proposal.height if env.kind == m.PROPOSAL else event.vote.height
        if msg_height <= self.core.height or msg_height > self.core.height + 2:
            counted.labels(result="ignored").inc()
            return []  # done, or too far ahead (block sync covers it): nothing to log or do
        counted.labels(result="new").inc()
        self._seen.add(digest)
        self.wal.append(data)
        self._wal_dirty = True
        # Relay: every validator hears every validator, even through a peer that lost a link; and an honest
        # node sees both votes of an equivocating one (evidence).
        self.peers.broadcast(data, exclude=peer)
        actions: list[Any] = []
        if not self.started and msg_height == self.core.height + 1:
            actions.extend(self._start_height())
        if not self.started:
            return actions  # a later height: block sync will bring us there
        assert self.machine is not None
        return actions + self.machine.step(event, self.now_ms())

    def _on_txs(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        """A batch of transactions: each offered to the mempool; the admitted ones relayed where a link to
        `peer` is missing (D-35)."""
        batch = m.TxBatch.decode(env.payload).txs
        fresh = []
        dup = 0
        for raw in batch:
            code = self.core.submit(raw).code
            if code == "ok":
                fresh.append(raw)
            elif code == "duplicate":
                dup += 1
        gossip = self.service.metrics.gossip_txs
        gossip.labels(result="admitted").inc(len(fresh))
        gossip.labels(result="duplicate").inc(dup)
        gossip.labels(result="refused").inc(len(batch) - len(fresh) - dup)
        if not fresh:
            return []
        self.service.metrics.txs_submitted.labels(code="gossip").inc(len(fresh))
        self.vault.retry_orphans()
        targets = self._relay_targets(peer)
        if targets:
            relay = data if len(fresh) == len(batch) else m.envelope(m.TX, m.TxBatch(tuple(fresh)).encode())
            for p in targets:
                self.peers.send(p, relay)
        if not self.started and self.core.mempool.has_ready():
            return self._start_height()
        return []

    def _on_status(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        st = m.Status.decode(env.payload)
        self.peer_heights[peer] = st.height
        self.peer_links[peer] = frozenset(st.links)
        self._maybe_sync(peer)
        return []

    def _on_sync_request(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        self._serve_sync(peer, m.SyncRequest.decode(env.payload))
        return []

    def _on_sync_block(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        return [("apply_synced", m.SyncBlock.decode(env.payload))]

    def _on_vault_blob(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        self.vault.on_blob(peer, m.VaultBlob.decode(env.payload))
        return []

    def _on_vault_request(self, peer: bytes, env: m.Envelope, data: bytes) -> list[Any]:
        self.vault.on_request(peer, m.VaultRequest.decode(env.payload))
        return []

    async def _handle(self, actions: list[Any]) -> None:
        for a in actions:
            if isinstance(a, Broadcast):
                msg = a.message
                data = (m.envelope(m.PROPOSAL, msg.encode()) if isinstance(msg, ProposalMessage)
                        else m.envelope(m.VOTE, msg.encode()))
                self.wal.append(data, sync=True)
                self.peers.broadcast(data)
                self._own.append(data)
                self._seen.add(hashlib.sha256(data).digest())  # its echo from a peer is not news
            elif isinstance(a, ScheduleTimeout):
                ev = TimeoutFired(a.height, a.round, a.step)
                asyncio.get_running_loop().call_later(a.duration_ms / 1000, self.queue.put_nowait,
                                                      ("timeout", ev))
            elif isinstance(a, Decide):
                await self._commit(a.block, a.commit)
            elif isinstance(a, EvidenceFound):
                self._submit_evidence(a.evidence)
            elif isinstance(a, tuple) and a[0] == "apply_synced":
                sb: m.SyncBlock = a[1]
                if sb.block.header.height == self.core.height + 1:
                    try:
                        await self._commit(sb.block, sb.commit, synced=True)
                    except (BlockRejected, NodeError, LedgerError) as e:
                        log.warning("block sync: refusing block %d: %s", sb.block.header.height, e)

    async def _commit(self, block: Block, commit: CommitCertificate, synced: bool = False) -> None:
        core = self.core
        pending = core.prepare_decided(block, commit)
        await asyncio.to_thread(core.write_block, pending)
        cb = core.finish_block(pending)
        if commit.round:
            self.service.metrics.extra_rounds.inc(commit.round)
        self.vault.after_block(pending.decoded)
        self.wal.write_end_height(block.header.height, sync=False)  # the block store is the authority
        self._own.clear()
        self._seen.clear()
        self.service._after_block(cb)
        self.started = False
        log.info("%s block %d (%d txs, round %d)", "synced" if synced else "committed", block.header.height,
                 len(block.txs), commit.round)
        if block.header.height % 1000 == 0:
            self.wal.truncate_before(block.header.height - 10)
        if core.mempool.has_ready():
            await self._handle(self._start_height())

    # ---- block sync --------------------------------------------------------------------------------------

    def _maybe_sync(self, peer: bytes) -> None:
        theirs = self.peer_heights.get(peer, 0)
        mine = self.core.height
        if theirs <= mine:
            return
        asked_from, asked_at = self._sync_asked
        if asked_from == mine + 1 and time.monotonic() - asked_at < 2.0:
            return
        self._sync_asked = (mine + 1, time.monotonic())
        self.peers.send(peer, m.envelope(m.SYNC_REQUEST, m.SyncRequest(mine + 1, m.SYNC_BATCH).encode()))

    def _serve_sync(self, peer: bytes, req: m.SyncRequest) -> None:
        now = time.monotonic()
        if now - self._served.get(peer, 0.0) < 0.5:
            return  # at most two batches a second per peer
        self._served[peer] = now
        top = min(self.core.height, req.from_height + min(req.count, m.SYNC_BATCH) - 1)
        for h in range(req.from_height, top + 1):
            block, commit = self.core.block(h), self.core.commit(h)
            if block is None or commit is None:
                return
            self.peers.send(peer, m.envelope(m.SYNC_BLOCK, m.SyncBlock(block, commit).encode()))

    # ---- evidence ------------------------------------------------------------------------------------------

    def _submit_evidence(self, ev: Evidence) -> None:
        if self.signer is None or ev.hash in self._reported:
            return
        if self.core.state().get_raw(Kind.EVIDENCE + ev.hash) is not None:
            return  # already on chain (reported by another node)
        self._reported.add(ev.hash)
        st = self.core.state()
        # The contract's own checks (EVD-2), so that the node spends no nonce on evidence it would refuse.
        valset = st.validators_at(ev.height) if ev.height >= 1 else None
        if valset is None or self.core.height + 1 - ev.height > MAX_EVIDENCE_AGE:
            log.warning("double signing by %s at height %d seen, too old to be reported", ev.validator.hex()[:12],
                        ev.height)
            return
        try:
            ev.validate(self.core.chain_id, valset)
        except LedgerError as e:
            log.warning("not reporting evidence that does not hold against the set of its height: %s", e)
            return
        me = account_id(self.signer.public_key)
        acct = st.account(me)
        if acct is None:
            log.warning("double signing by %s seen, but this node's key is no account to report it",
                        ev.validator.hex()[:12])
            return
        nonce = self.core.mempool.next_nonce(me, acct.nonce)  # after this node's own waiting transactions
        raw = Tx.create(self.signer, self.core.chain_id, me, nonce, "evidence.submit",
                        SubmitEvidence(ev).encode()).encode()
        r = self.core.submit(raw)
        log.warning("double signing by validator %s at height %d: evidence submitted (%s)",
                    ev.validator.hex()[:12], ev.height, r.code)
        if r.code == "ok":
            self.on_local_tx(raw)
