"""A data asset as the wallet sees it: salted field commitments, the field root, the encrypted payload.

The chain holds, per asset, only `field_root` and `payload_hash` (DESIGN "Data assets", "Encryption"). This
module makes both from an issuer's record, and opens and checks them on the holder's side. Rules (proposed
for docs/protocol.md):

- FLD-1  A record is a mapping of field name (contracts.records FIELD) to a UTF-8 string value of at most
         MAX_VALUE_BYTES; an issuer writes numbers as decimal strings. 1..MAX_FIELDS fields.
- FLD-2  commitment(salt, name, value) = SHA-256(enc([b"mydata/field/v1", salt, name, value])), `enc` being
         the canonical encoding (consensus.encoding), so salt, name and value are each length-prefixed:
         DESIGN's H(salt || field name || canonical value). `salt` is 16 fresh CSPRNG bytes per field.
- FLD-3  field_root = merkle_root([commitment of every field, in ascending order of field name]) (MRK-1).
         A field's leaf index is its position in that order, which is the order of `Asset.fields`.
- PAY-1  The payload plaintext is enc([schema, [[name, value, salt], ...]]), fields in ascending name order.
- ENV-1  Envelope (assets and disclosure packages alike): a fresh 32-byte key K and a fresh 24-byte nonce N;
         ct = XChaCha20-Poly1305-IETF(K, N, plaintext, associated data = the domain of the content:
         b"mydata/payload/v1" for an asset, b"mydata/package/v1" for a package); K is wrapped to the
         recipient's X25519 public key with a libsodium sealed box (80 bytes);
         blob = enc([1, sealed K, N, ct]).  payload_hash = SHA-256(blob): what the chain records and what
         the vault is addressed by.

A blob carries no signature: anyone can seal something to a holder's key. What makes a payload authentic is
that its hash is the `payload_hash` of an on-chain asset and its fields match the asset's `field_root`;
`open_asset(..., payload_hash=, field_root=)` checks both.

Errors:

    WalletCryptoError
    ├── InvalidRecordError   the caller's record, key or argument is not acceptable (also a ValueError)
    ├── CorruptedBlobError   the blob is not a well-formed envelope, fails authentication, has the wrong
    │                        hash, or its plaintext is malformed
    ├── WrongKeyError        the payload key cannot be unwrapped with this secret key
    └── RootMismatchError    the opened fields do not match the on-chain field root
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import nacl.bindings
import nacl.exceptions
import nacl.public

from consensus.encoding import decode_value, encode_value, sha256
from consensus.errors import DecodeError, ValidationError
from consensus.merkle import merkle_root
from contracts.records import FIELD, SCHEMA_NAME
from contracts.txs import IssueAsset

#: Where the randomness comes from: `rng(n)` returns n fresh bytes. Injectable for deterministic tests only:
#: it draws the salts, the payload key and the nonce, so a repeating source would reuse a key and nonce.
Rng = Callable[[int], bytes]

FIELD_DOMAIN = b"mydata/field/v1"
PAYLOAD_DOMAIN = b"mydata/payload/v1"
ENVELOPE_VERSION = 1

SALT_BYTES = 16
KEY_BYTES = 32
NONCE_BYTES = 24
SEALED_KEY_BYTES = KEY_BYTES + 48  # ephemeral public key (32) + Poly1305 tag (16)
TAG_BYTES = 16
#: The most fields an asset has (the bound of contracts.records.FIELDS).
MAX_FIELDS = 128
#: The longest value of one field, in UTF-8 bytes.
MAX_VALUE_BYTES = 64 * 1024
#: The largest blob (asset or package) this module makes or opens.
MAX_BLOB_BYTES = 16 * 1024 * 1024


class WalletCryptoError(Exception):
    """Base of every error of the wallet's data cryptography: a one-line message, safe to show a user."""


class InvalidRecordError(WalletCryptoError, ValueError):
    """The record, key or argument given to a sealing function is not acceptable."""


