"""consensus.crypto: domain separation, canonical signatures, malformed input, account ids, the exact layout
of the signed bytes, and a signer that keeps its seed to itself."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import msgpack
import nacl.bindings
import nacl.exceptions
import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus import crypto
from consensus.crypto import (
    ED25519_L,
    Domain,
    Ed25519Signer,
    account_id,
    require_signature,
    signing_bytes,
    verify,
)
from consensus.errors import SignatureError
from consensus.types import PRECOMMIT, PREVOTE, Tx, Validator, Vote

SETTINGS = settings(max_examples=40, derandomize=True, deadline=None, database=None, print_blob=True)

SEED = bytes([1]) * 32
SIGNER = Ed25519Signer(SEED)
PK = SIGNER.public_key
CHAIN = "mydata-test"
PAYLOAD = b"\x93\x01\x02\x03"


def _with_s(sig: bytes, s: int) -> bytes:
    return sig[:32] + s.to_bytes(32, "little")


# ------------------------------------------------------------------------------------------ basics


def test_known_public_key_and_signature() -> None:
    """RFC 8032 Ed25519 with PyNaCl: our signer is plain Ed25519 over the signing bytes."""
    assert bytes(nacl.signing.SigningKey(SEED).verify_key) == PK
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    assert len(sig) == 64
    assert sig == nacl.signing.SigningKey(SEED).sign(signing_bytes(Domain.TX, CHAIN, PAYLOAD)).signature
    nacl.signing.VerifyKey(PK).verify(signing_bytes(Domain.TX, CHAIN, PAYLOAD), sig)
    assert verify(PK, Domain.TX, CHAIN, PAYLOAD, sig)
    require_signature(PK, Domain.TX, CHAIN, PAYLOAD, sig)


def test_rfc8032_test_vector_1() -> None:
    """RFC 8032 section 7.1, TEST 1 (empty message): the library under us is standard Ed25519."""
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    pk = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
    signer = Ed25519Signer(seed)
    assert signer.public_key == pk
    assert nacl.signing.SigningKey(seed).sign(b"").signature == sig
    assert nacl.bindings.crypto_sign_open(sig, pk) == b""


def test_account_id_is_sha256_of_the_public_key() -> None:
    assert account_id(PK) == hashlib.sha256(PK).digest()
    assert account_id(PK).hex() == hashlib.sha256(PK).hexdigest()
    assert Validator(PK, 1, "v").address == hashlib.sha256(PK).digest()
    vote = Vote.create(SIGNER, CHAIN, PREVOTE, 1, 0, b"", 0)
    assert vote.validator == hashlib.sha256(PK).digest()


@SETTINGS
@given(seed=st.binary(min_size=32, max_size=32))
def test_account_id_property(seed: bytes) -> None:
    pk = Ed25519Signer(seed).public_key
    assert account_id(pk) == hashlib.sha256(pk).digest()


# ------------------------------------------------------------------------------------------ signing bytes


def test_domain_values_are_pinned() -> None:
    assert {d.name: d.value for d in Domain} == {
        "TX": b"mydata/tx/v1",
        "VOTE": b"mydata/vote/v1",
        "PROPOSAL": b"mydata/proposal/v1",
        "REQUEST": b"mydata/request/v1",
        "HANDSHAKE": b"mydata/handshake/v1",
    }
    assert len({d.value for d in Domain}) == len(Domain)


def test_signing_bytes_layout_is_pinned() -> None:
    # u8 len(domain) || domain || u8 len(chain id) || chain id (UTF-8) || payload
    assert signing_bytes(Domain.TX, "mydata-test", b"\x01\x02").hex() == (
        "0c" "6d79646174612f74782f7631"          # 12, "mydata/tx/v1"
        "0b" "6d79646174612d74657374"            # 11, "mydata-test"
        "0102")
    assert signing_bytes(Domain.VOTE, "c", b"").hex() == "0e" + b"mydata/vote/v1".hex() + "01" + "63"
    assert signing_bytes(Domain.PROPOSAL, "x", b"\xff") == b"\x12mydata/proposal/v1\x01x\xff"
    assert signing_bytes(Domain.REQUEST, "x", b"") == b"\x11mydata/request/v1\x01x"
    assert signing_bytes(Domain.HANDSHAKE, "", b"p") == b"\x13mydata/handshake/v1\x00p"
    # the chain id counts in UTF-8 bytes
    assert signing_bytes(Domain.TX, "\u00e9", b"") == b"\x0cmydata/tx/v1\x02\xc3\xa9"


def test_signing_bytes_chain_id_length_limit() -> None:
    assert signing_bytes(Domain.TX, "a" * 255, b"")[13] == 255
    with pytest.raises(ValueError):
        signing_bytes(Domain.TX, "a" * 256, b"")
    with pytest.raises(ValueError):
        signing_bytes(Domain.TX, "\u00e9" * 128, b"")  # 256 bytes


def test_tx_and_vote_sign_the_documented_bytes() -> None:
    body = b"\x91\x01"
    tx = Tx.create(SIGNER, CHAIN, account_id(PK), 7, "consent.grant", body)
    payload = msgpack.packb([account_id(PK), PK, 7, "consent.grant", body], use_bin_type=True)
    assert tx.signing_payload == payload
    nacl.signing.VerifyKey(PK).verify(b"\x0cmydata/tx/v1\x0bmydata-test" + payload, tx.signature)
    vote = Vote.create(SIGNER, CHAIN, PRECOMMIT, 3, 1, bytes(32), 99)
    vpayload = msgpack.packb([PRECOMMIT, 3, 1, bytes(32), 99, account_id(PK)], use_bin_type=True)
    assert vote.signing_payload == vpayload
    nacl.signing.VerifyKey(PK).verify(b"\x0emydata/vote/v1\x0bmydata-test" + vpayload, vote.signature)


def test_request_payload_layout() -> None:
    """The signed API request (docs/api.md): enc([METHOD, path, sha256(body), time_ms, nonce])."""
    nonce = bytes(range(16))
    got = crypto.request_payload("get", "/v1/accounts/ab?x=1", b"{}", 1_700_000_000_000, nonce)
    assert got == msgpack.packb(["GET", "/v1/accounts/ab?x=1", hashlib.sha256(b"{}").digest(),
                                 1_700_000_000_000, nonce], use_bin_type=True)
    assert got[:5] == b"\x95\xa3GET"


_domains = st.sampled_from(list(Domain))
_chains = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)


@SETTINGS
@given(a=st.tuples(_domains, _chains, st.binary(max_size=40)),
       b=st.tuples(_domains, _chains, st.binary(max_size=40)))
def test_signing_bytes_are_injective(a: tuple[Domain, str, bytes], b: tuple[Domain, str, bytes]) -> None:
    if a != b:
        assert signing_bytes(*a) != signing_bytes(*b)


def test_signing_bytes_injective_on_crafted_splits() -> None:
    # moving bytes between chain id and payload, or between domain and chain id, changes the message
    assert signing_bytes(Domain.TX, "ab", b"c") != signing_bytes(Domain.TX, "a", b"bc")
    assert signing_bytes(Domain.TX, "", b"\x00") != signing_bytes(Domain.TX, "\x00", b"")
    seen = {signing_bytes(d, c, p) for d in Domain for c in ("", "a", "ab") for p in (b"", b"b", b"\x01a")}
    assert len(seen) == len(Domain) * 9


# ------------------------------------------------------------------------------------------ domain separation


@pytest.mark.parametrize("signed_as", list(Domain), ids=[d.name for d in Domain])
def test_signature_verifies_only_for_its_domain(signed_as: Domain) -> None:
    sig = SIGNER.sign(signed_as, CHAIN, PAYLOAD)
    for d in Domain:
        assert verify(PK, d, CHAIN, PAYLOAD, sig) == (d is signed_as), (signed_as, d)
        if d is not signed_as:
            with pytest.raises(SignatureError):
                require_signature(PK, d, CHAIN, PAYLOAD, sig)


def test_signature_verifies_only_for_its_chain() -> None:
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    for other in ("mydata-test2", "mydata-tes", "mydata-Test", "", "mydata-test\x00"):
        assert not verify(PK, Domain.TX, other, PAYLOAD, sig)


def test_tx_signature_is_not_a_vote_signature() -> None:
    """Even when the payload bytes are identical, a transaction signature is no vote (and vice versa)."""
    vote = Vote.create(SIGNER, CHAIN, PRECOMMIT, 5, 0, bytes(32), 1)
    tx_sig = SIGNER.sign(Domain.TX, CHAIN, vote.signing_payload)
    forged = dataclasses.replace(vote, signature=tx_sig)
    assert vote.signature_valid(CHAIN, PK)
    assert not forged.signature_valid(CHAIN, PK)
    assert not verify(PK, Domain.TX, CHAIN, vote.signing_payload, vote.signature)


def test_tx_for_another_chain_does_not_verify() -> None:
    tx = Tx.create(SIGNER, CHAIN, account_id(PK), 0, "a.b", b"")
    assert tx.signature_valid()
    moved = dataclasses.replace(tx, chain_id="other-chain")
    assert not moved.signature_valid()
    assert not Vote.create(SIGNER, CHAIN, PREVOTE, 1, 0, b"", 0).signature_valid("other-chain", PK)
    for field, value in (("nonce", 1), ("type", "a.c"), ("body", b"x"), ("sender", bytes(32))):
        assert not dataclasses.replace(tx, **{field: value}).signature_valid(), field


@SETTINGS
@given(chain=_chains, payload=st.binary(max_size=64), other_chain=_chains, d1=_domains, d2=_domains)
def test_domain_and_chain_separation_property(chain: str, payload: bytes, other_chain: str, d1: Domain,
                                              d2: Domain) -> None:
    sig = SIGNER.sign(d1, chain, payload)
    assert verify(PK, d1, chain, payload, sig)
    assert verify(PK, d2, other_chain, payload, sig) == (d1 is d2 and chain == other_chain)


# ------------------------------------------------------------------------------------------ malleability


def test_signature_with_s_plus_l_is_refused_by_us_and_by_libsodium() -> None:
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    s = int.from_bytes(sig[32:], "little")
    assert s < ED25519_L
    bad = _with_s(sig, s + ED25519_L)  # the same point equation holds: S + L = S (mod L)
    assert bad != sig and int.from_bytes(bad[32:], "little") < 2**256
    assert not verify(PK, Domain.TX, CHAIN, PAYLOAD, bad)
    with pytest.raises(SignatureError):
        require_signature(PK, Domain.TX, CHAIN, PAYLOAD, bad)
    message = signing_bytes(Domain.TX, CHAIN, PAYLOAD)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.bindings.crypto_sign_open(bad + message, PK)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(PK).verify(message, bad)


def test_our_s_check_refuses_without_libsodium(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our own S < L check stands even if the library below accepted everything."""
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    s = int.from_bytes(sig[32:], "little")
    monkeypatch.setattr(nacl.bindings, "crypto_sign_open", lambda signed, pk: signed[64:])
    assert verify(PK, Domain.TX, CHAIN, PAYLOAD, sig)  # the permissive stub is in use
    for bad_s in (s + ED25519_L, ED25519_L, 2**256 - 1, 2**253):
        assert not verify(PK, Domain.TX, CHAIN, PAYLOAD, _with_s(sig, bad_s)), hex(bad_s)
    assert verify(PK, Domain.TX, CHAIN, PAYLOAD, _with_s(sig, ED25519_L - 1))  # below L passes our check


