"""Vault replication among the validators (docs/protocol.md, section 14, "Vault replication"; D-30, D-36).

The ciphertexts are not in blocks. Every validator keeps a copy; a node that is not a validator (an
observer: a consumer's, an auditor's node) holds only what was uploaded through its own API and receives
nothing over the peer network.

- Push on upload: a blob uploaded here goes to every connected validator (`on_local_blob`).
- A validator stores what any member peer pushes, under the vault's acceptance rule (NODE-4: a waiting or
  committed transaction names it; its hash matches). A blob that arrives before the transaction naming it is
  an orphan, kept in memory (per pushing peer at most MAX_ORPHAN_BYTES_PER_PEER, in all MAX_ORPHAN_BYTES)
  until the transaction or a block makes it acceptable (`retry_orphans`).
- Request on demand: after each block a validator notes the blobs it references that the vault lacks
  (`after_block`), and scans the committed references when it starts or becomes a validator; `request_due`
  (once a second) asks one validator at a time for those that are due, with doubling delays.
- Requests are answered for validators only (`on_request`).

Everything here runs on the consensus driver's event loop, except the scan's page reads (a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable

from consensus.types import Tx
from node import messages as m
from node.core import NodeCore
from node.mempool import referenced_blob
from node.p2p import PeerManager
from node.vault import VaultError

#: Ciphertexts received before the transaction that names them, kept for a while (bytes in all, and per
#: peer that pushed them: one peer cannot crowd out the others' orphans).
MAX_ORPHAN_BYTES = 64 * 1024 * 1024
MAX_ORPHAN_BYTES_PER_PEER = 16 * 1024 * 1024
#: Committed ciphertexts this vault lacks, remembered to ask the validators for (oldest dropped first).
MAX_WANTED = 100_000
#: A missing ciphertext is asked for once it has been missing this long (the upload's push is usually on
#: its way), then again after twice as long each time (at most WANT_MAX_DELAY), of one validator at a time,
#: at most WANT_ATTEMPTS requests that were actually sent.
WANT_GRACE = 1.0
WANT_MAX_DELAY = 60.0
WANT_ATTEMPTS = 10
#: Vault requests sent per round (each answer may carry a large blob: the budget is kept small).
WANT_PER_ROUND = 256
#: Blobs a background scan of the committed references reads per page.
SCAN_PAGE = 1000

log = logging.getLogger("mydata.consensus")


class VaultReplication:
    """One node's side of vault replication. `is_validator(node_id)` says whether a node id (a peer's, or
    this node's address) is in the current validator set."""

    def __init__(self, core: NodeCore, peers: PeerManager, is_validator: Callable[[bytes], bool]) -> None:
        self.core = core
        self.peers = peers
        self.is_validator = is_validator
        self._orphans: dict[bytes, dict[bytes, bytes]] = {}  # pushing peer -> blob hash -> data, oldest first
        self._orphan_owner: dict[bytes, bytes] = {}  # blob hash -> the peer that pushed it
        self._orphan_bytes: dict[bytes, int] = {}  # pushing peer -> bytes it holds in the buffer
        self._wanted: dict[bytes, tuple[float, int]] = {}  # blob -> (next request due, requests sent)
        self._was_validator = False
        self._scan: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        if self.i_am_validator():
            self._was_validator = True
            self._start_scan()  # ciphertexts of blocks committed while it was down and the push was missed

    async def stop(self) -> None:
        self._stopping = True
        if self._scan is not None:
            self._scan.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scan

    def i_am_validator(self) -> bool:
        return self.core.address is not None and self.is_validator(self.core.address)

    @property
    def wanted(self) -> int:
        """How many missing ciphertexts this node is asking for."""
        return len(self._wanted)

    # ---- push ---------------------------------------------------------------------------------------------

    def on_local_blob(self, blob_hash: bytes, data: bytes) -> None:
        """A ciphertext uploaded here: every connected validator's vault gets a copy."""
        msg = m.envelope(m.VAULT_BLOB, m.VaultBlob(blob_hash, data).encode())
        for peer in self.peers.connected():
            if self.is_validator(peer):
                self.peers.send(peer, msg)

    def on_blob(self, peer: bytes, blob: m.VaultBlob) -> None:
        """A ciphertext pushed by a member peer: stored by a validator (or kept as an orphan), ignored by a
        node that is not one."""
        if not self.i_am_validator():
            return
        try:
            self.core.vault_put(blob.hash, blob.data)
        except VaultError as e:
            # The transaction naming it may not have reached us yet: keep it until a block or the tx comes.
            if e.code == "not_referenced":
                self._keep_orphan(peer, blob.hash, blob.data)

    def _keep_orphan(self, peer: bytes, blob_hash: bytes, data: bytes) -> None:
        if (blob_hash in self._orphan_owner or len(data) > MAX_ORPHAN_BYTES_PER_PEER
                or hashlib.sha256(data).digest() != blob_hash):
            return
        while self._orphan_bytes.get(peer, 0) + len(data) > MAX_ORPHAN_BYTES_PER_PEER:
            self._drop_orphan(next(iter(self._orphans[peer])))  # this peer's oldest goes first
        while sum(self._orphan_bytes.values()) + len(data) > MAX_ORPHAN_BYTES:
            biggest = max(self._orphan_bytes, key=lambda p: self._orphan_bytes[p])
            self._drop_orphan(next(iter(self._orphans[biggest])))  # the biggest holder's oldest
        self._orphans.setdefault(peer, {})[blob_hash] = data
        self._orphan_owner[blob_hash] = peer
        self._orphan_bytes[peer] = self._orphan_bytes.get(peer, 0) + len(data)

    def _drop_orphan(self, blob_hash: bytes) -> bytes:
        peer = self._orphan_owner.pop(blob_hash)
        data = self._orphans[peer].pop(blob_hash)
        self._orphan_bytes[peer] -= len(data)
        if not self._orphans[peer]:
            del self._orphans[peer], self._orphan_bytes[peer]
        return data

    def retry_orphans(self) -> None:
        """Store the orphans that a transaction or a block has made acceptable (drop the erased ones)."""
        for h in list(self._orphan_owner):
            if self.core.is_referenced(h) or self.core.is_erased(h):
                data = self._drop_orphan(h)
                with contextlib.suppress(VaultError):
                    self.core.vault_put(h, data)

    # ---- request ------------------------------------------------------------------------------------------

    def on_request(self, peer: bytes, req: m.VaultRequest) -> None:
        """A validator asks for a ciphertext: answered if this vault holds it (and it was not shredded)."""
        if not self.is_validator(peer):
            return
        blob = self.core.vault_get(req.hash)
        if blob is not None:
            self.peers.send(peer, m.envelope(m.VAULT_BLOB, m.VaultBlob(req.hash, blob).encode()))

    def _want(self, blob: bytes, due: float) -> None:
        if blob not in self._wanted:
            while len(self._wanted) >= MAX_WANTED:
                del self._wanted[next(iter(self._wanted))]
            self._wanted[blob] = (due, 0)

    def after_block(self, decoded: list[Tx | None]) -> None:
        """After a block, on a validator: remember every ciphertext it references that this vault lacks (a
        node that was down or syncing missed the push). A node that is not a validator asks for nothing."""
        self.retry_orphans()
        is_validator = self.i_am_validator()
        if is_validator and not self._was_validator:
            self._start_scan()  # this node just became a validator: fetch the backlog
        self._was_validator = is_validator
        if not is_validator:
            return
        due = time.monotonic() + WANT_GRACE
        for tx in decoded:
            blob = b"" if tx is None else referenced_blob(tx)
            if blob and blob not in self._wanted and not self.core.vault_has(blob):
                self._want(blob, due)

    def _start_scan(self) -> None:
        if self._scan is None or self._scan.done():
            self._scan = asyncio.create_task(self._scan_missing_blobs(), name="vault-scan")

    async def _scan_missing_blobs(self) -> None:
        """Every committed reference whose ciphertext this vault lacks (blocks synced or decided while the
        node was down, or before it was a validator) becomes wanted: pages of the `v/ref/` index, read in a
        worker thread."""
        after = b""
        found = 0
        while not self._stopping:
            missing, last = await asyncio.to_thread(self.core.missing_blobs, after, SCAN_PAGE)
            due = time.monotonic()
            for blob in missing:
                self._want(blob, due)
            found += len(missing)
            if last is None:
                break
            after = last
        if found:
            log.info("vault: %d committed ciphertext(s) missing here; asking the validators", found)

    def request_due(self) -> None:
        """Ask for the missing ciphertexts that are due: each request goes to one validator, another one each
        time, with a delay that doubles (WANT_GRACE .. WANT_MAX_DELAY); a blob is given up after
        WANT_ATTEMPTS requests that were sent (a request that could not be queued does not count)."""
        if not self.i_am_validator():
            self._wanted.clear()
            return
        validators = [p for p in self.peers.connected() if self.is_validator(p)]
        if not validators:
            return
        now = time.monotonic()
        sent = 0
        for blob, (due, tries) in list(self._wanted.items()):
            if sent >= WANT_PER_ROUND:
                break
            if due > now:
                continue
            if tries >= WANT_ATTEMPTS or self.core.vault_has(blob) or not self.core.is_referenced(blob):
                del self._wanted[blob]
                continue
            if self.peers.send(validators[(tries + blob[0]) % len(validators)],
                               m.envelope(m.VAULT_REQUEST, m.VaultRequest(blob).encode())):
                tries += 1
                sent += 1
            self._wanted[blob] = (now + min(WANT_GRACE * 2 ** tries, WANT_MAX_DELAY), tries)
