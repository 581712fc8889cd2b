"""The encrypted keystore (wallet.keystore): round trips, file and directory modes, wrong passphrases, every
tampered byte of the ciphertext and every tampered header field refused, secrets never in the file nor in a
repr, rotation keeping the account id and the older keys, and the production Argon2 parameters once."""

from __future__ import annotations

import json
import os
import random
import stat
import threading
import unicodedata
from pathlib import Path
from typing import Any

import nacl.public
import pytest

from consensus.crypto import Domain, account_id, verify
from wallet.assetdata import open_asset, seal_asset
from wallet.devchain import Identity
from wallet.keystore import (
    DEFAULT_KDF,
    TEST_KDF,
    WRONG_PASSPHRASE,
    KdfParams,
    KeyInfo,
    Keystore,
    KeystoreError,
    WalletIdentity,
    _KeyFile,
)

PW = "correct horse battery staple"


@pytest.fixture
def ks(tmp_path: Path) -> Keystore:
    return Keystore(tmp_path / "wallet")


def read_json(ks: Keystore, name: str) -> dict[str, Any]:
    return json.loads(ks.file_of(name).read_text())  # type: ignore[no-any-return]


def write_json(ks: Keystore, name: str, obj: dict[str, Any]) -> None:
    ks.file_of(name).write_text(json.dumps(obj, indent=2))


def secrets_of(ident: WalletIdentity) -> list[bytes]:
    return [s for g in ident.generations for s in (g._seed, g.enc_secret)]


# ------------------------------------------------------------------------------------------- round trip


def test_create_and_load_round_trip(ks: Keystore) -> None:
    a = ks.create("alice", PW, role="holder", chain_id="mydata-test", node_url="http://127.0.0.1:8000",
                  kdf=TEST_KDF)
    assert a.account_id == account_id(a.sign_pk) == account_id(a.signer.public_key)
    assert bytes(nacl.public.PrivateKey(a.enc_secret).public_key) == a.enc_pk
    b = ks.load("alice", PW)
    assert (b.name, b.account_id, b.sign_pk, b.enc_pk, b.enc_secret) == \
        (a.name, a.account_id, a.sign_pk, a.enc_pk, a.enc_secret)
    sig = b.signer.sign(Domain.TX, "mydata-test", b"payload")
    assert verify(a.sign_pk, Domain.TX, "mydata-test", b"payload", sig)
    assert (b.info.role, b.info.chain_id, b.info.node_url) == ("holder", "mydata-test", "http://127.0.0.1:8000")
    assert b.info.kdf == TEST_KDF


def test_fresh_keys_differ(ks: Keystore) -> None:
    a, b = ks.create("a", PW, kdf=TEST_KDF), ks.create("b", PW, kdf=TEST_KDF)
    assert len({a.sign_pk, b.sign_pk, a.enc_pk, b.enc_pk}) == 4


def test_seed_gives_the_devchain_identity(ks: Keystore) -> None:
    dev = Identity.derive("issuer-social-security")
    w = ks.create("issuer-social-security", PW, seed=dev.seed, kdf=TEST_KDF)
    assert (w.sign_pk, w.enc_pk, w.enc_secret, w.account_id) == (dev.pk, dev.enc_pk, dev.enc_secret, dev.id)


def test_import_seed_with_explicit_keys_and_account(ks: Keystore) -> None:
    r = random.Random(1)
    seed, enc, acct = r.randbytes(32), r.randbytes(32), r.randbytes(32)
    w = ks.import_seed("rotated", PW, seed, enc_secret=enc, account=acct, kdf=TEST_KDF)
    assert w.account_id == acct and w.enc_secret == enc
    assert ks.load("rotated", PW).account_id == acct
    with pytest.raises(KeystoreError, match="32 bytes"):
        ks.import_seed("x", PW, seed[:31], kdf=TEST_KDF)
    with pytest.raises(KeystoreError, match="32 bytes"):
        ks.import_seed("y", PW, seed, enc_secret=b"short", kdf=TEST_KDF)
    with pytest.raises(KeystoreError, match="account id"):
        ks.import_seed("z", PW, seed, account=b"short", kdf=TEST_KDF)
    assert [i.name for i in ks.list()] == ["rotated"]


