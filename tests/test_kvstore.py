"""One conformance suite for every KVStore backend, plus the Overlay's own behaviour.

Backends: MemoryKV; LevelDBKV in tmp_path; an Overlay over a MemoryKV used as a store in its own right
(writes staged, reads merged); and an Overlay that commits every write to its base.
"""

from __future__ import annotations

import ast
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from consensus.kv import KVStore, MemoryKV, Overlay, prefix_upper_bound
from node.kvstore import LevelDBKV

ROOT = Path(__file__).resolve().parent.parent


class CommittingOverlay(Overlay):
    """An Overlay whose every write goes straight through to the base (via commit)."""

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        super().write(puts, deletes, sync)
        self.commit(sync=sync)


class CountingKV(MemoryKV):
    """A MemoryKV that counts its write and get calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[dict[bytes, bytes], list[bytes]]] = []
        self.gets: list[bytes] = []

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True) -> None:
        dels = list(deletes)
        self.writes.append((dict(puts), dels))
        super().write(puts, dels, sync)

    def get(self, key: bytes) -> bytes | None:
        self.gets.append(key)
        return super().get(key)


BACKENDS = ["memory", "leveldb", "overlay", "overlay-committed"]
Factory = Callable[[], KVStore]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    counter = itertools.count()
    opened: list[KVStore] = []
    kind = request.param

    def factory() -> KVStore:
        store: KVStore
        if kind == "memory":
            store = MemoryKV()
        elif kind == "leveldb":
            store = LevelDBKV(tmp_path / f"db{next(counter)}")
        elif kind == "overlay":
            store = Overlay(MemoryKV())
        else:
            store = CommittingOverlay(MemoryKV())
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(make_store: Factory) -> KVStore:
    return make_store()


def model_iterate(
    model: Mapping[bytes, bytes], prefix: bytes = b"", start: bytes | None = None, reverse: bool = False
) -> list[tuple[bytes, bytes]]:
    keys = sorted(k for k in model if k.startswith(prefix))
    if start is not None:
        keys = [k for k in keys if (k <= start if reverse else k >= start)]
    if reverse:
        keys.reverse()
    return [(k, model[k]) for k in keys]


# ---------------------------------------------------------------------------------------------------------
# Conformance
# ---------------------------------------------------------------------------------------------------------


def test_is_a_kvstore(store: KVStore) -> None:
    assert isinstance(store, KVStore)


def test_get_put_delete(store: KVStore) -> None:
    assert store.get(b"a") is None
    store.write({b"a": b"1", b"b": b"2"})
    assert store.get(b"a") == b"1"
    assert store.get(b"b") == b"2"
    store.write({b"a": b"one"}, [b"b"])
    assert store.get(b"a") == b"one"
    assert store.get(b"b") is None
    store.write({}, [b"b", b"never-there"])  # deleting absent keys is a no-op
    assert store.get(b"b") is None
    assert list(store.iterate()) == [(b"a", b"one")]


def test_empty_value_and_empty_key(store: KVStore) -> None:
    store.write({b"": b"root", b"k": b""})
    assert store.get(b"") == b"root"
    assert store.get(b"k") == b""
    assert list(store.iterate()) == [(b"", b"root"), (b"k", b"")]
    store.write({}, [b""])
    assert store.get(b"") is None


def test_iteration_is_ordered(store: KVStore) -> None:
    rng = random.Random(7)
    model = {rng.randbytes(rng.randrange(0, 6)): rng.randbytes(4) for _ in range(300)}
    store.write(model)
    assert list(store.iterate()) == model_iterate(model), "seed=7"
    assert list(store.iterate(reverse=True)) == model_iterate(model, reverse=True), "seed=7"


def test_prefix_and_start(store: KVStore) -> None:
    model = {
        k: k.upper() for k in [b"a", b"ab", b"abc", b"abd", b"ac", b"b", b"ba", b"", b"a\xff", b"a\xff\x00"]
    }
    store.write(model)
    cases: list[tuple[bytes, bytes | None]] = [
        (b"", None),
        (b"a", None),
        (b"ab", None),
        (b"a", b"ab"),
        (b"a", b"abb"),  # absent start: next key forward, previous key backward
        (b"a", b"a"),
        (b"a", b"az"),
        (b"a", b"a\xff\xff"),
        (b"b", b"b"),
        (b"c", None),
        (b"zz", b"zzz"),
        (b"", b""),
    ]
    for prefix, start in cases:
        for reverse in (False, True):
            got = list(store.iterate(prefix, start, reverse))
            assert got == model_iterate(model, prefix, start, reverse), (prefix, start, reverse)


def test_prefixes_of_ff_bytes(store: KVStore) -> None:
    keys = [
        b"\xfe",
        b"\xfe\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xfe\xff",
        b"\xff\xff",
        b"\xff\xff\x00",
        b"\xff\xff\xff",
    ]
    model = {k: b"v" + k for k in keys}
    store.write(model)
    for prefix in (b"\xff", b"\xff\xff", b"\xff\xff\xff", b"\xfe", b"\xfe\xff", b"\xff\xfe"):
        for start in (None, prefix, prefix + b"\x00", prefix + b"\xff", prefix + b"\xff\xff\xff"):
            for reverse in (False, True):
                got = list(store.iterate(prefix, start, reverse))
                assert got == model_iterate(model, prefix, start, reverse), (prefix, start, reverse)


def test_start_must_begin_with_prefix(store: KVStore) -> None:
    with pytest.raises(ValueError):
        store.iterate(b"a", b"b")  # raised by the call itself, before iterating
    with pytest.raises(ValueError):
        store.iterate(b"ab", b"a", reverse=True)


def test_put_and_delete_of_one_key_is_an_error_and_writes_nothing(store: KVStore) -> None:
    store.write({b"x": b"0"})
    with pytest.raises(ValueError):
        store.write({b"a": b"1", b"b": b"2", b"x": b"1"}, [b"x"])
    assert store.get(b"a") is None
    assert store.get(b"b") is None
    assert store.get(b"x") == b"0"
    assert list(store.iterate()) == [(b"x", b"0")]


def test_bad_types_write_nothing(store: KVStore) -> None:
    with pytest.raises(TypeError):
        store.write({b"a": b"1", b"b": "not bytes"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.write({b"c": b"1"}, ["not bytes"])  # type: ignore[list-item]
    assert store.get(b"a") is None
    assert store.get(b"c") is None
    assert list(store.iterate()) == []


def test_deletes_may_be_a_generator(store: KVStore) -> None:
    store.write({b"a": b"1", b"b": b"2", b"c": b"3"})
    store.write({b"d": b"4"}, (k for k in [b"a", b"c"]))
    assert list(store.iterate()) == [(b"b", b"2"), (b"d", b"4")]


def test_many_keys_across_index_chunks(store: KVStore) -> None:
    # Enough keys to split MemoryKV's index chunks and to drop and rebuild the index, interleaving
    # iterations (which sync the index) with writes and deletes.
    rng = random.Random(11)
    model: dict[bytes, bytes] = {}
    for step in range(12):
        puts = {rng.randbytes(3): rng.randbytes(2) for _ in range(rng.choice([5, 400, 2500]))}
        dels = [k for k in list(model)[: rng.randrange(0, 600)] if k not in puts]
        store.write(puts, dels)
        model.update(puts)
        for k in dels:
            del model[k]
        prefix = bytes([rng.randrange(256)])
        start = prefix + rng.randbytes(1)
        for reverse in (False, True):
            assert list(store.iterate(prefix, start, reverse)) == model_iterate(
                model, prefix, start, reverse
            ), f"seed=11 step={step}"
        assert list(store.iterate()) == model_iterate(model), f"seed=11 step={step}"


# -- model-based property --------------------------------------------------------------------------------

_key = st.lists(st.sampled_from([0x00, 0x01, 0x7F, 0xFE, 0xFF]), max_size=3).map(bytes)
_value = st.binary(max_size=3)
_op = st.one_of(
    st.tuples(st.just("write"), st.dictionaries(_key, _value, max_size=6), st.lists(_key, max_size=4)),
    st.tuples(st.just("conflict"), _key, _value),
    st.tuples(st.just("iterate"), _key, st.none() | _key, st.booleans()),
    st.tuples(st.just("get"), _key),
    st.tuples(st.just("commit")),
)


@seed(20240601)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(_op, max_size=30))
def test_backend_matches_a_dict_model(make_store: Factory, ops: list[tuple[object, ...]]) -> None:
    store = make_store()
    model: dict[bytes, bytes] = {}
    try:
        for op in ops:
            kind = op[0]
            if kind == "write":
                puts, dels = op[1], op[2]
                assert isinstance(puts, dict) and isinstance(dels, list)
                dels = [k for k in dels if k not in puts]
                store.write(puts, dels)
                model.update(puts)
                for k in dels:
                    model.pop(k, None)
            elif kind == "conflict":
                key, value = op[1], op[2]
                assert isinstance(key, bytes) and isinstance(value, bytes)
                with pytest.raises(ValueError):
                    store.write({key: value, key + b"\x01": value}, [key])
            elif kind == "iterate":
                prefix, suffix, reverse = op[1], op[2], op[3]
                assert isinstance(prefix, bytes) and isinstance(reverse, bool)
                start = None if suffix is None else prefix + suffix  # type: ignore[operator]
                assert list(store.iterate(prefix, start, reverse)) == model_iterate(
                    model, prefix, start, reverse
                )
            elif kind == "get":
                key = op[1]
                assert isinstance(key, bytes)
                assert store.get(key) == model.get(key)
            elif kind == "commit" and isinstance(store, Overlay):
                store.commit()
        assert list(store.iterate()) == model_iterate(model)
        for key in model:
            assert store.get(key) == model[key]
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------------------
# prefix_upper_bound, MemoryKV specifics
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "upper"),
    [
        (b"", None),
        (b"a", b"b"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\x00", b"\x01"),
        (b"\xfe\xff", b"\xff"),
        (b"\xff", None),
        (b"\xff\xff", None),
        (b"ab\x00", b"ab\x01"),
    ],
)
def test_prefix_upper_bound(prefix: bytes, upper: bytes | None) -> None:
    assert prefix_upper_bound(prefix) == upper


def test_memory_iterator_survives_writes_and_other_iterations() -> None:
    store = MemoryKV({bytes([i, j]): b"v" for i in range(40) for j in range(40)})
    seen = []
    for n, (key, _) in enumerate(store.iterate()):
        seen.append(key)
        if n % 100 == 0:
            store.write({key + b"\x00": b"new"}, [bytes([39, 39])])
            list(store.iterate(bytes([n % 40])))  # syncs the index under the running iterator
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)


# ---------------------------------------------------------------------------------------------------------
# Overlay
# ---------------------------------------------------------------------------------------------------------


def _base_with(items: Mapping[bytes, bytes]) -> CountingKV:
    base = CountingKV()
    base.write(items)
    base.writes.clear()
    return base


def test_overlay_merges_pending_writes_over_the_base_in_order() -> None:
    base = _base_with({b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4", b"x": b"9"})
    ov = Overlay(base)
    ov.put(b"b", b"two")  # override
    ov.delete(b"c")  # hide
    ov.put(b"e", b"5")  # new, after the base keys
    ov.put(b"0", b"0")  # new, before them
    ov.put(b"bb", b"22")  # new, between
    ov.delete(b"zz")  # delete of an absent key
    model = {b"0": b"0", b"a": b"1", b"b": b"two", b"bb": b"22", b"d": b"4", b"e": b"5", b"x": b"9"}
    for prefix in (b"", b"b", b"c", b"x", b"\xff"):
        for start in (None, prefix, prefix + b"b", prefix + b"\xff"):
            for reverse in (False, True):
                got = list(ov.iterate(prefix, start, reverse))
                assert got == model_iterate(model, prefix, start, reverse), (prefix, start, reverse)
    assert ov.get(b"c") is None
    assert ov.get(b"b") == b"two"
    assert base.get(b"c") == b"3"  # the base is untouched until commit
    assert base.writes == []


def test_overlay_reads_of_pending_keys_never_touch_the_base() -> None:
    base = _base_with({b"a": b"1", b"b": b"2"})
    ov = Overlay(base)
    ov.put(b"a", b"x")
    ov.delete(b"b")
    base.gets.clear()
    assert ov.get(b"a") == b"x"
    assert ov.get(b"b") is None
    assert base.gets == []
    assert ov.get(b"c") is None
    assert base.gets == [b"c"]


def test_overlay_changes_are_disjoint_copies() -> None:
    ov = Overlay(MemoryKV({b"a": b"1"}))
    ov.put(b"a", b"2")
    ov.delete(b"a")
    ov.put(b"b", b"3")
    ov.delete(b"c")
    ov.put(b"c", b"4")
    puts, dels = ov.changes()
    assert puts == {b"b": b"3", b"c": b"4"}
    assert dels == {b"a"}
    puts[b"zzz"] = b"mutating the copy"
    assert ov.get(b"zzz") is None


def test_overlay_commit_is_one_base_write() -> None:
    base = _base_with({b"a": b"1", b"b": b"2"})
    ov = Overlay(base)
    ov.put(b"a", b"x")
    ov.delete(b"b")
    ov.put(b"c", b"3")
    ov.commit({b"t/node": b"N"}, sync=False)
    assert base.writes == [({b"a": b"x", b"c": b"3", b"t/node": b"N"}, [b"b"])]
    assert ov.changes() == ({}, set())
    assert list(base.iterate()) == [(b"a", b"x"), (b"c", b"3"), (b"t/node", b"N")]


def test_overlay_commit_extra_puts_win_over_pending_deletes() -> None:
    base = _base_with({b"k": b"old"})
    ov = Overlay(base)
    ov.delete(b"k")
    ov.commit({b"k": b"extra"})
    assert base.get(b"k") == b"extra"
    assert base.writes == [({b"k": b"extra"}, [])]


def test_overlay_failed_commit_keeps_pending_writes() -> None:
    class FailingKV(MemoryKV):
        def write(
            self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = (), sync: bool = True
        ) -> None:
            raise OSError("disk full")

    ov = Overlay(FailingKV())
    ov.put(b"a", b"1")
    with pytest.raises(OSError):
        ov.commit()
    assert ov.changes() == ({b"a": b"1"}, set())


def test_overlay_snapshot_and_revert_undo_one_transaction() -> None:
    base = MemoryKV({b"a": b"1", b"b": b"2", b"c": b"3"})
    ov = Overlay(base)
    ov.put(b"a", b"block")
    ov.delete(b"b")
    before = ov.changes()

    tx = ov.snapshot()
    ov.put(b"a", b"tx")  # over a pending put
    ov.put(b"b", b"tx")  # over a pending delete
    ov.delete(b"c")  # over nothing pending
    ov.put(b"d", b"tx")
    ov.put(b"d", b"tx2")  # twice
    inner = ov.snapshot()
    ov.delete(b"d")
    ov.revert(inner)
    assert ov.get(b"d") == b"tx2"
    ov.revert(tx)

    assert ov.changes() == before
    assert list(ov.iterate()) == [(b"a", b"block"), (b"c", b"3")]


def test_overlay_snapshot_invalid_after_commit() -> None:
    ov = Overlay(MemoryKV())
    mark = ov.snapshot()
    ov.put(b"a", b"1")
    ov.commit()
    ov.put(b"b", b"2")
    with pytest.raises(ValueError):
        ov.revert(mark)
    assert ov.get(b"b") == b"2"


@seed(1234)
@settings(max_examples=80, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("put"), _key, _value),
            st.tuples(st.just("delete"), _key),
            st.tuples(st.just("snapshot")),
            st.tuples(st.just("revert")),
        ),
        max_size=40,
    )
)
def test_overlay_revert_restores_exactly_the_view_at_the_snapshot(ops: list[tuple[object, ...]]) -> None:
    base = MemoryKV({b"\x00": b"base0", b"\x7f": b"base7f", b"\xff": b"baseff"})
    ov = Overlay(base)
    stack: list[tuple[object, list[tuple[bytes, bytes]], tuple[dict[bytes, bytes], set[bytes]]]] = []
    for op in ops:
        if op[0] == "put":
            ov.put(op[1], op[2])  # type: ignore[arg-type]
        elif op[0] == "delete":
            ov.delete(op[1])  # type: ignore[arg-type]
        elif op[0] == "snapshot":
            stack.append((ov.snapshot(), list(ov.iterate()), ov.changes()))
        elif stack:
            mark, view, changes = stack.pop()
            ov.revert(mark)  # type: ignore[arg-type]
            assert list(ov.iterate()) == view
            assert ov.changes() == changes


def test_overlays_stack() -> None:
    disk = MemoryKV({b"a": b"1"})
    block = Overlay(disk)
    block.put(b"b", b"2")
    tx = Overlay(block)
    tx.write({b"c": b"3"}, [b"a"])
    assert list(tx.iterate()) == [(b"b", b"2"), (b"c", b"3")]
    tx.commit()  # into the block overlay, not the disk
    assert list(disk.iterate()) == [(b"a", b"1")]
    block.commit()
    assert list(disk.iterate()) == [(b"b", b"2"), (b"c", b"3")]


# ---------------------------------------------------------------------------------------------------------
# LevelDB specifics
# ---------------------------------------------------------------------------------------------------------


def test_leveldb_reopen_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with LevelDBKV(path) as db:
        db.write({b"a": b"1", b"b": b"2"}, sync=True)
        db.write({}, [b"a"])
    assert db.closed
    with pytest.raises(RuntimeError):
        db.get(b"b")
    with LevelDBKV(path, create_if_missing=False) as db:
        assert db.get(b"a") is None
        assert list(db.iterate()) == [(b"b", b"2")]


def test_leveldb_missing_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(Exception):  # noqa: B017 - plyvel raises its own error type
        LevelDBKV(tmp_path / "nothing-here", create_if_missing=False)


def test_leveldb_iterator_reads_a_snapshot(tmp_path: Path) -> None:
    with LevelDBKV(tmp_path / "db") as db:
        db.write({b"a": b"1", b"b": b"2"})
        it = db.iterate()
        assert next(it) == (b"a", b"1")
        db.write({b"c": b"3"}, [b"b"])
        assert list(it) == [(b"b", b"2")]


def test_leveldb_module_imports_plyvel_lazily() -> None:
    source = (ROOT / "node" / "kvstore.py").read_text()
    tree = ast.parse(source)
    top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    names = {a.name for n in top_level for a in n.names} | {
        n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module
    }
    assert "plyvel" not in names


# ---------------------------------------------------------------------------------------------------------
# Purity of the consensus-side modules
# ---------------------------------------------------------------------------------------------------------

FORBIDDEN = {"asyncio", "socket", "time", "random", "threading", "subprocess", "plyvel", "httpx", "fastapi"}


@pytest.mark.parametrize("module", ["consensus/kv.py", "consensus/statetree.py"])
def test_pure_modules_import_no_io(module: str) -> None:
    tree = ast.parse((ROOT / module).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
