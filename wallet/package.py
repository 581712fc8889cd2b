"""Selective-disclosure packages: what a holder's wallet gives a grantee, and how the grantee checks it.

A grant (DESIGN "Consent") names assets and fields; its `package_hash` is the hash of a package that holds,
for each asset, only the granted fields, each with its salt and a Merkle inclusion proof against the asset's
on-chain `field_root`. The grantee gets the package from the vault after its access transaction commits
(DESIGN "Access"), and checks every field against the chain. Rules (proposed for docs/protocol.md):

- PKG-1  plaintext = enc([b"mydata/package/v1", [asset, ...]]), assets in ascending id order, where
         asset = [asset_id (32 bytes), n_fields, [field, ...]], n_fields being the number of leaves of the
         asset's field tree (= len(Asset.fields)), and field = [name, value, salt, index, [hash, ...]], fields
         in ascending name order: `index` is the field's position in the asset's sorted field list and the
         hashes are its audit path (consensus.merkle.inclusion_proof over the asset's commitments, FLD-3).
- PKG-2  blob = the ENV-1 envelope of the plaintext to the grantee's X25519 key, associated data
         b"mydata/package/v1"; package_hash = SHA-256(blob).
- PKG-3  A package reveals the disclosed fields and nothing else of the assets: the audit paths are hashes
         of salted commitments (or of subtrees of them), and n_fields is already public on chain.
- PKG-4  A grantee accepts a package only if every disclosed field's commitment verifies against its asset's
         on-chain field root, the package holds exactly the grant's assets, and every asset holds exactly the
         grant's fields that asset has (with the asset's on-chain field list: also its true n_fields and
         indexes).

Errors: `DisclosureError` (a WalletCryptoError) for a package that does not verify; opening raises the
errors of wallet.assetdata (CorruptedBlobError, WrongKeyError).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from consensus.encoding import decode_value, encode_value, sha256
from consensus.errors import DecodeError, ValidationError
from consensus.merkle import inclusion_proof, verify_inclusion
from wallet.assetdata import (
    MAX_BLOB_BYTES,
    MAX_FIELDS,
    SALT_BYTES,
    AssetPayload,
    CorruptedBlobError,
    InvalidRecordError,
    Rng,
    WalletCryptoError,
    check_field_name,
    check_public_key,
    check_value,
    commitment,
    open_envelope,
    seal_envelope,
)

PACKAGE_DOMAIN = b"mydata/package/v1"
#: The most assets one package (one grant) covers: the bound of contracts.records.IDS.
MAX_ASSETS = 64
#: The longest audit path of a tree of MAX_FIELDS leaves.
MAX_PROOF_HASHES = (MAX_FIELDS - 1).bit_length()


class DisclosureError(WalletCryptoError):
    """A disclosure package does not verify against the chain or does not match its grant (PKG-4)."""


def short(asset_id: bytes) -> str:
    return asset_id.hex()[:16]


class DisclosedField(NamedTuple):
    """One disclosed field: its value, the salt that opens its commitment, its leaf index and audit path."""

    value: str
    salt: bytes
    leaf_index: int
    proof: tuple[bytes, ...]

    def __repr__(self) -> str:  # never show personal data or salts in logs
        return f"DisclosedField(<{len(self.value.encode('utf-8'))} bytes>, leaf_index={self.leaf_index})"


@dataclass(frozen=True, repr=False)
class DisclosedAsset:
    asset_id: bytes
    n_fields: int
    fields: Mapping[str, DisclosedField]

    def __repr__(self) -> str:
        return (f"DisclosedAsset({short(self.asset_id)}, n_fields={self.n_fields}, "
                f"fields={sorted(self.fields)!r})")


@dataclass(frozen=True, repr=False)
class Disclosure:
    """An opened package: asset id -> what it discloses, in ascending id order. Not yet verified."""

    assets: Mapping[bytes, DisclosedAsset]

    def __repr__(self) -> str:
        return f"Disclosure({list(self.assets.values())!r})"


@dataclass(frozen=True, repr=False)
class Package:
    """A sealed package: the blob for the vault and its hash for the grant (PKG-2)."""

    blob: bytes
    package_hash: bytes

    def __repr__(self) -> str:
        return f"Package(package_hash={self.package_hash.hex()}, blob=<{len(self.blob)} bytes>)"


PackageItem = tuple[bytes, AssetPayload, Collection[str]]


def build_package(grantee_enc_pk: bytes, items: Sequence[PackageItem], rng: Rng = os.urandom) -> Package:
    """PKG-1, PKG-2: disclose, of each (asset id, payload, field names), the named fields to the grantee.

    The caller should have checked each payload against its asset's on-chain field root
    (`wallet.assetdata.verify_asset_payload`): a package is only as good as the payloads it is made from.
    Raises InvalidRecordError on a bad asset id, a duplicate asset, or a field the payload does not have."""
    check_public_key(grantee_enc_pk, "grantee's encryption key")
    if not 1 <= len(items) <= MAX_ASSETS:
        raise InvalidRecordError(f"a package covers 1 to {MAX_ASSETS} assets, not {len(items)}")
    assets: dict[bytes, list[object]] = {}
    for asset_id, payload, disclosed in items:
        if type(asset_id) is not bytes or len(asset_id) != 32:
            raise InvalidRecordError("an asset id must be 32 bytes")
        if asset_id in assets:
            raise InvalidRecordError(f"asset {short(asset_id)} appears twice in the package")
        if isinstance(disclosed, str | bytes):
            raise InvalidRecordError("the disclosed fields must be a collection of field names, "
                                     "not one string")
        names = sorted(payload.fields)
        position = {n: i for i, n in enumerate(names)}
        leaves = payload.commitments()
        fields: list[object] = []
        for name in sorted({check_field_name(n) for n in disclosed}):
            if name not in position:
                raise InvalidRecordError(f"asset {short(asset_id)} has no field {name!r}")
            value, salt = payload.fields[name]
            i = position[name]
            fields.append([name, value, salt, i, inclusion_proof(leaves, i)])
        assets[asset_id] = [asset_id, len(names), fields]
    plaintext = encode_value([PACKAGE_DOMAIN, [assets[a] for a in sorted(assets)]])
    blob = seal_envelope(plaintext, grantee_enc_pk, PACKAGE_DOMAIN, rng)
    return Package(blob, sha256(blob))


def decode_disclosure(plaintext: bytes) -> Disclosure:
    """PKG-1: the disclosure of a package plaintext, every bound checked. Raises CorruptedBlobError."""
    try:
        value = decode_value(plaintext, max_bytes=MAX_BLOB_BYTES)
        if type(value) is not tuple or len(value) != 2 or value[0] != PACKAGE_DOMAIN:
            raise ValidationError("expected [b'mydata/package/v1', assets]")
        items = value[1]
        if type(items) is not tuple or not 1 <= len(items) <= MAX_ASSETS:
            raise ValidationError(f"expected 1 to {MAX_ASSETS} assets")
        assets: dict[bytes, DisclosedAsset] = {}
        prev_id = b""
        for item in items:
            a = _decode_asset(item)
            if not prev_id < a.asset_id:
                raise ValidationError("asset ids must be unique and in ascending order")
            prev_id = a.asset_id
            assets[a.asset_id] = a
    except (DecodeError, ValidationError, InvalidRecordError) as e:
        raise CorruptedBlobError(f"the package is malformed: {e}") from None
    return Disclosure(assets)


def _decode_asset(item: object) -> DisclosedAsset:
    if type(item) is not tuple or len(item) != 3:
        raise ValidationError("expected [asset id, n_fields, fields] for every asset")
    asset_id, n_fields, items = item
    if type(asset_id) is not bytes or len(asset_id) != 32:
        raise ValidationError("an asset id must be 32 bytes")
    where = f"asset {short(asset_id)}"
    if type(n_fields) is not int or not 1 <= n_fields <= MAX_FIELDS:
        raise ValidationError(f"{where}: the number of fields must be in 1..{MAX_FIELDS}")
    if type(items) is not tuple or len(items) > n_fields:
        raise ValidationError(f"{where}: expected at most {n_fields} disclosed fields")
    fields: dict[str, DisclosedField] = {}
    prev_name, prev_index = "", -1
    for f in items:
        if type(f) is not tuple or len(f) != 5:
            raise ValidationError(f"{where}: expected [name, value, salt, index, proof] for every field")
        name, value, salt, index, proof = f
        name = check_field_name(name)
        value = check_value(value, name)
        if not prev_name < name:
            raise ValidationError(f"{where}: field names must be unique and in ascending order")
        if type(salt) is not bytes or len(salt) != SALT_BYTES:
            raise ValidationError(f"{where}: field {name!r}: the salt must be {SALT_BYTES} bytes")
        if type(index) is not int or not prev_index < index < n_fields:
            raise ValidationError(f"{where}: field {name!r}: the leaf index must be ascending and "
                                  f"below {n_fields}")
        if (type(proof) is not tuple or len(proof) > MAX_PROOF_HASHES
                or any(type(h) is not bytes or len(h) != 32 for h in proof)):
            raise ValidationError(f"{where}: field {name!r}: the proof must be at most {MAX_PROOF_HASHES} "
                                  "hashes of 32 bytes")
        prev_name, prev_index = name, index
        fields[name] = DisclosedField(value, salt, index, proof)
    return DisclosedAsset(asset_id, n_fields, fields)


def open_package(blob: bytes, enc_secret: bytes | Sequence[bytes], *,
                 package_hash: bytes | None = None) -> Disclosure:
    """Decrypt a package with the grantee's X25519 secret key (or keys); with `package_hash` (the grant's)
    also check the blob is the grant's. Raises a WalletCryptoError, nothing else. The result is not
    verified yet: pass it to `verify_disclosure`."""
    return decode_disclosure(open_envelope(blob, enc_secret, PACKAGE_DOMAIN, expected_hash=package_hash))


def verify_disclosure(disclosure: Disclosure, field_roots: Mapping[bytes, bytes],
                      expected_fields: Collection[str] | Mapping[bytes, Collection[str]], *,
                      asset_fields: Mapping[bytes, Sequence[str]] | None = None,
                      ) -> dict[bytes, dict[str, str]]:
    """PKG-4: check a disclosure against the chain and its grant; return asset id -> {name: value}.

    `field_roots` maps every asset of the grant to its on-chain field root. `expected_fields` is either the
    grant's field list, or asset id -> the fields expected of that asset. With the grant's list, give
    `asset_fields` (asset id -> the on-chain `Asset.fields`) whenever you can: then each asset must disclose
    exactly the grant's fields it has, with its true size and leaf indexes; without it, each asset may
    disclose only granted fields and every granted field must be disclosed by some asset.
    Raises DisclosureError naming the asset and the field."""
    if isinstance(expected_fields, str | bytes):
        raise TypeError("expected_fields is a collection of field names or a mapping, not one string")
    for aid in disclosure.assets:
        if aid not in field_roots:
            raise DisclosureError(f"asset {short(aid)} is in the package but not in the grant")
    for aid in field_roots:
        if aid not in disclosure.assets:
            raise DisclosureError(f"asset {short(aid)} of the grant is missing from the package")
    granted: set[str] = set() if isinstance(expected_fields, Mapping) else set(expected_fields)
    out: dict[bytes, dict[str, str]] = {}
    seen: set[str] = set()
    for aid, asset in disclosure.assets.items():
        where = f"asset {short(aid)}"
        chain_fields: list[str] | None = None
        if asset_fields is not None:
            if aid not in asset_fields:
                raise DisclosureError(f"{where}: its on-chain field list was not given")
            chain_fields = sorted(asset_fields[aid])
            if asset.n_fields != len(chain_fields):
                raise DisclosureError(f"{where}: the package says {asset.n_fields} fields, the chain "
                                      f"{len(chain_fields)}")
        expected: set[str] | None
        if isinstance(expected_fields, Mapping):
            expected = set(expected_fields.get(aid, ()))
        elif chain_fields is not None:
            expected = granted & set(chain_fields)
        else:
            expected = None
        disclosed = set(asset.fields)
        missing = sorted(expected - disclosed) if expected is not None else []
        if missing:
            raise DisclosureError(f"{where}: field {missing[0]!r} of the grant is missing from the package")
        extra = sorted(disclosed - (expected if expected is not None else granted))
        if extra:
            raise DisclosureError(f"{where}: field {extra[0]!r} is in the package but not in the grant")
        root = field_roots[aid]
        if type(root) is not bytes or len(root) != 32:
            raise DisclosureError(f"{where}: its field root must be 32 bytes")
        values: dict[str, str] = {}
        for name, f in asset.fields.items():
            if chain_fields is not None and (f.leaf_index >= len(chain_fields)
                                           or chain_fields[f.leaf_index] != name):
                raise DisclosureError(f"{where}: field {name!r} has the wrong leaf index {f.leaf_index}")
            leaf = commitment(f.salt, name, f.value)
            if not verify_inclusion(leaf, f.leaf_index, asset.n_fields, f.proof, root):
                raise DisclosureError(f"{where}: field {name!r} does not match the asset's on-chain "
                                      "field root")
            values[name] = f.value
        seen |= disclosed
        out[aid] = values
    undisclosed = sorted(granted - seen)
    if undisclosed:
        raise DisclosureError(f"field {undisclosed[0]!r} of the grant is disclosed by no asset")
    return out
