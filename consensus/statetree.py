"""The authenticated state tree: a compact binary sparse Merkle tree whose root is each block's app hash.

Definition (binding: every node must compute the same root, byte for byte):

* The path of a key is ``sha256(key)``: 256 bits, read from the most significant bit of byte 0 onward.
  At depth ``d`` (the root is depth 0) bit ``d`` of the path chooses the child: 0 left, 1 right.
* ``EMPTY = bytes(32)`` is the hash of an empty subtree, hence the root of an empty tree.
* A leaf commits to one pair: ``sha256(0x00 || key_hash || value_hash)`` with ``value_hash = sha256(value)``.
* An internal node: ``sha256(0x01 || left_hash || right_hash)``.
* A subtree holding exactly one leaf IS that leaf (no chain of single-child internal nodes above it); a
  subtree holding two or more leaves is an internal node. The tree is therefore a function of the set of
  pairs alone, never of the order or the batching of the updates that built it (history independence).

Storage: nodes are immutable and content-addressed, stored under ``node_prefix || node_hash``. The stored
bytes are exactly the node's hash preimage, 65 bytes: ``0x00 || key_hash || value_hash`` for a leaf and
``0x01 || left_hash || right_hash`` for an internal node, so ``node_hash == sha256(stored bytes)`` and a read
can check what it got. :meth:`StateTree.update` only computes: it returns the new root and the new nodes, and
the caller writes them in its own atomic batch (with the block's other state), then calls ``set_root``. Old
nodes are never deleted, so every past root stays readable; pruning them is future work.

Proofs (:class:`StateProof`) hold the siblings along the key's path from the root down to where the path
ends: at a leaf (the key's own leaf, or another leaf whose subtree the path enters, which proves absence) or
at an empty slot (absence).

This module is pure: no I/O beyond the injected :class:`~consensus.kv.KVStore`, and deterministic.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgpack

from consensus.errors import DecodeError, LedgerError
from consensus.kv import KVStore

__all__ = [
    "EMPTY",
    "MAX_DEPTH",
    "MissingNodeError",
    "StateProof",
    "StateTree",
    "verify_state_proof",
]

EMPTY = bytes(32)
MAX_DEPTH = 256

_LEAF = 0x00
_INTERNAL = 0x01
_LEAF_TAG = b"\x00"
_INTERNAL_TAG = b"\x01"
_NODE_LEN = 65

_sha256 = hashlib.sha256


class MissingNodeError(LedgerError, LookupError):
    """A node the tree needs is not in the store (an unknown root, or a store missing written nodes), or
    the stored bytes are not the node the hash names (storage corruption)."""


def _leaf_hash(key_hash: bytes, value_hash: bytes) -> bytes:
    return _sha256(_LEAF_TAG + key_hash + value_hash).digest()


# ---------------------------------------------------------------------------------------------------------
# Proofs
# ---------------------------------------------------------------------------------------------------------

_MAX_PROOF_BYTES = 3 + 3 + MAX_DEPTH * 34 + 2 * 34  # array headers + 256 bin8(32) + 2 bin8(32)


@dataclass(frozen=True)
class StateProof:
    """A proof that a key holds a value (membership) or holds nothing (non-membership) under a root.

    ``siblings``: the sibling hashes along the key's path, top-down, one per level above where the path
    ends. ``leaf_key_hash``/``leaf_value_hash``: the leaf the path ends at, or ``b""`` for both if it ends
    at an empty slot.

    Encoding: canonical msgpack of ``[siblings, leaf_key_hash, leaf_value_hash]`` (bin types).
    """

    siblings: tuple[bytes, ...]
    leaf_key_hash: bytes
    leaf_value_hash: bytes

    def encode(self) -> bytes:
        """The canonical bytes of this proof."""
        out: bytes = msgpack.packb(
            [list(self.siblings), self.leaf_key_hash, self.leaf_value_hash], use_bin_type=True
        )
        return out

    @classmethod
    def decode(cls, data: bytes) -> StateProof:
        """Parse canonical proof bytes; anything else raises :class:`~consensus.errors.DecodeError`
        (trailing bytes, wrong types, wrong lengths, more than 256 siblings, a non-minimal encoding)."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError("state proof must be bytes")
        data = bytes(data)
        if len(data) > _MAX_PROOF_BYTES:
            raise DecodeError("state proof too long")
        try:
            obj = msgpack.unpackb(
                data,
                raw=False,
                use_list=True,
                strict_map_key=True,
                max_bin_len=32,
                max_str_len=0,
                max_array_len=MAX_DEPTH,
                max_map_len=0,
                max_ext_len=0,
            )
        except Exception as exc:  # msgpack raises several unrelated types on bad input
            raise DecodeError(f"state proof is not valid msgpack: {exc}") from exc
        if type(obj) is not list or len(obj) != 3:
            raise DecodeError("state proof must be an array of 3 items")
        siblings, key_hash, value_hash = obj
        if type(siblings) is not list:
            raise DecodeError("state proof siblings must be an array")
        if len(siblings) > MAX_DEPTH:
            raise DecodeError("state proof has more than 256 siblings")
        for sibling in siblings:
            if type(sibling) is not bytes or len(sibling) != 32:
                raise DecodeError("state proof sibling must be 32 bytes")
        if type(key_hash) is not bytes or type(value_hash) is not bytes:
            raise DecodeError("state proof leaf fields must be bytes")
        if not (len(key_hash) == len(value_hash) == 32 or len(key_hash) == len(value_hash) == 0):
            raise DecodeError("state proof leaf fields must both be 32 bytes or both empty")
        proof = cls(tuple(siblings), key_hash, value_hash)
        if proof.encode() != data:
            raise DecodeError("state proof encoding is not canonical")
        return proof


