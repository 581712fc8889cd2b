"""The off-chain encrypted vault: a content-addressed store of ciphertext blobs in one directory.

Rules of this module (VLT-1..VLT-4; collected in docs/operations.md):

- VLT-1  A blob is named by the SHA-256 of its bytes; ``put`` refuses bytes whose hash is not the name
         (``hash_mismatch``) and blobs larger than the cap (``too_large``). The vault never decrypts: it
         holds ciphertexts (asset payloads, disclosure packages) and knows nothing of their keys.
- VLT-2  Layout: ``<root>/<first byte, 2 hex digits>/<64 hex digits>``, one file per blob. A write goes to
         a temporary file in the same shard, is fsynced, renamed over its name, and the shard directory is
         fsynced: after a crash a blob is either absent or complete, never torn.
- VLT-3  Writing a blob that is already present is a no-op (same name, same bytes); deleting an absent
         blob is a no-op. Temporary files left by a crash are removed when the vault is opened.
- VLT-4  Which blobs may be uploaded, and when they must be shredded, is decided by the node core
         (``node.core``), not here: the vault is storage only.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["DEFAULT_MAX_BLOB_BYTES", "Vault", "VaultError"]

DEFAULT_MAX_BLOB_BYTES = 16 * 1024 * 1024  # = wallet.assetdata.MAX_BLOB_BYTES
_TMP_PREFIX = ".tmp-"


class VaultError(Exception):
    """A refused vault operation; ``code`` names the rule (``hash_mismatch``, ``too_large``, ``bad_hash``,
    ``not_referenced``, ``erased``). Always the caller's fault: the API answers it with a 4xx."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


class Vault:
    """Content-addressed ciphertext blobs under ``root`` (created if missing)."""

    def __init__(self, root: str | os.PathLike[str], max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES) -> None:
        if max_blob_bytes < 1:
            raise ValueError("max_blob_bytes must be at least 1")
        self.root = Path(root)
        self.max_blob_bytes = max_blob_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_temporaries()

    # ---- paths ---------------------------------------------------------------------------------------

    @staticmethod
    def _check_hash(blob_hash: bytes) -> str:
        if type(blob_hash) is not bytes or len(blob_hash) != 32:
            raise VaultError("bad_hash", "a blob is named by a 32-byte SHA-256 hash")
        return blob_hash.hex()

    def path_of(self, blob_hash: bytes) -> Path:
        """Where the blob named ``blob_hash`` lives (whether or not it is present)."""
        name = self._check_hash(blob_hash)
        return self.root / name[:2] / name

    # ---- operations ----------------------------------------------------------------------------------

    def put(self, blob_hash: bytes, data: bytes) -> bool:
        """Store ``data`` under ``blob_hash`` durably (VLT-1..VLT-3); False if it was already there."""
        path = self.path_of(blob_hash)
        if type(data) is not bytes:
            raise TypeError("blob data must be bytes")
        if len(data) > self.max_blob_bytes:
            raise VaultError("too_large", f"{len(data)} bytes; the vault takes at most {self.max_blob_bytes}")
        if hashlib.sha256(data).digest() != blob_hash:
            raise VaultError("hash_mismatch", "the data does not hash to the name it was uploaded under")
        if path.exists():
            return False
        shard = path.parent
        shard.mkdir(exist_ok=True)
        tmp = shard / f"{_TMP_PREFIX}{path.name}-{os.getpid()}-{id(data):x}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(shard)
        return True

    def get(self, blob_hash: bytes) -> bytes | None:
        """The blob's bytes, or None if the vault does not hold it."""
        try:
            return self.path_of(blob_hash).read_bytes()
        except FileNotFoundError:
            return None

    def has(self, blob_hash: bytes) -> bool:
        return self.path_of(blob_hash).is_file()

    def delete(self, blob_hash: bytes) -> bool:
        """Remove the blob durably (crypto-shredding: without the ciphertext the wrapped key is useless).
        Returns False if it was not there."""
        path = self.path_of(blob_hash)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    # ---- housekeeping --------------------------------------------------------------------------------

    def hashes(self) -> Iterator[bytes]:
        """Every blob hash the vault holds (in no particular order)."""
        for shard in self.root.iterdir():
            if shard.is_dir() and len(shard.name) == 2:
                for f in shard.iterdir():
                    if len(f.name) == 64 and not f.name.endswith(".tmp"):
                        try:
                            yield bytes.fromhex(f.name)
                        except ValueError:
                            continue

    def _remove_temporaries(self) -> None:
        for shard in self.root.iterdir():
            if not shard.is_dir():
                continue
            for tmp in shard.glob(_TMP_PREFIX + "*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()

    def __repr__(self) -> str:
        return f"Vault({str(self.root)!r})"


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
