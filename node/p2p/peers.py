"""The peer manager: keeps one secure connection to every reachable member and moves opaque messages.

- Dials a static list of addresses (`host:port`, or `<node public key hex>@host:port` to pin the key),
  redialing with bounded exponential backoff and jitter; accepts inbound connections from members only
  (the handshake refuses anyone else, node/p2p/handshake.py P2P-3).
- One connection per peer identity (node id = SHA-256 of the node key, the validator address). When two
  connections to the same peer exist (both sides dialed at once), the one *initiated by the lower node id*
  is kept and the other closed; both sides apply the same rule, so they keep the same connection. Between
  two connections of the same direction the newer wins (the older one is a dead half-open connection, or
  the peer restarted). A dialer that learns its address belongs to an already connected peer waits until
  that peer is gone before dialing again.
- `send(peer_id, msg)` / `broadcast(msg)` never block: each peer has a bounded send queue, and a message for
  a slow peer whose queue is full is dropped and counted (consensus tolerates loss; it must not stall on a
  slow peer). One writer task per connection drains the queue, sending a keepalive when idle; one reader
  task per connection puts `(peer_id, msg)` on the single bounded `inbound` queue read by the node's
  consensus driver (a full inbound queue stops the readers, which pushes back on the peers through TCP).
- A connection silent for `idle_timeout` (no message, no keepalive) is closed; so is one whose peer does
  not take our bytes for `write_timeout`. Every node must send keepalives more often than its peers'
  idle timeout (the defaults: every 10 s, 30 s). Messages still queued for a peer when its last
  connection ends are dropped with it; a message is never delivered twice.

Metrics (the `Metrics.inc` hook), besides those of `serve` (node/p2p/conn.py):
    p2p_dial_ok, p2p_dial_failed, p2p_self_dial, p2p_peer_up, p2p_peer_down, p2p_duplicate_closed,
    p2p_msgs_sent, p2p_msgs_received, p2p_msgs_dropped (send queue full), p2p_send_no_peer
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from node.p2p.conn import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_FRAME,
    NULL_METRICS,
    ConnConfig,
    LocalNode,
    Metrics,
    P2PServer,
    SecureConnection,
    check_message,
    connect,
    handshake_failure_metric,
    serve,
)
from node.p2p.handshake import HandshakeError, P2PError, PeerError, SelfConnection, UsageError

log = logging.getLogger("mydata.p2p")

#: Queued messages a writer sends in one write (messages, bytes).
_WRITE_BATCH = 256
_WRITE_BATCH_BYTES = 1024 * 1024


# ------------------------------------------------------------------------------------------------ addresses


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port`."""
    host, sep, port_s = text.strip().rpartition(":")
    if not sep or not host:
        raise UsageError(f"{text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_s)
    except ValueError:
        raise UsageError(f"{text!r}: the port is not a number") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"{text!r}: the port is outside 0..65535")
    return host, port


@dataclass(frozen=True)
class PeerAddress:
    """Where to dial a peer, and optionally which node key must answer there."""

    host: str
    port: int
    pubkey: bytes | None = None

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        """`host:port` or `<64 hex digits of the node public key>@host:port`."""
        key: bytes | None = None
        if "@" in text:
            key_hex, _, text = text.partition("@")
            try:
                key = bytes.fromhex(key_hex)
            except ValueError:
                raise UsageError(f"{key_hex!r} is not a hex node public key") from None
            if len(key) != 32:
                raise UsageError("a node public key has 32 bytes (64 hex digits)")
        host, port = parse_host_port(text)
        return cls(host, port, key)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        where = f"{host}:{self.port}"
        return f"{self.pubkey.hex()}@{where}" if self.pubkey else where


@dataclass(frozen=True)
class PeerConfig:
    """The peer network of one node. Times are in seconds."""

    listen: str = "127.0.0.1:26656"  # port 0 picks a free port (see PeerManager.listen_address)
    peers: tuple[str, ...] = ()  # static dial list: host:port or pubkeyhex@host:port
    send_queue_size: int = 1024  # messages waiting per peer before new ones are dropped
    inbound_queue_size: int = 4096  # messages waiting for the consensus driver
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    stable_after: float = 10.0  # a connection that lived this long resets the backoff
    keepalive_interval: float = 10.0
    idle_timeout: float = 30.0  # a peer silent this long (keepalives count) is disconnected
    write_timeout: float | None = 30.0  # a peer that takes none of our bytes this long is disconnected
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_frame: int = DEFAULT_MAX_FRAME
    max_pending_handshakes: int = 64

    def __post_init__(self) -> None:
        if self.send_queue_size < 1 or self.inbound_queue_size < 1:
            raise UsageError("queue sizes must be at least 1")
        if not 0 < self.backoff_initial <= self.backoff_max:
            raise UsageError("backoff must satisfy 0 < backoff_initial <= backoff_max")
        if not 0 < self.keepalive_interval < self.idle_timeout:
            raise UsageError("keepalive_interval must be positive and below idle_timeout")

    def conn_config(self) -> ConnConfig:
        return ConnConfig(handshake_timeout=self.handshake_timeout, max_frame=self.max_frame,
                          read_timeout=self.idle_timeout, write_timeout=self.write_timeout)