def test_s_just_below_l_is_only_refused_as_a_wrong_signature() -> None:
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    assert not verify(PK, Domain.TX, CHAIN, PAYLOAD, _with_s(sig, ED25519_L - 1))


def test_small_order_keys_do_not_verify_everything() -> None:
    """The identity point as key with R = identity, S = 0 'verifies' any message under a naive check."""
    identity = (1).to_bytes(32, "little")
    forged = identity + bytes(32)
    for pk in (identity, bytes(32), b"\xec" + b"\xff" * 30 + b"\x7f"):
        assert not verify(pk, Domain.TX, CHAIN, PAYLOAD, forged)
        assert not verify(pk, Domain.TX, CHAIN, b"", forged)


# ------------------------------------------------------------------------------------------ malformed input


@pytest.mark.parametrize("pk_len", [0, 1, 31, 33, 64])
def test_wrong_length_key_is_false_not_an_exception(pk_len: int) -> None:
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    assert verify((PK * 3)[:pk_len], Domain.TX, CHAIN, PAYLOAD, sig) is False


@pytest.mark.parametrize("sig_len", [0, 1, 32, 63, 65, 128])
def test_wrong_length_signature_is_false_not_an_exception(sig_len: int) -> None:
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    assert verify(PK, Domain.TX, CHAIN, PAYLOAD, (sig * 3)[:sig_len]) is False
    with pytest.raises(SignatureError):
        require_signature(PK, Domain.TX, CHAIN, PAYLOAD, (sig * 3)[:sig_len])


