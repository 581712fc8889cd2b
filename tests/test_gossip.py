"""Transaction and consensus gossip between real node processes on loopback (docs/protocol.md, section 14,
"Relay"): in a full mesh every node receives each transaction exactly once (nothing is relayed); with a link
missing, the common neighbours bridge it; the peer-network metrics count what happened.

Each test bounds its own time and stops its processes (by pid) even when it fails."""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.demo import PAYMENT
from tests.bftnet import Net
from wallet.actions import WalletSession

pytestmark = pytest.mark.timeout(180)

BASE_SEED = int(os.environ.get("MYDATA_BFT_SEED", "20261128"))


def seed_for(name: str) -> int:
    seed = (BASE_SEED * 1_000_003 + zlib.crc32(name.encode())) % 2**31
    print(f"[seed] {name}: {seed} (MYDATA_BFT_SEED={BASE_SEED})")
    return seed


def metric(net: Net, i: int, name: str, **labels: str) -> float:
    """One sample of a node's /metrics (0 when the labelled series does not exist yet)."""
    text = httpx.get(f"{net[i].url}/metrics", timeout=10).text
    series = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def blob_path(home: Path, blob_hash: bytes) -> Path:
    h = blob_hash.hex()
    return home / "vault" / h[:2] / h


def mempool_size(net: Net, i: int) -> int:
    return int(httpx.get(f"{net[i].url}/v1/status", timeout=10).json()["mempool"]["txs"])


def links_known(net: Net, nodes: list[int], expected: dict[int, int]) -> bool:
    """Every node has its expected number of peers, and has been up long enough to have heard their status."""
    return all(metric(net, i, "mydata_peers") == expected[i] for i in nodes)


def gapped_batch(net: Net, count: int) -> tuple[list[bytes], bytes]:
    """`count` consent requests of the bank with nonces n+1 .. n+count (they wait: nonce n is missing), and
    the raw transaction with nonce n that releases them."""
    n = net.nonce("bank")
    waiting = [net.consent_request(n + 1 + k, tag="gossip").encode() for k in range(count)]
    return waiting, net.consent_request(n, tag="gossip").encode()


def submit_raw(net: Net, i: int, raws: list[bytes]) -> None:
    r = httpx.post(f"{net[i].url}/v1/txs", json={"txs": [x.hex() for x in raws]}, timeout=30)
    assert r.status_code == 202, r.text
    assert {x["code"] for x in r.json()["results"]} == {"ok"}, r.json()


def drop_link(net: Net, a: int, b: int) -> None:
    """Configure nodes a and b not to dial each other (the others still dial both): no a-b connection."""
    for x, y in ((a, b), (b, a)):
        path = net[x].home / "config.json"
        cfg = json.loads(path.read_text())
        cfg["peers"] = [p for p in cfg["peers"] if not p.startswith(net.vals[y].pk.hex())]
        path.write_text(json.dumps(cfg, indent=2) + "\n")


def running(net: Net) -> Iterator[Net]:
    """Start the network with a registered holder; stop every process afterwards, even on failure."""
    try:
        net.start()
        net.ensure_holder("citizen")
        yield net
    finally:
        net.close()


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Net]:
    yield from running(Net(tmp_path / "mesh", seed_for("gossip_mesh")))


@pytest.fixture
def gap(tmp_path: Path) -> Iterator[Net]:
    net = Net(tmp_path / "gap", seed_for("gossip_gap"))
    drop_link(net, 0, 1)
    yield from running(net)


def test_full_mesh_delivers_each_transaction_once_to_every_node(mesh: Net) -> None:
    net = mesh
    net.wait(lambda: links_known(net, [0, 1, 2, 3], {i: 3 for i in range(4)}), 30, "a full mesh")
    net.wait_converged()
    before = {i: (metric(net, i, "mydata_gossip_txs_total", result="admitted"),
                  metric(net, i, "mydata_gossip_txs_total", result="duplicate")) for i in range(4)}
    waiting, release = gapped_batch(net, 60)
    submit_raw(net, 0, waiting)
    net.wait(lambda: all(mempool_size(net, i) >= 60 for i in range(4)), 30, "the batch in every mempool")
    after = {i: (metric(net, i, "mydata_gossip_txs_total", result="admitted"),
                 metric(net, i, "mydata_gossip_txs_total", result="duplicate")) for i in range(4)}
    # node0 took them from its API; every other node got each one by gossip, once: in a full mesh nothing
    # is relayed, so no copy arrives twice.
    assert after[0][0] - before[0][0] == 0
    for i in (1, 2, 3):
        assert after[i][0] - before[i][0] == 60, (i, before[i], after[i])
        assert after[i][1] - before[i][1] == 0, f"node{i} received relayed copies: {before[i]} -> {after[i]}"
    submit_raw(net, 0, [release])
    net.wait(lambda: all(mempool_size(net, i) == 0 for i in range(4)), 40, "all 61 committed everywhere")
    h, _ = net.wait_converged()
    assert h >= 1
    # The peer network's own counters are exported too.
    for i in range(4):
        assert metric(net, i, "mydata_p2p_events_total", event="p2p_msgs_sent") > 0
        assert metric(net, i, "mydata_p2p_events_total", event="p2p_msgs_received") > 0
        assert metric(net, i, "mydata_consensus_messages_total", result="new") > 0


