"""The encrypted peer connection over asyncio streams, and the dial (`connect`) and listen (`serve`) helpers.

A `SecureConnection` exists only after a completed handshake (node/p2p/handshake.py, P2P-1..P2P-3). Its
frames (P2P-4) are

    u32 L (big-endian) || ChaCha20-Poly1305(key, nonce = 0x00000000 || u64-LE(counter), ad = u32 L, plaintext)

with L = len(plaintext) + 16, one key and one counter per direction (the counter starts at 0 and counts every
frame), so a frame that is altered, replayed, reordered, dropped or cut does not authenticate. The receiver
checks L before it reads the body: 16 <= L <= max_frame + 16, else `FrameTooLarge`/`FrameError`. An empty
plaintext is a keepalive: `recv()` skips it, `send()` refuses to send one (`send_keepalive()` does).

Every failure is a typed `PeerError` and closes the connection for good (a later call raises
`ConnectionClosed`); a read timeout also closes it (the peer was silent longer than allowed, not even a
keepalive). Sending waits for the transport to drain (backpressure), bounded by the write timeout.

Metrics (the `Metrics.inc` hook), counted by `serve`:
    p2p_handshake_ok, p2p_handshake_failed, p2p_handshake_timeout, p2p_refused_non_member,
    p2p_inbound_busy (too many handshakes at once: dropped before the handshake), p2p_handler_error
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from consensus.crypto import Signer
from node.p2p.handshake import (
    HEADER,
    HEADER_SIZE,
    MAX_NONCE,
    TAG_SIZE,
    ConnectionClosed,
    DialError,
    FrameCorrupt,
    FrameError,
    FrameTooLarge,
    Handshake,
    HandshakeError,
    HandshakeResult,
    HandshakeTimeout,
    NotAMember,
    P2PError,
    ReadTimeout,
    Refused,
    Role,
    UsageError,
    WriteTimeout,
    aead_nonce,
    node_id,
)

log = logging.getLogger("mydata.p2p")

DEFAULT_MAX_FRAME = 4 * 1024 * 1024
DEFAULT_HANDSHAKE_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 1.0
#: Bytes the transport may hold unsent before a send waits for the peer to read (backpressure).
_DRAIN_ABOVE = 256 * 1024


# ------------------------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class ConnConfig:
    """Limits of one connection. Timeouts are in seconds; None means no limit."""

    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT  # TCP connect (when dialing) plus the handshake
    max_frame: int = DEFAULT_MAX_FRAME  # largest plaintext message, both ways
    read_timeout: float | None = None  # longest silence between two frames (keepalives count)
    write_timeout: float | None = None  # longest wait for the peer to take a frame (drain)

    def __post_init__(self) -> None:
        if not self.handshake_timeout > 0:
            raise UsageError("handshake_timeout must be positive")
        if not 1 <= self.max_frame <= 2**32 - 1 - TAG_SIZE:
            raise UsageError("max_frame must be in 1 .. 2**32 - 17")
        for t in (self.read_timeout, self.write_timeout):
            if t is not None and not t > 0:
                raise UsageError("timeouts must be positive (or None)")


@dataclass(frozen=True)
class LocalNode:
    """Who this node is on the peer network, and who may talk to it."""

    signer: Signer  # the node key (Ed25519)
    chain_id: str
    is_member: Callable[[bytes], bool]  # node public key -> may it connect?

    @property
    def pubkey(self) -> bytes:
        return self.signer.public_key

    @property
    def node_id(self) -> bytes:
        return node_id(self.signer.public_key)

    def handshake(self, role: Role, expected_peer: bytes | None = None,
                  ephemeral_secret: bytes | None = None) -> Handshake:
        return Handshake(role, self.signer, self.chain_id, self.is_member, expected_peer=expected_peer,
                         ephemeral_secret=ephemeral_secret)


class Metrics(Protocol):
    """A counter hook; the node bridges it to Prometheus."""

    def inc(self, name: str, amount: int = 1) -> None: ...


class NullMetrics:
    """Counts nothing."""

    def inc(self, name: str, amount: int = 1) -> None:
        return None


class CountingMetrics:
    """Counts in memory (tests, and a simple source for an exporter)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def __getitem__(self, name: str) -> int:
        return self.counts[name]


NULL_METRICS = NullMetrics()


# ------------------------------------------------------------------------------------------------ frames (pure)


class FrameSealer:
    """Seals outgoing frames under one key, counting nonces from 0."""

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.counter = 0

    def seal(self, plaintext: bytes) -> bytes:
        if self.counter > MAX_NONCE:
            raise ConnectionClosed("the nonce counter is exhausted; reconnect")
        header = HEADER.pack(len(plaintext) + TAG_SIZE)
        ct = self._aead.encrypt(aead_nonce(self.counter), plaintext, header)
        self.counter += 1
        return header + ct