def _shares_prefix(a: bytes, b: bytes, bits: int) -> bool:
    """Whether the 32-byte strings ``a`` and ``b`` agree on their first ``bits`` bits."""
    shift = 256 - bits
    return int.from_bytes(a, "big") >> shift == int.from_bytes(b, "big") >> shift


def verify_state_proof(root: bytes, key: bytes, value: bytes | None, proof: StateProof) -> bool:
    """Whether ``proof`` shows that, under ``root``, ``key`` holds ``value`` (``None``: holds nothing).

    Membership: the proof ends at a leaf with ``sha256(key)`` and ``sha256(value)``. Absence: the proof ends
    at an empty slot, or at a leaf of another key whose key hash shares the first ``len(siblings)`` bits with
    the key's path (that leaf alone fills the subtree the path enters). Then the terminal hash, folded up
    with the siblings, must give ``root``. Never raises on malformed input: it answers ``False``.
    """
    try:
        siblings = proof.siblings
        key_hash = proof.leaf_key_hash
        value_hash = proof.leaf_value_hash
        if type(root) is not bytes or len(root) != 32 or type(key) is not bytes:
            return False
        if type(siblings) is not tuple or len(siblings) > MAX_DEPTH:
            return False
        for sibling in siblings:
            if type(sibling) is not bytes or len(sibling) != 32:
                return False
        if type(key_hash) is not bytes or type(value_hash) is not bytes:
            return False
        path = _sha256(key).digest()
        depth = len(siblings)
        if value is not None:
            if type(value) is not bytes:
                return False
            if key_hash != path or value_hash != _sha256(value).digest():
                return False
            node = _leaf_hash(key_hash, value_hash)
        elif key_hash == b"" and value_hash == b"":
            node = EMPTY
        elif len(key_hash) == 32 and len(value_hash) == 32:
            if key_hash == path or not _shares_prefix(key_hash, path, depth):
                return False
            node = _leaf_hash(key_hash, value_hash)
        else:
            return False
        bits = int.from_bytes(path, "big")
        for d in range(depth - 1, -1, -1):
            if (bits >> (255 - d)) & 1:
                node = _sha256(_INTERNAL_TAG + siblings[d] + node).digest()
            else:
                node = _sha256(_INTERNAL_TAG + node + siblings[d]).digest()
        return node == root
    except Exception:  # a hostile proof object (e.g. built without decode) is a failed proof, not a crash
        return False


# ---------------------------------------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------------------------------------


