"""Prometheus metrics of one node (its own registry, so several nodes can live in one test process)."""

from __future__ import annotations

from typing import Any

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
        # The peer network and consensus (a multi-validator chain; zero on a single-node chain).
        self.peers = Gauge("mydata_peers", "Connected peers", registry=r)
        self.p2p = Counter("mydata_p2p_events", "Peer-network events: connections, handshakes, frames sent, "
                           "received and dropped (node/p2p)", ["event"], registry=r)
        self.gossip_txs = Counter("mydata_gossip_txs", "Transactions received from peers, by verdict: admitted "
                                  "to the mempool, duplicate (already waiting), refused", ["result"], registry=r)
        self.consensus_msgs = Counter("mydata_consensus_messages", "Proposals and votes received from peers: "
                                      "new, duplicate (a relayed copy), ignored (from a non-validator, or "
                                      "for a finished or too distant height)", ["result"], registry=r)
        self.extra_rounds = Counter("mydata_consensus_extra_rounds", "Rounds beyond the first needed to decide a "
                                      "height", registry=r)

    def p2p_hook(self) -> P2PMetrics:
        """The peer network's `Metrics.inc(name, amount)` hook, counted under `mydata_p2p_events`."""
        return P2PMetrics(self.p2p)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class P2PMetrics:
    """node.p2p's metrics hook over one labelled Prometheus counter (the event name is the label)."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Any] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        child = self._children.get(name)
        if child is None:
            child = self._children[name] = self._counter.labels(event=name)
        child.inc(amount)
