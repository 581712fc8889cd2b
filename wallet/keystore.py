"""An encrypted keystore: a directory of named identities, their secrets sealed under a passphrase.

An identity is an account (id = SHA-256 of the Ed25519 public key it was registered with, fixed for life)
and its current key generation: an Ed25519 signing seed and an X25519 secret key, 32 bytes each. Rotating
(`account.rotate_keys`) makes a new generation; the older ones stay in the file, because assets sealed to an
old X25519 key can only be opened with it, and because until the rotation transaction commits the chain
still knows the old signing key (`WalletIdentity.signer_for`, `enc_secret_for`). Rules (proposed for
docs/wallet.md):

- KST-1  One file per identity, `<name>.key`, name matching NAME_RE; mode 0600 in a directory created 0700;
         written atomically (temporary file, fsync, rename, fsync of the directory); `create` never replaces
         an existing file. The file is UTF-8 JSON, bytes as lowercase hex:

             {"version": 1, "name", "account_id", "sign_pk", "enc_pk",
              "previous": [{"sign_pk", "enc_pk"}, ...]          older generations, oldest first
              "meta": {"role", "chain_id", "node_url"}          strings or null
              "kdf": {"name": "argon2id", "version": 19, "time_cost", "memory_cost" (KiB), "parallelism"},
              "salt" (16 bytes), "cipher": "xchacha20poly1305-ietf", "nonce" (24 bytes), "ciphertext"}

- KST-2  key = Argon2id(passphrase, salt, the file's kdf parameters, 32 bytes); a str passphrase is taken in
         Unicode NFC, UTF-8 encoded, so the same words typed on two systems give the same key.
- KST-3  ciphertext = XChaCha20-Poly1305-IETF(key, nonce, secrets, associated data = header), where
             header  = enc([b"mydata/keystore/v1", version, name, account_id, sign_pk, enc_pk,
                            [[sign_pk, enc_pk], ...], [role], [chain_id], [node_url],
                            ["argon2id", 19, time_cost, memory_cost, parallelism], salt,
                            "xchacha20poly1305-ietf"])     (an absent meta value is [], a present one [s])
             secrets = enc([b"mydata/keystore-secrets/v1", sign_seed, enc_secret, [[seed, secret], ...]])
         so no header field can be changed, and no file swapped for another's, without the load failing.
         A fresh salt and nonce are drawn on every write.
- KST-4  Loading checks that the decrypted secrets give the header's public keys.

`list`, `info` and `export_public` read only the header and need no passphrase; they cannot tell a tampered
header from a genuine one (only `load` can). Errors are `KeystoreError`, one line, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import argon2.exceptions
import nacl.bindings
import nacl.exceptions
import nacl.public

from consensus.crypto import Ed25519Signer, account_id
from consensus.encoding import decode_value, encode_value
from consensus.errors import DecodeError

FILE_VERSION = 1
HEADER_DOMAIN = b"mydata/keystore/v1"
SECRETS_DOMAIN = b"mydata/keystore-secrets/v1"
CIPHER = "xchacha20poly1305-ietf"
KDF_NAME = "argon2id"
ARGON2_VERSION = 19  # 0x13, the current (and only supported) Argon2 version

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
SALT_BYTES = 16
NONCE_BYTES = 24
#: The largest key file this module reads.
MAX_FILE_BYTES = 1024 * 1024
#: The most key generations (current included) one identity keeps.
MAX_GENERATIONS = 256
WRONG_PASSPHRASE = "wrong passphrase or corrupted key file"
META_KEYS = ("role", "chain_id", "node_url")
_META_MAX = {"role": 64, "chain_id": 255, "node_url": 2048}


class KeystoreError(Exception):
    """Any failure of the keystore: a one-line message, safe to show a user."""


# --------------------------------------------------------------------------------------------- kdf


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters; stored in every file, so they can change without breaking old files."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024  # KiB
    parallelism: int = 1

    #: Bounds on what a file may ask for, so a hostile file cannot make `load` allocate without limit.
    MAX_TIME_COST = 64
    MAX_MEMORY_KIB = 1024 * 1024

    def __post_init__(self) -> None:
        for v in (self.time_cost, self.memory_cost, self.parallelism):
            if type(v) is not int:
                raise KeystoreError("the kdf parameters must be integers")
        if not 1 <= self.parallelism <= 16:
            raise KeystoreError("kdf parallelism must be in 1..16")
        if not 1 <= self.time_cost <= self.MAX_TIME_COST:
            raise KeystoreError(f"kdf time_cost must be in 1..{self.MAX_TIME_COST}")
        if not 8 * self.parallelism <= self.memory_cost <= self.MAX_MEMORY_KIB:
            raise KeystoreError(f"kdf memory_cost must be in {8 * self.parallelism}..{self.MAX_MEMORY_KIB} "
                                "KiB")

    def derive(self, passphrase: bytes, salt: bytes) -> bytes:
        from argon2.low_level import Type, hash_secret_raw

        try:
            return hash_secret_raw(passphrase, salt, time_cost=self.time_cost, memory_cost=self.memory_cost,
                                   parallelism=self.parallelism, hash_len=32, type=Type.ID,
                                   version=ARGON2_VERSION)
        except argon2.exceptions.HashingError as e:
            raise KeystoreError(f"key derivation failed: {e}") from None

    def to_json(self) -> dict[str, Any]:
        return {"name": KDF_NAME, "version": ARGON2_VERSION, "time_cost": self.time_cost,
                "memory_cost": self.memory_cost, "parallelism": self.parallelism}

    def to_value(self) -> list[Any]:
        return [KDF_NAME, ARGON2_VERSION, self.time_cost, self.memory_cost, self.parallelism]

    @classmethod
    def from_json(cls, obj: object) -> KdfParams:
        if not isinstance(obj, dict) or set(obj) != {"name", "version", "time_cost", "memory_cost",
                                                      "parallelism"}:
            raise KeystoreError("corrupted key file: bad kdf parameters")
        if obj["name"] != KDF_NAME or obj["version"] != ARGON2_VERSION:
            raise KeystoreError(f"unsupported kdf {obj['name']!r} version {obj['version']!r}")
        return cls(obj["time_cost"], obj["memory_cost"], obj["parallelism"])


#: The production parameters (time_cost=3, memory_cost=64 MiB, parallelism=1).
DEFAULT_KDF = KdfParams()
#: Deliberately weak parameters, for tests only: a key file written with them is easy to brute-force.
TEST_KDF = KdfParams(time_cost=1, memory_cost=8, parallelism=1)


# --------------------------------------------------------------------------------------------- public info


@dataclass(frozen=True, repr=False)
class KeyInfo:
    """The public header of one key file: everything but the secrets."""

    name: str
    account_id: bytes
    sign_pk: bytes
    enc_pk: bytes
    previous: tuple[tuple[bytes, bytes], ...] = ()  # (sign_pk, enc_pk) of older generations, oldest first
    role: str | None = None
    chain_id: str | None = None
    node_url: str | None = None
    kdf: KdfParams = field(default=DEFAULT_KDF)

    @property
    def rotations(self) -> int:
        return len(self.previous)

    def __repr__(self) -> str:
        return (f"KeyInfo(name={self.name!r}, account_id={self.account_id.hex()}, "
                f"sign_pk={self.sign_pk.hex()}, enc_pk={self.enc_pk.hex()}, rotations={self.rotations}, "
                f"role={self.role!r}, chain_id={self.chain_id!r}, node_url={self.node_url!r})")

    def to_json(self) -> dict[str, Any]:
        """Public information, JSON-ready (bytes as lowercase hex)."""
        return {"name": self.name, "account_id": self.account_id.hex(), "sign_pk": self.sign_pk.hex(),
                "enc_pk": self.enc_pk.hex(), "role": self.role, "chain_id": self.chain_id,
                "node_url": self.node_url, "rotations": self.rotations}


@dataclass(frozen=True)
class _KeyFile:
    info: KeyInfo
    salt: bytes
    nonce: bytes
    ciphertext: bytes

    def header(self) -> bytes:
        i = self.info
        return encode_value([
            HEADER_DOMAIN, FILE_VERSION, i.name, i.account_id, i.sign_pk, i.enc_pk,
            [[s, e] for s, e in i.previous],
            *([] if v is None else [v] for v in (i.role, i.chain_id, i.node_url)),
            i.kdf.to_value(), self.salt, CIPHER,
        ])

    def to_json(self) -> dict[str, Any]:
        i = self.info
        return {
            "version": FILE_VERSION, "name": i.name, "account_id": i.account_id.hex(),
            "sign_pk": i.sign_pk.hex(), "enc_pk": i.enc_pk.hex(),
            "previous": [{"sign_pk": s.hex(), "enc_pk": e.hex()} for s, e in i.previous],
            "meta": {"role": i.role, "chain_id": i.chain_id, "node_url": i.node_url},
            "kdf": i.kdf.to_json(), "salt": self.salt.hex(), "cipher": CIPHER, "nonce": self.nonce.hex(),
            "ciphertext": self.ciphertext.hex(),
        }

    @classmethod
    def parse(cls, data: bytes) -> _KeyFile:
        def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
            d = dict(pairs)
            if len(d) != len(pairs):
                raise KeystoreError("corrupted key file: a key appears twice")
            return d

        try:
            obj = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise KeystoreError("corrupted key file: not valid JSON") from None
        keys = {"version", "name", "account_id", "sign_pk", "enc_pk", "previous", "meta", "kdf", "salt",
                "cipher", "nonce", "ciphertext"}
        if not isinstance(obj, dict):
            raise KeystoreError("corrupted key file: not a JSON object")
        if obj.get("version") != FILE_VERSION:
            raise KeystoreError(f"unsupported key file version {obj.get('version')!r}")
        if set(obj) != keys:
            raise KeystoreError(f"corrupted key file: expected the fields {sorted(keys)}")
        if obj["cipher"] != CIPHER:
            raise KeystoreError(f"unsupported cipher {obj['cipher']!r}")
        name = obj["name"]
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise KeystoreError("corrupted key file: bad name")
        prev = obj["previous"]
        if not isinstance(prev, list) or len(prev) >= MAX_GENERATIONS:
            raise KeystoreError("corrupted key file: bad list of previous keys")
        previous = []
        for p in prev:
            if not isinstance(p, dict) or set(p) != {"sign_pk", "enc_pk"}:
                raise KeystoreError("corrupted key file: bad list of previous keys")
            previous.append((_hex(p["sign_pk"], 32, "previous sign_pk"),
                             _hex(p["enc_pk"], 32, "previous enc_pk")))
        meta = obj["meta"]
        if not isinstance(meta, dict) or set(meta) != set(META_KEYS):
            raise KeystoreError(f"corrupted key file: meta must have the fields {list(META_KEYS)}")
        checked = {k: _check_meta(k, meta[k]) for k in META_KEYS}
        if any(checked[k] != meta[k] for k in META_KEYS):
            raise KeystoreError("corrupted key file: bad meta")
        info = KeyInfo(name, _hex(obj["account_id"], 32, "account_id"), _hex(obj["sign_pk"], 32, "sign_pk"),
                       _hex(obj["enc_pk"], 32, "enc_pk"), tuple(previous), checked["role"],
                       checked["chain_id"], checked["node_url"], KdfParams.from_json(obj["kdf"]))
        ct = _hex(obj["ciphertext"], None, "ciphertext")
        return cls(info, _hex(obj["salt"], SALT_BYTES, "salt"), _hex(obj["nonce"], NONCE_BYTES, "nonce"), ct)


def _hex(v: object, n: int | None, what: str) -> bytes:
    if not isinstance(v, str):
        raise KeystoreError(f"corrupted key file: {what} is not a hex string")
    try:
        b = bytes.fromhex(v)
    except ValueError:
        raise KeystoreError(f"corrupted key file: {what} is not valid hex") from None
    if b.hex() != v or (n is not None and len(b) != n):
        raise KeystoreError(f"corrupted key file: {what} must be {n} bytes of lowercase hex")
    return b


def _check_meta(key: str, v: object) -> str | None:
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise KeystoreError(f"{key} must be a string")
    if len(v.encode("utf-8", "surrogatepass")) > _META_MAX[key] or not v.isprintable():
        raise KeystoreError(f"{key} must be printable text of at most {_META_MAX[key]} bytes")
    return v


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise KeystoreError(f"invalid identity name {name!r}: use 1-64 of a-z 0-9 _ . - "
                            "starting with a letter or digit")
    return name


def _passphrase_bytes(passphrase: str | bytes) -> bytes:
    if isinstance(passphrase, bytes):
        return passphrase
    if isinstance(passphrase, str):
        try:
            return unicodedata.normalize("NFC", passphrase).encode("utf-8")
        except UnicodeEncodeError:
            raise KeystoreError("the passphrase is not valid Unicode text") from None
    raise KeystoreError("the passphrase must be a string")


# --------------------------------------------------------------------------------------------- identity


def _enc_public(enc_secret: bytes) -> bytes:
    return bytes(nacl.public.PrivateKey(enc_secret).public_key)


def derive_enc_secret(seed: bytes) -> bytes:
    """The X25519 secret key `create(seed=...)` pairs with a given signing seed when none is given: the same
    derivation as wallet.devchain.Identity, so a dev identity imported by its seed has the same keys."""
    return hashlib.sha256(b"enc" + seed).digest()


class KeyGeneration:
    """One generation of an identity's keys (the current one, or one replaced by a rotation)."""

    __slots__ = ("_enc_secret", "_seed", "enc_pk", "signer")

    def __init__(self, seed: bytes, enc_secret: bytes) -> None:
        self.signer = Ed25519Signer(seed)
        self._seed = seed
        self._enc_secret = enc_secret
        self.enc_pk = _enc_public(enc_secret)

    @property
    def sign_pk(self) -> bytes:
        return self.signer.public_key

    @property
    def enc_secret(self) -> bytes:
        return self._enc_secret

    def __repr__(self) -> str:
        return f"KeyGeneration(sign_pk={self.sign_pk.hex()}, enc_pk={self.enc_pk.hex()})"


