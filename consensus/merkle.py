"""Merkle trees over ordered lists (transactions, results), in the shape of RFC 6962.

Hashes (docs/protocol.md, rule MRK-1):

    leaf(d)     = SHA-256(0x00 || u32be(len(d)) || d)
    node(l, r)  = SHA-256(0x01 || l || r)
    root([])    = SHA-256("")
    root([d])   = leaf(d)
    root(D[n])  = node(root(D[0:k]), root(D[k:n]))   k = largest power of two < n

Leaves and inner nodes are domain-separated by their first byte, and leaves carry their length, so no two
different lists share a root (the flaw behind Fabric's CVE-2023-46132 was a block hash that did not).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + len(data).to_bytes(4, "big") + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _root_of_hashes(level: list[bytes]) -> bytes:
    # Pairing bottom-up and promoting a lone last node gives exactly the RFC 6962 split tree.
    sha = hashlib.sha256
    while len(level) > 1:
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_root(items: Sequence[bytes]) -> bytes:
    """The root of the list `items` (each item hashed as a leaf)."""
    if not items:
        return EMPTY_ROOT
    return _root_of_hashes([leaf_hash(d) for d in items])


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def inclusion_proof(items: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of item `index`: sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(items):
        raise IndexError(f"index {index} outside a list of {len(items)}")
    hashes = [leaf_hash(d) for d in items]
    path: list[bytes] = []

    def walk(lo: int, hi: int) -> None:
        if hi - lo == 1:
            return
        k = _split(hi - lo)
        if index < lo + k:
            walk(lo, lo + k)
            path.append(_root_of_hashes(hashes[lo + k : hi]))
        else:
            walk(lo + k, hi)
            path.append(_root_of_hashes(hashes[lo : lo + k]))

    walk(0, len(items))
    return path


def verify_inclusion(data: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """True if `data` is item `index` of a list of `size` items whose root is `root`."""
    if not 0 <= index < size or any(len(p) != 32 for p in proof):
        return False
    # Recompute the split path top-down to know, at each level, whether we are the left or right child.
    sides: list[bool] = []  # True = our subtree is the left child
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            sides.append(True)
            hi = lo + k
        else:
            sides.append(False)
            lo = lo + k
    if len(sides) != len(proof):
        return False
    h = leaf_hash(data)
    for sibling, left in zip(proof, reversed(sides), strict=True):
        h = node_hash(h, sibling) if left else node_hash(sibling, h)
    return h == root