class CorruptedBlobError(WalletCryptoError):
    """The blob is not a well-formed envelope, fails authentication, or holds a malformed plaintext."""


class WrongKeyError(WalletCryptoError):
    """The payload key of the blob cannot be unwrapped with the given secret key."""


class RootMismatchError(WalletCryptoError):
    """The fields of a payload do not match the field root recorded on chain."""


# --------------------------------------------------------------------------------------------- fields


def commitment(salt: bytes, name: str, value: str) -> bytes:
    """FLD-2: the salted commitment to one field."""
    return sha256(encode_value([FIELD_DOMAIN, salt, name, value]))


def field_root_of(openings: Mapping[str, tuple[str, bytes]]) -> bytes:
    """FLD-3: the root over the commitments of `openings` (name -> (value, salt)), in ascending name order."""
    return merkle_root(commitments(openings))


def commitments(openings: Mapping[str, tuple[str, bytes]]) -> list[bytes]:
    """The commitments of `openings` (name -> (value, salt)), in ascending name order: the Merkle leaves."""
    return [commitment(openings[n][1], n, openings[n][0]) for n in sorted(openings)]


def check_field_name(name: object) -> str:
    try:
        return FIELD.check(name, "field name")
    except DecodeError as e:
        raise InvalidRecordError(str(e)) from None


def check_value(value: object, name: str) -> str:
    if type(value) is not str:
        raise InvalidRecordError(f"field {name!r}: the value must be a string, not {type(value).__name__}")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidRecordError(f"field {name!r}: the value is not valid Unicode text") from None
    if n > MAX_VALUE_BYTES:
        raise InvalidRecordError(f"field {name!r}: the value has {n} bytes, more than {MAX_VALUE_BYTES}")
    return value


def random_bytes(rng: Rng, n: int) -> bytes:
    out = rng(n)
    if type(out) is not bytes or len(out) != n:
        raise InvalidRecordError(f"the random source returned something other than {n} bytes")
    return out


# --------------------------------------------------------------------------------------------- envelope


def check_public_key(pk: object, what: str = "recipient encryption key") -> bytes:
    if type(pk) is not bytes or len(pk) != 32:
        raise InvalidRecordError(f"the {what} must be 32 bytes (an X25519 public key)")
    return pk


def seal_envelope(plaintext: bytes, recipient_enc_pk: bytes, domain: bytes, rng: Rng = os.urandom) -> bytes:
    """ENV-1: encrypt `plaintext` to `recipient_enc_pk`; the result is the blob."""
    check_public_key(recipient_enc_pk)
    key = random_bytes(rng, KEY_BYTES)
    nonce = random_bytes(rng, NONCE_BYTES)
    ct = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, domain, nonce, key)
    try:
        sealed = nacl.public.SealedBox(nacl.public.PublicKey(recipient_enc_pk)).encrypt(key)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise InvalidRecordError("the recipient encryption key is not a usable X25519 public key") from None
    blob = encode_value([ENVELOPE_VERSION, bytes(sealed), nonce, ct])
    if len(blob) > MAX_BLOB_BYTES:
        raise InvalidRecordError(f"the encrypted blob would have {len(blob)} bytes, "
                                 f"more than {MAX_BLOB_BYTES}")
    return blob


