"""The peer transport: a mutually authenticated, encrypted channel between chain members, and a peer manager.

    handshake.py  the sans-I/O handshake (X25519 + Ed25519 transcript signatures, members only), the wire
                  format (P2P-1..P2P-4) and the error tree
    conn.py       SecureConnection (framed ChaCha20-Poly1305 over asyncio streams), connect(), serve()
    peers.py      PeerManager: static dialing with backoff, one connection per peer, queues, broadcast

Messages are opaque bytes here; the node defines what they mean.
"""

from node.p2p.conn import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_FRAME,
    ConnConfig,
    CountingMetrics,
    FrameOpener,
    FrameSealer,
    LocalNode,
    Metrics,
    NullMetrics,
    P2PServer,
    SecureConnection,
    connect,
    open_secure,
    serve,
)
from node.p2p.handshake import (
    AuthenticationError,
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
    PeerError,
    PeerTimeout,
    ReadTimeout,
    Refused,
    Role,
    SelfConnection,
    UsageError,
    WriteTimeout,
    WrongPeer,
    node_id,
)
from node.p2p.peers import PeerAddress, PeerConfig, PeerInfo, PeerManager

__all__ = [
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "DEFAULT_MAX_FRAME",
    "AuthenticationError",
    "ConnConfig",
    "ConnectionClosed",
    "CountingMetrics",
    "DialError",
    "FrameCorrupt",
    "FrameError",
    "FrameOpener",
    "FrameSealer",
    "FrameTooLarge",
    "Handshake",
    "HandshakeError",
    "HandshakeResult",
    "HandshakeTimeout",
    "LocalNode",
    "Metrics",
    "NotAMember",
    "NullMetrics",
    "P2PError",
    "P2PServer",
    "PeerAddress",
    "PeerConfig",
    "PeerError",
    "PeerInfo",
    "PeerManager",
    "PeerTimeout",
    "ReadTimeout",
    "Refused",
    "Role",
    "SecureConnection",
    "SelfConnection",
    "UsageError",
    "WriteTimeout",
    "WrongPeer",
    "connect",
    "node_id",
    "open_secure",
    "serve",
]