def test_file_and_directory_modes(ks: Keystore) -> None:
    old = os.umask(0)
    try:
        ks.create("alice", PW, kdf=TEST_KDF)
        ks.rotate("alice", PW)
    finally:
        os.umask(old)
    assert stat.S_IMODE(ks.path.stat().st_mode) == 0o700
    assert stat.S_IMODE(ks.file_of("alice").stat().st_mode) == 0o600
    assert sorted(p.name for p in ks.path.iterdir()) == ["alice.key"]  # no temporary files left


def test_file_format(ks: Keystore) -> None:
    ks.create("alice", PW, role="holder", kdf=TEST_KDF)
    obj = read_json(ks, "alice")
    assert list(obj) == ["version", "name", "account_id", "sign_pk", "enc_pk", "previous", "meta", "kdf",
                         "salt", "cipher", "nonce", "ciphertext"]
    assert obj["version"] == 1 and obj["cipher"] == "xchacha20poly1305-ietf"
    assert obj["kdf"] == {"name": "argon2id", "version": 19, "time_cost": 1, "memory_cost": 8,
                          "parallelism": 1}
    assert obj["meta"] == {"role": "holder", "chain_id": None, "node_url": None}
    assert len(bytes.fromhex(obj["salt"])) == 16 and len(bytes.fromhex(obj["nonce"])) == 24
    # secrets: domain (27) + 2 x 32-byte keys + framing + 16-byte tag
    assert len(bytes.fromhex(obj["ciphertext"])) == 1 + 2 + 26 + 2 * 34 + 1 + 16


def test_every_write_draws_a_fresh_salt_and_nonce(ks: Keystore) -> None:
    ks.create("alice", PW, kdf=TEST_KDF)
    before = read_json(ks, "alice")
    ks.change_passphrase("alice", PW, PW)
    after = read_json(ks, "alice")
    assert before["salt"] != after["salt"] and before["nonce"] != after["nonce"]


# ------------------------------------------------------------------------------------------- refusals


def test_wrong_passphrase(ks: Keystore) -> None:
    ks.create("alice", PW, kdf=TEST_KDF)
    for wrong in ("", "Correct horse battery staple", PW + " ", b"correct horse"):
        with pytest.raises(KeystoreError) as e:
            ks.load("alice", wrong)
        assert str(e.value) == WRONG_PASSPHRASE
        assert e.value.__cause__ is None and e.value.__suppress_context__


def test_unknown_and_invalid_names(ks: Keystore) -> None:
    with pytest.raises(KeystoreError, match="no identity named 'bob'"):
        ks.load("bob", PW)
    for bad in ("", "Alice", "../alice", "a/b", ".hidden", "-x", "a" * 65, "a b", "ä"):
        with pytest.raises(KeystoreError, match="invalid identity name"):
            ks.create(bad, PW, kdf=TEST_KDF)
        with pytest.raises(KeystoreError, match="invalid identity name"):
            ks.load(bad, PW)
        assert bad not in ks
    ks.create("a" * 64, PW, kdf=TEST_KDF)
    ks.create("0.node-1_x", PW, kdf=TEST_KDF)
    assert "0.node-1_x" in ks


def test_create_never_replaces(ks: Keystore) -> None:
    first = ks.create("alice", PW, kdf=TEST_KDF)
    data = ks.file_of("alice").read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        ks.create("alice", "other", kdf=TEST_KDF)
    assert ks.file_of("alice").read_bytes() == data
    assert ks.load("alice", PW).sign_pk == first.sign_pk
    assert sorted(p.name for p in ks.path.iterdir()) == ["alice.key"]


def test_empty_passphrase_refused(ks: Keystore) -> None:
    with pytest.raises(KeystoreError, match="must not be empty"):
        ks.create("alice", "", kdf=TEST_KDF)


def test_every_ciphertext_byte_is_authenticated(ks: Keystore) -> None:
    ks.create("alice", PW, kdf=TEST_KDF)
    good = read_json(ks, "alice")
    ct = bytes.fromhex(good["ciphertext"])
    r = random.Random(808)
    for i in range(len(ct)):
        bad = bytearray(ct)
        bad[i] ^= r.randrange(1, 256)
        write_json(ks, "alice", {**good, "ciphertext": bytes(bad).hex()})
        with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
            ks.load("alice", PW)
    for cut in (ct[:-1], ct + b"\x00", b""):
        write_json(ks, "alice", {**good, "ciphertext": cut.hex()})
        with pytest.raises(KeystoreError):
            ks.load("alice", PW)
    write_json(ks, "alice", good)
    assert ks.load("alice", PW).name == "alice"


