"""The peer handshake: a sans-I/O state machine (fed bytes, returns bytes to send), and the p2p error tree.

Both sides prove their long-term node key (Ed25519) over a fresh X25519 exchange, both node keys travel
encrypted (a passive observer learns neither), and only members of the chain are admitted. It follows the
shape of Noise XX (three handshake messages, the responder's identity in message 2, the initiator's in
message 3) with Ed25519 signatures over the transcript in place of static Diffie-Hellman keys (as in
Tendermint's SecretConnection, SIGMA-I style), plus a fourth message that confirms the keys to the initiator,
so a dialer learns that it was admitted before it sends anything.

Errors (all raised by this package; `PeerError` means "the other side, or the network"):

    P2PError
    ├── PeerError                  the peer misbehaved, failed or went away; the connection is closed
    │   ├── HandshakeError         the handshake did not complete (bad format, protocol or version)
    │   │   ├── AuthenticationError    the peer proved nothing: bad ephemeral key, a message that does not
    │   │   │                          decrypt (another chain id, or tampered), a bad signature
    │   │   ├── NotAMember             the peer proved a node key that is not in the membership
    │   │   ├── WrongPeer              a member, but not the node key we dialed
    │   │   ├── SelfConnection         the peer is this node (our own address in the dial list)
    │   │   ├── Refused                the responder hung up after our identity (we are not its member)
    │   │   └── HandshakeTimeout       (also a PeerTimeout) the handshake took too long
    │   ├── DialError              the TCP connection could not be made
    │   ├── ConnectionClosed       the connection is closed (by the peer, mid-frame, or by us)
    │   ├── FrameError             a frame that breaks the transport rules
    │   │   ├── FrameTooLarge          its length header exceeds the limit (refused before reading it)
    │   │   └── FrameCorrupt           it does not authenticate: tampered, replayed, reordered or cut
    │   └── PeerTimeout            ReadTimeout (peer silent too long), WriteTimeout (peer not reading)
    └── UsageError (ValueError)    the caller erred: an empty or oversized message, bad arguments

Wire format, rules P2P-1..P2P-4 (this docstring is their source until docs/protocol.md has them). `||` is
concatenation; integers are unsigned big-endian unless said otherwise; every message, handshake or transport,
is a frame `u32 length || body`, and every handshake body has one fixed length, so the length header is
checked before the body is read:

    I = initiator (dialer), R = responder (listener)
    x_I, x_R   ephemeral X25519 secrets (fresh per connection); e_I, e_R their public keys (32 bytes)
    pk_I, pk_R node Ed25519 public keys (32 bytes); sign_X(p) = Ed25519 over
               signing_bytes(Domain.HANDSHAKE, chain_id, p) (consensus.crypto, SIG-1)
    H = SHA-256; AEAD(k, n, ad, pt) = ChaCha20-Poly1305 (RFC 8439) with nonce 0x00000000 || u64-LE(n);
    HKDF = HKDF-SHA256 (RFC 5869)

    P2P-1 transcript.
        h0 = H(u8 13 || "mydata/p2p/v2" || u8 len(chain_id) || chain_id UTF-8)
        h1 = H(h0 || body1)        h2 = H(h1 || e_R)        h3 = H(h2 || c2)        h4 = H(h3 || c3)
        (every input after h0 has a fixed length, so the concatenations are unambiguous.)
        dh = X25519(x_I, e_R) = X25519(x_R, e_I); refused if all zero (a low-order or zero key), and an
        e_R equal to e_I (a reflection) is refused
        hk_i2r || hk_r2i = HKDF(ikm=dh, salt=h2, info="mydata/p2p/v2 handshake", 64 bytes)
        k_i2r  || k_r2i  = HKDF(ikm=dh, salt=h4, info="mydata/p2p/v2 transport", 64 bytes)

    P2P-2 messages.
        M1  I -> R  u32 45  || "mydata/p2p/v2" (13) || e_I (32)
        M2  R -> I  u32 144 || e_R (32) || c2 (112),
                    c2 = AEAD(hk_r2i, 0, h2, pk_R || sign_R(enc(["responder", h2])))
        M3  I -> R  u32 112 || c3 (112),
                    c3 = AEAD(hk_i2r, 0, h3, pk_I || sign_I(enc(["initiator", h3])))
        M4  R -> I  u32 16  || AEAD(hk_r2i, 1, h4, "")          (key confirmation: "you are admitted")
        enc() is the canonical encoding (consensus.encoding.encode_value): a msgpack array [str, bin32].

    P2P-3 checks, in this order, by whoever opens a c2 or c3: it decrypts (else AuthenticationError); the
        signature verifies for the key it carries (else AuthenticationError); the key is not ours (else
        SelfConnection); it is the expected key, if one was given (else WrongPeer); `is_member(key)` (else
        NotAMember). Any failure ends the handshake: nothing is sent back, the connection is dropped.

    P2P-4 transport (node/p2p/conn.py): frames `u32 L || AEAD(k, n, u32 L, plaintext)`, L = len(plaintext) +
        16 <= max_frame + 16, the I->R direction under k_i2r and R->I under k_r2i, each with its own counter
        n = 0, 1, 2, ... The responder may send frames right after M4, the initiator right after checking
        M4. An empty plaintext is a keepalive. h4 is the session id: both sides hold the same value
        (channel binding).

The node id of a peer is `node_id(pk) = SHA-256(pk)`, the same as its validator address (consensus.types).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import nacl.bindings
import nacl.exceptions
import nacl.utils
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from consensus.crypto import Domain, Signer, account_id, sha256, verify
from consensus.encoding import encode_value

# ------------------------------------------------------------------------------------------------ errors


class P2PError(Exception):
    """Base of every error of the peer transport."""


class PeerError(P2PError):
    """The peer (or the network) failed or misbehaved. The connection it concerns is closed."""


class HandshakeError(PeerError):
    """The handshake did not complete."""


class AuthenticationError(HandshakeError):
    """The peer did not prove an identity: bad ephemeral key, undecryptable message, bad signature."""


class NotAMember(HandshakeError):
    """The peer proved a node key that is not in the chain's membership."""

    def __init__(self, message: str, pubkey: bytes) -> None:
        super().__init__(message)
        self.pubkey = pubkey