class WalletIdentity:
    """A loaded identity: its account, its current keys and the generations before them. Its repr and str
    show public keys only; the secrets are reachable only through `signer` and `enc_secret`."""

    __slots__ = ("_current", "_previous", "info")

    def __init__(self, info: KeyInfo, current: KeyGeneration, previous: tuple[KeyGeneration, ...]) -> None:
        self.info = info
        self._current = current
        self._previous = previous

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def account_id(self) -> bytes:
        return self.info.account_id

    @property
    def signer(self) -> Ed25519Signer:
        return self._current.signer

    @property
    def sign_pk(self) -> bytes:
        return self._current.sign_pk

    @property
    def enc_pk(self) -> bytes:
        return self._current.enc_pk

    @property
    def enc_secret(self) -> bytes:
        return self._current.enc_secret

    @property
    def generations(self) -> tuple[KeyGeneration, ...]:
        """Every key generation, newest (the current one) first."""
        return (self._current, *reversed(self._previous))

    @property
    def enc_secrets(self) -> tuple[bytes, ...]:
        """The X25519 secret key of every generation, newest first: what opens a blob sealed before a
        rotation (`wallet.assetdata.open_asset` takes them all)."""
        return tuple(g.enc_secret for g in self.generations)

    def signer_for(self, sign_pk: bytes) -> Ed25519Signer | None:
        """The signer of the generation whose public key is `sign_pk` (e.g. the one the chain knows)."""
        return next((g.signer for g in self.generations if g.sign_pk == sign_pk), None)

    def enc_secret_for(self, enc_pk: bytes) -> bytes | None:
        """The X25519 secret key of the generation whose public key is `enc_pk`."""
        return next((g.enc_secret for g in self.generations if g.enc_pk == enc_pk), None)

    def __repr__(self) -> str:
        return (f"WalletIdentity(name={self.name!r}, account_id={self.account_id.hex()}, "
                f"sign_pk={self.sign_pk.hex()}, enc_pk={self.enc_pk.hex()})")

    __str__ = __repr__