def _flip_hex(h: str) -> str:
    b = bytearray(bytes.fromhex(h))
    b[len(b) // 2] ^= 0x01
    return b.hex()


def test_every_header_field_is_authenticated(ks: Keystore) -> None:
    ks.create("alice", PW, role="holder", chain_id="mydata-test", kdf=TEST_KDF)
    ks.rotate("alice", PW)
    good = read_json(ks, "alice")
    prev = good["previous"][0]
    changes: list[dict[str, Any]] = [
        {"account_id": _flip_hex(good["account_id"])},
        {"account_id": account_id(bytes.fromhex(good["sign_pk"])).hex()},  # "the account of the new key"
        {"sign_pk": _flip_hex(good["sign_pk"])},
        {"enc_pk": _flip_hex(good["enc_pk"])},
        {"sign_pk": good["enc_pk"], "enc_pk": good["sign_pk"]},
        {"previous": []},
        {"previous": [{**prev, "sign_pk": _flip_hex(prev["sign_pk"])}]},
        {"previous": [prev, prev]},
        {"meta": {**good["meta"], "role": "admin"}},
        {"meta": {**good["meta"], "chain_id": "other-chain"}},
        {"meta": {**good["meta"], "node_url": "http://evil.example"}},
        {"meta": {**good["meta"], "role": None}},
        {"kdf": {**good["kdf"], "time_cost": 2}},
        {"kdf": {**good["kdf"], "memory_cost": 16}},
        {"kdf": {**good["kdf"], "parallelism": 2, "memory_cost": 16}},
        {"salt": _flip_hex(good["salt"])},
        {"nonce": _flip_hex(good["nonce"])},
    ]
    for change in changes:
        write_json(ks, "alice", {**good, **change})
        with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
            ks.load("alice", PW)
    structural: list[dict[str, Any]] = [
        {"name": "bob"}, {"version": 2}, {"cipher": "aes-256-gcm"},
        {"kdf": {**good["kdf"], "name": "scrypt"}}, {"kdf": {**good["kdf"], "version": 16}},
        {"account_id": good["account_id"].upper()}, {"salt": good["salt"][:-2]}, {"nonce": "zz"},
        {"meta": {"role": "x"}}, {"previous": [{"sign_pk": "00"}]},
        {"kdf": {**good["kdf"], "memory_cost": 2**40}}, {"kdf": {**good["kdf"], "time_cost": 10**6}},
        {"kdf": {**good["kdf"], "time_cost": "3"}}, {"meta": {**good["meta"], "role": 5}},
        {"extra": 1},
    ]
    for change in structural:
        write_json(ks, "alice", {**good, **change})
        with pytest.raises(KeystoreError):
            ks.load("alice", PW)
    write_json(ks, "alice", good)
    assert ks.load("alice", PW).name == "alice"


def test_files_cannot_be_swapped_or_spliced(ks: Keystore) -> None:
    ks.create("alice", PW, kdf=TEST_KDF)
    ks.create("bob", PW, kdf=TEST_KDF)
    alice, bob = read_json(ks, "alice"), read_json(ks, "bob")
    # bob's file under alice's name
    write_json(ks, "alice", bob)
    with pytest.raises(KeystoreError, match="the file is for 'bob', not 'alice'"):
        ks.load("alice", PW)
    # alice's header with bob's encrypted secrets (same passphrase, even)
    spliced = {**alice, **{k: bob[k] for k in ("salt", "nonce", "ciphertext")}}
    write_json(ks, "alice", spliced)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.load("alice", PW)
    # bob's public keys with alice's secrets
    spliced = {**alice, **{k: bob[k] for k in ("account_id", "sign_pk", "enc_pk")}}
    write_json(ks, "alice", spliced)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.load("alice", PW)


@pytest.mark.parametrize("content", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'{"version": 1}',
                                     b'{"version": 1, "version": 1}', b"[" * 100_000, b" " * 2_000_000],
                         ids=["empty", "text", "array", "not-utf8", "partial", "dup-key", "deep", "huge"])
def test_garbage_files_are_refused(ks: Keystore, content: bytes) -> None:
    ks.create("alice", PW, kdf=TEST_KDF)
    ks.file_of("alice").write_bytes(content)
    with pytest.raises(KeystoreError, match=r"alice\.key"):
        ks.load("alice", PW)
    with pytest.raises(KeystoreError):
        ks.list()


