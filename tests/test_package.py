"""Selective-disclosure packages (wallet.package): the plaintext format, that a package reveals nothing but
the disclosed fields, verification against on-chain field roots, refusal of every tampered value, salt, index,
proof hash and root, of packages that do not match their grant, of the wrong grantee's key and of corrupted
bytes; and the whole path through a real ledger (issue, grant, verify against the chain's records)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping

import msgpack
import nacl.public
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from consensus.merkle import inclusion_proof, verify_inclusion
from contracts.records import Asset, Grant, Kind
from contracts.txs import GrantConsent, RegisterHolder
from wallet.assetdata import (
    AssetPayload,
    CorruptedBlobError,
    InvalidRecordError,
    WalletCryptoError,
    WrongKeyError,
    commitment,
    open_asset,
    open_envelope,
    seal_asset,
    seal_envelope,
)
from wallet.devchain import DevChain, Identity, dev_genesis
from wallet.package import (
    PACKAGE_DOMAIN,
    DisclosedAsset,
    DisclosedField,
    Disclosure,
    DisclosureError,
    build_package,
    open_package,
    verify_disclosure,
)
from wallet.tx import created_id


def keypair(label: str) -> tuple[bytes, bytes]:
    k = nacl.public.PrivateKey(hashlib.sha256(label.encode()).digest())
    return bytes(k), bytes(k.public_key)


HOLDER_SK, HOLDER_PK = keypair("holder")
BANK_SK, BANK_PK = keypair("bank")
NOTARY_SK, NOTARY_PK = keypair("notary")

WAGES = {"name": "李伟", "monthly_wage": "12000", "months_paid": "84", "employer": "Weihai Port Co.",
         "id_number": "371002199001011234"}
HOUSING = {"name": "李伟", "balance": "35000", "account_no": "HF-00042"}
A1, A2 = hashlib.sha256(b"asset-1").digest(), hashlib.sha256(b"asset-2").digest()


def rng_of(label: str) -> Callable[[int], bytes]:
    return random.Random(label).randbytes


def issued(record: Mapping[str, str], schema: str = "social_security.payment") -> tuple[AssetPayload, bytes]:
    s = seal_asset(schema, record, HOLDER_PK)
    return open_asset(s.blob, HOLDER_SK, field_root=s.field_root), s.field_root


P1, ROOT1 = issued(WAGES)
P2, ROOT2 = issued(HOUSING, "housing_fund.account")
ROOTS = {A1: ROOT1, A2: ROOT2}
CHAIN_FIELDS = {A1: sorted(WAGES), A2: sorted(HOUSING)}


# ------------------------------------------------------------------------------------------- round trip


def test_round_trip_discloses_only_the_chosen_fields() -> None:
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage", "name"]), (A2, P2, ["balance"])])
    assert pkg.package_hash == hashlib.sha256(pkg.blob).digest()
    d = open_package(pkg.blob, BANK_SK, package_hash=pkg.package_hash)
    assert list(d.assets) == sorted([A1, A2])
    assert d.assets[A1].n_fields == len(WAGES) and d.assets[A2].n_fields == len(HOUSING)
    want = {A1: {"monthly_wage": "12000", "name": "李伟"}, A2: {"balance": "35000"}}
    assert verify_disclosure(d, ROOTS, {A1: ["monthly_wage", "name"], A2: ["balance"]}) == want
    assert verify_disclosure(d, ROOTS, ["balance", "monthly_wage", "name"]) == want
    assert list(want[A1]) == ["monthly_wage", "name"]


def test_grant_fields_are_disclosed_from_every_asset_that_has_them() -> None:
    # the grant lists `name`; both assets have it, so both must disclose it
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage", "name"]), (A2, P2, ["balance"])])
    d = open_package(pkg.blob, BANK_SK)
    with pytest.raises(DisclosureError, match=r"field 'name' of the grant is missing"):
        verify_disclosure(d, ROOTS, ["balance", "monthly_wage", "name"], asset_fields=CHAIN_FIELDS)
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage", "name"]), (A2, P2, ["balance", "name"])])
    out = verify_disclosure(open_package(pkg.blob, BANK_SK), ROOTS, ["balance", "monthly_wage", "name"],
                            asset_fields=CHAIN_FIELDS)
    assert out == {A1: {"monthly_wage": "12000", "name": "李伟"}, A2: {"balance": "35000", "name": "李伟"}}


def test_plaintext_format_and_proofs() -> None:
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage"])], rng=rng_of("p"))
    plain = open_envelope(pkg.blob, BANK_SK, PACKAGE_DOMAIN)
    names = sorted(WAGES)
    leaves = [commitment(P1.fields[n].salt, n, WAGES[n]) for n in names]
    i = names.index("monthly_wage")
    expect = [PACKAGE_DOMAIN, [[A1, len(names), [["monthly_wage", "12000", P1.fields["monthly_wage"].salt, i,
                                                  inclusion_proof(leaves, i)]]]]]
    assert plain == msgpack.packb(expect, use_bin_type=True)
    assert verify_inclusion(leaves[i], i, len(names), inclusion_proof(leaves, i), ROOT1)
    version, sealed, nonce, ct = msgpack.unpackb(pkg.blob)
    assert (version, len(sealed), len(nonce)) == (1, 80, 24)
    # deterministic apart from the sealed box's ephemeral key
    again = msgpack.unpackb(build_package(BANK_PK, [(A1, P1, ["monthly_wage"])], rng=rng_of("p")).blob)
    assert again[2:] == [nonce, ct]


def test_package_reveals_nothing_of_other_fields() -> None:
    disclosed = {"monthly_wage"}
    pkg = build_package(BANK_PK, [(A1, P1, disclosed)])
    plain = open_envelope(pkg.blob, BANK_SK, PACKAGE_DOMAIN)
    for name, (value, salt) in P1.fields.items():
        if name in disclosed:
            assert value.encode() in plain and salt in plain
        else:
            assert value.encode() not in plain, name
            assert salt not in plain, name
            assert name.encode() not in plain, name
            assert commitment(salt, name, value) not in plain  # even the bare leaf is hashed once more
    # the structure holds only: ids, counts, the disclosed names/values/salts, indexes and 32-byte hashes
    _, assets = msgpack.unpackb(plain, raw=False)
    [[aid, n, fields]] = assets
    assert aid == A1 and n == len(WAGES)
    [[name, value, salt, index, proof]] = fields
    assert (value, salt, index) == ("12000", P1.fields["monthly_wage"].salt, sorted(WAGES).index(name))
    assert name == "monthly_wage" and all(isinstance(h, bytes) and len(h) == 32 for h in proof)


def test_empty_disclosure_for_an_asset_is_allowed() -> None:
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage"]), (A2, P2, [])])
    d = open_package(pkg.blob, BANK_SK)
    out = verify_disclosure(d, ROOTS, {A1: ["monthly_wage"], A2: []})
    assert out == {A1: {"monthly_wage": "12000"}, A2: {}}


def test_repr_shows_no_values_or_salts() -> None:
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage", "name"])])
    d = open_package(pkg.blob, BANK_SK)
    text = " ".join([repr(d), str(d), repr(pkg), repr(d.assets[A1]), repr(d.assets[A1].fields)])
    assert "12000" not in text and "李伟" not in text
    for f in d.assets[A1].fields.values():
        assert f.salt.hex() not in text and repr(f.salt) not in text


# ------------------------------------------------------------------------------------------- keys and bytes


def test_another_grantee_cannot_open_it() -> None:
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage"])])
    with pytest.raises(WrongKeyError):
        open_package(pkg.blob, NOTARY_SK)
    with pytest.raises(WrongKeyError):
        open_package(pkg.blob, HOLDER_SK)


def test_package_and_asset_blobs_do_not_open_as_each_other() -> None:
    pkg = build_package(HOLDER_PK, [(A1, P1, ["monthly_wage"])])
    with pytest.raises(CorruptedBlobError):
        open_asset(pkg.blob, HOLDER_SK)
    s = seal_asset("social_security.payment", WAGES, HOLDER_PK)
    with pytest.raises(CorruptedBlobError):
        open_package(s.blob, HOLDER_SK)


def test_package_hash_is_checked() -> None:
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage"])])
    with pytest.raises(CorruptedBlobError, match="expected hash"):
        open_package(pkg.blob, BANK_SK, package_hash=bytes(32))


def test_every_flipped_byte_is_refused() -> None:
    r = random.Random(4242)
    pkg = build_package(BANK_PK, [(A1, P1, ["monthly_wage", "name"]), (A2, P2, ["balance"])])
    for i in range(len(pkg.blob)):
        bad = bytearray(pkg.blob)
        bad[i] ^= r.randrange(1, 256)
        with pytest.raises(WalletCryptoError):
            open_package(bytes(bad), BANK_SK)


@pytest.mark.parametrize("plain", [
    [PACKAGE_DOMAIN],
    [b"mydata/package/v2", [[A1, 5, []]]],
    [PACKAGE_DOMAIN, []],
    [PACKAGE_DOMAIN, [[A2, 3, []], [A1, 5, []]]],  # not in id order
    [PACKAGE_DOMAIN, [[A1, 5, []], [A1, 5, []]]],  # twice
    [PACKAGE_DOMAIN, [[A1[:31], 5, []]]],
    [PACKAGE_DOMAIN, [[A1, 0, []]]],
    [PACKAGE_DOMAIN, [[A1, 129, []]]],
    [PACKAGE_DOMAIN, [[A1, 1, [["a", "1", bytes(16), 0, []], ["b", "1", bytes(16), 1, []]]]]],  # > n_fields
    [PACKAGE_DOMAIN, [[A1, 5, [["a", "1", bytes(16), 5, []]]]]],  # index out of range
    [PACKAGE_DOMAIN, [[A1, 5, [["b", "1", bytes(16), 0, []], ["a", "1", bytes(16), 1, []]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["a", "1", bytes(16), 1, []], ["b", "1", bytes(16), 1, []]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["a", "1", bytes(15), 0, []]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["a", "1", bytes(16), 0, [bytes(31)]]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["a", "1", bytes(16), 0, [bytes(32)] * 8]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["A", "1", bytes(16), 0, []]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["a", b"1", bytes(16), 0, []]]]]],
    [PACKAGE_DOMAIN, [[A1, 5, [["a", "1", bytes(16), 0]]]]],
])
def test_malformed_plaintext_in_a_valid_envelope_is_refused(plain: list[object]) -> None:
    blob = seal_envelope(msgpack.packb(plain, use_bin_type=True), BANK_PK, PACKAGE_DOMAIN)
    with pytest.raises(CorruptedBlobError, match="malformed"):
        open_package(blob, BANK_SK)


@pytest.mark.parametrize(("items", "message"), [
    ([], "1 to 64 assets"),
    ([(A1, P1, ["monthly_wage"]), (A1, P1, ["name"])], "twice"),
    ([(A1[:31], P1, ["monthly_wage"])], "32 bytes"),
    ([(A1, P1, ["salary"])], "no field 'salary'"),
    ([(A1, P1, ["Bad Name"])], "field name"),
    ([(A1, P1, "monthly_wage")], "not one string"),
])
def test_bad_items_are_refused_when_building(items: list[tuple[bytes, AssetPayload, list[str]]],
                                             message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        build_package(BANK_PK, items)


def test_bad_grantee_key_is_refused() -> None:
    with pytest.raises(InvalidRecordError):
        build_package(BANK_PK[:31], [(A1, P1, ["name"])])


# ------------------------------------------------------------------------------------------- the grant


def _opened(items: list[tuple[bytes, AssetPayload, list[str]]]) -> Disclosure:
    pkg = build_package(BANK_PK, items)
    return open_package(pkg.blob, BANK_SK)


def test_an_asset_not_in_the_grant_is_refused() -> None:
    d = _opened([(A1, P1, ["monthly_wage"]), (A2, P2, ["balance"])])
    with pytest.raises(DisclosureError, match=f"asset {A2.hex()[:16]} is in the package but not in the"):
        verify_disclosure(d, {A1: ROOT1}, ["monthly_wage"])


def test_an_asset_of_the_grant_missing_from_the_package_is_refused() -> None:
    d = _opened([(A1, P1, ["monthly_wage"])])
    with pytest.raises(DisclosureError, match=f"asset {A2.hex()[:16]} of the grant is missing"):
        verify_disclosure(d, ROOTS, ["monthly_wage", "balance"])


def test_a_field_not_in_the_grant_is_refused() -> None:
    d = _opened([(A1, P1, ["monthly_wage", "id_number"])])
    for expected in (["monthly_wage"], {A1: ["monthly_wage"]}):
        with pytest.raises(DisclosureError, match="field 'id_number' is in the package but not in the grant"):
            verify_disclosure(d, {A1: ROOT1}, expected)
    with pytest.raises(DisclosureError, match="'id_number' is in the package but not in the grant"):
        verify_disclosure(d, {A1: ROOT1}, ["monthly_wage"], asset_fields=CHAIN_FIELDS)


def test_a_granted_field_missing_is_refused() -> None:
    d = _opened([(A1, P1, ["monthly_wage"])])
    with pytest.raises(DisclosureError, match="'months_paid' of the grant is disclosed by no asset"):
        verify_disclosure(d, {A1: ROOT1}, ["monthly_wage", "months_paid"])
    with pytest.raises(DisclosureError, match="'months_paid' of the grant is missing"):
        verify_disclosure(d, {A1: ROOT1}, {A1: ["monthly_wage", "months_paid"]})
    with pytest.raises(DisclosureError, match="'months_paid' of the grant is missing"):
        verify_disclosure(d, {A1: ROOT1}, ["monthly_wage", "months_paid"], asset_fields=CHAIN_FIELDS)


def test_wrong_roots_are_refused() -> None:
    d = _opened([(A1, P1, ["monthly_wage"]), (A2, P2, ["balance"])])
    with pytest.raises(DisclosureError, match=f"asset {A1.hex()[:16]}: field 'monthly_wage' does not match"):
        verify_disclosure(d, {A1: ROOT2, A2: ROOT2}, ["monthly_wage", "balance"])
    with pytest.raises(DisclosureError, match="32 bytes"):
        verify_disclosure(d, {A1: ROOT1[:31], A2: ROOT2}, ["monthly_wage", "balance"])
    with pytest.raises(TypeError):
        verify_disclosure(d, ROOTS, "monthly_wage")


def _with_field(d: Disclosure, aid: bytes, name: str, f: DisclosedField) -> Disclosure:
    a = d.assets[aid]
    asset = DisclosedAsset(aid, a.n_fields, {**a.fields, name: f})
    return Disclosure({**d.assets, aid: asset})


def tampered(d: Disclosure, aid: bytes, name: str, r: random.Random) -> list[Disclosure]:
    """Every single-point change of one disclosed field."""
    f = d.assets[aid].fields[name]
    n = d.assets[aid].n_fields
    out = [
        _with_field(d, aid, name, f._replace(value=f.value + "0")),
        _with_field(d, aid, name, f._replace(value=f.value[:-1])) if f.value else None,
        _with_field(d, aid, name, f._replace(salt=bytes([f.salt[0] ^ 1]) + f.salt[1:])),
        _with_field(d, aid, name, f._replace(salt=r.randbytes(16))),
        _with_field(d, aid, name, f._replace(proof=f.proof[:-1])) if f.proof else None,
        _with_field(d, aid, name, f._replace(proof=(*f.proof, r.randbytes(32)))),
    ]
    for other in range(n):
        if other != f.leaf_index:
            out.append(_with_field(d, aid, name, f._replace(leaf_index=other)))
    for k in range(len(f.proof)):
        h = bytearray(f.proof[k])
        h[r.randrange(32)] ^= 1 << r.randrange(8)
        out.append(_with_field(d, aid, name, f._replace(proof=(*f.proof[:k], bytes(h), *f.proof[k + 1:]))))
    if len(f.proof) > 1:
        out.append(_with_field(d, aid, name, f._replace(proof=tuple(reversed(f.proof)))))
    return [x for x in out if x is not None]


def test_every_tampered_field_is_refused_naming_asset_and_field() -> None:
    r = random.Random(7)
    d = _opened([(A1, P1, ["monthly_wage", "name"]), (A2, P2, ["balance"])])
    expected = {A1: ["monthly_wage", "name"], A2: ["balance"]}
    assert verify_disclosure(d, ROOTS, expected)
    for aid, name in [(A1, "monthly_wage"), (A1, "name"), (A2, "balance")]:
        for bad in tampered(d, aid, name, r):
            with pytest.raises(DisclosureError, match=f"asset {aid.hex()[:16]}: field '{name}'"):
                verify_disclosure(bad, ROOTS, expected)


def test_a_field_moved_to_another_asset_is_refused() -> None:
    d = _opened([(A1, P1, ["monthly_wage"]), (A2, P2, ["balance"])])
    f = d.assets[A1].fields["monthly_wage"]
    moved = _with_field(d, A2, "monthly_wage", f)
    with pytest.raises(DisclosureError, match=f"asset {A2.hex()[:16]}: field 'monthly_wage'"):
        verify_disclosure(moved, ROOTS, {A1: ["monthly_wage"], A2: ["balance", "monthly_wage"]})


def test_tree_shape_lies_are_caught_with_the_chain_field_list() -> None:
    """In a tree of 3 leaves, leaf 2's audit path is one hash (the root of leaves 0-1): the same path proves
    "leaf 1 of a tree of 2". Only the on-chain field list pins the true size and index."""
    p, root = issued({"a": "1", "b": "2", "c": "3"})
    aid = A1
    d = _opened([(aid, p, ["c"])])
    f = d.assets[aid].fields["c"]
    assert (f.leaf_index, d.assets[aid].n_fields, len(f.proof)) == (2, 3, 1)
    lie = Disclosure({aid: DisclosedAsset(aid, 2, {"c": f._replace(leaf_index=1)})})
    assert verify_disclosure(lie, {aid: root}, ["c"]) == {aid: {"c": "3"}}  # the value is still bound
    with pytest.raises(DisclosureError, match="says 2 fields, the chain 3"):
        verify_disclosure(lie, {aid: root}, ["c"], asset_fields={aid: ["a", "b", "c"]})
    lie2 = Disclosure({aid: DisclosedAsset(aid, 3, {"c": f._replace(leaf_index=1)})})
    with pytest.raises(DisclosureError, match="wrong leaf index 1"):
        verify_disclosure(lie2, {aid: root}, ["c"], asset_fields={aid: ["a", "b", "c"]})
    with pytest.raises(DisclosureError, match="on-chain field list was not given"):
        verify_disclosure(d, {aid: root}, ["c"], asset_fields={})


# ------------------------------------------------------------------------------------------- properties

FIELD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
VALUES = st.text(st.characters(exclude_categories=["Cs"]), max_size=20) | st.integers(0, 10**12).map(str)
RECORDS = st.dictionaries(FIELD_NAMES, VALUES, min_size=1, max_size=20)


@st.composite
def grants(draw: st.DrawFn) -> tuple[list[tuple[bytes, dict[str, str], list[str]]], int]:
    n = draw(st.integers(1, 4))
    ids = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n, unique=True))
    out = []
    for aid in ids:
        record = draw(RECORDS)
        subset = draw(st.lists(st.sampled_from(sorted(record)), unique=True, max_size=len(record)))
        out.append((aid, record, subset))
    return out, draw(st.integers(0, 2**32))


@seed(31415)
@settings(max_examples=120, deadline=None)
@given(g=grants())
def test_property_disclosures_verify_and_tampering_is_refused(
        g: tuple[list[tuple[bytes, dict[str, str], list[str]]], int]) -> None:
    items, rng_seed = g
    r = random.Random(rng_seed)
    payloads, roots, chain_fields = {}, {}, {}
    for aid, record, _ in items:
        s = seal_asset("some.schema", record, HOLDER_PK, rng=r.randbytes)
        payloads[aid] = open_asset(s.blob, HOLDER_SK, field_root=s.field_root)
        roots[aid], chain_fields[aid] = s.field_root, list(s.fields)
    pkg = build_package(BANK_PK, [(aid, payloads[aid], subset) for aid, _, subset in items], rng=r.randbytes)
    d = open_package(pkg.blob, BANK_SK, package_hash=pkg.package_hash)
    expected = {aid: subset for aid, _, subset in items}
    want = {aid: {n: record[n] for n in sorted(subset)} for aid, record, subset in items}
    assert verify_disclosure(d, roots, expected) == want
    assert verify_disclosure(d, roots, expected, asset_fields=chain_fields) == want

    # one random disclosed field, every kind of tampering
    disclosed = [(aid, n) for aid, _, subset in items for n in subset]
    if disclosed:
        aid, name = r.choice(disclosed)
        for bad in tampered(d, aid, name, r):
            with pytest.raises(DisclosureError, match=f"asset {aid.hex()[:16]}: field '{name}'"):
                verify_disclosure(bad, roots, expected, asset_fields=chain_fields)
    # a wrong root for one asset
    victim = r.choice(items)[0]
    if d.assets[victim].fields:
        with pytest.raises(DisclosureError, match=f"asset {victim.hex()[:16]}"):
            verify_disclosure(d, {**roots, victim: r.randbytes(32)}, expected)
    # the grant listing one more field than the package holds
    for aid, record, subset in items:
        rest = sorted(set(record) - set(subset))
        if rest:
            with pytest.raises(DisclosureError, match=f"field '{rest[0]}' of the grant is missing"):
                verify_disclosure(d, roots, {**expected, aid: [*subset, rest[0]]})
            break
    # another grantee's key
    with pytest.raises(WrongKeyError):
        open_package(pkg.blob, NOTARY_SK)


@seed(27182)
@settings(max_examples=150, deadline=None)
@given(record=RECORDS, data=st.data())
def test_property_corrupted_package_raises_only_wallet_errors(record: dict[str, str],
                                                              data: st.DataObject) -> None:
    s = seal_asset("some.schema", record, HOLDER_PK)
    p = open_asset(s.blob, HOLDER_SK)
    blob = bytearray(build_package(BANK_PK, [(A1, p, sorted(record)[:2])]).blob)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(WalletCryptoError):
        open_package(bytes(blob), BANK_SK)


# ------------------------------------------------------------------------------------------- on a ledger


def test_issue_grant_and_verify_against_the_ledger() -> None:
    """The whole path on an in-process chain: the issuer seals and issues, the holder opens the payload
    against the on-chain asset and grants a package, the bank verifies it against the on-chain records."""
    ident = Identity.derive
    val, admin, reg, issuer, bank, holder = (ident(n, b"pkg") for n in
                                             ("v0", "admin", "registrar", "issuer", "bank", "holder"))
    schema_fields = tuple(sorted(WAGES))
    g = dev_genesis("pkg-test", [val], [(admin, ("admin",)), (reg, ("registrar",)), (issuer, ("issuer",)),
                                        (bank, ("consumer",))],
                    [("social_security.payment", schema_fields, [issuer])])
    chain = DevChain(g, [val])
    ex = chain.produce([chain.tx(reg, RegisterHolder("person", bytes(32), holder.pk, holder.enc_pk))])
    assert ex.codes() == ["ok"]

    sealed = seal_asset("social_security.payment", WAGES, holder.enc_pk)
    issue = chain.tx(issuer, sealed.issue_body(holder.id, "social_security.payment"))
    assert chain.produce([issue]).codes() == ["ok"]
    aid = created_id(Kind.ASSET, issue)
    asset = chain.ledger.state().get(Asset, Kind.ASSET, aid)
    assert asset is not None and asset.field_root == sealed.field_root and asset.fields == schema_fields

    payload = open_asset(sealed.blob, holder.enc_secret, payload_hash=asset.payload_hash,
                         field_root=asset.field_root)
    pkg = build_package(bank.enc_pk, [(aid, payload, ["monthly_wage", "months_paid"])])
    grant_tx = chain.tx(holder, GrantConsent(bank.id, (aid,), ("monthly_wage", "months_paid"), "mortgage",
                                             chain.time_ms + 86_400_000, 3, pkg.package_hash, b""))
    assert chain.produce([grant_tx]).codes() == ["ok"]
    grant = chain.ledger.state().get(Grant, Kind.GRANT, created_id(Kind.GRANT, grant_tx))
    assert grant is not None

    # the bank, from the vault's blob and the chain's records only
    d = open_package(pkg.blob, bank.enc_secret, package_hash=grant.package_hash)
    records = {a: chain.ledger.state().get(Asset, Kind.ASSET, a) for a in grant.assets}
    roots = {a: r.field_root for a, r in records.items() if r is not None}
    fields = {a: list(r.fields) for a, r in records.items() if r is not None}
    assert verify_disclosure(d, roots, grant.fields, asset_fields=fields) == {
        aid: {"monthly_wage": "12000", "months_paid": "84"}}
