"""Issuing a data asset (wallet.assetdata): salted field commitments against an independent computation, the
field root, the encrypted payload envelope, determinism under an injected random source, and refusal of every
wrong key, corrupted byte and malformed input with a WalletCryptoError."""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Callable

import msgpack
import nacl.public
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from consensus.merkle import merkle_root
from contracts.txs import IssueAsset
from wallet.assetdata import (
    MAX_FIELDS,
    MAX_VALUE_BYTES,
    PAYLOAD_DOMAIN,
    AssetPayload,
    CorruptedBlobError,
    FieldOpening,
    InvalidRecordError,
    RootMismatchError,
    WalletCryptoError,
    WrongKeyError,
    commitment,
    open_asset,
    open_envelope,
    seal_asset,
    seal_envelope,
    verify_asset_payload,
)

RECORD = {"name": "李伟", "monthly_wage": "12000", "months_paid": "84", "city": "Weihai"}
SCHEMA = "social_security.payment"


def keypair(label: str) -> tuple[bytes, bytes]:
    k = nacl.public.PrivateKey(hashlib.sha256(label.encode()).digest())
    return bytes(k), bytes(k.public_key)


HOLDER_SK, HOLDER_PK = keypair("holder")
OTHER_SK, OTHER_PK = keypair("other")


def det_rng(label: str) -> random.Random:
    return random.Random(label)


def rng_of(label: str) -> Callable[[int], bytes]:
    return det_rng(label).randbytes


def ref_commitment(salt: bytes, name: str, value: str) -> bytes:
    """FLD-2 written out with plain msgpack, not consensus.encoding."""
    return hashlib.sha256(msgpack.packb([b"mydata/field/v1", salt, name, value], use_bin_type=True)).digest()


# ------------------------------------------------------------------------------------------- commitments


def test_commitment_bytes_are_length_prefixed_fields() -> None:
    salt = bytes(range(16))
    # fixarray(4), bin8(15) domain, bin8(16) salt, fixstr(4) name, fixstr(6) value (UTF-8)
    pre = b"\x94\xc4\x0fmydata/field/v1\xc4\x10" + salt + b"\xa4name" + b"\xa6\xe6\x9d\x8e\xe4\xbc\x9f"
    assert commitment(salt, "name", "李伟") == hashlib.sha256(pre).digest()
    assert commitment(salt, "name", "李伟") == ref_commitment(salt, "name", "李伟")
    # the field name is committed too: the same value under another name is another commitment
    assert commitment(salt, "name", "x") != commitment(salt, "namf", "x")
    # no ambiguity between where the name ends and the value begins
    assert commitment(salt, "ab", "c") != commitment(salt, "a", "bc")


def test_round_trip_and_root_from_definition() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    assert s.fields == tuple(sorted(RECORD))
    assert s.payload_hash == hashlib.sha256(s.blob).digest()
    assert set(s.salts) == set(RECORD) and all(len(x) == 16 for x in s.salts.values())
    assert len(set(s.salts.values())) == len(RECORD)
    leaves = [ref_commitment(s.salts[n], n, RECORD[n]) for n in sorted(RECORD)]
    assert s.field_root == merkle_root(leaves)

    p = open_asset(s.blob, HOLDER_SK, payload_hash=s.payload_hash, field_root=s.field_root)
    assert p.schema == SCHEMA
    assert p.record == RECORD
    assert p.names == s.fields
    assert {n: o.salt for n, o in p.fields.items()} == s.salts
    assert p.fields["name"] == ("李伟", s.salts["name"])  # (value, salt)
    assert verify_asset_payload(p, s.field_root)
    assert p.field_root() == s.field_root


def test_payload_plaintext_format() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    plain = open_envelope(s.blob, HOLDER_SK, PAYLOAD_DOMAIN)
    expect = [SCHEMA, [[n, RECORD[n], s.salts[n]] for n in sorted(RECORD)]]
    assert plain == msgpack.packb(expect, use_bin_type=True)
    version, sealed, nonce, ct = msgpack.unpackb(s.blob, raw=False)
    assert (version, len(sealed), len(nonce), len(ct)) == (1, 80, 24, len(plain) + 16)