def test_secrets_that_do_not_match_the_header_are_refused(ks: Keystore) -> None:
    """KST-4: a well-authenticated file whose public keys are not those of its secrets (a buggy writer)."""
    w = ks.create("alice", PW, kdf=TEST_KDF)
    info = ks.info("alice")
    wrong = KeyInfo(info.name, info.account_id, info.sign_pk, bytes(32), (), kdf=TEST_KDF)
    kf = Keystore._seal(wrong, w._current, (), PW.encode())
    ks.file_of("alice").write_text(json.dumps(kf.to_json()))
    with pytest.raises(KeystoreError, match="do not match the public keys"):
        ks.load("alice", PW)
    assert isinstance(kf, _KeyFile)


# ------------------------------------------------------------------------------------------- secrecy


def test_secrets_never_in_the_file_in_clear(ks: Keystore) -> None:
    seed = bytes(range(32))
    w = ks.create("alice", PW, seed=seed, kdf=TEST_KDF)
    ks.rotate("alice", PW)
    w2 = ks.load("alice", PW)
    data = ks.file_of("alice").read_bytes()
    assert len(secrets_of(w2)) == 4 and seed in secrets_of(w2)
    for s in [*secrets_of(w2), *secrets_of(w)]:
        assert s not in data
        assert s.hex().encode() not in data and s.hex().upper().encode() not in data
        assert s[:8].hex().encode() not in data
    assert PW.encode() not in data


def test_repr_and_str_never_show_secrets(ks: Keystore) -> None:
    w = ks.create("alice", PW, kdf=TEST_KDF)
    _, new = ks.rotate("alice", PW)
    texts = [repr(new), str(new), repr(new.signer), repr(new.info), repr(ks), repr(new.generations),
             f"{new}", repr(ks.list()), json.dumps(ks.export_public("alice"))]
    for s in secrets_of(new) + secrets_of(w):
        for t in texts:
            assert s.hex() not in t and s.hex()[:16] not in t and repr(s) not in t and repr(s)[2:20] not in t
    assert new.account_id.hex() in repr(new)


# ------------------------------------------------------------------------------------------- public info


def test_list_and_export_public_need_no_passphrase(ks: Keystore) -> None:
    assert ks.list() == []  # the directory does not exist yet
    b = ks.create("bob", PW, role="consumer", kdf=TEST_KDF)
    a = ks.create("alice", "another passphrase", kdf=TEST_KDF)
    (ks.path / ".alice.key.123.tmp").write_text("{}")  # a crashed write's leftover
    (ks.path / "notes.txt").write_text("hello")
    (ks.path / "Bad Name.key").write_text("{}")
    infos = ks.list()
    assert [i.name for i in infos] == ["alice", "bob"]
    assert (infos[0].account_id, infos[0].sign_pk, infos[0].enc_pk) == (a.account_id, a.sign_pk, a.enc_pk)
    assert infos[1].role == "consumer"
    pub = ks.export_public("bob")
    assert pub == {"name": "bob", "account_id": b.account_id.hex(), "sign_pk": b.sign_pk.hex(),
                   "enc_pk": b.enc_pk.hex(), "role": "consumer", "chain_id": None, "node_url": None,
                   "rotations": 0}
    json.dumps(pub)


def test_update_meta(ks: Keystore) -> None:
    ks.create("alice", PW, role="holder", kdf=TEST_KDF)
    info = ks.update_meta("alice", PW, node_url="http://10.0.0.1:8000", role=None)
    assert (info.role, info.node_url) == (None, "http://10.0.0.1:8000")
    assert ks.load("alice", PW).info == info == ks.info("alice")
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.update_meta("alice", "wrong", role="admin")
    with pytest.raises(KeystoreError, match="unknown metadata"):
        ks.update_meta("alice", PW, colour="blue")
    with pytest.raises(KeystoreError, match="printable"):
        ks.update_meta("alice", PW, role="a\nb")
    with pytest.raises(KeystoreError, match="at most 255"):
        ks.update_meta("alice", PW, chain_id="c" * 256)
    assert ks.info("alice") == info


# ------------------------------------------------------------------------------------------- passphrases


def test_passphrase_is_unicode_normalized(ks: Keystore) -> None:
    composed = "caf\u00e9 \u5bc6\u7801"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    ks.create("alice", composed, kdf=TEST_KDF)
    assert ks.load("alice", decomposed).name == "alice"
    assert ks.load("alice", composed.encode("utf-8")).name == "alice"


