"""Hashing, Ed25519 signing and account ids.

Every signature is over `signing_bytes(domain, chain_id, payload)` (docs/protocol.md, rule SIG-1):

    u8 len(domain) || domain || u8 len(chain_id) || chain_id (UTF-8) || payload

so a signature made for one structure or one chain never verifies for another. The domains are the
constants below. Verification rejects malformed keys and signatures, and non-canonical signatures whose
scalar S is not below the group order L (SIG-2), before libsodium (which rejects them too) is asked.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Protocol

import nacl.bindings
import nacl.exceptions
import nacl.signing

from consensus.encoding import encode_value
from consensus.errors import SignatureError

#: The order of the Ed25519 base point: a signature's S must be below it.
ED25519_L = 2**252 + 27742317777372353535851937790883648493


class Domain(Enum):
    """What a signature is for. The value is the byte string mixed into the signed message."""

    TX = b"mydata/tx/v1"
    VOTE = b"mydata/vote/v1"
    PROPOSAL = b"mydata/proposal/v1"
    REQUEST = b"mydata/request/v1"
    HANDSHAKE = b"mydata/handshake/v1"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def account_id(pubkey: bytes) -> bytes:
    """An account is identified by the SHA-256 of the Ed25519 public key it was registered with."""
    return hashlib.sha256(pubkey).digest()


def signing_bytes(domain: Domain, chain_id: str, payload: bytes) -> bytes:
    d = domain.value
    c = chain_id.encode("utf-8")
    if len(c) > 255:
        raise ValueError("chain id longer than 255 bytes")
    return bytes((len(d),)) + d + bytes((len(c),)) + c + payload


class Signer(Protocol):
    """Anything that can sign: a key in memory, a keystore entry, a hardware module."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes: ...


class Ed25519Signer:
    """An Ed25519 key held in memory, made from a 32-byte seed (the caller supplies the randomness)."""

    __slots__ = ("_key", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed has 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        self.public_key: bytes = bytes(self._key.verify_key)

    def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes:
        return self._key.sign(signing_bytes(domain, chain_id, payload)).signature

    def __repr__(self) -> str:  # never show the seed
        return f"Ed25519Signer(public_key={self.public_key.hex()[:16]}...)"


def verify(pubkey: bytes, domain: Domain, chain_id: str, payload: bytes, signature: bytes) -> bool:
    """True if `signature` is a valid, canonical Ed25519 signature of the domain-separated payload."""
    if len(pubkey) != 32 or len(signature) != 64:
        return False
    if int.from_bytes(signature[32:], "little") >= ED25519_L:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + signing_bytes(domain, chain_id, payload), pubkey)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError, TypeError):
        return False
    return True


def require_signature(pubkey: bytes, domain: Domain, chain_id: str, payload: bytes, signature: bytes) -> None:
    """Like `verify`, but raise SignatureError naming the domain."""
    if not verify(pubkey, domain, chain_id, payload, signature):
        raise SignatureError(f"invalid {domain.name.lower()} signature")


def request_payload(method: str, path: str, body: bytes, time_ms: int, nonce: bytes) -> bytes:
    """What a signed API request signs (with Domain.REQUEST and the chain id), docs/api.md:
    the canonical array [method, path with query, SHA-256 of the body, time in ms, nonce]."""
    return encode_value([method.upper(), path, hashlib.sha256(body).digest(), time_ms, nonce])