class StateTree:
    """A view of the state tree at one root, over a node store.

    ``update`` computes a new root without writing; the caller writes the returned nodes and then moves
    the view with ``set_root``. Nodes read or created are kept in a bounded cache (node hash -> stored
    bytes) of two generations: a lookup that hits the older generation promotes the node, and when the young
    generation is full it becomes the old one and the previous old one is dropped. The store is read only
    on cache misses. The cache only ever holds correct (hash, bytes) pairs, so it needs no invalidation.
    """

    def __init__(
        self,
        store: KVStore,
        root: bytes = EMPTY,
        node_prefix: bytes = b"t/",
        cache_size: int = 1_000_000,
    ) -> None:
        if type(node_prefix) is not bytes:
            raise TypeError("node_prefix must be bytes")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._store = store
        self._prefix = node_prefix
        self._half = cache_size // 2
        self._young: dict[bytes, bytes] = {}
        self._old: dict[bytes, bytes] = {}
        self._root = EMPTY
        self.set_root(root)

    @property
    def root(self) -> bytes:
        """The root hash this view reads (``EMPTY`` for an empty tree)."""
        return self._root

    @property
    def node_prefix(self) -> bytes:
        """The key prefix of the node store."""
        return self._prefix

    def set_root(self, root: bytes) -> None:
        """Move the view to ``root`` (whose nodes must be in the store; they are read lazily)."""
        if type(root) is not bytes or len(root) != 32:
            raise ValueError("root must be 32 bytes")
        self._root = root

    # -- node access -------------------------------------------------------------------------------------

    def _load(self, h: bytes) -> bytes:
        """The stored bytes of node ``h`` (cache first, then the store, checked against the hash)."""
        enc = self._young.get(h)
        if enc is not None:
            return enc
        enc = self._old.get(h)
        if enc is None:
            enc = self._store.get(self._prefix + h)
            if enc is None:
                raise MissingNodeError(f"state tree node {h.hex()} is not in the store")
            if len(enc) != _NODE_LEN or enc[0] > _INTERNAL or _sha256(enc).digest() != h:
                raise MissingNodeError(f"state tree node {h.hex()} is corrupt in the store")
        self._remember(h, enc)
        return enc

    def _remember(self, h: bytes, enc: bytes) -> None:
        half = self._half
        if half == 0:
            return
        young = self._young
        young[h] = enc
        if len(young) >= half:
            self._old = young
            self._young = {}

    def _remember_all(self, nodes: dict[bytes, bytes]) -> None:
        half = self._half
        if half == 0:
            return
        if len(nodes) >= half:
            # Larger than a generation (a bulk build): keep its last ``half`` nodes, the most recent ones.
            items = list(nodes.items())[-half:]
            self._old = self._young
            self._young = dict(items)
        else:
            self._young.update(nodes)
        if len(self._young) >= half:
            self._old = self._young
            self._young = {}

    # -- reads -------------------------------------------------------------------------------------------

    def _walk(self, path: bytes) -> tuple[list[bytes], bytes]:
        """Follow ``path`` from the root: the siblings passed and the terminal node's stored bytes (``b""``
        for an empty slot)."""
        bits = int.from_bytes(path, "big")
        siblings: list[bytes] = []
        node = self._root
        depth = 0
        while node != EMPTY:
            enc = self._load(node)
            if enc[0] == _LEAF:
                return siblings, enc
            if (bits >> (255 - depth)) & 1:
                siblings.append(enc[1:33])
                node = enc[33:65]
            else:
                siblings.append(enc[33:65])
                node = enc[1:33]
            depth += 1
            if depth > MAX_DEPTH:
                raise MissingNodeError("state tree is deeper than 256 levels (corrupt store)")
        return siblings, b""

    def prove(self, key: bytes) -> StateProof:
        """A membership proof for ``key`` if it is in the tree, else a non-membership proof (against
        :attr:`root`)."""
        if type(key) is not bytes:
            raise TypeError("key must be bytes")
        siblings, enc = self._walk(_sha256(key).digest())
        if enc:
            return StateProof(tuple(siblings), enc[1:33], enc[33:65])
        return StateProof(tuple(siblings), b"", b"")

    def get_value_hash(self, key: bytes) -> bytes | None:
        """``sha256(value)`` of ``key``'s value, or ``None`` if the key is not in the tree."""
        if type(key) is not bytes:
            raise TypeError("key must be bytes")
        path = _sha256(key).digest()
        _, enc = self._walk(path)
        if enc and enc[1:33] == path:
            return enc[33:65]
        return None

    # -- batched update ----------------------------------------------------------------------------------

    def update(self, changes: Mapping[bytes, bytes | None]) -> tuple[bytes, dict[bytes, bytes]]:
        """Apply a batch (value ``None`` = delete; deleting an absent key is a no-op).

        Returns ``(new_root, node_puts)`` WITHOUT writing to the store and without moving :attr:`root`:
        the caller writes ``node_puts`` (store key -> node bytes) in its own atomic batch, then calls
        ``set_root(new_root)``.

        The changed paths are sorted once, then the tree is rebuilt top-down in one recursive pass that
        visits each touched subtree once: a node shared by many changed keys is loaded and re-hashed once
        per batch, not once per key. Deletions re-collapse a subtree left with a single leaf, so the result
        is the root the tree would have had if the deleted keys had never been inserted.
        """
        entries: list[tuple[bytes, bytes | None]] = []
        for key, value in changes.items():
            if type(key) is not bytes:
                raise TypeError("state keys must be bytes")
            if value is None:
                entries.append((_sha256(key).digest(), None))
            elif type(value) is bytes:
                entries.append((_sha256(key).digest(), _sha256(value).digest()))
            else:
                raise TypeError("state values must be bytes or None")
        if not entries:
            return self._root, {}
        entries.sort(key=_first)
        khs = [e[0] for e in entries]
        vhs = [e[1] for e in entries]
        paths = [int.from_bytes(kh, "big") for kh in khs]
        new_root, new_nodes = _rebuild(self._root, khs, vhs, paths, self._load, self._young.get)
        prefix = self._prefix
        puts = {prefix + h: enc for h, enc in new_nodes.items()}
        self._remember_all(new_nodes)
        return new_root, puts


