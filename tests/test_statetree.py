"""The authenticated state tree: roots against an independent reference, history independence, deletions,
proofs (and their encoding), storage backends, reopening, the node cache."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from consensus.errors import DecodeError
from consensus.kv import KVStore, MemoryKV
from consensus.statetree import EMPTY, MissingNodeError, StateProof, StateTree, verify_state_proof
from node.kvstore import LevelDBKV

# ---------------------------------------------------------------------------------------------------------
# An independent reference: the root straight from the definition, recursively, no storage, no batching.
# ---------------------------------------------------------------------------------------------------------


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_root(pairs: Mapping[bytes, bytes]) -> bytes:
    """Root of the tree holding ``pairs`` (key -> value), computed from the definition."""

    def bit(path: bytes, depth: int) -> int:
        return (path[depth // 8] >> (7 - depth % 8)) & 1

    def subtree(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
        if not leaves:
            return EMPTY
        if len(leaves) == 1:
            key_hash, value_hash = leaves[0]
            return H(b"\x00" + key_hash + value_hash)
        left = [leaf for leaf in leaves if bit(leaf[0], depth) == 0]
        right = [leaf for leaf in leaves if bit(leaf[0], depth) == 1]
        return H(b"\x01" + subtree(left, depth + 1) + subtree(right, depth + 1))

    return subtree([(H(k), H(v)) for k, v in pairs.items()], 0)


GOLDEN_ABC = "8e2a164a410203f51300d7c6645b7a37f549768457be109acc126c63573a9e0a"


def commit(tree: StateTree, store: KVStore, changes: Mapping[bytes, bytes | None]) -> bytes:
    """What a caller does: update, write the nodes in one batch, move the root."""
    root, puts = tree.update(changes)
    store.write(puts)
    tree.set_root(root)
    return root


def apply(model: dict[bytes, bytes], changes: Mapping[bytes, bytes | None]) -> None:
    for key, value in changes.items():
        if value is None:
            model.pop(key, None)
        else:
            model[key] = value


def random_pairs(rng: random.Random, n: int) -> dict[bytes, bytes]:
    return {rng.randbytes(rng.randrange(1, 12)): rng.randbytes(rng.randrange(0, 20)) for _ in range(n)}


# ---------------------------------------------------------------------------------------------------------
# Roots
# ---------------------------------------------------------------------------------------------------------


def test_empty_tree() -> None:
    tree = StateTree(MemoryKV())
    assert tree.root == EMPTY == bytes(32)
    assert tree.get_value_hash(b"x") is None
    proof = tree.prove(b"x")
    assert proof == StateProof((), b"", b"")
    assert verify_state_proof(EMPTY, b"x", None, proof)
    assert not verify_state_proof(EMPTY, b"x", b"v", proof)
    assert tree.update({}) == (EMPTY, {})


def test_single_key_root_is_its_leaf() -> None:
    store = MemoryKV()
    tree = StateTree(store)
    root = commit(tree, store, {b"k": b"v"})
    assert root == H(b"\x00" + H(b"k") + H(b"v"))
    assert tree.get_value_hash(b"k") == H(b"v")


def test_golden_vector() -> None:
    pairs = {b"a": b"1", b"b": b"2", b"c": b"3"}
    # By hand: sha256(b"a") starts 0b1100..., sha256(b"b") 0b00111110..., sha256(b"c") 0b00101110...
    # So a sits alone on the right of the root; b and c share the bits 001 and split at bit 3.
    leaf = {k: H(b"\x00" + H(k) + H(v)) for k, v in pairs.items()}

    def node(left: bytes, right: bytes) -> bytes:
        return H(b"\x01" + left + right)

    by_hand = node(node(node(EMPTY, node(leaf[b"c"], leaf[b"b"])), EMPTY), leaf[b"a"])
    assert by_hand.hex() == GOLDEN_ABC
    assert ref_root(pairs).hex() == GOLDEN_ABC
    store = MemoryKV()
    tree = StateTree(store)
    assert commit(tree, store, pairs).hex() == GOLDEN_ABC


@pytest.mark.parametrize("rng_seed", [1, 2, 3])
def test_root_matches_reference_through_random_batches(rng_seed: int) -> None:
    rng = random.Random(rng_seed)
    store = MemoryKV()
    tree = StateTree(store)
    model: dict[bytes, bytes] = {}
    universe = [bytes([i]) for i in range(120)]
    for step in range(40):
        changes: dict[bytes, bytes | None] = {}
        for key in rng.sample(universe, rng.randrange(1, 40)):
            changes[key] = None if rng.random() < 0.4 else rng.randbytes(rng.randrange(0, 4))
        apply(model, changes)
        assert commit(tree, store, changes) == ref_root(model), f"seed={rng_seed} step={step}"


@seed(424242)
@settings(max_examples=150, deadline=None)
@given(
    pairs=st.dictionaries(st.binary(max_size=8), st.binary(max_size=8), max_size=60),
    order_seed=st.integers(0, 2**32 - 1),
    n_batches=st.integers(1, 8),
)
def test_root_independent_of_insertion_order_and_batching(
    pairs: dict[bytes, bytes], order_seed: int, n_batches: int
) -> None:
    expected = ref_root(pairs)
    one_batch_store = MemoryKV()
    assert commit(StateTree(one_batch_store), one_batch_store, pairs) == expected

    rng = random.Random(order_seed)
    keys = list(pairs)
    rng.shuffle(keys)
    store = MemoryKV()
    tree = StateTree(store)
    cuts = sorted(rng.randrange(len(keys) + 1) for _ in range(n_batches - 1))
    for lo, hi in zip([0, *cuts], [*cuts, len(keys)], strict=True):
        commit(tree, store, {k: pairs[k] for k in keys[lo:hi]})
    assert tree.root == expected, f"order_seed={order_seed}"


@seed(77)
@settings(max_examples=150, deadline=None)
@given(
    batches=st.lists(
        st.dictionaries(
            st.sampled_from([bytes([i]) for i in range(24)]), st.none() | st.binary(max_size=2), max_size=12
        ),
        max_size=12,
    )
)
def test_updates_and_deletes_match_reference(batches: list[dict[bytes, bytes | None]]) -> None:
    store = MemoryKV()
    tree = StateTree(store)
    model: dict[bytes, bytes] = {}
    for changes in batches:
        apply(model, changes)
        assert commit(tree, store, changes) == ref_root(model)
        for key in changes:
            expected = model.get(key)
            assert tree.get_value_hash(key) == (None if expected is None else H(expected))


def test_delete_returns_to_the_earlier_root() -> None:
    rng = random.Random(5)
    base = random_pairs(rng, 300)
    extra = {k: v for k, v in random_pairs(rng, 50).items() if k not in base}
    store = MemoryKV()
    tree = StateTree(store)
    r0 = commit(tree, store, base)
    r1 = commit(tree, store, extra)
    assert r1 != r0
    assert commit(tree, store, dict.fromkeys(extra)) == r0, "seed=5"
    # One at a time as well: every intermediate root is the root of the remaining set.
    commit(tree, store, extra)
    remaining = dict(base) | extra
    for key in list(extra):
        del remaining[key]
        assert commit(tree, store, {key: None}) == ref_root(remaining), "seed=5"
    assert tree.root == r0


def test_delete_everything_gives_empty() -> None:
    rng = random.Random(6)
    pairs = random_pairs(rng, 100)
    store = MemoryKV()
    tree = StateTree(store)
    commit(tree, store, pairs)
    assert commit(tree, store, dict.fromkeys(pairs)) == EMPTY, "seed=6"


def test_deleting_absent_keys_changes_nothing() -> None:
    store = MemoryKV()
    tree = StateTree(store)
    root = commit(tree, store, {b"a": b"1", b"b": b"2", b"c": b"3"})
    assert tree.update({b"zz": None, b"yy": None}) == (root, {})
    assert tree.update({b"a": b"1"})[0] == root  # rewriting a value as it is


def test_update_does_not_write_nor_move_the_root() -> None:
    store = MemoryKV()
    tree = StateTree(store)
    root, puts = tree.update({b"a": b"1", b"b": b"2"})
    assert tree.root == EMPTY
    assert len(store) == 0
    assert puts and all(k.startswith(b"t/") and len(k) == 34 and len(v) == 65 for k, v in puts.items())
    # Node format: the stored bytes are the hash preimage.
    for key, value in puts.items():
        assert H(value) == key[2:]
        assert value[0] in (0, 1)
    assert root in {k[2:] for k in puts}


def test_batch_hashes_each_shared_node_once() -> None:
    # A batch of k inserts into an empty tree creates exactly the nodes of the final tree: k leaves and,
    # for a compact tree, at least k - 1 internal nodes, never one per (key, level) pair.
    rng = random.Random(9)
    pairs = random_pairs(rng, 1000)
    _, puts = StateTree(MemoryKV()).update(pairs)
    leaves = sum(1 for v in puts.values() if v[0] == 0)
    internal = len(puts) - leaves
    assert leaves == len(pairs)
    assert len(pairs) - 1 <= internal < 3 * len(pairs), "seed=9"


def test_custom_node_prefix() -> None:
    store = MemoryKV()
    tree = StateTree(store, node_prefix=b"state-nodes/")
    commit(tree, store, {b"a": b"1", b"b": b"2"})
    assert all(k.startswith(b"state-nodes/") for k, _ in store.iterate())
    assert tree.node_prefix == b"state-nodes/"


def test_bad_input_types() -> None:
    tree = StateTree(MemoryKV())
    with pytest.raises(TypeError):
        tree.update({"a": b"1"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        tree.update({b"a": "1"})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        tree.set_root(b"short")
    with pytest.raises(ValueError):
        StateTree(MemoryKV(), root=b"\x00" * 31)


# ---------------------------------------------------------------------------------------------------------
# Proofs
# ---------------------------------------------------------------------------------------------------------


PROOF_SEED = 2024


@pytest.fixture(scope="module")
def proof_tree() -> tuple[StateTree, dict[bytes, bytes], list[bytes]]:
    rng = random.Random(PROOF_SEED)
    pairs = random_pairs(rng, 400)
    absent = [k for k in (rng.randbytes(13) for _ in range(400)) if k not in pairs]
    store = MemoryKV()
    tree = StateTree(store)
    commit(tree, store, pairs)
    return tree, pairs, absent


def test_membership_proofs_verify_for_every_key(
    proof_tree: tuple[StateTree, dict[bytes, bytes], list[bytes]],
) -> None:
    tree, pairs, _ = proof_tree
    for key, value in pairs.items():
        proof = tree.prove(key)
        assert proof.leaf_key_hash == H(key)
        assert verify_state_proof(tree.root, key, value, proof), f"seed={PROOF_SEED} key={key!r}"
        assert tree.get_value_hash(key) == H(value)
        assert not verify_state_proof(tree.root, key, value + b"!", proof)
        assert not verify_state_proof(tree.root, key, None, proof)  # a present key cannot be shown absent


def test_non_membership_proofs_verify(proof_tree: tuple[StateTree, dict[bytes, bytes], list[bytes]]) -> None:
    tree, _, absent = proof_tree
    kinds = set()
    for key in absent:
        proof = tree.prove(key)
        kinds.add("empty" if proof.leaf_key_hash == b"" else "other-leaf")
        assert verify_state_proof(tree.root, key, None, proof), f"seed={PROOF_SEED} key={key!r}"
        assert not verify_state_proof(tree.root, key, b"", proof)
        assert tree.get_value_hash(key) is None
    assert kinds == {"empty", "other-leaf"}  # both ways of showing absence are exercised


def test_proofs_fail_when_tampered(proof_tree: tuple[StateTree, dict[bytes, bytes], list[bytes]]) -> None:
    tree, pairs, absent = proof_tree
    root = tree.root
    wrong_root = H(b"another root")
    cases: list[tuple[bytes, bytes | None]] = [(k, pairs[k]) for k in list(pairs)[:60]]
    cases += [(k, None) for k in absent[:60]]
    for key, value in cases:
        proof = tree.prove(key)
        assert verify_state_proof(root, key, value, proof)
        assert not verify_state_proof(wrong_root, key, value, proof)
        assert not verify_state_proof(EMPTY, key, value, proof)
        sibs = proof.siblings
        for i in range(len(sibs)):
            tampered = bytes([sibs[i][0] ^ 1]) + sibs[i][1:]
            bad = StateProof(
                (*sibs[:i], tampered, *sibs[i + 1 :]), proof.leaf_key_hash, proof.leaf_value_hash
            )
            assert not verify_state_proof(root, key, value, bad), f"seed={PROOF_SEED} key={key!r} i={i}"
        truncated = [
            StateProof(sibs[:-1], proof.leaf_key_hash, proof.leaf_value_hash),
            StateProof(sibs[1:], proof.leaf_key_hash, proof.leaf_value_hash),
            StateProof((*sibs, EMPTY), proof.leaf_key_hash, proof.leaf_value_hash),
            StateProof((EMPTY, *sibs), proof.leaf_key_hash, proof.leaf_value_hash),
        ]
        for bad in truncated:
            assert not verify_state_proof(root, key, value, bad), f"seed={PROOF_SEED} key={key!r}"
        if proof.leaf_key_hash:
            blank = StateProof(sibs, b"", b"")
            assert not verify_state_proof(root, key, value, blank)
            other_value = StateProof(sibs, proof.leaf_key_hash, H(b"forged"))
            assert not verify_state_proof(root, key, value, other_value)


def test_a_leaf_proves_absence_only_of_keys_in_its_subtree() -> None:
    store = MemoryKV()
    tree = StateTree(store)
    commit(tree, store, {b"a": b"1", b"b": b"2", b"c": b"3"})
    proof_a = tree.prove(b"a")  # a is alone on the right: its proof has one sibling
    assert len(proof_a.siblings) == 1
    # A key whose path starts with bit 1 falls into a's subtree, so a's leaf proves it absent...
    inside = next(k for k in (bytes([i]) for i in range(256)) if H(k)[0] >> 7 == 1 and k != b"a")
    assert verify_state_proof(tree.root, inside, None, proof_a)
    assert tree.prove(inside) == proof_a
    # ...but not a key on the other side.
    outside = next(k for k in (bytes([i]) for i in range(256)) if H(k)[0] >> 7 == 0)
    assert not verify_state_proof(tree.root, outside, None, proof_a)


def test_verify_never_raises_on_garbage() -> None:
    root = H(b"r")
    garbage = [
        StateProof(("x" * 32,), b"", b""),  # type: ignore[arg-type]
        StateProof([EMPTY], b"", b""),  # type: ignore[arg-type]
        StateProof((EMPTY,) * 257, b"", b""),
        StateProof((b"short",), b"", b""),
        StateProof((), b"\x00" * 32, b""),
        StateProof((), b"", b"\x00" * 32),
        StateProof((), None, None),  # type: ignore[arg-type]
        StateProof((), b"\x00" * 31, b"\x00" * 32),
    ]
    for proof in garbage:
        assert verify_state_proof(root, b"k", None, proof) is False
        assert verify_state_proof(root, b"k", b"v", proof) is False
    assert verify_state_proof(b"short", b"k", None, StateProof((), b"", b"")) is False
    assert verify_state_proof(EMPTY, "k", None, StateProof((), b"", b"")) is False  # type: ignore[arg-type]
    assert verify_state_proof(EMPTY, b"k", 5, StateProof((), b"", b"")) is False  # type: ignore[arg-type]


# -- proof encoding --------------------------------------------------------------------------------------


def test_proof_encode_decode_round_trip(
    proof_tree: tuple[StateTree, dict[bytes, bytes], list[bytes]],
) -> None:
    tree, pairs, absent = proof_tree
    for key in list(pairs)[:50] + absent[:50]:
        proof = tree.prove(key)
        data = proof.encode()
        assert StateProof.decode(data) == proof
        assert msgpack.unpackb(data) == [list(proof.siblings), proof.leaf_key_hash, proof.leaf_value_hash]
    assert StateProof((), b"", b"").encode() == bytes.fromhex("9390c400c400")


def _pack(obj: object) -> bytes:
    out: bytes = msgpack.packb(obj, use_bin_type=True)
    return out


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never-used msgpack byte
        _pack([[], b"", b""]) + b"\x00",  # trailing byte
        _pack([[], b""]),  # too few items
        _pack([[], b"", b"", b""]),  # too many
        _pack({"s": [], "k": b"", "v": b""}),  # a map
        _pack([[], "", ""]),  # strings, not bytes
        _pack([[b"\x00" * 31], b"", b""]),  # short sibling
        _pack([[b"\x00" * 33], b"", b""]),  # long sibling
        _pack([[EMPTY] * 257, b"", b""]),  # too deep
        _pack([[], b"\x00" * 32, b""]),  # half a leaf
        _pack([[], b"\x00" * 32, b"\x00" * 31]),
        _pack([[1], b"", b""]),  # wrong type inside
        _pack([b"", b"", b""]),  # siblings not an array
        _pack([[], None, None]),
        b"\x93\x90\xc5\x00\x00\xc4\x00",  # bin16 for an empty field: not canonical
        b"\xdc\x00\x03\x90\xc4\x00\xc4\x00",  # array16 header: not canonical
        _pack([[], b"", b""])[:-1],  # truncated
        msgpack.packb([[], b"", b""], use_bin_type=False),  # raw (str) type for bytes
    ],
)
def test_proof_decode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(DecodeError):
        StateProof.decode(data)


def test_proof_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        StateProof.decode("9390c400c400")  # type: ignore[arg-type]


@seed(31337)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_proof_bytes_decode_error_or_fail_verification(data: st.DataObject) -> None:
    pairs = {bytes([i]): bytes([i]) * 3 for i in range(40)}
    store = MemoryKV()
    tree = StateTree(store)
    commit(tree, store, pairs)
    key = data.draw(st.sampled_from([*pairs, b"absent-1", b"absent-2"]))
    value = pairs.get(key)
    original = tree.prove(key).encode()
    mutation = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
    pos = data.draw(st.integers(0, len(original) - 1))
    byte = data.draw(st.integers(0, 255))
    if mutation == "flip":
        mutated = original[:pos] + bytes([original[pos] ^ (byte or 1)]) + original[pos + 1 :]
    elif mutation == "insert":
        mutated = original[:pos] + bytes([byte]) + original[pos:]
    elif mutation == "delete":
        mutated = original[:pos] + original[pos + 1 :]
    elif mutation == "truncate":
        mutated = original[:pos]
    else:
        mutated = original + bytes([byte])
    try:
        proof = StateProof.decode(mutated)
    except DecodeError:
        return
    # Still a well-formed proof (e.g. a flipped byte inside a hash): it must not verify any more.
    assert proof.encode() == mutated
    assert not verify_state_proof(tree.root, key, value, proof)


@seed(99)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_decode_error_or_proof(data: bytes) -> None:
    try:
        proof = StateProof.decode(data)
    except DecodeError:
        return
    assert proof.encode() == data


# ---------------------------------------------------------------------------------------------------------
# Storage: backends, reopening, cache
# ---------------------------------------------------------------------------------------------------------


def test_same_root_and_nodes_with_memory_and_leveldb(tmp_path: Path) -> None:
    rng = random.Random(12)
    batches: list[dict[bytes, bytes | None]] = []
    keys: list[bytes] = []
    for _ in range(8):
        batch: dict[bytes, bytes | None] = {}
        for _ in range(100):
            if keys and rng.random() < 0.3:
                batch[rng.choice(keys)] = None if rng.random() < 0.5 else rng.randbytes(5)
            else:
                key = rng.randbytes(6)
                keys.append(key)
                batch[key] = rng.randbytes(5)
        batches.append(batch)
    mem = MemoryKV()
    mem_tree = StateTree(mem)
    with LevelDBKV(tmp_path / "db") as disk:
        disk_tree = StateTree(disk, cache_size=0)  # every node read comes from LevelDB
        for batch in batches:
            mem_root, mem_puts = mem_tree.update(batch)
            disk_root, disk_puts = disk_tree.update(batch)
            assert mem_root == disk_root, "seed=12"
            assert mem_puts == disk_puts, "seed=12"
            mem.write(mem_puts)
            disk.write(disk_puts)
            mem_tree.set_root(mem_root)
            disk_tree.set_root(disk_root)
        assert list(mem.iterate()) == list(disk.iterate())


def test_tree_reopened_from_leveldb_answers_the_same_proofs(tmp_path: Path) -> None:
    rng = random.Random(13)
    pairs = random_pairs(rng, 300)
    probes = list(pairs)[:100] + [rng.randbytes(9) for _ in range(100)]
    path = tmp_path / "db"
    with LevelDBKV(path) as disk:
        tree = StateTree(disk)
        old_root = commit(tree, disk, dict(list(pairs.items())[:150]))
        old_proofs = {k: tree.prove(k) for k in probes}
        root = commit(tree, disk, pairs)
        proofs = {k: tree.prove(k) for k in probes}
    with LevelDBKV(path, create_if_missing=False) as disk:
        reopened = StateTree(disk, root=root)
        for key in probes:
            assert reopened.prove(key) == proofs[key]
            assert verify_state_proof(root, key, pairs.get(key), proofs[key]), "seed=13"
        # Old nodes are kept: the earlier root is still fully readable.
        past = StateTree(disk, root=old_root)
        for key in probes:
            assert past.prove(key) == old_proofs[key]


@pytest.mark.parametrize("cache_size", [0, 2, 7, 64])
def test_small_caches_give_the_same_results(cache_size: int) -> None:
    rng = random.Random(14)
    store_a = MemoryKV()
    store_b = MemoryKV()
    tree_a = StateTree(store_a)
    tree_b = StateTree(store_b, cache_size=cache_size)
    keys = [rng.randbytes(4) for _ in range(200)]
    for step in range(15):
        batch = {k: (None if rng.random() < 0.3 else rng.randbytes(3)) for k in rng.sample(keys, 40)}
        assert commit(tree_a, store_a, batch) == commit(tree_b, store_b, batch), f"seed=14 step={step}"
    for key in keys:
        assert tree_a.prove(key) == tree_b.prove(key)


def test_bulk_update_larger_than_the_cache() -> None:
    rng = random.Random(15)
    store = MemoryKV()
    tree = StateTree(store, cache_size=100)
    pairs = random_pairs(rng, 2000)
    assert commit(tree, store, pairs) == ref_root(pairs), "seed=15"
    more = random_pairs(rng, 50)
    assert commit(tree, store, more) == ref_root(pairs | more), "seed=15"


def test_unknown_root_raises_missing_node() -> None:
    tree = StateTree(MemoryKV(), root=H(b"nowhere"))
    with pytest.raises(MissingNodeError):
        tree.prove(b"k")
    with pytest.raises(MissingNodeError):
        tree.update({b"k": b"v"})


def test_unwritten_nodes_are_missing() -> None:
    store = MemoryKV()
    tree = StateTree(store, cache_size=0)
    root, _ = tree.update({b"a": b"1", b"b": b"2"})
    tree.set_root(root)  # caller forgot to write the nodes
    with pytest.raises(MissingNodeError):
        tree.get_value_hash(b"a")


def test_corrupt_node_is_detected() -> None:
    store = MemoryKV()
    tree = StateTree(store, cache_size=0)
    root = commit(tree, store, {b"a": b"1", b"b": b"2"})
    good = store.get(b"t/" + root)
    assert good is not None
    store.write({b"t/" + root: good[:-1] + bytes([good[-1] ^ 1])})
    with pytest.raises(MissingNodeError):
        tree.prove(b"a")
    store.write({b"t/" + root: b"\x07" + good[1:]})
    with pytest.raises(MissingNodeError):
        tree.prove(b"a")