@dataclass(frozen=True)
class PeerInfo:
    """A snapshot of one connected peer."""

    peer_id: bytes
    pubkey: bytes
    outbound: bool  # True if this node dialed the kept connection
    remote_address: tuple[str, int] | None
    session_id: bytes
    queued: int
    sent: int
    received: int
    dropped: int


class _Peer:
    """A connected peer: its current connection and its send queue (which outlives a connection swap)."""

    def __init__(self, conn: SecureConnection, queue_size: int) -> None:
        self.peer_id = conn.peer_id
        self.conn = conn
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(queue_size)
        self.tasks: tuple[asyncio.Task[None], ...] = ()
        self.gone = asyncio.Event()
        self.sent = self.received = self.dropped = 0

    def info(self) -> PeerInfo:
        c = self.conn
        return PeerInfo(self.peer_id, c.peer_pubkey, c.initiator, c.remote_address, c.session_id,
                        self.queue.qsize(), self.sent, self.received, self.dropped)


# ------------------------------------------------------------------------------------------------ manager


class PeerManager:
    """Connections to the chain's members; see the module docstring.

        pm = PeerManager(LocalNode(signer, chain_id, is_member), PeerConfig(listen=..., peers=(...)))
        await pm.start()
        pm.broadcast(msg); pm.send(peer_id, msg)
        peer_id, msg = await pm.recv()
        await pm.stop()
    """

    def __init__(self, local: LocalNode, config: PeerConfig = PeerConfig(), *, metrics: Metrics = NULL_METRICS,
                 rng: random.Random | None = None, on_peer_up: Callable[[bytes], None] | None = None,
                 on_peer_down: Callable[[bytes], None] | None = None) -> None:
        self.local = local
        self.config = config
        self.metrics = metrics
        self.node_id = local.node_id
        self.inbound: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(config.inbound_queue_size)
        self._conn_config = config.conn_config()
        self._rng = rng if rng is not None else random.Random()
        self._on_up = on_peer_up
        self._on_down = on_peer_down
        self._listen = parse_host_port(config.listen)
        self._addresses = [PeerAddress.parse(a) for a in config.peers]
        self._addr_ids: dict[PeerAddress, bytes] = {}
        self._dialers: dict[PeerAddress, asyncio.Task[None]] = {}
        self._dialing: set[bytes] = set()  # node ids being dialed right now (when the address is known)
        self._peers: dict[bytes, _Peer] = {}
        self._server: P2PServer | None = None
        self._changed = asyncio.Event()
        self._state = "new"

    # ---- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, then dial every configured address."""
        if self._state != "new":
            raise UsageError(f"a peer manager starts once (it is {self._state})")
        self._state = "running"
        host, port = self._listen
        try:
            self._server = await serve(host, port, self.local, self._on_inbound, config=self._conn_config,
                                       metrics=self.metrics, max_pending=self.config.max_pending_handshakes)
        except BaseException:
            self._state = "stopped"
            raise
        for addr in self._addresses:
            self._start_dialer(addr)
        log.info("p2p: node %s listening on %s:%d, dialing %d peer(s)", self.node_id.hex()[:12],
                 *self.listen_address, len(self._addresses))

    async def stop(self) -> None:
        """Stop dialing and listening, close every connection, end every task (idempotent)."""
        if self._state == "stopped":
            return
        self._state = "stopped"
        dialers = list(self._dialers.values())
        for t in dialers:
            t.cancel()
        if self._server is not None:
            await self._server.close()  # cancels the inbound handlers, which close their connections
        await asyncio.gather(*dialers, return_exceptions=True)
        for peer in list(self._peers.values()):  # normally none are left
            for t in peer.tasks:
                t.cancel()
            await asyncio.gather(*peer.tasks, return_exceptions=True)
            await peer.conn.close()
        self._peers.clear()
        self._notify()

    async def __aenter__(self) -> PeerManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def listen_address(self) -> tuple[str, int]:
        if self._server is None:
            raise UsageError("the peer manager is not started")
        return self._server.address

    @property
    def running(self) -> bool:
        return self._state == "running"

    def dial(self, address: str | PeerAddress) -> None:
        """Add an address to the dial list (kept until stop)."""
        addr = address if isinstance(address, PeerAddress) else PeerAddress.parse(address)
        if addr in self._addresses:
            return
        self._addresses.append(addr)
        if self._state == "running":
            self._start_dialer(addr)

    def subscribe(self, *, on_peer_up: Callable[[bytes], None] | None = None,
                  on_peer_down: Callable[[bytes], None] | None = None) -> None:
        """Set the callbacks run with a peer's node id when it is admitted / when it goes (replacing those
        given to the constructor; None leaves one as it is)."""
        if on_peer_up is not None:
            self._on_up = on_peer_up
        if on_peer_down is not None:
            self._on_down = on_peer_down

    # ---- messages --------------------------------------------------------------------------------

    def send(self, peer_id: bytes, msg: bytes) -> bool:
        """Queue a message for one peer. False if it is not connected or its queue is full (dropped)."""
        data = self._check_message(msg)
        peer = self._peers.get(peer_id)
        if peer is None:
            self.metrics.inc("p2p_send_no_peer")
            return False
        return self._enqueue(peer, data)

    def broadcast(self, msg: bytes, *, exclude: bytes | None = None) -> int:
        """Queue a message for every connected peer (but `exclude`); returns how many took it."""
        data = self._check_message(msg)
        return sum(self._enqueue(p, data) for pid, p in list(self._peers.items()) if pid != exclude)

    async def recv(self) -> tuple[bytes, bytes]:
        """The next `(peer_id, msg)` from any peer (the same as `await inbound.get()`)."""
        return await self.inbound.get()

    def _check_message(self, msg: bytes) -> bytes:
        return check_message(msg, self.config.max_frame)

    def _enqueue(self, peer: _Peer, data: bytes) -> bool:
        try:
            peer.queue.put_nowait(data)
        except asyncio.QueueFull:
            peer.dropped += 1
            self.metrics.inc("p2p_msgs_dropped")
            return False
        return True

    # ---- peers -----------------------------------------------------------------------------------

    def connected(self) -> list[bytes]:
        """The node ids of the connected peers, in ascending order."""
        return sorted(self._peers)

    def is_connected(self, peer_id: bytes) -> bool:
        return peer_id in self._peers

    def peer(self, peer_id: bytes) -> PeerInfo | None:
        p = self._peers.get(peer_id)
        return None if p is None else p.info()

    def peers(self) -> list[PeerInfo]:
        return [self._peers[pid].info() for pid in sorted(self._peers)]

    async def wait_for_peers(self, count: int, timeout: float | None = None) -> None:
        """Wait until at least `count` peers are connected (TimeoutError after `timeout`)."""
        async with asyncio.timeout(timeout):
            while len(self._peers) < count:
                await self._changed.wait()

    async def disconnect(self, peer_id: bytes) -> bool:
        """Close the connection to one peer (a configured address is dialed again later)."""
        peer = self._peers.get(peer_id)
        if peer is None:
            return False
        for t in peer.tasks:
            t.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await peer.gone.wait()
        return True

    async def disconnect_non_members(self) -> int:
        """After a membership change: drop the peers whose key `is_member` no longer admits."""
        gone = [pid for pid, p in self._peers.items() if not self.local.is_member(p.conn.peer_pubkey)]
        for pid in gone:
            await self.disconnect(pid)
        return len(gone)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _prefer(self, new: SecureConnection, old: SecureConnection) -> bool:
        """Keep the connection initiated by the lower node id; between two of one direction, the newer."""
        lower_is_me = self.node_id < new.peer_id
        new_preferred = new.initiator == lower_is_me
        old_preferred = old.initiator == lower_is_me
        return new_preferred or not old_preferred

    def _admit(self, conn: SecureConnection) -> _Peer | None:
        """Register a fresh connection; None if it is refused (a duplicate that loses, or stopping)."""
        if self._state != "running":
            return None
        peer = self._peers.get(conn.peer_id)
        if peer is None:
            peer = self._peers[conn.peer_id] = _Peer(conn, self.config.send_queue_size)
            self.metrics.inc("p2p_peer_up")
            log.info("p2p: peer %s up (%s, %s)", conn.peer_id.hex()[:12], "out" if conn.initiator else "in",
                     conn.remote_address)
            self._callback(self._on_up, conn.peer_id)
            self._notify()
            return peer
        self.metrics.inc("p2p_duplicate_closed")
        if not self._prefer(conn, peer.conn):
            log.debug("p2p: duplicate %r refused, keeping %r", conn, peer.conn)
            return None
        log.debug("p2p: duplicate %r replaces %r", conn, peer.conn)
        for t in peer.tasks:  # the old connection's runner closes it
            t.cancel()
        peer.conn, peer.tasks = conn, ()
        return peer

    def _release(self, peer: _Peer, conn: SecureConnection) -> None:
        if peer.conn is not conn or self._peers.get(peer.peer_id) is not peer:
            return  # replaced by a newer connection
        del self._peers[peer.peer_id]
        peer.gone.set()
        self.metrics.inc("p2p_peer_down")
        log.info("p2p: peer %s down: %s", peer.peer_id.hex()[:12], conn.close_reason)
        self._callback(self._on_down, peer.peer_id)
        self._notify()

    @staticmethod
    def _callback(fn: Callable[[bytes], None] | None, peer_id: bytes) -> None:
        if fn is None:
            return
        try:
            fn(peer_id)
        except Exception:
            log.exception("p2p: a peer up/down callback failed")

    # ---- connections -----------------------------------------------------------------------------

    async def _on_inbound(self, conn: SecureConnection) -> None:
        peer = self._admit(conn)
        if peer is not None:
            await self._run(peer, conn)

    async def _run(self, peer: _Peer, conn: SecureConnection) -> None:
        """Run one admitted connection until it fails, is replaced, or the manager stops."""
        tasks = (asyncio.create_task(self._read_loop(peer, conn)), asyncio.create_task(self._write_loop(peer, conn)))
        peer.tasks = tasks
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            await conn.close()
            for r in results:
                if isinstance(r, Exception) and not isinstance(r, P2PError):
                    log.error("p2p: connection task of %r failed", conn, exc_info=r)
            self._release(peer, conn)

    async def _read_loop(self, peer: _Peer, conn: SecureConnection) -> None:
        while True:
            msg = await conn.recv()
            peer.received += 1
            self.metrics.inc("p2p_msgs_received")
            await self.inbound.put((peer.peer_id, msg))

    async def _write_loop(self, peer: _Peer, conn: SecureConnection) -> None:
        interval = self.config.keepalive_interval
        queue = peer.queue
        while True:
            if queue.empty():
                try:
                    async with asyncio.timeout(interval):
                        first = await queue.get()
                except TimeoutError:
                    await conn.send_keepalive()
                    continue
            else:
                first = queue.get_nowait()
            # Whatever else is queued goes out in the same write (the frames are unchanged).
            batch = [first]
            size = len(first)
            while not queue.empty() and len(batch) < _WRITE_BATCH and size < _WRITE_BATCH_BYTES:
                msg = queue.get_nowait()
                batch.append(msg)
                size += len(msg)
            await conn.send_many(batch)
            peer.sent += len(batch)
            self.metrics.inc("p2p_msgs_sent", len(batch))

    # ---- dialing ---------------------------------------------------------------------------------

    def _start_dialer(self, addr: PeerAddress) -> None:
        if addr not in self._dialers:
            self._dialers[addr] = asyncio.create_task(self._dial_loop(addr))

    def _backoff(self, attempt: int) -> float:
        """0 .. backoff_initial after a healthy connection; then initial * 2**(attempt-1), capped, jittered."""
        c = self.config
        if attempt <= 0:
            return self._rng.uniform(0.0, c.backoff_initial)
        base = min(c.backoff_max, c.backoff_initial * 2.0 ** min(attempt - 1, 32))
        return base * self._rng.uniform(0.5, 1.0)

    async def _dial_loop(self, addr: PeerAddress) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while self._state == "running":
            known = self._addr_ids.get(addr)
            current = self._peers.get(known) if known is not None else None
            if current is not None:  # already connected (perhaps inbound): dial again once it is gone
                await current.gone.wait()
                await asyncio.sleep(self._backoff(0))
                continue
            if known is not None and known in self._dialing:  # another address of the same node is dialing
                await asyncio.sleep(self._backoff(1))
                continue
            if known is not None:
                self._dialing.add(known)
            try:
                conn = await connect(addr.host, addr.port, self.local, config=self._conn_config,
                                     expected_peer=addr.pubkey)
            except SelfConnection:
                self.metrics.inc("p2p_self_dial")
                log.warning("p2p: %s is this node itself; no longer dialing it", addr)
                return
            except Exception as e:  # a PeerError, or a bug (of is_member, say): never let the dialer die
                attempt += 1
                self.metrics.inc("p2p_dial_failed")
                if isinstance(e, HandshakeError):
                    self.metrics.inc(handshake_failure_metric(e))
                delay = self._backoff(attempt)
                if isinstance(e, PeerError):
                    log.debug("p2p: dial %s failed (%s); next try in %.2f s", addr, e, delay)
                else:
                    log.exception("p2p: unexpected error dialing %s; next try in %.2f s", addr, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                if known is not None:
                    self._dialing.discard(known)
            self.metrics.inc("p2p_dial_ok")
            self._addr_ids[addr] = conn.peer_id
            peer = self._admit(conn)
            if peer is None:  # a duplicate that loses (the loop then waits), or stopping
                await conn.close()
                continue
            started = loop.time()
            await self._run(peer, conn)
            attempt = 0 if loop.time() - started >= self.config.stable_after else attempt + 1
            await asyncio.sleep(self._backoff(attempt))