class FrameOpener:
    """Checks frame headers and opens frame bodies under one key, counting nonces from 0."""

    def __init__(self, key: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._aead = ChaCha20Poly1305(key)
        self.max_frame = max_frame
        self.counter = 0

    def body_length(self, header: bytes) -> int:
        """The body length a header announces, refused if outside 16 .. max_frame + 16."""
        length = int(HEADER.unpack(header)[0])
        if length > self.max_frame + TAG_SIZE:
            raise FrameTooLarge(f"a frame of {length} bytes exceeds the limit of {self.max_frame + TAG_SIZE}")
        if length < TAG_SIZE:
            raise FrameError(f"a frame of {length} bytes is shorter than its authentication tag")
        return length

    def open(self, header: bytes, body: bytes) -> bytes:
        if self.counter > MAX_NONCE:
            raise ConnectionClosed("the nonce counter is exhausted; reconnect")
        try:
            plain = self._aead.decrypt(aead_nonce(self.counter), body, header)
        except InvalidTag:
            raise FrameCorrupt(f"frame {self.counter} does not authenticate (tampered, replayed, reordered "
                               "or truncated)") from None
        self.counter += 1
        return plain


def check_message(msg: bytes, max_frame: int) -> bytes:
    """A message as bytes, or UsageError: bytes-like, not empty (an empty frame is a keepalive), at most
    `max_frame` bytes."""
    if not isinstance(msg, bytes | bytearray | memoryview):
        raise UsageError(f"a message is bytes, not {type(msg).__name__}")
    if not msg:
        raise UsageError("an empty message is reserved for keepalives")
    if len(msg) > max_frame:
        raise UsageError(f"a message of {len(msg)} bytes exceeds the frame limit of {max_frame}")
    return bytes(msg)


# ------------------------------------------------------------------------------------------------ connection


class SecureConnection:
    """An authenticated, encrypted, framed connection to one member peer.

    Made by `connect`, `serve` or `open_secure` (which run the handshake); `recv()` is meant for one reader
    task and `send()` may be called from several (frames are serialized). Close it when done.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, result: HandshakeResult,
                 config: ConnConfig = ConnConfig()) -> None:
        self._reader = reader
        self._writer = writer
        self._config = config
        self._sealer = FrameSealer(result.send_key)
        self._opener = FrameOpener(result.recv_key, config.max_frame)
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self.peer_pubkey: bytes = result.peer_pubkey
        self.peer_id: bytes = result.peer_id
        self.initiator: bool = result.initiator
        self.session_id: bytes = result.session_id
        self.remote_address: tuple[str, int] | None = _address(writer.get_extra_info("peername"))
        self.close_reason: P2PError | None = None
        self._waiting_since: float | None = None  # loop time a receive started waiting for its frame
        self._watchdog: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        way = "out" if self.initiator else "in"
        return f"SecureConnection({way}, peer={self.peer_id.hex()[:12]}, {self.remote_address}, {state})"

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def max_frame(self) -> int:
        return self._config.max_frame

    # ---- sending ---------------------------------------------------------------------------------

    async def send(self, msg: bytes) -> None:
        """Send one message (1 .. max_frame bytes); returns when the transport has taken it (drain)."""
        await self.send_many((msg,))

    async def send_many(self, msgs: Sequence[bytes]) -> None:
        """Send messages in order, one frame each, with one write to the transport (the frames are the same
        as sent one by one); returns when the transport has taken them."""
        await self._send_frames([check_message(msg, self._config.max_frame) for msg in msgs])

    async def send_keepalive(self) -> None:
        """Send an empty frame: it resets the peer's read timeout and is never delivered."""
        await self._send_frames([b""])

    async def _send_frames(self, plaintexts: list[bytes]) -> None:
        async with self._send_lock:
            self._check_open()
            try:
                data = b"".join([self._sealer.seal(p) for p in plaintexts])
            except ConnectionClosed as e:
                raise self._fail(e) from None
            try:
                if self._writer.transport.is_closing():  # the peer went away: say so, as drain() would
                    raise ConnectionResetError("the transport is closed")
                self._writer.write(data)
                if self._writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                    # The kernel took less than we wrote: wait (bounded) until the peer reads. Below the mark
                    # the transport sends on by itself, and a lost connection shows on the reading side.
                    async with asyncio.timeout(self._config.write_timeout):
                        await self._writer.drain()
            except TimeoutError:
                raise self._fail(WriteTimeout(f"the peer took no data for {self._config.write_timeout} s")) from None
            except (ConnectionError, OSError, RuntimeError) as e:  # uvloop raises RuntimeError on a closed one
                raise self._fail(ConnectionClosed(f"connection lost while sending: {e or type(e).__name__}")) from None

    # ---- receiving -------------------------------------------------------------------------------

    async def recv(self) -> bytes:
        """The next message from the peer (keepalives are skipped). Raises a PeerError, and closes the
        connection, on a bad frame, a timeout or the end of the connection."""
        async with self._recv_lock:
            while True:
                msg = await self._recv_frame()
                if msg:
                    return msg

    async def _recv_frame(self) -> bytes:
        self._check_open()
        mid_frame = False
        if self._config.read_timeout is not None:
            self._waiting_since = asyncio.get_running_loop().time()
            if self._watchdog is None:
                self._arm_watchdog(self._config.read_timeout)
        try:
            header = await self._reader.readexactly(HEADER_SIZE)
            mid_frame = True
            length = self._opener.body_length(header)
            body = await self._reader.readexactly(length)
            msg = self._opener.open(header, body)
        except asyncio.IncompleteReadError as e:
            if isinstance(self.close_reason, ReadTimeout):  # the watchdog cut the connection
                raise self.close_reason from None
            where = "in the middle of a frame" if (mid_frame or e.partial) else "at a frame boundary"
            raise self._fail(ConnectionClosed(f"the peer closed the connection {where}")) from None
        except (ConnectionError, OSError) as e:
            if isinstance(self.close_reason, ReadTimeout):
                raise self.close_reason from None
            raise self._fail(ConnectionClosed(f"connection lost: {e or type(e).__name__}")) from None
        except P2PError as e:  # FrameTooLarge, FrameError, FrameCorrupt, nonce exhaustion
            raise self._fail(e) from None
        except asyncio.CancelledError:
            if mid_frame:  # part of a frame was consumed: the stream can no longer be parsed
                self._fail(ConnectionClosed("a receive was cancelled in the middle of a frame"))
            raise
        finally:
            self._waiting_since = None
        return msg

    def _arm_watchdog(self, delay: float) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(delay, self._watch)

    def _watch(self) -> None:
        """The read timeout, as one timer per connection rather than one per frame: a receive that has waited
        `read_timeout` for a whole frame closes the connection (its `recv` raises ReadTimeout)."""
        self._watchdog = None
        limit = self._config.read_timeout
        if self.close_reason is not None or limit is None:
            return
        since = self._waiting_since
        now = asyncio.get_running_loop().time()
        if since is not None and now - since >= limit:
            self._fail(ReadTimeout(f"no frame from the peer for {limit} s"))
            return
        self._arm_watchdog(limit if since is None else since + limit - now)

    # ---- closing ---------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.close_reason is not None:
            raise ConnectionClosed(f"the connection is closed ({self.close_reason})")

    def _fail(self, error: P2PError) -> P2PError:
        """Close at once (pending output is discarded) and return the error to raise."""
        if self.close_reason is not None:
            return ConnectionClosed(f"the connection is closed ({self.close_reason})")
        self.close_reason = error
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._writer.transport.abort()
        log.debug("closing %r: %s", self, error)
        return error

    async def close(self) -> None:
        """Close the connection (idempotent, bounded: a peer that does not take the last bytes is cut off)."""
        if self.close_reason is None:
            self.close_reason = ConnectionClosed("closed by this node")
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        await _close_writer(self._writer)


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    if writer.transport.is_closing():
        writer.transport.abort()  # no-op when already closed; drops a graceful close still pending
    else:
        writer.close()
    try:
        async with asyncio.timeout(_CLOSE_TIMEOUT):
            await writer.wait_closed()
    except (TimeoutError, OSError, ConnectionError):
        writer.transport.abort()
    except asyncio.CancelledError:
        writer.transport.abort()
        raise


def _address(peername: object) -> tuple[str, int] | None:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return str(peername[0]), int(peername[1])
    return None


# ------------------------------------------------------------------------------------------------ handshake I/O


async def open_secure(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, local: LocalNode, role: Role,
                      *, config: ConnConfig = ConnConfig(), expected_peer: bytes | None = None,
                      timeout: float | None = None, ephemeral_secret: bytes | None = None) -> SecureConnection:
    """Run the handshake over connected streams and return the secure connection. On any failure the
    streams are closed and a HandshakeError (HandshakeTimeout after `timeout`, by default the config's
    handshake timeout) is raised."""
    hs = local.handshake(role, expected_peer, ephemeral_secret)
    limit = config.handshake_timeout if timeout is None else timeout
    try:
        async with asyncio.timeout(limit):
            out = hs.start()
            while True:
                if out:
                    writer.write(out)
                    await writer.drain()
                if hs.done:
                    break
                out = hs.receive_data(await reader.readexactly(hs.wanted()))
    except BaseException as e:
        writer.transport.abort()
        await _close_writer(writer)
        if isinstance(e, TimeoutError):
            raise HandshakeTimeout(f"no handshake within {limit:g} s") from None
        if isinstance(e, asyncio.IncompleteReadError):
            if hs.awaiting_admission:
                raise Refused("the peer closed the connection after our identity: it refused us "
                              "(not a member of its chain?)") from None
            raise HandshakeError("the peer closed the connection during the handshake") from None
        if isinstance(e, ConnectionError | OSError):
            raise HandshakeError(f"connection lost during the handshake: {e or type(e).__name__}") from None
        raise
    assert hs.result is not None
    return SecureConnection(reader, writer, hs.result, config)


async def connect(host: str, port: int, local: LocalNode, *, config: ConnConfig = ConnConfig(),
                  expected_peer: bytes | None = None) -> SecureConnection:
    """Dial a peer and run the handshake as initiator, all within `config.handshake_timeout`.

    Raises DialError (no TCP connection), HandshakeTimeout, or another HandshakeError (the peer is not a
    member, not `expected_peer`, ourselves, on another chain, or refused us)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + config.handshake_timeout
    try:
        async with asyncio.timeout(config.handshake_timeout):
            reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise HandshakeTimeout(f"no TCP connection to {host}:{port} within {config.handshake_timeout:g} s") from None
    except OSError as e:
        raise DialError(f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    remaining = max(deadline - loop.time(), 0.001)
    return await open_secure(reader, writer, local, Role.INITIATOR, config=config, expected_peer=expected_peer,
                             timeout=remaining)


# ------------------------------------------------------------------------------------------------ server


OnPeer = Callable[[SecureConnection], Awaitable[None]]


class P2PServer:
    """A listening socket that admits members only. Each accepted connection is handshaken (at most
    `max_pending` at once, each within the handshake timeout), then handed to `on_peer`, which owns it until
    it returns; the connection is closed after that. No input ever escapes as an exception."""

    def __init__(self, local: LocalNode, on_peer: OnPeer, *, config: ConnConfig = ConnConfig(),
                 metrics: Metrics = NULL_METRICS, max_pending: int = 64) -> None:
        self._local = local
        self._on_peer = on_peer
        self._config = config
        self._metrics = metrics
        self._max_pending = max_pending
        self._pending = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._closing = False

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port); the port is the real one when 0 was asked for."""
        if self._server is None or not self._server.sockets:
            raise UsageError("the server is not listening")
        addr = _address(self._server.sockets[0].getsockname())
        assert addr is not None
        return addr

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or self._pending >= self._max_pending:
            self._metrics.inc("p2p_inbound_busy")
            writer.transport.abort()
            return
        self._pending += 1
        self._writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._handle(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._handshake_and_serve(reader, writer)
        finally:
            self._writers.discard(writer)

    async def _handshake_and_serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                conn = await open_secure(reader, writer, self._local, Role.RESPONDER, config=self._config)
            finally:
                self._pending -= 1
        except P2PError as e:
            self._metrics.inc(handshake_failure_metric(e))
            log.info("inbound handshake from %s refused: %s", _address(writer.get_extra_info("peername")), e)
            return
        except Exception:
            self._metrics.inc("p2p_handshake_failed")
            log.exception("unexpected error in an inbound handshake")
            return
        self._metrics.inc("p2p_handshake_ok")
        try:
            await self._on_peer(conn)
        except Exception:
            self._metrics.inc("p2p_handler_error")
            log.exception("the handler of %r failed", conn)
        finally:
            await conn.close()

    async def close(self) -> None:
        """Stop listening, cancel every handshake and handler, close their connections."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in list(self._writers):  # a handler cancelled before it ran never closed its socket
            w.transport.abort()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> P2PServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def serve(host: str, port: int, local: LocalNode, on_peer: OnPeer, *, config: ConnConfig = ConnConfig(),
                metrics: Metrics = NULL_METRICS, max_pending: int = 64) -> P2PServer:
    """Listen on host:port (0 picks a free port: see `.address`) and admit members (P2PServer)."""
    server = P2PServer(local, on_peer, config=config, metrics=metrics, max_pending=max_pending)
    await server.start(host, port)
    return server


def handshake_failure_metric(e: BaseException) -> str:
    """The counter a failed handshake is counted under."""
    if isinstance(e, HandshakeTimeout):
        return "p2p_handshake_timeout"
    if isinstance(e, NotAMember):
        return "p2p_refused_non_member"
    return "p2p_handshake_failed"