def open_envelope(blob: bytes, enc_secret: bytes | Sequence[bytes], domain: bytes, *,
                  expected_hash: bytes | None = None) -> bytes:
    """ENV-1: the plaintext of `blob`, opened with `enc_secret` or, given several X25519 secret keys (every
    generation of a rotated identity), with whichever the blob is sealed to. Raises CorruptedBlobError or
    WrongKeyError, nothing else."""
    secrets = [enc_secret] if isinstance(enc_secret, bytes) else list(enc_secret)
    if not secrets or any(type(k) is not bytes or len(k) != 32 for k in secrets):
        raise WrongKeyError("a secret key must be 32 bytes (an X25519 secret key)")
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise CorruptedBlobError(f"the blob must be bytes, not {type(blob).__name__}")
    blob = bytes(blob)
    if expected_hash is not None and sha256(blob) != expected_hash:
        raise CorruptedBlobError("the blob does not have the expected hash")
    try:
        value = decode_value(blob, max_bytes=MAX_BLOB_BYTES)
    except DecodeError as e:
        raise CorruptedBlobError(f"the blob is not a valid envelope: {e}") from None
    if type(value) is not tuple or len(value) != 4:
        raise CorruptedBlobError("the blob is not a valid envelope: expected an array of 4 items")
    version, sealed, nonce, ct = value
    if version != ENVELOPE_VERSION:
        raise CorruptedBlobError(f"the blob has envelope version {version!r}; this wallet reads version 1")
    if type(sealed) is not bytes or len(sealed) != SEALED_KEY_BYTES:
        raise CorruptedBlobError(f"the blob's wrapped key must be {SEALED_KEY_BYTES} bytes")
    if type(nonce) is not bytes or len(nonce) != NONCE_BYTES:
        raise CorruptedBlobError(f"the blob's nonce must be {NONCE_BYTES} bytes")
    if type(ct) is not bytes or len(ct) < TAG_BYTES:
        raise CorruptedBlobError("the blob's ciphertext is shorter than its authentication tag")
    key = _unwrap(sealed, secrets)
    if len(key) != KEY_BYTES:
        raise CorruptedBlobError(f"the wrapped payload key is not {KEY_BYTES} bytes")
    try:
        return bytes(nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, domain, nonce, key))
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise CorruptedBlobError("the blob's ciphertext fails authentication (corrupted, or not this "
                                 "kind of content)") from None


def _unwrap(sealed: bytes, secrets: list[bytes]) -> bytes:
    for secret in secrets:
        try:
            return bytes(nacl.public.SealedBox(nacl.public.PrivateKey(secret)).decrypt(sealed))
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            continue
    raise WrongKeyError("cannot unwrap the payload key: the blob is not encrypted to this key, "
                        "or its wrapped key is corrupted")


# --------------------------------------------------------------------------------------------- assets


class FieldOpening(NamedTuple):
    """A field's value and salt: what opens its commitment."""

    value: str
    salt: bytes

    def __repr__(self) -> str:  # never show personal data or salts in logs
        return f"FieldOpening(<{len(self.value.encode('utf-8'))} bytes>, salt=<hidden>)"


@dataclass(frozen=True, repr=False)
class AssetPayload:
    """The plaintext of an asset blob: its schema and every field's (value, salt)."""

    schema: str
    fields: Mapping[str, FieldOpening]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.fields))

    @property
    def record(self) -> dict[str, str]:
        """The record: name -> value, in ascending name order."""
        return {n: self.fields[n].value for n in sorted(self.fields)}

    def commitments(self) -> list[bytes]:
        return commitments(self.fields)

    def field_root(self) -> bytes:
        return field_root_of(self.fields)

    def __repr__(self) -> str:
        return f"AssetPayload(schema={self.schema!r}, fields={list(self.names)!r})"


@dataclass(frozen=True, repr=False)
class SealedAsset:
    """What an issuer gets from `seal_asset`: the blob for the vault, and what goes on chain."""

    blob: bytes
    payload_hash: bytes
    field_root: bytes
    fields: tuple[str, ...]
    salts: Mapping[str, bytes]

    def issue_body(self, holder: bytes, schema: str, *, supersedes: bytes = b"",
                   answers: bytes = b"") -> IssueAsset:
        """The `asset.issue` transaction body for this asset."""
        return IssueAsset(holder, schema, self.fields, self.field_root, self.payload_hash, supersedes,
                          answers)

    def __repr__(self) -> str:
        return (f"SealedAsset(payload_hash={self.payload_hash.hex()}, field_root={self.field_root.hex()}, "
                f"fields={list(self.fields)!r}, blob=<{len(self.blob)} bytes>)")


