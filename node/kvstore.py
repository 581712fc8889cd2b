"""The LevelDB backend of :class:`consensus.kv.KVStore` (through plyvel).

plyvel is imported when a store is opened, not when this module is imported, so code that only needs the
in-memory store never needs the native library.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from consensus.kv import prefix_upper_bound

__all__ = ["LevelDBKV"]

#: LevelDB options (D-39). No block compression: the state is hashes, keys and signatures, which Snappy
#: cannot shrink, and compressing them cost about a fifth of a busy node's CPU in compactions. A larger
#: memtable means fewer, larger level-0 files (fewer compactions); the block cache keeps hot state-tree nodes
#: and records in memory.
WRITE_BUFFER_BYTES = 32 * 1024 * 1024
BLOCK_CACHE_BYTES = 64 * 1024 * 1024


class StoreError(OSError):
    """The LevelDB directory cannot be opened: missing, corrupt, or locked by another process."""


class LevelDBKV:
    """A :class:`consensus.kv.KVStore` over one LevelDB directory.

    LevelDB's default comparator orders keys bytewise, the same order as ``MemoryKV``. A directory can be
    open in one ``LevelDBKV`` at a time (LevelDB holds a lock file); close it (or leave the ``with`` block)
    before opening it again.
    """

    def __init__(self, path: str | os.PathLike[str], create_if_missing: bool = True) -> None:
        import plyvel

        self._path = os.fspath(path)
        try:
            self._db: Any = plyvel.DB(self._path, create_if_missing=create_if_missing, compression=None,
                                      write_buffer_size=WRITE_BUFFER_BYTES, lru_cache_size=BLOCK_CACHE_BYTES)
        except (plyvel.IOError, plyvel.Error) as e:
            msg = e.args[0].decode("utf-8", "replace") if e.args and isinstance(e.args[0], bytes) else str(e)
            if "lock" in msg.lower():
                raise StoreError(f"the store {self._path} is locked by another process (is a node already "
                                 "running on this home?)") from None
            raise StoreError(f"cannot open the store {self._path}: {msg}") from None

    @property
    def path(self) -> str:
        """The LevelDB directory."""
        return self._path

    def get(self, key: bytes) -> bytes | None:
        """Return the value under ``key`` or ``None``."""
        value: bytes | None = self._db.get(key)
        return value

    def iterate(
        self, prefix: bytes = b"", start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield the pairs under ``prefix`` in key order (see ``KVStore.iterate``); the iterator reads a
        snapshot of the database taken when it is created.

        plyvel's ``prefix=`` cannot be combined with ``start=``, so the prefix is turned into a key range:
        ``[prefix, prefix_upper_bound(prefix))``, open-ended when the prefix is all 0xff bytes.
        """
        if type(prefix) is not bytes:
            raise TypeError("prefix must be bytes")
        if start is not None:
            if type(start) is not bytes:
                raise TypeError("start must be bytes or None")
            if not start.startswith(prefix):
                raise ValueError("start must begin with prefix")
        upper = prefix_upper_bound(prefix)
        if reverse:
            # Only an upper bound is given to plyvel: "key <= start" is written "key < start + 0x00" (the
            # next possible key after start), and the lower bound (the prefix) is checked here: plyvel
            # 1.5.1's reverse iterators yield nothing when the only key in [start, stop) is start itself
            # (even with include_stop=True for start == stop), so their `start` bound is not used.
            stop = upper if start is None else start + b"\x00"
            return self._drain_down_to(self._db.iterator(reverse=True, stop=stop), prefix)
        low = start if start is not None else (prefix or None)
        return self._drain(self._db.iterator(start=low, stop=upper))

    @staticmethod
    def _drain(it: Any) -> Iterator[tuple[bytes, bytes]]:
        with it:
            yield from it

    @staticmethod
    def _drain_down_to(it: Any, low: bytes) -> Iterator[tuple[bytes, bytes]]:
        with it:
            for key, value in it:
                if key < low:
                    return
                yield key, value

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        """Apply one atomic batch through a transactional ``write_batch``: if anything in the batch fails
        (e.g. a key that is not bytes), nothing is written."""
        dels = list(deletes)
        if dels and not puts.keys().isdisjoint(dels):
            raise ValueError("a key is both put and deleted in the same batch")
        with self._db.write_batch(transaction=True, sync=sync) as batch:
            for key, value in puts.items():
                if type(key) is not bytes or type(value) is not bytes:
                    raise TypeError("keys and values must be bytes")
                batch.put(key, value)
            for key in dels:
                if type(key) is not bytes:
                    raise TypeError("keys must be bytes")
                batch.delete(key)

    def close(self) -> None:
        """Close the database (idempotent); later reads and writes raise ``RuntimeError``."""
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return bool(self._db.closed)

    def __enter__(self) -> LevelDBKV:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LevelDBKV({self._path!r})"
