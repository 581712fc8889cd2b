"""The vault as storage (node/vault.py, VLT-1..VLT-4): content addressing, caps, atomic files, deletion.

The referencing and erasure rules (NODE-4..NODE-6) belong to the node core: tests/test_node_core.py.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from node.vault import DEFAULT_MAX_BLOB_BYTES, Vault, VaultError


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def test_put_get_has_delete(tmp_path: Path) -> None:
    v = Vault(tmp_path / "vault")
    blob = b"ciphertext \x00\x01" * 10
    assert v.get(h(blob)) is None and not v.has(h(blob))
    assert v.put(h(blob), blob) is True
    assert v.get(h(blob)) == blob and v.has(h(blob))
    assert v.put(h(blob), blob) is False  # VLT-3: already there
    assert v.delete(h(blob)) is True
    assert v.get(h(blob)) is None and not v.has(h(blob))
    assert v.delete(h(blob)) is False  # deleting an absent blob is a no-op


def test_layout_is_sharded_by_first_byte(tmp_path: Path) -> None:
    v = Vault(tmp_path)
    blob = b"x"
    v.put(h(blob), blob)
    name = h(blob).hex()
    assert (tmp_path / name[:2] / name).read_bytes() == blob
    assert v.path_of(h(blob)) == tmp_path / name[:2] / name


def test_hash_mismatch_refused(tmp_path: Path) -> None:
    v = Vault(tmp_path)
    with pytest.raises(VaultError) as e:
        v.put(h(b"one"), b"another")
    assert e.value.code == "hash_mismatch"
    assert not v.has(h(b"one"))


def test_size_cap(tmp_path: Path) -> None:
    v = Vault(tmp_path, max_blob_bytes=100)
    ok, big = b"a" * 100, b"a" * 101
    assert v.put(h(ok), ok)
    with pytest.raises(VaultError) as e:
        v.put(h(big), big)
    assert e.value.code == "too_large"
    assert Vault(tmp_path / "default").max_blob_bytes == DEFAULT_MAX_BLOB_BYTES


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 33, "00" * 32])
def test_bad_hash(tmp_path: Path, bad: object) -> None:
    v = Vault(tmp_path)
    for op in (lambda: v.get(bad), lambda: v.has(bad), lambda: v.delete(bad),  # type: ignore[arg-type]
               lambda: v.put(bad, b"x")):  # type: ignore[arg-type]
        with pytest.raises(VaultError) as e:
            op()
        assert e.value.code == "bad_hash"


def test_no_temporary_files_left_and_leftovers_cleaned(tmp_path: Path) -> None:
    v = Vault(tmp_path)
    for i in range(20):
        blob = os.urandom(64) + bytes([i])
        v.put(h(blob), blob)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]
    # A crash mid-write leaves a temporary file: the next open removes it, and blobs are untouched.
    blob = b"survivor"
    v.put(h(blob), blob)
    shard = v.path_of(h(blob)).parent
    (shard / ".tmp-deadbeef-1-2").write_bytes(b"torn")
    v2 = Vault(tmp_path)
    assert not list(shard.glob(".tmp-*"))
    assert v2.get(h(blob)) == blob


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v = Vault(tmp_path)
    blob = b"payload"

    def boom(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        v.put(h(blob), blob)
    monkeypatch.undo()
    assert not v.has(h(blob))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_vault_never_reads_plaintext_it_only_stores_bytes(tmp_path: Path) -> None:
    """Any bytes are stored verbatim: the vault does not parse or decrypt what it holds."""
    v = Vault(tmp_path)
    for blob in (b"", b"\xff" * 1000, bytes(range(256))):
        v.put(h(blob), blob)
        assert v.get(h(blob)) == blob