def test_issue_body_is_a_valid_transaction_body() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    body = s.issue_body(b"\x01" * 32, SCHEMA)
    assert isinstance(body, IssueAsset)
    assert IssueAsset.decode(body.encode()) == body
    assert (body.fields, body.field_root, body.payload_hash) == (s.fields, s.field_root, s.payload_hash)


def test_fresh_salts_hide_equal_records() -> None:
    a, b = seal_asset(SCHEMA, RECORD, HOLDER_PK), seal_asset(SCHEMA, RECORD, HOLDER_PK)
    assert a.field_root != b.field_root and a.payload_hash != b.payload_hash
    assert not set(a.salts.values()) & set(b.salts.values())


def test_deterministic_with_injected_rng() -> None:
    a = seal_asset(SCHEMA, RECORD, HOLDER_PK, rng=rng_of("r1"))
    b = seal_asset(SCHEMA, RECORD, HOLDER_PK, rng=rng_of("r1"))
    c = seal_asset(SCHEMA, RECORD, HOLDER_PK, rng=rng_of("r2"))
    assert a.salts == b.salts and a.field_root == b.field_root
    assert c.field_root != a.field_root
    # salts are drawn first, one per field in name order, then the payload key and the nonce
    r = det_rng("r1")
    assert [a.salts[n] for n in sorted(RECORD)] == [r.randbytes(16) for _ in RECORD]
    _, sealed_a, nonce_a, ct_a = msgpack.unpackb(a.blob)
    _, sealed_b, nonce_b, ct_b = msgpack.unpackb(b.blob)
    assert (nonce_a, ct_a) == (nonce_b, ct_b)  # the sealed box's ephemeral key is libsodium's own
    assert sealed_a != sealed_b


def test_repr_shows_no_values_or_salts() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    p = open_asset(s.blob, HOLDER_SK)
    for text in (repr(s), str(s), repr(p), str(p), repr(p.fields), repr(list(p.fields.values()))):
        assert "12000" not in text and "李伟" not in text and "Weihai" not in text
        for salt in s.salts.values():
            assert salt.hex() not in text and repr(salt) not in text


# ------------------------------------------------------------------------------------------- refusals


def test_wrong_key_is_refused() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    with pytest.raises(WrongKeyError, match="not encrypted to this key"):
        open_asset(s.blob, OTHER_SK)
    with pytest.raises(WrongKeyError):
        open_asset(s.blob, HOLDER_SK[:31])


def test_several_keys_open_a_blob_sealed_to_any_of_them() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    assert open_asset(s.blob, [OTHER_SK, HOLDER_SK]).record == RECORD
    with pytest.raises(WrongKeyError):
        open_asset(s.blob, [OTHER_SK])
    with pytest.raises(WrongKeyError):
        open_asset(s.blob, [])


def test_hash_and_root_are_checked() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    other = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    with pytest.raises(CorruptedBlobError, match="expected hash"):
        open_asset(s.blob, HOLDER_SK, payload_hash=other.payload_hash)
    with pytest.raises(RootMismatchError, match="field root"):
        open_asset(s.blob, HOLDER_SK, field_root=other.field_root)
    p = open_asset(s.blob, HOLDER_SK)
    assert not verify_asset_payload(p, other.field_root)
    assert not verify_asset_payload(p, s.field_root[:31])