class WrongPeer(HandshakeError):
    """The peer is a member, but not the node we meant to reach."""


class SelfConnection(HandshakeError):
    """The peer is this node itself."""


class Refused(HandshakeError):
    """The responder closed the connection after reading our identity: it did not admit us."""


class PeerTimeout(PeerError):
    """The peer did not answer in time."""


class HandshakeTimeout(HandshakeError, PeerTimeout):
    """The handshake (including the TCP connect, when dialing) took longer than allowed."""


class ReadTimeout(PeerTimeout):
    """No frame (not even a keepalive) arrived within the read timeout."""


class WriteTimeout(PeerTimeout):
    """The peer did not take our bytes within the write timeout (it stopped reading)."""


class DialError(PeerError):
    """The TCP connection could not be made (refused, unreachable, unknown host)."""


class ConnectionClosed(PeerError):
    """The connection is closed: by the peer, in the middle of a frame, or by us."""


class FrameError(PeerError):
    """A frame that breaks the transport rules."""


class FrameTooLarge(FrameError):
    """A length header above the frame limit; refused before the body is read."""


class FrameCorrupt(FrameError):
    """A frame that does not authenticate under the expected key and counter."""


class UsageError(P2PError, ValueError):
    """The caller erred (an empty or oversized message, a bad argument); nothing was sent."""


# ------------------------------------------------------------------------------------------------ constants

PROTOCOL = b"mydata/p2p/v2"
HEADER = struct.Struct(">I")
HEADER_SIZE = 4
TAG_SIZE = 16
KEY_SIZE = 32
SIG_SIZE = 64
IDENTITY_SIZE = KEY_SIZE + SIG_SIZE  # pk || signature
M1_SIZE = len(PROTOCOL) + KEY_SIZE  # 45
M2_SIZE = KEY_SIZE + IDENTITY_SIZE + TAG_SIZE  # 144
M3_SIZE = IDENTITY_SIZE + TAG_SIZE  # 112
M4_SIZE = TAG_SIZE  # 16
HANDSHAKE_INFO = PROTOCOL + b" handshake"
TRANSPORT_INFO = PROTOCOL + b" transport"
MAX_NONCE = 2**64 - 1


