"""The key-value store interface under the ledger state, with an in-memory store and a staging overlay.

Rules of this module:

* Pure: no I/O, no clocks, no randomness. Disk-backed stores live in ``node/`` (``node.kvstore.LevelDBKV``)
  and implement the same :class:`KVStore` protocol; one conformance suite (``tests/test_kvstore.py``) runs
  against every implementation.
* Keys and values are ``bytes``. Order is plain lexicographic byte order (what LevelDB's default comparator
  gives), so iteration is identical on every backend and every machine.
* ``write`` is the only way to change a store, and one call is one atomic batch: all of it or none of it.
* Iterators may or may not see writes made while they are open (LevelDB iterators read a snapshot, the
  memory store reads live data); they never fail because of them. Callers that need a stable view finish
  iterating before writing.

:class:`Overlay` stages the writes of a block (or a transaction) over a base store, answers reads through
the staged writes, can undo the writes of one failed transaction (``snapshot``/``revert``) and finally hands
everything to the base in one atomic ``write``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Mapping
from itertools import filterfalse
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "KVStore",
    "MemoryKV",
    "Overlay",
    "OverlaySnapshot",
    "prefix_upper_bound",
]

_NO_PUTS: Mapping[bytes, bytes] = MappingProxyType({})


@runtime_checkable
class KVStore(Protocol):
    """An ordered byte-string key-value store with atomic batch writes."""

    def get(self, key: bytes) -> bytes | None:
        """Return the value stored under ``key``, or ``None`` if the key is absent."""
        ...

    def iterate(
        self, prefix: bytes = b"", start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield every ``(key, value)`` whose key starts with ``prefix``, in ascending byte order of keys
        (descending if ``reverse``).

        ``start``, if given, is a full key that must itself start with ``prefix`` (else ``ValueError``,
        raised by the call, not by the first ``next``): forward iteration begins at the first key
        ``>= start``, reverse iteration at the last key ``<= start``. ``start`` need not be present.
        """
        ...

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        """Apply ``puts`` and ``deletes`` as ONE atomic batch: afterwards either all of them are visible or,
        if the call raised, none of them.

        Deleting an absent key is a no-op. A key that is both put and deleted in the same call is a caller
        error: ``ValueError``, and nothing is written. ``sync`` asks a durable store to reach stable storage
        before returning; stores without durability ignore it.
        """
        ...

    def close(self) -> None:
        """Release the store's resources. Using a durable store after ``close`` raises."""
        ...


def prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix``, or ``None`` if there is none.

    It is the prefix with its trailing 0xff bytes dropped and its last remaining byte incremented; a prefix
    made only of 0xff bytes (or empty) has no upper bound: every key ``>= prefix`` starts with it.
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes((stripped[-1] + 1,))


def _check_start(prefix: bytes, start: bytes | None) -> None:
    if type(prefix) is not bytes:
        raise TypeError("prefix must be bytes")
    if start is not None:
        if type(start) is not bytes:
            raise TypeError("start must be bytes or None")
        if not start.startswith(prefix):
            raise ValueError("start must begin with prefix")


def _check_batch(puts: Mapping[bytes, bytes], deletes: Iterable[bytes]) -> list[bytes]:
    """Validate a write batch before any of it is applied; return the deletes as a list."""
    dels = list(deletes)
    # set(map(type, ...)) keeps the type check in C: it matters for batches of many thousand keys.
    if not set(map(type, puts.keys())) <= _BYTES_ONLY or not set(map(type, puts.values())) <= _BYTES_ONLY:
        raise TypeError("keys and values must be bytes")
    if dels:
        if not set(map(type, dels)) <= _BYTES_ONLY:
            raise TypeError("keys must be bytes")
        if not puts.keys().isdisjoint(dels):
            raise ValueError("a key is both put and deleted in the same batch")
    return dels


_BYTES_ONLY = frozenset((bytes,))


# ---------------------------------------------------------------------------------------------------------
# In-memory store
# ---------------------------------------------------------------------------------------------------------

_CHUNK_MAX = 1024  # a chunk of the sorted index splits in two when it grows past this many keys