def _tampered_payloads(p: AssetPayload) -> list[AssetPayload]:
    f = dict(p.fields)
    first = sorted(f)[0]
    v, salt = f[first]
    out = [
        AssetPayload(p.schema, {**f, first: FieldOpening(v + "0", salt)}),
        AssetPayload(p.schema, {**f, first: FieldOpening(v, bytes([salt[0] ^ 1]) + salt[1:])}),
        AssetPayload(p.schema, {**f, "zz_extra": FieldOpening("1", bytes(16))}),
        AssetPayload(p.schema, {k: o for k, o in f.items() if k != first}),
    ]
    names = sorted(f)
    if len(names) > 1 and f[names[0]].value != f[names[1]].value:  # two values swapped between fields
        a, b = names[0], names[1]
        out.append(AssetPayload(p.schema, {**f, a: FieldOpening(f[b].value, f[a].salt),
                                           b: FieldOpening(f[a].value, f[b].salt)}))
    return out


def test_any_changed_field_breaks_the_root() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    p = open_asset(s.blob, HOLDER_SK)
    for bad in _tampered_payloads(p):
        assert not verify_asset_payload(bad, s.field_root)


def test_every_flipped_byte_is_refused() -> None:
    r = random.Random(20250101)
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    for i in range(len(s.blob)):
        bad = bytearray(s.blob)
        bad[i] ^= r.randrange(1, 256)
        with pytest.raises(WalletCryptoError):
            open_asset(bytes(bad), HOLDER_SK)
    for cut in (s.blob[:-1], s.blob + b"\x00", b"", b"\x90", s.blob[:40]):
        with pytest.raises(CorruptedBlobError):
            open_asset(cut, HOLDER_SK)
    with pytest.raises(CorruptedBlobError):
        open_asset("not bytes", HOLDER_SK)  # type: ignore[arg-type]


def test_envelope_version_and_domain_are_checked() -> None:
    s = seal_asset(SCHEMA, RECORD, HOLDER_PK)
    _, sealed, nonce, ct = msgpack.unpackb(s.blob)
    v2 = msgpack.packb([2, sealed, nonce, ct], use_bin_type=True)
    with pytest.raises(CorruptedBlobError, match="version"):
        open_asset(v2, HOLDER_SK)
    # the same envelope sealed under another domain (a disclosure package) does not open as an asset
    pkg = seal_envelope(msgpack.packb([SCHEMA, []]), HOLDER_PK, b"mydata/package/v1")
    with pytest.raises(CorruptedBlobError, match="authentication"):
        open_asset(pkg, HOLDER_SK)


@pytest.mark.parametrize("plain", [
    [SCHEMA],
    [SCHEMA, []],
    ["Bad Schema", [["a", "1", bytes(16)]]],
    [SCHEMA, [["b", "1", bytes(16)], ["a", "1", bytes(16)]]],  # not in order
    [SCHEMA, [["a", "1", bytes(16)], ["a", "2", bytes(16)]]],  # duplicate
    [SCHEMA, [["a", "1", bytes(15)]]],  # short salt
    [SCHEMA, [["a", 1, bytes(16)]]],  # an integer value
    [SCHEMA, [["A", "1", bytes(16)]]],  # a bad name
    [SCHEMA, [["a", "1", bytes(16), b""]]],
    [SCHEMA, [["a", "x" * (MAX_VALUE_BYTES + 1), bytes(16)]]],
    [SCHEMA, [[f"f{i:03d}", "1", bytes(16)] for i in range(MAX_FIELDS + 1)]],
])
def test_malformed_plaintext_in_a_valid_envelope_is_refused(plain: list[object]) -> None:
    blob = seal_envelope(msgpack.packb(plain, use_bin_type=True), HOLDER_PK, PAYLOAD_DOMAIN)
    with pytest.raises(CorruptedBlobError, match="malformed"):
        open_asset(blob, HOLDER_SK)


