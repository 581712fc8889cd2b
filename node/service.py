"""The node's asynchronous shell around `NodeCore`: the block producer task, waiters for commits, and the
fan-out of events to server-sent-event subscribers. Everything runs on one event loop, so the core is only
ever touched by one task at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.context import Event
from contracts.execute import TxResult
from node.core import CommittedBlock, NodeCore
from node.metrics import Metrics

log = logging.getLogger("mydata.node")


@dataclass(frozen=True)
class TxOutcome:
    tx_hash: bytes
    height: int
    index: int
    result: TxResult


#: Long polls (`GET /v1/blocks/{h}?wait=`) pending at once; more are refused (503 busy).
MAX_HEIGHT_WAITERS = 256


class Busy(Exception):
    """The node is already serving as many waiting requests as it allows."""


class NodeService:
    def __init__(self, core: NodeCore, *, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self.core = core
        self.clock = clock
        self.metrics = metrics or Metrics()
        self._wake = asyncio.Event()
        self._waiters: dict[bytes, list[asyncio.Future[TxOutcome]]] = {}
        self._height_waiters: dict[int, list[asyncio.Future[None]]] = {}  # long polls, by the height awaited
        self._subscribers: dict[bytes, set[asyncio.Queue[Event]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: The consensus engine of a multi-validator chain (node/driver.py); None: this node produces alone.
        self.engine: Any = None

    # ---- life cycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.engine is not None:
            await self.engine.start()
        else:
            self._task = asyncio.create_task(self._produce_forever(), name="block-producer")
        self.metrics.height.set(self.core.status()["height"])

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self.engine is not None:
            await self.engine.stop()
        if self._task is not None:
            await self._task
        for futs in self._waiters.values():
            for f in futs:
                if not f.done():
                    f.cancel()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # ---- transactions -----------------------------------------------------------------------------------

    def submit(self, raw: bytes) -> tuple[bytes, str, str]:
        r = self.core.submit(raw)
        self.metrics.txs_submitted.labels(code=r.code).inc()
        if r.code == "ok":
            if self.engine is not None:
                self.engine.on_local_tx(raw)
            else:
                self._wake.set()
        return r.tx_hash, r.code, r.message

    async def wait_committed(self, tx_hash: bytes, timeout: float) -> TxOutcome | None:
        done = self._committed(tx_hash)
        if done is not None:
            return done
        fut: asyncio.Future[TxOutcome] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_hash, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            futs = self._waiters.get(tx_hash)
            if futs is not None and fut in futs:
                futs.remove(fut)
                if not futs:
                    del self._waiters[tx_hash]

    async def wait_height(self, height: int, timeout: float) -> bool:
        """Wait until the block at `height` is committed here, at most `timeout` seconds; whether it is.
        Raises Busy when MAX_HEIGHT_WAITERS waits are already pending."""
        if self.core.height >= height:
            return True
        if self._n_height_waiters >= MAX_HEIGHT_WAITERS:
            raise Busy(f"{MAX_HEIGHT_WAITERS} requests are already waiting for blocks")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._height_waiters.setdefault(height, [])
        waiting.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            if fut in waiting:
                waiting.remove(fut)
                if not waiting and self._height_waiters.get(height) is waiting:
                    del self._height_waiters[height]
        return self.core.height >= height

    @property
    def _n_height_waiters(self) -> int:
        return sum(len(w) for w in self._height_waiters.values())

    def _committed(self, tx_hash: bytes) -> TxOutcome | None:
        found = self.core.tx_result(tx_hash)
        if found is None:
            return None
        height, index, result = found
        return TxOutcome(tx_hash, height, index, result)

    # ---- events -------------------------------------------------------------------------------------------

    def subscribe(self, account: bytes) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=1000)
        self._subscribers.setdefault(account, set()).add(q)
        self.metrics.sse_clients.inc()
        return q

    def unsubscribe(self, account: bytes, q: asyncio.Queue[Event]) -> None:
        subs = self._subscribers.get(account)
        if subs is not None:
            subs.discard(q)
            if not subs:
                del self._subscribers[account]
        self.metrics.sse_clients.dec()

    # ---- the producer -------------------------------------------------------------------------------------

    async def _produce_forever(self) -> None:
        try:
            await self._produce_loop()
        except Exception:
            # A failure to produce or commit a block is a bug or a broken disk: the node must not go on
            # answering as if it were alive. Log it and stop the process (the operator restarts it; every
            # committed block is intact, the failed one was never written).
            log.exception("block production failed; stopping the node")
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)

    async def _produce_loop(self) -> None:
        while not self._stopping:
            expiry = self.core.next_expiry_ms()
            if expiry is None:
                await self._wake.wait()
            else:
                # No transaction may come for a while, yet a grant must expire on time (CON-6) and its
                # holder hear of it: wake up when the first live grant passes its not_after.
                delay = max(0.0, (expiry + 1 - self.now_ms()) / 1000)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 3600.0))
                except TimeoutError:
                    if self.now_ms() > expiry:
                        await self._produce_one(allow_empty=True)
                    continue
            self._wake.clear()
            while not self._stopping and len(self.core.mempool) > 0:
                if not await self._produce_one():
                    break
                await asyncio.sleep(0)  # let the API answer between blocks

    async def _produce_one(self, allow_empty: bool = False) -> bool:
        t0 = time.perf_counter()
        pending = self.core.prepare_block(self.now_ms(), allow_empty=allow_empty)
        if pending is None:
            return False
        # The fsynced write runs in a worker thread: meanwhile the loop admits transactions, and the next
        # block takes all that arrived (group commit), however short the write.
        await asyncio.to_thread(self.core.write_block, pending)
        cb = self.core.finish_block(pending)
        self.metrics.block_seconds.observe(time.perf_counter() - t0)
        self._after_block(cb)
        return True

    def _after_block(self, cb: CommittedBlock) -> None:
        ex = cb.execution
        self.metrics.height.set(cb.block.header.height)
        self.metrics.blocks.inc()
        self.metrics.txs_committed.inc(len(cb.block.txs))
        height = cb.block.header.height
        for h in [h for h in self._height_waiters if h <= height]:
            for hw in self._height_waiters.pop(h):
                if not hw.done():
                    hw.set_result(None)
        for i, tx_hash in enumerate(ex.tx_hashes):
            futs = self._waiters.pop(tx_hash, None)
            if futs:
                outcome = TxOutcome(tx_hash, cb.block.header.height, i, ex.result(i))
                for f in futs:
                    if not f.done():
                        f.set_result(outcome)
        for ev in ex.events:
            for account in ev.accounts:
                for q in self._subscribers.get(account, ()):
                    try:
                        q.put_nowait(ev)
                    except asyncio.QueueFull:
                        log.warning("event queue full for a subscriber; dropping an event")
        log.info("committed block %d with %d txs", cb.block.header.height, len(cb.block.txs))