class MemoryKV:
    """An in-memory :class:`KVStore`: a dict for the values plus a sorted index of the keys for iteration.

    The index is a list of sorted chunks (each at most ``_CHUNK_MAX`` keys) with the largest key of each
    chunk kept in a parallel list, so finding where an iteration starts is two ``bisect`` calls, and inserting
    a key moves at most one chunk, not the whole index: it stays fast at millions of keys.

    Writes only touch the dict and record which keys the index still lacks (or still holds after a delete);
    the index catches up at the next ``iterate`` call. Once the backlog outgrows an eighth of the store the
    index is dropped and the bookkeeping stops; the next ``iterate`` rebuilds it with one sort. A store that
    is written far more than it is iterated (the state tree's node store is never iterated) so pays for
    little more than the dict.
    """

    def __init__(self, items: Mapping[bytes, bytes] | None = None) -> None:
        self._data: dict[bytes, bytes] = {}
        self._chunks: list[list[bytes]] = []
        self._maxes: list[bytes] = []
        self._indexed = True  # False: the index is dropped, rebuild it before iterating
        self._missing: set[bytes] = set()  # in _data, not yet in the index
        self._stale: set[bytes] = set()  # in the index, no longer in _data
        if items:
            self.write(items)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: bytes) -> bytes | None:
        """Return the value under ``key`` or ``None``."""
        return self._data.get(key)

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        """Apply one atomic batch (validated in full before anything changes); ``sync`` is ignored."""
        dels = _check_batch(puts, deletes)
        data = self._data
        if not self._indexed:
            data.update(puts)
            for key in dels:
                data.pop(key, None)
            return
        # Bookkeeping for the index, in set operations (C speed): new keys go to _missing, unless the
        # index still holds them from a delete not yet applied to it (then they simply stop being stale).
        missing = self._missing
        stale = self._stale
        new = set(filterfalse(data.__contains__, puts))
        if new:
            if stale:
                back = new & stale
                if back:
                    stale -= back
                    new -= back
            missing |= new
        data.update(puts)
        if dels:
            gone = set(filter(data.__contains__, dels))
            for key in gone:
                del data[key]
            back = gone & missing
            if back:
                missing -= back
                gone -= back
            stale |= gone
        if len(missing) + len(stale) > max(_CHUNK_MAX, len(data) // 8):
            self._indexed = False
            self._chunks = []
            self._maxes = []
            missing.clear()
            stale.clear()

    def close(self) -> None:
        """Nothing to release: the data stays readable."""

    def iterate(
        self, prefix: bytes = b"", start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield the pairs under ``prefix`` in key order (see :meth:`KVStore.iterate`)."""
        _check_start(prefix, start)
        self._sync_index()
        upper = prefix_upper_bound(prefix)
        if reverse:
            if start is not None:
                return self._iter_reverse(start, True, prefix)
            if upper is not None:
                return self._iter_reverse(upper, False, prefix)
            return self._iter_reverse(None, False, prefix)
        return self._iter_forward(prefix if start is None else start, upper)

    # -- index maintenance -------------------------------------------------------------------------------

    def _sync_index(self) -> None:
        if not self._indexed:
            keys = sorted(self._data)
            step = _CHUNK_MAX // 2
            self._chunks = [keys[i : i + step] for i in range(0, len(keys), step)]
            self._maxes = [chunk[-1] for chunk in self._chunks]
            self._indexed = True
            return
        for key in sorted(self._stale):
            self._index_remove(key)
        for key in sorted(self._missing):
            self._index_insert(key)
        self._missing.clear()
        self._stale.clear()

    def _index_insert(self, key: bytes) -> None:
        chunks = self._chunks
        maxes = self._maxes
        if not chunks:
            chunks.append([key])
            maxes.append(key)
            return
        ci = bisect_left(maxes, key)
        if ci == len(chunks):
            ci -= 1
            chunks[ci].append(key)
            maxes[ci] = key
        else:
            insort(chunks[ci], key)
        chunk = chunks[ci]
        if len(chunk) > _CHUNK_MAX:
            half = len(chunk) // 2
            chunks.insert(ci + 1, chunk[half:])
            del chunk[half:]
            maxes.insert(ci, chunk[-1])

    def _index_remove(self, key: bytes) -> None:
        chunks = self._chunks
        maxes = self._maxes
        ci = bisect_left(maxes, key)
        chunk = chunks[ci]
        i = bisect_left(chunk, key)
        del chunk[i]
        if not chunk:
            del chunks[ci]
            del maxes[ci]
        elif i == len(chunk):
            maxes[ci] = chunk[-1]

    # -- iteration ---------------------------------------------------------------------------------------
    # Each step re-locates its position by bisecting on the last key it saw, and copies one chunk at a time,
    # so index maintenance done by another iterate() call in between cannot break a running iterator.

    def _iter_forward(self, low: bytes, upper: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        data = self._data
        key = low
        inclusive = True
        while True:
            maxes = self._maxes
            ci = bisect_left(maxes, key) if inclusive else bisect_right(maxes, key)
            if ci == len(maxes):
                return
            chunk = self._chunks[ci]
            i = bisect_left(chunk, key) if inclusive else bisect_right(chunk, key)
            batch = chunk[i:]
            for k in batch:
                if upper is not None and k >= upper:
                    return
                value = data.get(k)
                if value is not None:
                    yield k, value
            key = batch[-1]
            inclusive = False

    def _iter_reverse(
        self, high: bytes | None, inclusive: bool, prefix: bytes
    ) -> Iterator[tuple[bytes, bytes]]:
        data = self._data
        key = high
        while True:
            maxes = self._maxes
            if not maxes:
                return
            if key is None:
                ci = len(maxes) - 1
                chunk = self._chunks[ci]
                j = len(chunk)
            else:
                ci = bisect_left(maxes, key)
                if ci == len(maxes):
                    ci -= 1
                chunk = self._chunks[ci]
                j = bisect_right(chunk, key) if inclusive else bisect_left(chunk, key)
                if j == 0:
                    if ci == 0:
                        return
                    ci -= 1
                    chunk = self._chunks[ci]
                    j = len(chunk)
            batch = chunk[:j]
            for k in reversed(batch):
                if k < prefix:
                    return
                value = data.get(k)
                if value is not None:
                    yield k, value
            key = batch[0]
            inclusive = False


# ---------------------------------------------------------------------------------------------------------
# Staging overlay
# ---------------------------------------------------------------------------------------------------------

_NONE = 0  # journal tag: the key had no pending write
_PUT = 1  # ... it had a pending put (the entry keeps the value)
_DEL = 2  # ... it had a pending delete


class OverlaySnapshot(NamedTuple):
    """A mark in an :class:`Overlay`'s journal, returned by ``snapshot`` and consumed by ``revert``."""

    generation: int
    position: int


class Overlay:
    """A staged view over a base :class:`KVStore`.

    Writes (``put``, ``delete``, ``write``) are kept in memory; reads (``get``, ``iterate``) see them merged
    over the base, pending deletes hiding base keys. Reads of a key with a pending write never touch the
    base. ``commit`` hands every pending write to the base in ONE ``base.write`` call, so a block's state
    changes (plus, through ``extra_puts``, its state-tree nodes) land atomically.

    Every write is journaled as ``(key, previous pending state)``; ``snapshot()`` marks the journal and
    ``revert(mark)`` pops back to it, undoing exactly the writes made since. Snapshots nest and must be
    reverted innermost first (a stack, as an EVM journal); ``commit`` invalidates every earlier snapshot.

    An Overlay is itself a :class:`KVStore` (``write`` stages a batch atomically, ``close`` drops the pending
    writes), so overlays stack: a transaction's overlay over a block's overlay over the disk.
    """

    def __init__(self, base: KVStore) -> None:
        self._base = base
        self._puts: dict[bytes, bytes] = {}
        self._dels: set[bytes] = set()
        self._journal: list[tuple[bytes, int, bytes | None]] = []
        self._generation = 0

    @property
    def base(self) -> KVStore:
        """The store under this overlay."""
        return self._base

    # -- reads -------------------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The pending value of ``key`` if it has a pending write (``None`` for a pending delete), else the
        base's value."""
        value = self._puts.get(key)
        if value is not None:
            return value
        if key in self._dels:
            return None
        return self._base.get(key)

    def iterate(
        self, prefix: bytes = b"", start: bytes | None = None, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Yield the pairs under ``prefix`` in key order, pending writes merged over the base."""
        _check_start(prefix, start)
        upper = prefix_upper_bound(prefix)
        if reverse:
            pending = sorted(
                (k for k in self._puts if k.startswith(prefix) and (start is None or k <= start)),
                reverse=True,
            )
        else:
            low = prefix if start is None else start
            pending = sorted(k for k in self._puts if k >= low and (upper is None or k < upper))
        base_iter = self._base.iterate(prefix, start, reverse)
        return self._merge(base_iter, pending, reverse)

    def _merge(
        self, base_iter: Iterator[tuple[bytes, bytes]], pending: list[bytes], reverse: bool
    ) -> Iterator[tuple[bytes, bytes]]:
        puts = self._puts
        dels = self._dels
        i = 0
        n = len(pending)
        for key, value in base_iter:
            # Emit the pending puts that come before this base key.
            while i < n and (pending[i] > key if reverse else pending[i] < key):
                pk = pending[i]
                i += 1
                pv = puts.get(pk)
                if pv is not None:
                    yield pk, pv
            if key in dels:
                continue
            pv = puts.get(key)
            if pv is not None:
                # Pending put overrides the base value; skip it in the pending list too.
                if i < n and pending[i] == key:
                    i += 1
                yield key, pv
            else:
                yield key, value
        while i < n:
            pk = pending[i]
            i += 1
            pv = puts.get(pk)
            if pv is not None:
                yield pk, pv

    # -- staged writes -----------------------------------------------------------------------------------

    def _record(self, key: bytes) -> None:
        value = self._puts.get(key)
        if value is not None:
            self._journal.append((key, _PUT, value))
        elif key in self._dels:
            self._journal.append((key, _DEL, None))
        else:
            self._journal.append((key, _NONE, None))

    def put(self, key: bytes, value: bytes) -> None:
        """Stage ``key = value``."""
        if type(key) is not bytes or type(value) is not bytes:
            raise TypeError("keys and values must be bytes")
        self._record(key)
        self._dels.discard(key)
        self._puts[key] = value

    def delete(self, key: bytes) -> None:
        """Stage the deletion of ``key`` (whether or not the base holds it)."""
        if type(key) is not bytes:
            raise TypeError("keys must be bytes")
        self._record(key)
        self._puts.pop(key, None)
        self._dels.add(key)

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        """Stage a batch atomically (validated in full first; same rules as :meth:`KVStore.write`).

        Nothing reaches the base until :meth:`commit`; ``sync`` is ignored here.
        """
        dels = _check_batch(puts, deletes)
        for key, value in puts.items():
            self.put(key, value)
        for key in dels:
            self.delete(key)

    def changes(self) -> tuple[dict[bytes, bytes], set[bytes]]:
        """Copies of the pending puts and the pending deletes (the two never share a key)."""
        return dict(self._puts), set(self._dels)

    def snapshot(self) -> OverlaySnapshot:
        """Mark the journal, to undo every write made after this point with :meth:`revert`."""
        return OverlaySnapshot(self._generation, len(self._journal))

    def revert(self, snapshot: OverlaySnapshot) -> None:
        """Undo every write staged since ``snapshot`` was taken (cost: one step per undone write)."""
        journal = self._journal
        if snapshot.generation != self._generation or not 0 <= snapshot.position <= len(journal):
            raise ValueError("snapshot is not valid for this overlay (committed since, or already reverted)")
        puts = self._puts
        dels = self._dels
        while len(journal) > snapshot.position:
            key, tag, value = journal.pop()
            if tag == _PUT:
                assert value is not None
                dels.discard(key)
                puts[key] = value
            elif tag == _DEL:
                puts.pop(key, None)
                dels.add(key)
            else:
                puts.pop(key, None)
                dels.discard(key)

    def batch(self, extra_puts: Mapping[bytes, bytes] = _NO_PUTS) -> tuple[dict[bytes, bytes], list[bytes]]:
        """The (puts, sorted deletes) that `commit` would write, without writing: for a caller that writes
        them itself (e.g. off the event loop) and then calls `discard`. ``extra_puts`` win over deletes."""
        puts = dict(self._puts)
        puts.update(extra_puts)
        return puts, sorted(self._dels.difference(extra_puts.keys()))

    def commit(self, extra_puts: Mapping[bytes, bytes] = _NO_PUTS, sync: bool = True) -> None:
        """Write every pending change, plus ``extra_puts``, to the base in ONE ``base.write`` call, then
        start afresh (empty pending writes, empty journal, earlier snapshots invalid).

        ``extra_puts`` are applied last: a key in them is written with that value even if a delete of it
        is pending. If the base write raises, the pending writes are kept unchanged.
        """
        if extra_puts:
            puts = dict(self._puts)
            puts.update(extra_puts)
            dels = self._dels.difference(extra_puts.keys())
        else:
            puts = self._puts
            dels = self._dels
        self._base.write(puts, sorted(dels), sync)
        self._puts = {}
        self._dels = set()
        self._journal = []
        self._generation += 1

    def discard(self) -> None:
        """Drop every pending write (and the journal) without touching the base."""
        self._puts = {}
        self._dels = set()
        self._journal = []
        self._generation += 1

    def close(self) -> None:
        """Drop the pending writes; the base is not closed (the overlay does not own it)."""
        self.discard()