@pytest.mark.parametrize(("schema", "record", "pk"), [
    ("Bad", RECORD, HOLDER_PK),
    (SCHEMA, {}, HOLDER_PK),
    (SCHEMA, {"Name": "x"}, HOLDER_PK),
    (SCHEMA, {"1st": "x"}, HOLDER_PK),
    (SCHEMA, {"a" * 49: "x"}, HOLDER_PK),
    (SCHEMA, {"wage": 12000}, HOLDER_PK),
    (SCHEMA, {"wage": "\ud800"}, HOLDER_PK),
    (SCHEMA, {"wage": "x" * (MAX_VALUE_BYTES + 1)}, HOLDER_PK),
    (SCHEMA, {f"f{i:03d}": "1" for i in range(MAX_FIELDS + 1)}, HOLDER_PK),
    (SCHEMA, [("a", "b")], HOLDER_PK),
    (SCHEMA, RECORD, HOLDER_PK[:31]),
    (SCHEMA, RECORD, bytes(32)),  # a low-order point: libsodium refuses to seal to it
])
def test_bad_input_is_refused_when_sealing(schema: str, record: object, pk: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        seal_asset(schema, record, pk)  # type: ignore[arg-type]


def test_a_broken_rng_is_refused() -> None:
    with pytest.raises(InvalidRecordError, match="random source"):
        seal_asset(SCHEMA, RECORD, HOLDER_PK, rng=lambda n: bytes(n - 1))


def test_limits_are_accepted() -> None:
    record = {f"f{i:03d}": "x" * 100 for i in range(MAX_FIELDS)}
    record["f000"] = "y" * MAX_VALUE_BYTES
    s = seal_asset(SCHEMA, record, HOLDER_PK)
    assert open_asset(s.blob, HOLDER_SK, field_root=s.field_root).record == record
    assert seal_asset(SCHEMA, {"a": ""}, HOLDER_PK).fields == ("a",)


# ------------------------------------------------------------------------------------------- properties

FIELD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,47}", fullmatch=True)
VALUES = st.text(st.characters(exclude_categories=["Cs"]), max_size=40) | st.integers(0, 10**18).map(str)
RECORDS = st.dictionaries(FIELD_NAMES, VALUES, min_size=1, max_size=24)
SCHEMAS = st.from_regex(r"[a-z][a-z0-9_]{0,20}(\.[a-z][a-z0-9_]{0,20})?", fullmatch=True)


@seed(5150)
@settings(max_examples=150, deadline=None)
@given(schema=SCHEMAS, record=RECORDS, rng_seed=st.integers(0, 2**32))
def test_property_round_trip(schema: str, record: dict[str, str], rng_seed: int) -> None:
    s = seal_asset(schema, record, HOLDER_PK, rng=random.Random(rng_seed).randbytes)
    assert s.field_root == merkle_root([ref_commitment(s.salts[n], n, record[n]) for n in sorted(record)])
    p = open_asset(s.blob, HOLDER_SK, payload_hash=s.payload_hash, field_root=s.field_root)
    assert p.schema == schema and p.record == dict(sorted(record.items()))
    for bad in _tampered_payloads(p):
        assert not verify_asset_payload(bad, s.field_root)


@seed(6502)
@settings(max_examples=200, deadline=None)
@given(record=RECORDS, data=st.data())
def test_property_any_corruption_raises_only_wallet_errors(record: dict[str, str],
                                                           data: st.DataObject) -> None:
    blob = bytearray(seal_asset(SCHEMA, record, HOLDER_PK).blob)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(WalletCryptoError):
        open_asset(bytes(blob), HOLDER_SK)


@seed(1789)
@settings(max_examples=100, deadline=None)
@given(junk=st.binary(max_size=300) | st.builds(
    lambda t: msgpack.packb(t, use_bin_type=True),
    st.lists(st.binary(max_size=100) | st.integers(0, 5), max_size=5)))
def test_property_junk_is_refused(junk: bytes) -> None:
    with pytest.raises(WalletCryptoError):
        open_asset(junk, HOLDER_SK)


def test_fixed_alphabet_values_round_trip() -> None:
    r = random.Random(99)
    record = {f"f_{i}": "".join(r.choice(string.printable) for _ in range(r.randrange(0, 50)))
              for i in range(30)}
    s = seal_asset(SCHEMA, record, HOLDER_PK, rng=r.randbytes)
    assert open_asset(s.blob, HOLDER_SK, field_root=s.field_root).record == dict(sorted(record.items()))
