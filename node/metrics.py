"""Prometheus metrics of one node (its own registry, so several nodes can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.height = Gauge("mydata_height", "Latest committed block height", registry=r)
        self.blocks = Counter("mydata_blocks_committed", "Blocks committed by this node", registry=r)
        self.txs_committed = Counter("mydata_txs_committed", "Transactions committed", registry=r)
        self.txs_submitted = Counter("mydata_txs_submitted", "Transactions submitted, by mempool verdict",
                                     ["code"], registry=r)
        self.block_seconds = Histogram("mydata_block_seconds", "Time to execute and commit one block",
                                       registry=r, buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.requests = Counter("mydata_http_requests", "API requests by route and status",
                                ["route", "status"], registry=r)
        self.access_releases = Counter("mydata_access_released", "Packages released after a committed access",
                                       registry=r)
        self.access_refusals = Counter("mydata_access_refused", "Pulls refused, by code", ["code"], registry=r)
        self.sse_clients = Gauge("mydata_sse_clients", "Connected event-stream clients", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
