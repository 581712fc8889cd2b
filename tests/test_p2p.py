"""The peer transport (node/p2p): the sans-I/O handshake in memory (round trip, the wire format re-derived
from its spec, members only, MITM, low-order keys, chain ids, tampering), the encrypted frames (tampered,
replayed, reordered, dropped, truncated, oversized), connections on loopback (timeouts, refusals, fuzzing a
listening server), and the peer manager (full mesh, broadcast, restart, duplicate connections, slow peers).

Every asynchronous test runs on its own event loop under a hard time bound (`run`), which also fails the test
if a task is left running or the loop reported an unhandled error. Randomness is seeded."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import node.p2p as p2p
from consensus.crypto import Domain, Ed25519Signer, account_id, signing_bytes, verify
from consensus.encoding import encode_value
from node.p2p import (
    AuthenticationError,
    ConnConfig,
    ConnectionClosed,
    CountingMetrics,
    DialError,
    FrameCorrupt,
    FrameError,
    FrameOpener,
    FrameSealer,
    FrameTooLarge,
    Handshake,
    HandshakeError,
    HandshakeTimeout,
    LocalNode,
    NotAMember,
    PeerAddress,
    PeerConfig,
    PeerManager,
    ReadTimeout,
    Refused,
    Role,
    SecureConnection,
    SelfConnection,
    UsageError,
    WrongPeer,
    connect,
    open_secure,
    serve,
)
from node.p2p.handshake import HEADER, PROTOCOL, aead_nonce

CHAIN = "mydata-test"
LOOPBACK = "127.0.0.1"


def signer(label: str) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(f"p2p-test/{label}".encode()).digest())


A, B, C, D = signer("a"), signer("b"), signer("c"), signer("d")
EVE = signer("eve")  # a valid key, never a member
MEMBERS = frozenset({A.public_key, B.public_key, C.public_key, D.public_key})


def is_member(pk: bytes) -> bool:
    return pk in MEMBERS


def local(s: Ed25519Signer, chain: str = CHAIN, members: Iterable[bytes] = MEMBERS) -> LocalNode:
    allowed = frozenset(members)
    return LocalNode(s, chain, lambda pk: pk in allowed)


# ------------------------------------------------------------------------------------------------ harness

TEST_TIMEOUT = 30.0


def run(body: Callable[[], Awaitable[None]], timeout: float = TEST_TIMEOUT) -> None:
    """Run `body` on a fresh loop within `timeout`; fail on leftover tasks or errors the loop logged."""
    errors: list[dict[str, object]] = []
    leftover: list[asyncio.Task[object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        try:
            async with asyncio.timeout(timeout):
                await body()
        finally:
            for _ in range(10):  # let close callbacks and cancelled tasks finish
                await asyncio.sleep(0)
            me = asyncio.current_task()
            leftover.extend(t for t in asyncio.all_tasks() if t is not me and not t.done())

    asyncio.run(main())
    assert not leftover, f"tasks left running: {leftover}"
    assert not errors, f"the event loop reported errors: {errors}"


async def eventually(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def tcp_pair() -> tuple[Streams, Streams]:
    """Two ends of one loopback TCP connection: (client, server)."""
    accepted: asyncio.Future[Streams] = asyncio.get_running_loop().create_future()

    def on_accept(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    server = await asyncio.start_server(on_accept, LOOPBACK, 0)
    try:
        port = server.sockets[0].getsockname()[1]
        client = await asyncio.open_connection(LOOPBACK, port)
        return client, await accepted
    finally:
        server.close()
        await server.wait_closed()


async def close_streams(*writers: asyncio.StreamWriter) -> None:
    for w in writers:
        w.transport.abort()
    for w in writers:
        with contextlib.suppress(Exception):
            await w.wait_closed()


DEFAULT_CONN = ConnConfig()


@contextlib.asynccontextmanager
async def secure_pair(client_cfg: ConnConfig = DEFAULT_CONN,
                      server_cfg: ConnConfig = DEFAULT_CONN) -> AsyncIterator[tuple[SecureConnection, ...]]:
    """A handshaken pair over loopback TCP: (A as initiator, B as responder)."""
    (cr, cw), (sr, sw) = await tcp_pair()
    try:
        a, b = await asyncio.gather(open_secure(cr, cw, local(A), Role.INITIATOR, config=client_cfg),
                                    open_secure(sr, sw, local(B), Role.RESPONDER, config=server_cfg))
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()
    finally:
        await close_streams(cw, sw)


@contextlib.asynccontextmanager
async def raw_sender(victim_cfg: ConnConfig = DEFAULT_CONN) -> AsyncIterator[
        tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameSealer, SecureConnection]]:
    """A victim SecureConnection (B, responder) and an attacker who completed the handshake by hand as A:
    the attacker holds the real sending key, so it can forge any frame sequence it likes."""
    (ar, aw), (vr, vw) = await tcp_pair()
    try:
        hs = Handshake(Role.INITIATOR, A, CHAIN, is_member)

        async def attacker() -> FrameSealer:
            aw.write(hs.start())
            while not hs.done:
                out = hs.receive_data(await ar.readexactly(hs.wanted()))
                if out:
                    aw.write(out)
            assert hs.result is not None
            return FrameSealer(hs.result.send_key)

        sealer, victim = await asyncio.gather(attacker(), open_secure(vr, vw, local(B), Role.RESPONDER,
                                                                       config=victim_cfg))
        try:
            yield ar, aw, sealer, victim
        finally:
            await victim.close()
    finally:
        await close_streams(aw, vw)


# ------------------------------------------------------------------------------------------------ sans-I/O handshake


def make_pair(i_signer: Ed25519Signer = A, r_signer: Ed25519Signer = B, *, i_chain: str = CHAIN,
              r_chain: str = CHAIN, i_member: Callable[[bytes], bool] = is_member,
              r_member: Callable[[bytes], bool] = is_member, expected: bytes | None = None,
              seed: int = 1) -> tuple[Handshake, Handshake]:
    rng = random.Random(seed)
    i = Handshake(Role.INITIATOR, i_signer, i_chain, i_member, expected_peer=expected,
                  ephemeral_secret=rng.randbytes(32))
    r = Handshake(Role.RESPONDER, r_signer, r_chain, r_member, ephemeral_secret=rng.randbytes(32))
    return i, r


def complete(i: Handshake, r: Handshake) -> list[bytes]:
    m1 = i.start()
    m2 = r.receive_data(m1)
    m3 = i.receive_data(m2)
    m4 = r.receive_data(m3)
    assert i.receive_data(m4) == b""
    return [m1, m2, m3, m4]


def test_handshake_round_trip_in_memory() -> None:
    i, r = make_pair()
    assert r.start() == b""
    msgs = complete(i, r)
    assert [len(m) for m in msgs] == [4 + 45, 4 + 144, 4 + 112, 4 + 16]
    assert i.done and r.done and i.result and r.result
    assert i.result.peer_pubkey == B.public_key and r.result.peer_pubkey == A.public_key
    assert i.result.peer_id == account_id(B.public_key) == p2p.node_id(B.public_key)
    assert i.result.initiator and not r.result.initiator
    assert i.result.send_key == r.result.recv_key and i.result.recv_key == r.result.send_key
    assert i.result.send_key != i.result.recv_key
    assert i.result.session_id == r.result.session_id
    assert "send_key" not in repr(i.result) and i.result.send_key.hex() not in repr(i.result)
    # the keys carry frames both ways
    a_out, b_in = FrameSealer(i.result.send_key), FrameOpener(r.result.recv_key)
    f = a_out.seal(b"vote")
    assert b_in.open(f[:4], f[4:]) == b"vote"
    b_out, a_in = FrameSealer(r.result.send_key), FrameOpener(i.result.recv_key)
    f = b_out.seal(b"proposal")
    assert a_in.open(f[:4], f[4:]) == b"proposal"
    # fresh ephemerals: another handshake of the same two nodes has other keys and another session
    i2, r2 = make_pair(seed=2)
    complete(i2, r2)
    assert i2.result and i2.result.session_id != i.result.session_id and i2.result.send_key != i.result.send_key


def test_identities_travel_encrypted() -> None:
    """A passive observer of the four messages sees neither node key (nor its id)."""
    i, r = make_pair()
    wire = b"".join(complete(i, r))
    for s in (A, B):
        assert s.public_key not in wire and account_id(s.public_key) not in wire


def test_handshake_accepts_any_chunking_and_keeps_extra_bytes() -> None:
    ref_i, ref_r = make_pair(seed=7)
    ref = complete(ref_i, ref_r)
    rng = random.Random(1234)
    for _ in range(50):
        i, r = make_pair(seed=7)

        def feed(h: Handshake, data: bytes) -> bytes:
            out, pos = b"", 0
            while pos < len(data):
                n = rng.randint(1, 9)
                out += h.receive_data(data[pos:pos + n])
                pos += n
            return out

        m1 = i.start()
        m2 = feed(r, m1)
        m3 = feed(i, m2)
        m4 = feed(r, m3)
        assert feed(i, m4 + b"early transport bytes") == b""
        assert [m1, m2, m3, m4] == ref
        assert i.unused_data == b"early transport bytes"
        assert i.result and ref_i.result and i.result.session_id == ref_i.result.session_id


def test_wanted_never_reads_past_a_message() -> None:
    i, r = make_pair()
    assert i.wanted() == 0  # not started
    m1 = i.start()
    assert r.wanted() == 4
    r.receive_data(m1[:4])
    assert r.wanted() == len(m1) - 4
    m2 = r.receive_data(m1[4:])
    assert r.wanted() == 4 and i.wanted() == 4
    m3 = i.receive_data(m2)
    r.receive_data(m3)
    assert r.done and r.wanted() == 0


# A spec-conformance check: an initiator written from the module docstring (P2P-1..P2P-3) alone.

def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _kdf(ikm: bytes, salt: bytes, info: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=info).derive(ikm)
    return okm[:32], okm[32:]


def _x25519_pub(secret: bytes) -> bytes:
    import nacl.bindings
    return bytes(nacl.bindings.crypto_scalarmult_base(secret))


def _x25519(secret: bytes, pub: bytes) -> bytes:
    import nacl.bindings
    return bytes(nacl.bindings.crypto_scalarmult(secret, pub))


def _h0(chain: str) -> bytes:
    c = chain.encode()
    return _h(bytes([13]) + b"mydata/p2p/v2" + bytes([len(c)]) + c)


def test_wire_format_matches_the_documented_spec() -> None:
    rng = random.Random(99)
    x_i = rng.randbytes(32)
    e_i = _x25519_pub(x_i)
    r = Handshake(Role.RESPONDER, B, CHAIN, is_member, ephemeral_secret=rng.randbytes(32))

    body1 = b"mydata/p2p/v2" + e_i
    m2 = r.receive_data(len(body1).to_bytes(4, "big") + body1)
    assert m2[:4] == (144).to_bytes(4, "big")
    e_r, c2 = m2[4:36], m2[36:]
    h1 = _h(_h0(CHAIN) + body1)
    h2 = _h(h1 + e_r)
    dh = _x25519(x_i, e_r)
    hk_i2r, hk_r2i = _kdf(dh, h2, b"mydata/p2p/v2 handshake")
    ident = ChaCha20Poly1305(hk_r2i).decrypt(bytes(4) + (0).to_bytes(8, "little"), c2, h2)
    pk_r, sig_r = ident[:32], ident[32:]
    assert pk_r == B.public_key
    assert verify(pk_r, Domain.HANDSHAKE, CHAIN, encode_value(["responder", h2]), sig_r)
    assert encode_value(["responder", h2]) == b"\x92\xa9responder\xc4\x20" + h2
    assert signing_bytes(Domain.HANDSHAKE, CHAIN, b"")[:20] == b"\x13mydata/handshake/v1"

    h3 = _h(h2 + c2)
    sig_i = A.sign(Domain.HANDSHAKE, CHAIN, encode_value(["initiator", h3]))
    c3 = ChaCha20Poly1305(hk_i2r).encrypt(bytes(12), A.public_key + sig_i, h3)
    m4 = r.receive_data((112).to_bytes(4, "big") + c3)
    h4 = _h(h3 + c3)
    assert m4[:4] == (16).to_bytes(4, "big")
    assert ChaCha20Poly1305(hk_r2i).decrypt(bytes(4) + (1).to_bytes(8, "little"), m4[4:], h4) == b""
    k_i2r, k_r2i = _kdf(dh, h4, b"mydata/p2p/v2 transport")
    assert r.result is not None
    assert (r.result.recv_key, r.result.send_key, r.result.session_id) == (k_i2r, k_r2i, h4)
    assert r.result.peer_pubkey == A.public_key
    # P2P-4: a transport frame
    f = FrameSealer(k_i2r).seal(b"hello")
    assert f[:4] == (5 + 16).to_bytes(4, "big")
    assert ChaCha20Poly1305(k_i2r).decrypt(aead_nonce(0), f[4:], f[:4]) == b"hello"
    assert aead_nonce(0x0102) == bytes(4) + bytes([2, 1]) + bytes(6)


def test_golden_transcript() -> None:
    """Fixed keys and ephemerals give fixed bytes: a change of the wire format shows up here."""
    i, r = make_pair(seed=2024)
    msgs = complete(i, r)
    assert i.result is not None
    assert hashlib.sha256(b"".join(msgs)).hexdigest() == GOLDEN_TRANSCRIPT_SHA256
    assert i.result.session_id.hex() == GOLDEN_SESSION_ID


GOLDEN_TRANSCRIPT_SHA256 = "b6882fe6f50b49dd15cdd14c28a055505c2f834ba24b2844c04cae9ffa8866c9"
GOLDEN_SESSION_ID = "05205a37f10d0039642a33b427021b42ebbf4321c440dc74ab26e087f2d9631d"


def test_non_member_initiator_is_refused_by_the_responder() -> None:
    i, r = make_pair(EVE, B, i_member=lambda pk: True)  # Eve thinks B is fine; B does not admit Eve
    m2 = r.receive_data(i.start())
    m3 = i.receive_data(m2)
    with pytest.raises(NotAMember) as ei:
        r.receive_data(m3)
    assert ei.value.pubkey == EVE.public_key
    assert r.failed and r.result is None and not i.done and i.awaiting_admission
    with pytest.raises(HandshakeError, match="already failed"):
        r.receive_data(b"\x00")


def test_non_member_responder_is_refused_by_the_initiator() -> None:
    i, r = make_pair(A, EVE, r_member=lambda pk: True)
    m2 = r.receive_data(i.start())
    with pytest.raises(NotAMember):
        i.receive_data(m2)
    assert i.failed and i.result is None


def test_membership_is_checked_only_after_the_signature() -> None:
    seen: list[bytes] = []

    def spy(pk: bytes) -> bool:
        seen.append(pk)
        return True

    i, r = make_pair(i_member=spy, r_member=spy)
    complete(i, r)
    assert seen == [B.public_key, A.public_key]


def test_self_connection_is_refused() -> None:
    i, r = make_pair(A, A)
    m2 = r.receive_data(i.start())
    with pytest.raises(SelfConnection):
        i.receive_data(m2)


def test_expected_peer_must_answer() -> None:
    i, r = make_pair(A, C, expected=B.public_key)
    with pytest.raises(WrongPeer):
        i.receive_data(r.receive_data(i.start()))
    i, r = make_pair(A, B, expected=B.public_key)
    complete(i, r)
    assert i.done


def test_wrong_chain_id_fails() -> None:
    i, r = make_pair(i_chain=CHAIN, r_chain="another-chain")
    m2 = r.receive_data(i.start())
    with pytest.raises(AuthenticationError, match="another chain id"):
        i.receive_data(m2)
    with pytest.raises(UsageError):
        Handshake(Role.INITIATOR, A, "", is_member)


def test_mitm_swapping_ephemeral_keys_fails() -> None:
    rng = random.Random(5)
    # 1. relay: Mallory swaps both ephemeral keys for her own and forwards the rest untouched
    i, r = make_pair(seed=11)
    x_m1, x_m2 = rng.randbytes(32), rng.randbytes(32)
    m1 = i.start()
    m2 = r.receive_data(m1[:4] + PROTOCOL + _x25519_pub(x_m1))
    with pytest.raises(AuthenticationError):
        i.receive_data(m2[:4] + _x25519_pub(x_m2) + m2[36:])
    assert not r.done

    # 2. re-encrypt: Mallory opens R's identity with her key shared with R, and re-seals it for I with
    #    her key shared with I; the signature covers R's transcript, not I's, so I refuses it
    i, r = make_pair(seed=12)
    m1 = i.start()
    e_i = m1[4 + 13:]
    body1_r = PROTOCOL + _x25519_pub(x_m1)
    m2 = r.receive_data(len(body1_r).to_bytes(4, "big") + body1_r)
    e_r, c2 = m2[4:36], m2[36:]
    h2_r = _h(_h(_h0(CHAIN) + body1_r) + e_r)
    _, hk_r2i_r = _kdf(_x25519(x_m1, e_r), h2_r, b"mydata/p2p/v2 handshake")
    identity = ChaCha20Poly1305(hk_r2i_r).decrypt(bytes(12), c2, h2_r)
    assert identity[:32] == B.public_key  # (an active prober learns the responder's key: as in Noise XX)
    e_m2 = _x25519_pub(x_m2)
    h2_i = _h(_h(_h0(CHAIN) + m1[4:]) + e_m2)
    _, hk_r2i_i = _kdf(_x25519(x_m2, e_i), h2_i, b"mydata/p2p/v2 handshake")
    forged = e_m2 + ChaCha20Poly1305(hk_r2i_i).encrypt(bytes(12), identity, h2_i)
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        i.receive_data(m2[:4] + forged)


LOW_ORDER = [
    0, 1, 325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    2**255 - 19 - 1, 2**255 - 19, 2**255 - 19 + 1, 2**255,
]


@pytest.mark.parametrize("u", LOW_ORDER, ids=[f"u{k}" for k in range(len(LOW_ORDER))])
def test_low_order_ephemeral_keys_are_rejected(u: int) -> None:
    bad = u.to_bytes(32, "little")
    _, r = make_pair()
    with pytest.raises(AuthenticationError, match="low order"):
        r.receive_data((45).to_bytes(4, "big") + PROTOCOL + bad)
    i, _ = make_pair()
    i.start()
    with pytest.raises(AuthenticationError, match="low order"):
        i.receive_data((144).to_bytes(4, "big") + bad + bytes(112))


def test_an_echoed_ephemeral_key_is_rejected() -> None:
    i, _ = make_pair()
    m1 = i.start()
    with pytest.raises(AuthenticationError, match="echoed"):
        i.receive_data((144).to_bytes(4, "big") + m1[4 + 13:] + bytes(112))


def test_every_tampered_handshake_byte_is_detected() -> None:
    """Flip each byte of each message in flight: the initiator never completes, and the responder never
    completes unless the flipped byte is in M4 (sent after it finished), which the initiator then refuses."""
    ref = complete(*make_pair(seed=3))
    for k in range(4):
        for pos in range(len(ref[k])):
            i, r = make_pair(seed=3)
            msgs: list[bytes] = [i.start()]
            with pytest.raises(HandshakeError):
                for step in range(4):
                    m = msgs[step]
                    if step == k:
                        m = m[:pos] + bytes([m[pos] ^ 0x01]) + m[pos + 1:]
                    msgs.append((r if step % 2 == 0 else i).receive_data(m))
                    if i.done:
                        break
            assert not i.done, (k, pos)
            assert r.done == (k == 3), (k, pos)


def test_a_bad_length_header_fails_before_the_body() -> None:
    _, r = make_pair()
    with pytest.raises(HandshakeError, match="length header"):
        r.receive_data(b"\xff\xff\xff\xff")
    _, r = make_pair()
    with pytest.raises(HandshakeError, match="prologue"):
        r.receive_data((45).to_bytes(4, "big") + b"GET / HTTP/1.1\r\n" + bytes(29))


# ------------------------------------------------------------------------------------------------ frames (pure)


def test_frames_detect_tampering_replay_reordering_and_truncation() -> None:
    key = bytes(range(32))
    s = FrameSealer(key)
    f0, f1, f2 = s.seal(b"zero"), s.seal(b"one"), s.seal(b"two")

    def opener() -> FrameOpener:
        return FrameOpener(key, max_frame=1024)

    o = opener()
    assert [o.open(f[:4], f[4:]) for f in (f0, f1, f2)] == [b"zero", b"one", b"two"]
    o = opener()
    o.open(f0[:4], f0[4:])
    with pytest.raises(FrameCorrupt):  # replay
        o.open(f0[:4], f0[4:])
    with pytest.raises(FrameCorrupt):  # reorder
        opener().open(f1[:4], f1[4:])
    bad = bytearray(f0)
    bad[6] ^= 0x80
    with pytest.raises(FrameCorrupt):  # tamper
        opener().open(bytes(bad[:4]), bytes(bad[4:]))
    with pytest.raises(FrameCorrupt):  # truncated body with a matching length header
        opener().open((len(f0) - 5).to_bytes(4, "big"), f0[4:-1])
    with pytest.raises(FrameTooLarge):
        opener().body_length((1024 + 17).to_bytes(4, "big"))
    assert opener().body_length((1024 + 16).to_bytes(4, "big")) == 1040
    with pytest.raises(FrameError):
        opener().body_length((15).to_bytes(4, "big"))


# ------------------------------------------------------------------------------------------------ connections


def test_secure_connection_round_trip_over_loopback() -> None:
    async def body() -> None:
        async with secure_pair() as (a, b):
            assert a.peer_pubkey == B.public_key and b.peer_pubkey == A.public_key
            assert a.peer_id == account_id(B.public_key) and a.initiator and not b.initiator
            assert a.session_id == b.session_id
            big = random.Random(3).randbytes(1024 * 1024)
            await a.send(b"hello")
            await a.send_keepalive()  # never delivered
            await a.send(big)
            assert await b.recv() == b"hello"
            assert await b.recv() == big
            for n in range(100):
                await b.send(n.to_bytes(2, "big"))
            assert [await a.recv() for _ in range(100)] == [n.to_bytes(2, "big") for n in range(100)]
            with pytest.raises(UsageError):
                await a.send(b"")
        assert a.closed and b.closed
        with pytest.raises(ConnectionClosed):
            await a.send(b"after close")

    run(body)


def test_connect_and_serve_admit_members() -> None:
    async def body() -> None:
        got: asyncio.Queue[bytes] = asyncio.Queue()
        metrics = CountingMetrics()

        async def on_peer(conn: SecureConnection) -> None:
            await got.put(conn.peer_pubkey + await conn.recv())
            await conn.send(b"welcome")

        server = await serve(LOOPBACK, 0, local(B), on_peer, metrics=metrics)
        async with server:
            host, port = server.address
            conn = await connect(host, port, local(A), expected_peer=B.public_key)
            try:
                await conn.send(b"hi")
                assert await got.get() == A.public_key + b"hi"
                assert await conn.recv() == b"welcome"
                with pytest.raises(ConnectionClosed):  # the handler returned: the server closed it
                    await conn.recv()
            finally:
                await conn.close()
            assert metrics["p2p_handshake_ok"] == 1

    run(body)


def test_non_member_is_refused_on_both_sides_over_tcp() -> None:
    async def body() -> None:
        called: list[SecureConnection] = []

        async def on_peer(conn: SecureConnection) -> None:
            called.append(conn)

        # Eve dials the members' node: the node refuses her after her identity; she learns it at once
        members_metrics = CountingMetrics()
        async with await serve(LOOPBACK, 0, local(B), on_peer, metrics=members_metrics) as server:
            with pytest.raises(Refused):
                await connect(*server.address, local(EVE, members=MEMBERS | {EVE.public_key}))
            await eventually(lambda: members_metrics["p2p_refused_non_member"] == 1)
        # a member dials Eve's node (which would admit it): the member refuses Eve's proven identity
        eve_metrics = CountingMetrics()
        async with await serve(LOOPBACK, 0, local(EVE, members=MEMBERS | {EVE.public_key}), on_peer,
                               metrics=eve_metrics) as eve_server:
            with pytest.raises(NotAMember):
                await connect(*eve_server.address, local(A))
            await eventually(lambda: eve_metrics["p2p_handshake_failed"] == 1)
        assert called == []

    run(body)


def test_wrong_chain_and_wrong_peer_over_tcp() -> None:
    async def body() -> None:
        async def on_peer(conn: SecureConnection) -> None:
            raise AssertionError("must not be admitted")

        async with await serve(LOOPBACK, 0, local(B, chain="another-chain"), on_peer) as server:
            with pytest.raises(AuthenticationError):
                await connect(*server.address, local(A))
        async with await serve(LOOPBACK, 0, local(B), on_peer) as server:
            with pytest.raises(WrongPeer):
                await connect(*server.address, local(A), expected_peer=C.public_key)

    run(body)


def test_dialing_a_closed_port_is_a_dial_error() -> None:
    async def body() -> None:
        server = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        with pytest.raises(DialError):
            await connect(LOOPBACK, port, local(A))

    run(body)


def test_tampered_replayed_reordered_dropped_and_truncated_frames_close_the_connection() -> None:
    def tamper(fs: list[bytes]) -> bytes:
        x = bytearray(fs[0])
        x[10] ^= 0x04
        return bytes(x)

    cases: dict[str, tuple[Callable[[list[bytes]], bytes], type[Exception]]] = {
        "tampered": (tamper, FrameCorrupt),
        "replayed": (lambda fs: fs[0] + fs[0], FrameCorrupt),
        "reordered": (lambda fs: fs[1] + fs[0], FrameCorrupt),
        "dropped": (lambda fs: fs[1], FrameCorrupt),
        "length shortened": (lambda fs: (len(fs[0]) - 5).to_bytes(4, "big") + fs[0][4:-1], FrameCorrupt),
        "truncated at the end": (lambda fs: fs[0][:-3], ConnectionClosed),
    }

    async def one(name: str, make: Callable[[list[bytes]], bytes], error: type[Exception]) -> None:
        async with raw_sender() as (ar, aw, sealer, victim):
            frames = [sealer.seal(b"first message"), sealer.seal(b"second message")]
            aw.write(make(frames))
            if error is ConnectionClosed:
                aw.write_eof()
            async with asyncio.timeout(5):
                if name == "replayed":
                    assert await victim.recv() == b"first message"
                with pytest.raises(error):
                    await victim.recv()
            assert victim.closed, name
            with pytest.raises(ConnectionClosed):
                await victim.recv()
            async with asyncio.timeout(5):  # the victim hung up on the attacker
                assert await ar.read() == b""

    async def body() -> None:
        for name, (make, error) in cases.items():
            await one(name, make, error)

    run(body)


def test_oversized_frame_length_is_refused_before_reading_the_body() -> None:
    async def body() -> None:
        async with raw_sender(ConnConfig(max_frame=1024)) as (_, aw, _sealer, victim):
            aw.write(b"\xff\xff\xff\xff")  # announces 4 GiB and sends nothing more
            async with asyncio.timeout(2):  # were the body awaited, this would time out
                with pytest.raises(FrameTooLarge):
                    await victim.recv()
            assert victim.closed
        async with raw_sender(ConnConfig(max_frame=1024)) as (_, aw, _sealer, victim):
            aw.write((1024 + 16 + 1).to_bytes(4, "big"))
            async with asyncio.timeout(2):
                with pytest.raises(FrameTooLarge):
                    await victim.recv()
        # the sender is told before anything is sent, and the connection stays usable
        small = ConnConfig(max_frame=1024)
        async with secure_pair(small, small) as (a, b):
            with pytest.raises(UsageError, match="exceeds"):
                await a.send(bytes(1025))
            await a.send(bytes(1024))
            assert await b.recv() == bytes(1024)

    run(body)


def test_handshake_timeout_on_a_silent_or_slow_client() -> None:
    async def body() -> None:
        metrics = CountingMetrics()

        async def on_peer(conn: SecureConnection) -> None:
            raise AssertionError("must not be admitted")

        cfg = ConnConfig(handshake_timeout=0.3)
        async with await serve(LOOPBACK, 0, local(B), on_peer, config=cfg, metrics=metrics) as server:
            silent = await asyncio.open_connection(*server.address)
            slow = await asyncio.open_connection(*server.address)
            slow[1].write((45).to_bytes(4, "big") + PROTOCOL)  # half of M1, then nothing
            try:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                async with asyncio.timeout(3):
                    assert await silent[0].read() == b""  # the server hung up
                    assert await slow[0].read() == b""
                assert 0.25 <= loop.time() - t0 < 3
                await eventually(lambda: metrics["p2p_handshake_timeout"] == 2)
            finally:
                await close_streams(silent[1], slow[1])

    run(body)


def test_handshake_timeout_on_a_silent_server() -> None:
    async def body() -> None:
        held: list[asyncio.StreamWriter] = []
        server = await asyncio.start_server(lambda r, w: held.append(w), LOOPBACK, 0)
        try:
            port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(HandshakeTimeout):
                await connect(LOOPBACK, port, local(A), config=ConnConfig(handshake_timeout=0.3))
            assert 0.25 <= loop.time() - t0 < 3
        finally:
            server.close()
            await close_streams(*held)
            await server.wait_closed()

    run(body)


def test_read_timeout_closes_a_silent_connection_but_keepalives_hold_it() -> None:
    async def body() -> None:
        cfg = ConnConfig(read_timeout=0.3)
        async with secure_pair(cfg, cfg) as (a, b):
            for _ in range(8):  # 0.4 s of keepalives only: no timeout
                await a.send_keepalive()
                await asyncio.sleep(0.05)
            await a.send(b"still here")
            assert await b.recv() == b"still here"
            with pytest.raises(ReadTimeout):
                await b.recv()
            assert b.closed

    run(body)


def test_sending_to_a_peer_that_went_away_fails_with_connection_closed() -> None:
    """Sends do not wait for the transport to drain below its high-water mark, yet a dead peer still shows:
    once the transport has seen the peer go, `send` raises ConnectionClosed (not a RuntimeError of the event
    loop, not silence)."""
    async def body() -> None:
        async with secure_pair(ConnConfig(), ConnConfig()) as (a, b):
            await b.close()
            with pytest.raises(ConnectionClosed):
                for _ in range(200):  # bounded: the reset arrives within a few round trips on loopback
                    await a.send(b"x" * 1000)
                    await asyncio.sleep(0.01)
            assert a.closed

    run(body)


def test_fuzzing_a_listening_server_never_crashes_it() -> None:
    """Random bytes, random handshake-shaped garbage and valid M1s followed by garbage: the server refuses
    each, keeps listening, and then admits a real member."""
    async def body() -> None:
        rng = random.Random(20240601)
        metrics = CountingMetrics()
        admitted: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_peer(conn: SecureConnection) -> None:
            await admitted.put(conn.peer_pubkey)
            await conn.send(b"ok")

        def garbage() -> bytes:
            kind = rng.randrange(5)
            if kind == 0:
                return rng.randbytes(rng.randint(1, 300))
            if kind == 1:
                return (45).to_bytes(4, "big") + rng.randbytes(45)
            if kind == 2:  # a valid M1 from a random key, then garbage where M3 should be
                return ((45).to_bytes(4, "big") + PROTOCOL + rng.randbytes(32)
                        + (112).to_bytes(4, "big") + rng.randbytes(112))
            if kind == 3:
                return rng.randbytes(4) + rng.randbytes(rng.randint(0, 64))
            return b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"

        cfg = ConnConfig(handshake_timeout=0.5)
        async with await serve(LOOPBACK, 0, local(B), on_peer, config=cfg, metrics=metrics) as server:
            async def attack() -> None:
                r, w = await asyncio.open_connection(*server.address)
                try:
                    w.write(garbage())
                    if rng.random() < 0.5:
                        w.write_eof()
                    async with asyncio.timeout(3):
                        while await r.read(4096):  # the server answers M1s, then hangs up
                            pass
                finally:
                    await close_streams(w)

            n = 60
            for batch in range(0, n, 15):
                await asyncio.gather(*(attack() for _ in range(batch, batch + 15)))
            await eventually(lambda: metrics["p2p_handshake_failed"] + metrics["p2p_handshake_timeout"] == n,
                             what="every garbage connection refused")
            conn = await connect(*server.address, local(A))
            try:
                assert await admitted.get() == A.public_key
                assert await conn.recv() == b"ok"
            finally:
                await conn.close()
            assert metrics["p2p_handshake_ok"] == 1

    run(body)


# ------------------------------------------------------------------------------------------------ peer manager


FAST = dict(backoff_initial=0.05, backoff_max=0.5, stable_after=1.0, keepalive_interval=0.1, idle_timeout=2.0,
            handshake_timeout=2.0)


def manager(s: Ed25519Signer, peers: Iterable[str] = (), port: int = 0, seed: int = 0,
            **overrides: object) -> PeerManager:
    settings: dict[str, object] = {**FAST, **overrides}
    cfg = PeerConfig(listen=f"{LOOPBACK}:{port}", peers=tuple(peers), **settings)  # type: ignore[arg-type]
    return PeerManager(local(s), cfg, metrics=CountingMetrics(), rng=random.Random(seed))


def addr(pm: PeerManager) -> str:
    host, port = pm.listen_address
    return f"{host}:{port}"


def counts(pm: PeerManager) -> CountingMetrics:
    assert isinstance(pm.metrics, CountingMetrics)
    return pm.metrics


async def drain_inbound(pm: PeerManager, n: int, timeout: float = 5.0) -> list[tuple[bytes, bytes]]:
    async with asyncio.timeout(timeout):
        return [await pm.recv() for _ in range(n)]


def nid(s: Ed25519Signer) -> bytes:
    return account_id(s.public_key)


def test_three_managers_connect_in_a_full_mesh_and_broadcast() -> None:
    async def body() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(manager(A, seed=1))
            b = await stack.enter_async_context(manager(B, [addr(a)], seed=2))
            c = await stack.enter_async_context(manager(C, [addr(a), addr(b)], seed=3))
            for pm in (a, b, c):
                await pm.wait_for_peers(2, timeout=5)
            assert a.connected() == sorted([nid(B), nid(C)])
            assert c.connected() == sorted([nid(A), nid(B)])
            for pm, s in ((a, A), (b, B), (c, C)):
                assert pm.broadcast(b"hello from " + s.public_key[:4]) == 2
            for pm, s in ((a, A), (b, B), (c, C)):
                got = sorted(await drain_inbound(pm, 2))
                expect = sorted((nid(o), b"hello from " + o.public_key[:4]) for o in (A, B, C) if o is not s)
                assert got == expect
            assert a.send(nid(C), b"direct") and await drain_inbound(c, 1) == [(nid(A), b"direct")]
            assert not a.send(nid(D), b"nobody")
            assert counts(a)["p2p_send_no_peer"] == 1
            assert b.broadcast(b"not to a", exclude=nid(A)) == 1
            assert await drain_inbound(c, 1) == [(nid(B), b"not to a")]
            # the two ends of every link hold the same session; idle links survive on keepalives
            await asyncio.sleep(0.5)
            for x, y, sx, sy in ((a, b, A, B), (a, c, A, C), (b, c, B, C)):
                ix, iy = x.peer(nid(sy)), y.peer(nid(sx))
                assert ix is not None and iy is not None and ix.session_id == iy.session_id
                assert ix.outbound != iy.outbound
            assert all(counts(pm)["p2p_peer_down"] == 0 for pm in (a, b, c))
            with pytest.raises(UsageError):
                a.broadcast(b"")

    run(body)


def test_reconnect_after_a_peer_is_stopped_and_started_again() -> None:
    async def body() -> None:
        async with contextlib.AsyncExitStack() as stack:
            a = await stack.enter_async_context(manager(A, seed=1))
            b = manager(B, [addr(a)], seed=2)
            await b.start()
            try:
                b_port = b.listen_address[1]
                c = await stack.enter_async_context(manager(C, [addr(a), addr(b)], seed=3))
                for pm in (a, b, c):
                    await pm.wait_for_peers(2, timeout=5)
            finally:
                await b.stop()
            await eventually(lambda: not a.is_connected(nid(B)) and not c.is_connected(nid(B)), what="b gone")
            assert a.connected() == [nid(C)]
            b2 = await stack.enter_async_context(manager(B, [addr(a)], port=b_port, seed=4))
            for pm in (a, b2, c):
                await pm.wait_for_peers(2, timeout=5)
            assert c.peer(nid(B)) is not None and c.peer(nid(B)).outbound  # type: ignore[union-attr]
            assert a.send(nid(B), b"welcome back") and c.send(nid(B), b"hi again")
            assert sorted(await drain_inbound(b2, 2)) == sorted([(nid(A), b"welcome back"),
                                                                  (nid(C), b"hi again")])
            assert counts(c)["p2p_dial_failed"] >= 0 and counts(c)["p2p_peer_up"] == 3

    run(body)


async def settled_single_link(x: PeerManager, y: PeerManager, sx: Ed25519Signer, sy: Ed25519Signer) -> None:
    """Wait until x and y hold one link to each other with the same session, and it stays so."""
    def one_link() -> bool:
        ix, iy = x.peer(nid(sy)), y.peer(nid(sx))
        return ix is not None and iy is not None and ix.session_id == iy.session_id
    await eventually(one_link, what="one shared link")
    await asyncio.sleep(0.4)
    assert one_link()
    ix = x.peer(nid(sy))
    assert ix is not None and len(x.connected()) == 1 and len(y.connected()) == 1
    lower_is_x = nid(sx) < nid(sy)
    assert ix.outbound == lower_is_x  # the lower node id's outbound connection is the one kept


def test_duplicate_connections_resolve_to_one() -> None:
    low, high = sorted((A, B), key=nid)

    async def late_dial(dialer: Ed25519Signer, other: Ed25519Signer) -> None:
        # `other` dials `dialer` first; then `dialer` dials too: a duplicate of the opposite direction
        async with contextlib.AsyncExitStack() as stack:
            x = await stack.enter_async_context(manager(dialer, seed=5))
            y = await stack.enter_async_context(manager(other, [addr(x)], seed=6))
            await x.wait_for_peers(1, timeout=5)
            await y.wait_for_peers(1, timeout=5)
            x.dial(addr(y))
            await eventually(lambda: counts(x)["p2p_dial_ok"] >= 1, what="the second dial")
            await settled_single_link(x, y, dialer, other)
            assert counts(x)["p2p_duplicate_closed"] >= 1 or counts(y)["p2p_duplicate_closed"] >= 1
            assert x.send(nid(other), b"ping") and await drain_inbound(y, 1) == [(nid(dialer), b"ping")]

    async def simultaneous() -> None:
        async with contextlib.AsyncExitStack() as stack:
            x, y = manager(A, seed=7), manager(B, seed=8)
            await stack.enter_async_context(x)
            await stack.enter_async_context(y)
            x.dial(addr(y))
            y.dial(addr(x))
            await settled_single_link(x, y, A, B)

    async def body() -> None:
        await late_dial(low, high)  # the lower id dials late: its outbound replaces the inbound
        await late_dial(high, low)  # the higher id dials late: its outbound is refused by both sides
        await simultaneous()

    run(body)


def test_a_slow_peer_gets_its_messages_dropped_and_counted() -> None:
    async def body() -> None:
        async with manager(A, send_queue_size=4, idle_timeout=30.0, write_timeout=None) as pm:
            slow = await connect(*pm.listen_address, local(B))  # a member that never reads
            try:
                await pm.wait_for_peers(1, timeout=5)
                big = bytes(1024 * 1024)
                results = [pm.send(nid(B), big) for _ in range(64)]
                for _ in range(20):  # let the writer push what the socket buffers take
                    await asyncio.sleep(0.01)
                    results += [pm.send(nid(B), big) for _ in range(4)]
                info = pm.peer(nid(B))
                assert info is not None and info.dropped > 0 and info.queued <= 4
                assert results.count(False) == info.dropped == counts(pm)["p2p_msgs_dropped"]
                # the manager itself is not stalled
                assert pm.send(nid(B), b"x") in (True, False)
            finally:
                await slow.close()

    run(body)


def test_manager_refuses_non_members_and_stops_dialing_itself() -> None:
    async def body() -> None:
        async with manager(A) as pm:
            with pytest.raises(Refused):
                await connect(*pm.listen_address, local(EVE, members=MEMBERS | {EVE.public_key}))
            await eventually(lambda: counts(pm)["p2p_refused_non_member"] == 1)
            assert pm.connected() == []
            pm.dial(addr(pm))
            await eventually(lambda: counts(pm)["p2p_self_dial"] == 1, what="the self-dial noticed")
            assert pm.connected() == []

    run(body)


def test_disconnect_non_members_after_a_membership_change() -> None:
    async def body() -> None:
        members = set(MEMBERS)
        la = LocalNode(A, CHAIN, lambda pk: pk in members)
        cfg = PeerConfig(listen=f"{LOOPBACK}:0", **FAST)  # type: ignore[arg-type]
        async with PeerManager(la, cfg) as a, manager(B, []) as b:
            b.dial(addr(a))
            await a.wait_for_peers(1, timeout=5)
            members.discard(B.public_key)
            assert await a.disconnect_non_members() == 1
            assert a.connected() == []

    run(body)


def test_dialing_backs_off_within_bounds_and_connects_once_the_peer_listens() -> None:
    async def body() -> None:
        probe = await asyncio.start_server(lambda r, w: None, LOOPBACK, 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        async with manager(A, [f"{LOOPBACK}:{port}"], backoff_initial=0.05, backoff_max=0.2) as a:
            await asyncio.sleep(1.0)
            failed = counts(a)["p2p_dial_failed"]
            # delays: 0.025-0.05, 0.05-0.1, then 0.1-0.2 each: at least 5, at most ~12 tries in a second
            assert 4 <= failed <= 14, failed
            async with manager(B, port=port) as b:  # the peer comes up on that port
                await a.wait_for_peers(1, timeout=5)
                assert b.connected() == [nid(A)]

    run(body)


def test_idle_peers_are_dropped_while_keepalives_hold_live_links() -> None:
    async def body() -> None:
        quick = dict(keepalive_interval=0.05, idle_timeout=0.4)
        async with manager(A, **quick) as a, manager(B, **quick) as b:  # type: ignore[arg-type]
            b.dial(addr(a))
            await a.wait_for_peers(1, timeout=5)
            mute = await connect(*a.listen_address, local(C))  # a member that never sends, not even keepalives
            try:
                await a.wait_for_peers(2, timeout=5)
                await eventually(lambda: not a.is_connected(nid(C)), what="the silent peer dropped")
                await asyncio.sleep(0.6)  # longer than the idle timeout: the live link stays up
                assert a.connected() == [nid(B)] and counts(a)["p2p_peer_down"] == 1
            finally:
                await mute.close()

    run(body)


def test_peer_addresses_and_config_are_checked() -> None:
    key = B.public_key.hex()
    assert PeerAddress.parse("10.0.0.1:26656") == PeerAddress("10.0.0.1", 26656)
    assert PeerAddress.parse(f"{key}@node1:7") == PeerAddress("node1", 7, B.public_key)
    assert PeerAddress.parse("[::1]:9") == PeerAddress("::1", 9)
    assert str(PeerAddress("::1", 9, B.public_key)) == f"{key}@[::1]:9"
    for bad in ("nohost", ":1", "h:x", "h:70000", "abcd@h:1", "zz@h:1"):
        with pytest.raises(UsageError):
            PeerAddress.parse(bad)
    with pytest.raises(UsageError):
        PeerConfig(keepalive_interval=30, idle_timeout=10)
    with pytest.raises(UsageError):
        ConnConfig(max_frame=0)


def test_public_surface() -> None:
    for name in p2p.__all__:
        assert hasattr(p2p, name), name
    errors = [getattr(p2p, n) for n in p2p.__all__ if isinstance(getattr(p2p, n), type)
              and issubclass(getattr(p2p, n), Exception)]
    assert all(issubclass(e, p2p.P2PError) for e in errors)
    assert issubclass(UsageError, ValueError) and not issubclass(UsageError, p2p.PeerError)
    assert issubclass(HandshakeTimeout, p2p.PeerTimeout) and issubclass(Refused, HandshakeError)
    assert HEADER.size == 4