def seal_asset(schema: str, record: Mapping[str, str], holder_enc_pk: bytes,
               rng: Rng = os.urandom) -> SealedAsset:
    """Commit to every field of `record` with a fresh salt, and encrypt the payload to the holder (FLD, PAY,
    ENV rules). Raises InvalidRecordError on a bad schema name, field name, value or key."""
    try:
        SCHEMA_NAME.check(schema, "schema")
    except DecodeError as e:
        raise InvalidRecordError(str(e)) from None
    if not isinstance(record, Mapping):
        raise InvalidRecordError(f"the record must be a mapping of field name to value, "
                                 f"not {type(record).__name__}")
    if not 1 <= len(record) <= MAX_FIELDS:
        raise InvalidRecordError(f"a record has 1 to {MAX_FIELDS} fields, this one has {len(record)}")
    check_public_key(holder_enc_pk, "holder's encryption key")
    names = sorted(check_field_name(n) for n in record)
    openings: dict[str, FieldOpening] = {}
    for name in names:
        openings[name] = FieldOpening(check_value(record[name], name), random_bytes(rng, SALT_BYTES))
    plaintext = encode_value([schema, [[n, o.value, o.salt] for n, o in openings.items()]])
    blob = seal_envelope(plaintext, holder_enc_pk, PAYLOAD_DOMAIN, rng)
    return SealedAsset(blob, sha256(blob), field_root_of(openings), tuple(names),
                       {n: o.salt for n, o in openings.items()})


def decode_payload(plaintext: bytes) -> AssetPayload:
    """PAY-1: the payload of a plaintext, every bound checked. Raises CorruptedBlobError."""
    try:
        value = decode_value(plaintext, max_bytes=MAX_BLOB_BYTES)
        if type(value) is not tuple or len(value) != 2:
            raise ValidationError("expected [schema, fields]")
        schema, items = value
        SCHEMA_NAME.check(schema, "schema")
        if type(items) is not tuple or not 1 <= len(items) <= MAX_FIELDS:
            raise ValidationError(f"expected 1 to {MAX_FIELDS} fields")
        fields: dict[str, FieldOpening] = {}
        prev = ""
        for item in items:
            if type(item) is not tuple or len(item) != 3:
                raise ValidationError("expected [name, value, salt] for every field")
            name = FIELD.check(item[0], "field name")
            val, salt = item[1], item[2]
            if not prev < name:
                raise ValidationError("field names must be unique and in ascending order")
            prev = name
            val = check_value(val, name)
            if type(salt) is not bytes or len(salt) != SALT_BYTES:
                raise ValidationError(f"field {name!r}: the salt must be {SALT_BYTES} bytes")
            fields[name] = FieldOpening(val, salt)
    except (DecodeError, ValidationError, InvalidRecordError) as e:
        raise CorruptedBlobError(f"the payload is malformed: {e}") from None
    assert type(schema) is str
    return AssetPayload(schema, fields)


def open_asset(blob: bytes, enc_secret: bytes | Sequence[bytes], *, payload_hash: bytes | None = None,
               field_root: bytes | None = None) -> AssetPayload:
    """Decrypt an asset blob with the holder's X25519 secret key (or keys, see `open_envelope`). With
    `payload_hash` and `field_root` (from the on-chain asset) also check that the blob is that asset's.
    Raises a WalletCryptoError, nothing else."""
    payload = decode_payload(open_envelope(blob, enc_secret, PAYLOAD_DOMAIN, expected_hash=payload_hash))
    if field_root is not None:
        require_asset_payload(payload, field_root)
    return payload


def verify_asset_payload(payload: AssetPayload, field_root: bytes) -> bool:
    """True if the payload's fields are exactly those committed to by `field_root`."""
    return type(field_root) is bytes and len(field_root) == 32 and payload.field_root() == field_root


def require_asset_payload(payload: AssetPayload, field_root: bytes) -> None:
    """Like `verify_asset_payload`, but raise RootMismatchError."""
    if not verify_asset_payload(payload, field_root):
        raise RootMismatchError("the payload's fields do not match the asset's on-chain field root")