@SETTINGS
@given(pk=st.binary(max_size=70), sig=st.binary(max_size=70), payload=st.binary(max_size=16))
def test_arbitrary_keys_and_signatures_never_raise(pk: bytes, sig: bytes, payload: bytes) -> None:
    assert verify(pk, Domain.VOTE, CHAIN, payload, sig) is False


@SETTINGS
@given(pk=st.binary(min_size=32, max_size=32), sig=st.binary(min_size=64, max_size=64))
def test_random_well_sized_keys_and_signatures_are_false(pk: bytes, sig: bytes) -> None:
    assert verify(pk, Domain.TX, CHAIN, PAYLOAD, sig) is False


def test_every_single_bit_flip_of_a_signature_fails() -> None:
    sig = SIGNER.sign(Domain.VOTE, CHAIN, PAYLOAD)
    for i in range(64 * 8):
        flipped = bytearray(sig)
        flipped[i // 8] ^= 1 << (i % 8)
        assert not verify(PK, Domain.VOTE, CHAIN, PAYLOAD, bytes(flipped)), i


def test_mixed_up_arguments_are_false() -> None:
    sig = SIGNER.sign(Domain.TX, CHAIN, PAYLOAD)
    assert not verify(sig[:32], Domain.TX, CHAIN, PAYLOAD, sig)
    assert not verify(PK, Domain.TX, CHAIN, PAYLOAD + b"\x00", sig)
    assert not verify(Ed25519Signer(bytes([2]) * 32).public_key, Domain.TX, CHAIN, PAYLOAD, sig)


# ------------------------------------------------------------------------------------------ the signer


@pytest.mark.parametrize("seed", [bytes([1]) * 32, bytes(range(32)), bytes.fromhex("a5" * 32)])
def test_signer_repr_does_not_leak_the_seed(seed: bytes) -> None:
    signer = Ed25519Signer(seed)
    secret = bytes(nacl.signing.SigningKey(seed))  # the seed as libsodium keeps it
    for text in (repr(signer), str(signer), f"{signer}", f"{signer!r}", repr([signer]), repr({"k": signer})):
        for s in (seed, secret):
            h = s.hex()
            assert h not in text and h.upper() not in text
            # not even a fragment of 8 bytes, in hex or raw
            assert not any(h[i:i + 16] in text.lower() for i in range(0, len(h) - 15, 2)), text
            assert repr(s)[2:18] not in text
    assert "public_key=" in repr(signer)
    assert not hasattr(signer, "__dict__")  # __slots__: nothing else to dump


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), bytes(64)])
def test_signer_needs_a_32_byte_seed(bad: bytes) -> None:
    with pytest.raises(ValueError):
        Ed25519Signer(bad)


def test_signer_is_a_signer() -> None:
    s: Any = SIGNER
    assert isinstance(s, Ed25519Signer)
    sig = s.sign(Domain.HANDSHAKE, CHAIN, b"transcript")
    assert crypto.verify(s.public_key, Domain.HANDSHAKE, CHAIN, b"transcript", sig)