# --------------------------------------------------------------------------------------------- keystore


class Keystore:
    """A directory of key files (KST-1..4). Safe for concurrent use by several processes: every
    read-modify-write holds an exclusive lock on the directory."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Keystore({str(self.path)!r})"

    def file_of(self, name: str) -> Path:
        return self.path / f"{_check_name(name)}.key"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and NAME_RE.match(name) is not None and self.file_of(name).exists()

    # ---- public information ----------------------------------------------------------------------

    def list(self) -> list[KeyInfo]:
        """The public information of every identity, by name. A file that cannot be read raises."""
        if not self.path.is_dir():
            return []
        out = []
        for p in sorted(self.path.iterdir()):
            if p.suffix == ".key" and NAME_RE.match(p.stem) and p.is_file():
                out.append(self.info(p.stem))
        return out

    def info(self, name: str) -> KeyInfo:
        """The public header of one identity (not authenticated: only `load` detects tampering)."""
        return self._read(name).info

    def export_public(self, name: str) -> dict[str, Any]:
        """What others may know of an identity, JSON-ready: name, account id, public keys, metadata."""
        return self.info(name).to_json()

    # ---- secrets ---------------------------------------------------------------------------------

    def load(self, name: str, passphrase: str | bytes) -> WalletIdentity:
        """Decrypt an identity. A wrong passphrase or a tampered file raises KeystoreError."""
        kf = self._read(name)
        return self._open(kf, passphrase)

    def create(self, name: str, passphrase: str | bytes, *, seed: bytes | None = None,
               enc_secret: bytes | None = None, role: str | None = None, chain_id: str | None = None,
               node_url: str | None = None, kdf: KdfParams = DEFAULT_KDF) -> WalletIdentity:
        """A new identity with fresh keys (or from `seed`; then the X25519 key is `enc_secret`, or derived
        from the seed by `derive_enc_secret`). Its account id is the hash of its signing key. Refuses to
        replace an existing identity."""
        if seed is None:
            seed = os.urandom(32)
            enc_secret = os.urandom(32) if enc_secret is None else enc_secret
        return self.import_seed(name, passphrase, seed, enc_secret=enc_secret, role=role, chain_id=chain_id,
                                node_url=node_url, kdf=kdf)

    def import_seed(self, name: str, passphrase: str | bytes, seed: bytes, *, enc_secret: bytes | None = None,
                    account: bytes | None = None, role: str | None = None, chain_id: str | None = None,
                    node_url: str | None = None, kdf: KdfParams = DEFAULT_KDF) -> WalletIdentity:
        """Store existing keys under `name`. `account` is the account id when the keys are not the ones the
        account was registered with (an already rotated account); by default, the hash of the signing key."""
        _check_name(name)
        pw = _passphrase_bytes(passphrase)
        if not pw:
            raise KeystoreError("the passphrase must not be empty")
        gen = self._generation(seed, derive_enc_secret(seed) if enc_secret is None else enc_secret)
        if account is not None and (type(account) is not bytes or len(account) != 32):
            raise KeystoreError("an account id must be 32 bytes")
        info = KeyInfo(name, account or account_id(gen.sign_pk), gen.sign_pk, gen.enc_pk, (),
                       _check_meta("role", role), _check_meta("chain_id", chain_id),
                       _check_meta("node_url", node_url), kdf)
        with self._locked():
            self._write(self._seal(info, gen, (), pw), exclusive=True)
        return WalletIdentity(info, gen, ())

    def rotate(self, name: str, passphrase: str | bytes, *, seed: bytes | None = None,
               enc_secret: bytes | None = None) -> tuple[WalletIdentity, WalletIdentity]:
        """Replace the keys of an identity, keeping its account id and its older keys; returns (old, new).

        Sign the `account.rotate_keys` transaction (new.sign_pk, new.enc_pk) with `old.signer`. Until it
        commits, the chain still knows the old keys: `new.signer_for(chain's sign_pk)` finds them."""
        with self._locked():
            kf = self._read(name)
            old = self._open(kf, passphrase)
            if len(old.generations) >= MAX_GENERATIONS:
                raise KeystoreError(f"identity {name!r} has been rotated too often")
            if seed is None:
                seed = os.urandom(32)
                enc_secret = os.urandom(32) if enc_secret is None else enc_secret
            gen = self._generation(seed, derive_enc_secret(seed) if enc_secret is None else enc_secret)
            if any(g.sign_pk == gen.sign_pk or g.enc_pk == gen.enc_pk for g in old.generations):
                raise KeystoreError("the new keys must differ from every earlier key of the identity")
            previous = (*reversed(old.generations),)
            info = KeyInfo(kf.info.name, kf.info.account_id, gen.sign_pk, gen.enc_pk,
                           tuple((g.sign_pk, g.enc_pk) for g in previous), kf.info.role, kf.info.chain_id,
                           kf.info.node_url, kf.info.kdf)
            self._write(self._seal(info, gen, previous, _passphrase_bytes(passphrase)), exclusive=False)
        return old, WalletIdentity(info, gen, previous)

    def change_passphrase(self, name: str, passphrase: str | bytes, new_passphrase: str | bytes, *,
                          kdf: KdfParams | None = None) -> None:
        """Re-encrypt an identity under a new passphrase (and, if given, new kdf parameters)."""
        pw = _passphrase_bytes(new_passphrase)
        if not pw:
            raise KeystoreError("the passphrase must not be empty")
        with self._locked():
            kf = self._read(name)
            ident = self._open(kf, passphrase)
            info = kf.info if kdf is None else _replace(kf.info, kdf=kdf)
            self._write(self._seal(info, ident._current, ident._previous, pw), exclusive=False)

    def update_meta(self, name: str, passphrase: str | bytes, **changes: str | None) -> KeyInfo:
        """Change metadata (role, chain_id, node_url; None or "" removes one). The metadata is authenticated,
        so this needs the passphrase."""
        unknown = sorted(set(changes) - set(META_KEYS))
        if unknown:
            raise KeystoreError(f"unknown metadata {unknown}; known: {list(META_KEYS)}")
        checked = {k: _check_meta(k, v) for k, v in changes.items()}
        with self._locked():
            kf = self._read(name)
            ident = self._open(kf, passphrase)
            info = _replace(kf.info, **checked)
            self._write(self._seal(info, ident._current, ident._previous, _passphrase_bytes(passphrase)),
                        exclusive=False)
        return info

    # ---- internals -------------------------------------------------------------------------------

    @staticmethod
    def _generation(seed: object, enc_secret: object) -> KeyGeneration:
        if type(seed) is not bytes or len(seed) != 32:
            raise KeystoreError("a signing seed must be 32 bytes")
        if type(enc_secret) is not bytes or len(enc_secret) != 32:
            raise KeystoreError("an X25519 secret key must be 32 bytes")
        return KeyGeneration(seed, enc_secret)

    @staticmethod
    def _seal(info: KeyInfo, current: KeyGeneration, previous: tuple[KeyGeneration, ...],
              passphrase: bytes) -> _KeyFile:
        salt, nonce = os.urandom(SALT_BYTES), os.urandom(NONCE_BYTES)
        key = info.kdf.derive(passphrase, salt)
        secrets = encode_value([SECRETS_DOMAIN, current._seed, current.enc_secret,
                                [[g._seed, g.enc_secret] for g in previous]])
        kf = _KeyFile(info, salt, nonce, b"")
        ct = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(secrets, kf.header(), nonce, key)
        return _KeyFile(info, salt, nonce, ct)

    @staticmethod
    def _open(kf: _KeyFile, passphrase: str | bytes) -> WalletIdentity:
        key = kf.info.kdf.derive(_passphrase_bytes(passphrase), kf.salt)
        try:
            secrets = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(kf.ciphertext, kf.header(),
                                                                                kf.nonce, key)
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise KeystoreError(WRONG_PASSPHRASE) from None
        try:
            v = decode_value(secrets)
            if (type(v) is not tuple or len(v) != 4 or v[0] != SECRETS_DOMAIN or type(v[3]) is not tuple
                    or len(v[3]) != len(kf.info.previous)
                    or any(type(p) is not tuple or len(p) != 2 for p in v[3])):
                raise DecodeError("bad structure")
            current = Keystore._generation(v[1], v[2])
            previous = tuple(Keystore._generation(p[0], p[1]) for p in v[3])  # type: ignore[index]
        except (DecodeError, KeystoreError):
            raise KeystoreError("corrupted key file: the secrets are malformed") from None
        i = kf.info
        if (current.sign_pk, current.enc_pk) != (i.sign_pk, i.enc_pk) or any(
                (g.sign_pk, g.enc_pk) != p for g, p in zip(previous, i.previous, strict=True)):
            raise KeystoreError("corrupted key file: the secrets do not match the public keys")
        return WalletIdentity(i, current, previous)

    def _read(self, name: str) -> _KeyFile:
        path = self.file_of(name)
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise KeystoreError(f"no identity named {name!r} in {self.path}") from None
        except OSError as e:
            raise KeystoreError(f"cannot read {path}: {e.strerror}") from None
        if len(data) > MAX_FILE_BYTES:
            raise KeystoreError(f"{path.name}: larger than {MAX_FILE_BYTES} bytes")
        try:
            kf = _KeyFile.parse(data)
        except KeystoreError as e:
            raise KeystoreError(f"{path.name}: {e}") from None
        if kf.info.name != name:
            raise KeystoreError(f"{path.name}: the file is for {kf.info.name!r}, not {name!r}")
        return kf

    def _ensure_dir(self) -> None:
        if not self.path.is_dir():
            try:
                self.path.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                if not self.path.is_dir():
                    raise KeystoreError(f"{self.path} exists and is not a directory") from None
                return
            os.chmod(self.path, 0o700)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self._ensure_dir()
            fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as e:
            raise KeystoreError(f"cannot open the keystore {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, kf: _KeyFile, *, exclusive: bool) -> None:
        """Atomically write a key file: temporary file (0600), fsync, rename or link, fsync the directory."""
        path = self.file_of(kf.info.name)
        data = (json.dumps(kf.to_json(), indent=2) + "\n").encode("utf-8")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.path)
        except OSError as e:
            raise KeystoreError(f"cannot write to {self.path}: {e.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if exclusive:
                try:
                    os.link(tmp, path)  # fails if the name exists: never replaces an identity
                except FileExistsError:
                    raise KeystoreError(f"an identity named {kf.info.name!r} already exists") from None
                except OSError:  # no hard links here: the directory lock keeps check-then-rename safe
                    if path.exists():
                        raise KeystoreError(f"an identity named {kf.info.name!r} already exists") from None
                    os.replace(tmp, path)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            else:
                os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise KeystoreError(f"cannot write {path}: {e.strerror}") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _replace(info: KeyInfo, **changes: Any) -> KeyInfo:
    return dataclasses.replace(info, **changes)