def test_change_passphrase_and_kdf(ks: Keystore) -> None:
    a = ks.create("alice", PW, kdf=TEST_KDF)
    stronger = KdfParams(time_cost=2, memory_cost=64, parallelism=2)
    ks.change_passphrase("alice", PW, "new words", kdf=stronger)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.load("alice", PW)
    b = ks.load("alice", "new words")
    assert (b.sign_pk, b.enc_secret, b.info.kdf) == (a.sign_pk, a.enc_secret, stronger)
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.change_passphrase("alice", PW, "x")
    with pytest.raises(KeystoreError, match="must not be empty"):
        ks.change_passphrase("alice", "new words", "")


def test_kdf_parameter_bounds() -> None:
    for bad in [(0, 8, 1), (65, 8, 1), (1, 7, 1), (1, 15, 2), (1, 2**23, 1), (1, 8, 0), (1, 8, 17)]:
        with pytest.raises(KeystoreError, match="kdf"):
            KdfParams(*bad)
    assert KdfParams(3, 65536, 1) == DEFAULT_KDF


# ------------------------------------------------------------------------------------------- rotation


def test_rotation_keeps_the_account_and_the_old_keys(ks: Keystore) -> None:
    first = ks.create("alice", PW, kdf=TEST_KDF)
    # an asset sealed to the first X25519 key, before the rotation
    asset = seal_asset("civil_affairs.marriage", {"status": "married"}, first.enc_pk)
    old, new = ks.rotate("alice", PW)
    assert (old.sign_pk, old.enc_pk, old.enc_secret) == (first.sign_pk, first.enc_pk, first.enc_secret)
    assert new.account_id == old.account_id == account_id(first.sign_pk)
    assert new.sign_pk != old.sign_pk and new.enc_pk != old.enc_pk
    assert account_id(new.sign_pk) != new.account_id  # the id stays the original key's, stored explicitly

    loaded = ks.load("alice", PW)
    assert (loaded.sign_pk, loaded.enc_pk, loaded.account_id) == (new.sign_pk, new.enc_pk, first.account_id)
    assert [g.sign_pk for g in loaded.generations] == [new.sign_pk, first.sign_pk]
    signer = loaded.signer_for(first.sign_pk)
    assert signer is not None and signer.public_key == first.sign_pk
    assert loaded.enc_secret_for(first.enc_pk) == first.enc_secret
    assert loaded.signer_for(bytes(32)) is None and loaded.enc_secret_for(bytes(32)) is None
    assert open_asset(asset.blob, loaded.enc_secrets).record == {"status": "married"}
    info = ks.info("alice")
    assert info.previous == ((first.sign_pk, first.enc_pk),) and info.rotations == 1

    # a second rotation; the history keeps its order (oldest first in the file, newest first in memory)
    _, third = ks.rotate("alice", PW)
    loaded = ks.load("alice", PW)
    assert [g.sign_pk for g in loaded.generations] == [third.sign_pk, new.sign_pk, first.sign_pk]
    assert ks.info("alice").previous == ((first.sign_pk, first.enc_pk), (new.sign_pk, new.enc_pk))
    assert loaded.account_id == first.account_id


def test_rotation_needs_the_passphrase_and_new_keys(ks: Keystore) -> None:
    a = ks.create("alice", PW, kdf=TEST_KDF)
    data = ks.file_of("alice").read_bytes()
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.rotate("alice", "wrong")
    assert ks.file_of("alice").read_bytes() == data
    seed = a._current._seed
    with pytest.raises(KeystoreError, match="must differ"):
        ks.rotate("alice", PW, seed=seed)
    _, new = ks.rotate("alice", PW, seed=bytes(32), enc_secret=bytes(range(32)))
    assert new.enc_secret == bytes(range(32))


def test_concurrent_rotations_lose_nothing(ks: Keystore) -> None:
    ks.create("alice", PW, kdf=TEST_KDF)
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            ks.rotate("alice", PW)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=rotate) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(ks.load("alice", PW).generations) == 7


# ------------------------------------------------------------------------------------------- defaults


def test_default_argon2_parameters(ks: Keystore) -> None:
    """Once with the production parameters (64 MiB, 3 passes): it works and the file says so."""
    a = ks.create("alice", PW)
    assert read_json(ks, "alice")["kdf"] == {"name": "argon2id", "version": 19, "time_cost": 3,
                                              "memory_cost": 65536, "parallelism": 1}
    assert ks.load("alice", PW).sign_pk == a.sign_pk
    with pytest.raises(KeystoreError, match=WRONG_PASSPHRASE):
        ks.load("alice", "wrong")