def node_id(pubkey: bytes) -> bytes:
    """A node's id: SHA-256 of its Ed25519 node key (its validator address)."""
    return account_id(pubkey)


def aead_nonce(counter: int) -> bytes:
    """The 96-bit ChaCha20-Poly1305 nonce for a 64-bit counter: 4 zero bytes, then the counter little-endian."""
    return b"\x00\x00\x00\x00" + counter.to_bytes(8, "little")


def frame(body: bytes) -> bytes:
    return HEADER.pack(len(body)) + body


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=2 * KEY_SIZE, salt=salt, info=info).derive(ikm)
    return okm[:KEY_SIZE], okm[KEY_SIZE:]


def x25519(secret: bytes, public: bytes) -> bytes:
    """X25519(secret, public), refusing a low-order or zero public key (the shared secret would be all zero,
    known to an attacker). libsodium already refuses it; the explicit check does not depend on that."""
    try:
        shared: bytes = nacl.bindings.crypto_scalarmult(secret, public)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        raise AuthenticationError("the peer's ephemeral key is of low order (zero shared secret)") from None
    if hmac.compare_digest(shared, bytes(KEY_SIZE)):
        raise AuthenticationError("the peer's ephemeral key is of low order (zero shared secret)")
    return shared


def _h0(chain_id: str) -> bytes:
    c = chain_id.encode("utf-8")
    if not 0 < len(c) <= 255:
        raise UsageError("a chain id has 1..255 bytes of UTF-8")
    return sha256(bytes((len(PROTOCOL),)) + PROTOCOL + bytes((len(c),)) + c)


# ------------------------------------------------------------------------------------------------ state machine