def _first(entry: tuple[bytes, bytes | None]) -> bytes:
    return entry[0]


def _rebuild(
    root: bytes,
    khs: list[bytes],
    vhs: list[bytes | None],
    paths: list[int],
    load: Callable[[bytes], bytes],
    cached: Callable[[bytes], bytes | None],
) -> tuple[bytes, dict[bytes, bytes]]:
    """One batched update: rebuild the tree under ``root`` with the sorted changes (``khs[i]`` the key hash,
    ``vhs[i]`` the value hash or ``None`` for a delete, ``paths[i]`` the key hash as an integer). Returns the
    new root and the nodes it created (hash -> stored bytes).

    The hot loop of the ledger: closures over local names, nodes handled as bare hashes and sliced stored
    bytes, no objects decoded. ``load`` reads a node of the old tree; ``cached`` is the cache's fast path.
    """
    new_nodes: dict[bytes, bytes] = {}
    sha256 = _sha256
    internal_tag = _INTERNAL_TAG
    leaf_tag = _LEAF_TAG
    empty = EMPTY

    def is_leaf(h: bytes) -> bool:
        enc = new_nodes.get(h)
        if enc is None:
            enc = load(h)
        return enc[0] == _LEAF

    def join(lh: bytes, rh: bytes) -> bytes:
        # The node over two rebuilt children; an empty side next to a single leaf collapses to the leaf.
        if lh == empty:
            if rh == empty or is_leaf(rh):
                return rh
        elif rh == empty and is_leaf(lh):
            return lh
        enc = internal_tag + lh + rh
        h = sha256(enc).digest()
        new_nodes[h] = enc
        return h

    def build(depth: int, lo: int, hi: int, extra: tuple[int, bytes] | None) -> bytes:
        # The subtree at ``depth`` holding the puts among changes lo:hi, plus ``extra``, an existing leaf
        # given as (path, hash) whose key is not among the changes.
        n = hi - lo
        if n == 0:
            return empty if extra is None else extra[1]
        if n == 1 and extra is None:
            vh = vhs[lo]
            if vh is None:
                return empty
            enc = leaf_tag + khs[lo] + vh
            h = sha256(enc).digest()
            new_nodes[h] = enc
            return h
        if depth >= MAX_DEPTH:
            raise AssertionError("two distinct keys with the same sha256 path")
        shift = 255 - depth
        m = bisect_left(paths, ((paths[lo] >> shift) | 1) << shift, lo, hi)
        if extra is None:
            return join(build(depth + 1, lo, m, None), build(depth + 1, m, hi, None))
        if (extra[0] >> shift) & 1:
            return join(build(depth + 1, lo, m, None), build(depth + 1, m, hi, extra))
        return join(build(depth + 1, lo, m, extra), build(depth + 1, m, hi, None))

    def update(h: bytes, depth: int, lo: int, hi: int) -> bytes:
        # Subtree ``h`` at ``depth`` rebuilt with the changes lo:hi (non-empty, all inside the subtree).
        if h == empty:
            return build(depth, lo, hi, None)
        enc = cached(h)
        if enc is None:
            enc = load(h)
        if enc[0] == _LEAF:
            # A leaf standing for the whole subtree: merge it with the changes, unless one of them
            # replaces (or deletes) its key. Changes that only delete absent keys leave it as it is.
            leaf_path = int.from_bytes(enc[1:33], "big")
            i = bisect_left(paths, leaf_path, lo, hi)
            if i < hi and paths[i] == leaf_path:
                return build(depth, lo, hi, None)
            for j in range(lo, hi):
                if vhs[j] is not None:
                    return build(depth, lo, hi, (leaf_path, h))
            return h
        shift = 255 - depth
        m = bisect_left(paths, ((paths[lo] >> shift) | 1) << shift, lo, hi)
        left = enc[1:33]
        right = enc[33:65]
        if m == lo:
            lh = left
            rh = update(right, depth + 1, m, hi)
        elif m == hi:
            lh = update(left, depth + 1, lo, m)
            rh = right
        else:
            lh = update(left, depth + 1, lo, m)
            rh = update(right, depth + 1, m, hi)
        if lh == left and rh == right:
            return h  # nothing changed below (rewritten values as they were, deletes of absent keys)
        if lh == empty or rh == empty:
            return join(lh, rh)
        enc = internal_tag + lh + rh
        h = sha256(enc).digest()
        new_nodes[h] = enc
        return h

    return update(root, 0, 0, len(paths)), new_nodes