def test_a_missing_link_is_bridged_by_the_common_neighbours(gap: Net) -> None:
    net = gap
    net.wait(lambda: links_known(net, [0, 1, 2, 3], {0: 2, 1: 2, 2: 3, 3: 3}), 30,
             "node0 and node1 linked to node2 and node3 only")
    net.wait_converged()
    waiting, release = gapped_batch(net, 40)
    submit_raw(net, 0, waiting)
    # node1 has no link to node0: it gets the transactions only through node2 and node3 relaying them.
    net.wait(lambda: mempool_size(net, 1) >= 40, 30, "the batch relayed to node1")
    submit_raw(net, 0, [release])
    net.wait(lambda: all(mempool_size(net, i) == 0 for i in range(4)), 40, "all 41 committed everywhere")
    h, _ = net.wait_converged()
    # Consensus went on across the gap: node0 and node1 decided the same blocks, and each holds the
    # certificates (relayed votes of the validator it has no link to).
    assert net[0].block(h)["hash"] == net[1].block(h)["hash"]
    signers = {s["validator"] for s in net[1].block(h)["commit"]["sigs"]}
    assert len(signers) >= 3
    assert metric(net, 1, "mydata_peers") == 2


def test_a_validator_that_missed_an_upload_fetches_it_from_another_validator(mesh: Net) -> None:
    """Vault replication by request (protocol.md, section 14): node3 is down while an asset's ciphertext is
    uploaded to node0 (pushed to node1 and node2 only); after its restart node3 syncs the block, notes the
    blob it lacks, asks one validator for it a second later, and then serves it to the holder."""
    net = mesh
    net.wait_converged()
    net.stop([3])
    record = {"name": "Li Wei", "employer": "Jinan Light Industry Co.", "monthly_wage": "8650",
              "months_paid": "94", "last_paid_month": "2026-10"}
    issuer = WalletSession(net.client(0), net.ids["social-security"])
    asset = issuer.issue(net.ids["citizen"].id, PAYMENT, record).object_id
    payload = bytes.fromhex(WalletSession(net.client(0), net.ids["citizen"]).asset(asset)["payload_hash"])
    net.wait(lambda: all(blob_path(net[i].home, payload).exists() for i in (0, 1, 2)), 30,
             "the upload pushed to the running validators")
    assert not blob_path(net[3].home, payload).exists()
    net.start([3])
    net.wait(lambda: blob_path(net[3].home, payload).exists(), 40, "node3 to fetch the ciphertext it missed")
    opened = WalletSession(net.client(3), net.ids["citizen"]).open_asset(asset)
    assert opened.record["months_paid"] == "94"


def test_a_peer_that_connects_gets_the_waiting_transactions(mesh: Net) -> None:
    """Relay skips a peer that reports a link to the sender, so a transaction sent while a peer was away is
    never relayed to it: on connecting, a peer is offered every waiting transaction instead."""
    net = mesh
    net.wait_converged()
    net.stop([3])
    waiting, release = gapped_batch(net, 30)
    submit_raw(net, 0, waiting)
    net.wait(lambda: all(mempool_size(net, i) >= 30 for i in range(3)), 30, "the batch in the running mempools")
    net.start([3])
    net.wait(lambda: mempool_size(net, 3) >= 30, 30, "node3 offered the waiting transactions on connecting")
    submit_raw(net, 0, [release])
    net.wait(lambda: all(mempool_size(net, i) == 0 for i in range(4)), 40, "all 31 committed everywhere")
    net.wait_converged()


def test_tx_batches_keep_order_and_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from node import messages as m

    monkeypatch.setattr(m, "MAX_BATCH_TXS", 3)
    monkeypatch.setattr(m, "MAX_BATCH_BYTES", 25)
    raws = [bytes([i]) * (5 + i) for i in range(8)]  # 5..12 bytes
    batches = [m.TxBatch.decode(m.Envelope.decode(e).payload).txs for e in m.tx_batches(raws)]
    assert [x for b in batches for x in b] == raws
    assert all(len(b) <= 3 and sum(map(len, b)) <= 25 for b in batches)
    assert [len(b) for b in batches] == [3, 2, 2, 1]
    assert list(m.tx_batches([])) == []