class Role(Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


class _Step(Enum):
    START = "start"  # initiator before start()
    AWAIT_M1 = "await M1"
    AWAIT_M2 = "await M2"
    AWAIT_M3 = "await M3"
    AWAIT_M4 = "await M4"
    DONE = "done"
    FAILED = "failed"


_EXPECTED = {_Step.AWAIT_M1: M1_SIZE, _Step.AWAIT_M2: M2_SIZE, _Step.AWAIT_M3: M3_SIZE, _Step.AWAIT_M4: M4_SIZE}


@dataclass(frozen=True, repr=False)
class HandshakeResult:
    """What a completed handshake established: who the peer is and the two transport keys."""

    initiator: bool  # True if this side dialed
    peer_pubkey: bytes  # the peer's Ed25519 node key, proven and admitted
    send_key: bytes
    recv_key: bytes
    session_id: bytes  # h4, the same on both sides

    @property
    def peer_id(self) -> bytes:
        return node_id(self.peer_pubkey)

    def __repr__(self) -> str:  # never show the keys
        return (f"HandshakeResult(initiator={self.initiator}, peer={self.peer_pubkey.hex()[:16]}..., "
                f"session={self.session_id.hex()[:16]}...)")


class Handshake:
    """One side of one handshake. No I/O: feed it what arrives, send what it returns.

        hs = Handshake(Role.INITIATOR, signer, chain_id, is_member)
        send(hs.start())                      # M1 (the responder's start() returns b"")
        while not hs.done:
            send(hs.receive_data(await read(hs.wanted())))

    `receive_data` accepts any chunking; `wanted()` says how many bytes complete the next step, so a caller
    that reads exactly that never reads past the handshake. Bytes fed after the end are kept in
    `unused_data`. Any failure raises a `HandshakeError` and leaves the machine FAILED for good.
    """

    def __init__(self, role: Role, signer: Signer, chain_id: str, is_member: Callable[[bytes], bool], *,
                 expected_peer: bytes | None = None, ephemeral_secret: bytes | None = None) -> None:
        if expected_peer is not None and len(expected_peer) != KEY_SIZE:
            raise UsageError("expected_peer is a 32-byte Ed25519 public key")
        if ephemeral_secret is None:
            ephemeral_secret = nacl.utils.random(KEY_SIZE)
        elif len(ephemeral_secret) != KEY_SIZE:
            raise UsageError("an X25519 secret has 32 bytes")
        self.role = role
        self._signer = signer
        self._chain_id = chain_id
        self._is_member = is_member
        self._expected = expected_peer
        self._x: bytes | None = ephemeral_secret
        self._e: bytes = nacl.bindings.crypto_scalarmult_base(ephemeral_secret)
        self._h = _h0(chain_id)
        self._dh = b""
        self._hk_i2r = self._hk_r2i = b""
        self._peer_pk = b""
        self._buf = bytearray()
        self._step = _Step.START if role is Role.INITIATOR else _Step.AWAIT_M1
        self.result: HandshakeResult | None = None
        self.unused_data = b""

    # ---- driving ---------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._step is _Step.DONE

    @property
    def failed(self) -> bool:
        return self._step is _Step.FAILED

    @property
    def awaiting_admission(self) -> bool:
        """True for an initiator that sent its identity (M3) and waits for the key confirmation (M4)."""
        return self._step is _Step.AWAIT_M4

    @property
    def ephemeral_public(self) -> bytes:
        return self._e

    def start(self) -> bytes:
        """The initiator's first message (M1); b"" for the responder, which speaks second."""
        if self.role is Role.RESPONDER:
            return b""
        if self._step is not _Step.START:
            raise UsageError("start() was already called")
        body = PROTOCOL + self._e
        self._h = sha256(self._h + body)  # h1
        self._step = _Step.AWAIT_M2
        return frame(body)

    def wanted(self) -> int:
        """How many more bytes the next step needs (0 when done, failed, or not started)."""
        size = _EXPECTED.get(self._step)
        if size is None:
            return 0
        have = len(self._buf)
        if have < HEADER_SIZE:
            return HEADER_SIZE - have
        return HEADER_SIZE + size - have

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes from the peer; returns the bytes to send back (possibly b"")."""
        if self._step is _Step.FAILED:
            raise HandshakeError("the handshake has already failed")
        if self._step is _Step.DONE:
            self.unused_data += bytes(data)
            return b""
        if self._step is _Step.START:
            raise UsageError("the initiator must call start() first")
        self._buf += data
        out = b""
        try:
            while self._step in _EXPECTED and len(self._buf) >= HEADER_SIZE:
                size = _EXPECTED[self._step]
                (length,) = HEADER.unpack_from(self._buf)
                if length != size:
                    raise HandshakeError(f"{self._step.value}: expected a {size}-byte message, "
                                         f"the length header says {length}")
                if len(self._buf) < HEADER_SIZE + size:
                    break
                body = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + size])
                del self._buf[:HEADER_SIZE + size]
                out += self._step_on(body)
        except Exception:  # a HandshakeError, or a bug of is_member: never leave a half-open machine
            self._fail()
            raise
        if self.done:
            self.unused_data, self._buf = bytes(self._buf), bytearray()
        return out

    def _fail(self) -> None:
        self._step = _Step.FAILED
        self._x = None
        self._dh = self._hk_i2r = self._hk_r2i = b""
        self._buf = bytearray()

    # ---- steps -----------------------------------------------------------------------------------

    def _step_on(self, body: bytes) -> bytes:
        step = self._step
        if step is _Step.AWAIT_M1:
            return self._on_m1(body)
        if step is _Step.AWAIT_M2:
            return self._on_m2(body)
        if step is _Step.AWAIT_M3:
            return self._on_m3(body)
        return self._on_m4(body)

    def _exchange(self, peer_e: bytes) -> None:
        """Mix the peer's ephemeral key in: the shared secret, h2 and the handshake keys."""
        assert self._x is not None
        if hmac.compare_digest(peer_e, self._e):
            raise AuthenticationError("the peer echoed our own ephemeral key")
        self._dh = x25519(self._x, peer_e)
        self._x = None  # forward secrecy: the ephemeral secret is not needed any more
        e_r = self._e if self.role is Role.RESPONDER else peer_e
        self._h = sha256(self._h + e_r)  # h2
        self._hk_i2r, self._hk_r2i = _hkdf(self._dh, self._h, HANDSHAKE_INFO)

    def _identity(self, label: str, key: bytes, ad: bytes) -> bytes:
        """Our encrypted identity: AEAD(key, 0, ad, pk || sign(enc([label, ad])))."""
        sig = self._signer.sign(Domain.HANDSHAKE, self._chain_id, encode_value([label, ad]))
        if len(sig) != SIG_SIZE or len(self._signer.public_key) != KEY_SIZE:
            raise UsageError("the node signer must produce Ed25519 keys and signatures")
        return ChaCha20Poly1305(key).encrypt(aead_nonce(0), self._signer.public_key + sig, ad)

    def _open_identity(self, label: str, key: bytes, ad: bytes, ciphertext: bytes) -> bytes:
        """Open and check the peer's identity (P2P-3); returns its node key."""
        try:
            plain = ChaCha20Poly1305(key).decrypt(aead_nonce(0), ciphertext, ad)
        except InvalidTag:
            raise AuthenticationError(f"the {label}'s identity does not decrypt: another chain id, "
                                      "or a tampered handshake") from None
        pk, sig = plain[:KEY_SIZE], plain[KEY_SIZE:]
        if not verify(pk, Domain.HANDSHAKE, self._chain_id, encode_value([label, ad]), sig):
            raise AuthenticationError(f"the {label}'s transcript signature does not verify")
        if hmac.compare_digest(pk, self._signer.public_key):
            raise SelfConnection("the peer is this node itself")
        if self._expected is not None and not hmac.compare_digest(pk, self._expected):
            raise WrongPeer(f"expected node key {self._expected.hex()[:16]}..., the peer proved "
                            f"{pk.hex()[:16]}...")
        if not self._is_member(pk):
            raise NotAMember(f"node key {pk.hex()[:16]}... is not a member of chain {self._chain_id!r}", pk)
        return pk

    def _on_m1(self, body: bytes) -> bytes:  # responder
        if body[:len(PROTOCOL)] != PROTOCOL:
            raise HandshakeError("not a mydata/p2p/v2 peer (unknown protocol prologue)")
        self._h = sha256(self._h + body)  # h1
        self._exchange(body[len(PROTOCOL):])
        c2 = self._identity("responder", self._hk_r2i, self._h)
        self._h = sha256(self._h + c2)  # h3
        self._step = _Step.AWAIT_M3
        return frame(self._e + c2)

    def _on_m2(self, body: bytes) -> bytes:  # initiator
        e_r, c2 = body[:KEY_SIZE], body[KEY_SIZE:]
        self._exchange(e_r)
        self._peer_pk = self._open_identity("responder", self._hk_r2i, self._h, c2)
        self._h = sha256(self._h + c2)  # h3
        c3 = self._identity("initiator", self._hk_i2r, self._h)
        self._h = sha256(self._h + c3)  # h4
        self._step = _Step.AWAIT_M4
        return frame(c3)

    def _on_m3(self, c3: bytes) -> bytes:  # responder
        self._peer_pk = self._open_identity("initiator", self._hk_i2r, self._h, c3)
        self._h = sha256(self._h + c3)  # h4
        c4 = ChaCha20Poly1305(self._hk_r2i).encrypt(aead_nonce(1), b"", self._h)
        self._finish()
        return frame(c4)

    def _on_m4(self, c4: bytes) -> bytes:  # initiator
        try:
            ChaCha20Poly1305(self._hk_r2i).decrypt(aead_nonce(1), c4, self._h)
        except InvalidTag:
            raise AuthenticationError("the responder's key confirmation does not verify") from None
        self._finish()
        return b""

    def _finish(self) -> None:
        k_i2r, k_r2i = _hkdf(self._dh, self._h, TRANSPORT_INFO)
        initiator = self.role is Role.INITIATOR
        self.result = HandshakeResult(
            initiator=initiator,
            peer_pubkey=self._peer_pk,
            send_key=k_i2r if initiator else k_r2i,
            recv_key=k_r2i if initiator else k_i2r,
            session_id=self._h,
        )
        self._dh = self._hk_i2r = self._hk_r2i = b""
        self._step = _Step.DONE
