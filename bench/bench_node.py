"""Node benchmark (issues #3 and #4): committed transactions per second and submit-to-commit latency for
consent grants at a sweep of offered rates up to saturation; pull latency (p50/p99) for 1 KiB and 100 KiB
packages; the raw Ed25519 verify rate measured in the same run.

Real node processes on loopback (one, or `--validators N` running BFT consensus); the load generator (this
process) pre-signs every transaction, offers them in batches every 10 ms at the target rate, spread over the
nodes' APIs, and follows the blocks (a long poll per block) to time each commit.

Usage: python -m bench.bench_node [--validators 4] [--rates 1000,2000,4000,8000] [--seconds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_core import bench_verify
from cli.demo import PAYMENT, demo_genesis, demo_identities, start_local_net
from consensus.types import ConsensusParams, Tx
from contracts.records import Kind
from contracts.txs import GrantConsent, IssueAsset, RegisterHolder
from wallet.actions import WalletSession
from wallet.client import Client
from wallet.devchain import Identity
from wallet.tx import created_id, make_tx


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Watcher(threading.Thread):
    """Follows the node block by block (a long poll per block: `GET /v1/blocks/{h}?wait=`, answered as the
    block commits) and records when each transaction hash was first seen committed."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.http = httpx.Client(base_url=url, timeout=10)
        self.seen: dict[str, float] = {}
        self.height = int(self.http.get("/v1/status").json()["height"])
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            r = self.http.get(f"/v1/blocks/{self.height + 1}", params={"wait": 0.5})
            now = time.perf_counter()
            if r.status_code == 200:
                self.height += 1
                for tx in r.json()["tx_hashes"]:
                    self.seen[tx] = now


def submit_batches(urls: list[str], raws: list[bytes], accounts: int, rate: float, seconds: float,
                   senders: int = 4) -> tuple[dict[str, float], int, float]:
    """Offer the pre-signed `raws` at `rate` tx/s for `seconds`: every 10 ms the next batch is handed to one of
    `senders` connections (so a slow answer does not hold back the offered load), sender k talking to node
    `urls[k % len(urls)]` (clients spread over the nodes, as wallets would be). A sender's transactions are
    always those of a fixed set of accounts, so nonces arrive in order. Returns (tx hash -> submit time of each
    accepted transaction, how many were offered, elapsed seconds)."""
    sent: dict[str, float] = {}
    senders = max(senders, len(urls))
    lock = threading.Lock()
    queues: list[list[tuple[bytes, list[str]]]] = [[] for _ in range(senders)]
    cv = threading.Condition(lock)
    done = threading.Event()

    def sender(k: int) -> None:
        http = httpx.Client(base_url=urls[k % len(urls)], timeout=60)
        while True:
            with cv:
                while not queues[k] and not done.is_set():
                    cv.wait(0.05)
                if not queues[k]:
                    return
                body, _hashes = queues[k].pop(0)
            t = time.perf_counter()
            r = http.post("/v1/txs", content=body, headers={"Content-Type": "application/json"})
            with lock:
                for res in r.json()["results"]:
                    if res["code"] == "ok":
                        sent[res["hash"]] = t

    # Split by sender account: tx i belongs to account i % A; account a always goes to sender a % senders.
    threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(senders)]
    for th in threads:
        th.start()
    # Everything a sender posts is encoded before the clock starts: the generator must not be the bottleneck.
    ticks: list[list[tuple[bytes, list[str]]]] = []
    bounds: list[int] = []  # tick t offers raws[bounds[t]:bounds[t + 1]]: rate / 100 a tick, fractions carried
    t = 0
    while not bounds or bounds[-1] < len(raws):
        bounds.append(min(len(raws), int(t * rate / 100)))
        t += 1
    for lo, hi in itertools.pairwise(bounds):
        per_sender: list[tuple[bytes, list[str]]] = []
        for k in range(senders):
            part = [raws[x] for x in range(lo, hi) if (x % accounts) % senders == k]
            per_sender.append((json.dumps({"txs": [b.hex() for b in part]}).encode(), []) if part else (b"", []))
        ticks.append(per_sender)
    start = time.perf_counter()
    tick = i = 0
    while tick < len(ticks) and time.perf_counter() - start < seconds:
        delay = start + tick * 0.01 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with cv:
            for k, item in enumerate(ticks[tick]):
                if item[0]:
                    queues[k].append(item)
            cv.notify_all()
        tick += 1
        i = bounds[tick]
    elapsed = time.perf_counter() - start
    done.set()
    with cv:
        cv.notify_all()
    for th in threads:
        th.join()
    return sent, i, elapsed


def setup(url: str, ids: dict[str, Identity], holders: int) -> tuple[list[Identity], list[bytes]]:
    """Register `holders` citizens and issue each one asset (in batches), return them and their asset ids."""
    client = Client(url)
    chain = client.chain_id
    reg, issuer = ids["public-security"], ids["social-security"]
    people = [Identity(f"p{i}", i.to_bytes(4, "big") * 8) for i in range(holders)]
    http = httpx.Client(base_url=url, timeout=60)
    rn = int(client.as_(reg.signer, reg.id).account_info(reg.id)["nonce"])
    regs = [make_tx(reg.signer, chain, rn + k, RegisterHolder("person", (10**9 + k).to_bytes(32, "big"), p.pk,
                                                               p.enc_pk)) for k, p in enumerate(people)]
    _push_all(http, regs)
    inn = int(client.as_(issuer.signer, issuer.id).account_info(issuer.id)["nonce"])
    issues = [make_tx(issuer.signer, chain, inn + k, IssueAsset(p.id, PAYMENT, ("monthly_wage",), bytes(32),
                                                                bytes(32), b"", b"")) for k, p in enumerate(people)]
    _push_all(http, issues)
    return people, [created_id(Kind.ASSET, t) for t in issues]


def _push_all(http: httpx.Client, txs: list[Tx], strict: bool = True) -> None:
    """Submit `txs` in nonce order in chunks the mempool takes (at most 1000 waiting per sender), each
    committed before the next is sent; raise if one is refused (`strict`) or it takes too long."""
    for k in range(0, len(txs), 1000):
        r = http.post("/v1/txs", json={"txs": [t.encode().hex() for t in txs[k:k + 1000]]})
        refused = [x for x in r.json()["results"] if x["code"] != "ok"]
        if refused and strict:
            raise RuntimeError(f"setup transactions refused: {refused[:3]}")
        deadline = time.monotonic() + 120
        while http.get("/v1/status").json()["mempool"]["txs"]:
            if time.monotonic() > deadline:
                raise RuntimeError("setup transactions did not commit in time")
            time.sleep(0.05)


def run_rate(urls: list[str], ids: dict[str, Identity], people: list[Identity], assets: list[bytes],
             nonces: list[int], rate: float, seconds: float) -> dict[str, Any]:
    url = urls[0]
    chain = Client(url).chain_id
    bank = ids["bank"].id
    raws = []
    for k in range(int(rate * seconds)):
        j = k % len(people)
        raws.append(make_tx(people[j].signer, chain, nonces[j], GrantConsent(
            bank, (assets[j],), ("monthly_wage",), "bench", int(time.time() * 1000) + 10**10, 3, bytes(32),
            b"")).encode())
        nonces[j] += 1
    w = Watcher(url)
    w.start()
    http = httpx.Client(base_url=url, timeout=60)
    t0 = time.perf_counter()
    sent, offered, elapsed = submit_batches(urls, raws, len(people), rate, seconds)
    if offered < len(raws):  # close the nonce gaps, untimed, so the next rate starts clean
        _push_all(http, [Tx.decode(r) for r in raws[offered:]], strict=False)
    deadline = time.perf_counter() + 60
    while len([h for h in sent if h in w.seen]) < len(sent) and time.perf_counter() < deadline:
        time.sleep(0.01)
    w.stop_flag.set()
    w.join()
    committed = [h for h in sent if h in w.seen]
    t_last = max((w.seen[h] for h in committed), default=t0)
    lat = [(w.seen[h] - sent[h]) * 1000 for h in committed]
    return {"target_per_s": rate, "offered_per_s": offered / elapsed, "submitted": len(sent),
            "committed": len(committed),
            "committed_per_s": len(committed) / max(t_last - t0, 1e-9),
            "latency_ms_p50": pct(lat, 50), "latency_ms_p95": pct(lat, 95), "latency_ms_p99": pct(lat, 99)}


def bench_pull(url: str, ids: dict[str, Identity], size: int, n: int) -> dict[str, Any]:
    client = Client(url)
    citizen = Identity(f"pull-{size}", hashlib.sha256(f"bench pull holder {size}".encode()).digest())
    WalletSession(client, ids["public-security"]).send(RegisterHolder("person", (7 * 10**9 + size).to_bytes(32, "big"),
                                                                      citizen.pk, citizen.enc_pk))
    half = size // 2  # a field value holds at most 64 KiB: the package carries two fields of half the size
    rec = {"name": "x", "employer": "e" * half, "monthly_wage": "1", "months_paid": "1",
           "last_paid_month": "m" * (size - half)}
    aid = WalletSession(client, ids["social-security"]).issue(citizen.id, PAYMENT, rec).object_id
    gid = WalletSession(client, citizen).grant(ids["bank"].id, [aid], ["employer", "last_paid_month"], "bench",
                                               int(time.time() * 1000) + 10**9, n + 5).object_id
    bank = WalletSession(client, ids["bank"])
    times = []
    for _ in range(n):
        t = time.perf_counter()
        p = bank.pull(gid, aid)
        times.append((time.perf_counter() - t) * 1000)
        assert len(p.fields[aid]["employer"]) + len(p.fields[aid]["last_paid_month"]) == size
    return {"package_field_bytes": size, "pulls": n, "p50_ms": pct(times, 50), "p99_ms": pct(times, 99)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="500,1000,2000,4000,8000")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--holders", type=int, default=2000)
    ap.add_argument("--pulls", type=int, default=50)
    ap.add_argument("--validators", type=int, default=1, help="validator nodes (1: the single-node producer)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    verify_rate = bench_verify()
    with tempfile.TemporaryDirectory(prefix="mydata-bench-") as d:
        ids = demo_identities(args.validators)
        genesis = demo_genesis(ids, params=ConsensusParams.default(), validators=args.validators)
        nodes = start_local_net(Path(d), ids, genesis, args.validators)
        node = nodes[0]
        try:
            print(f"node at {node.url}; setting up {args.holders} holders with one asset each...", file=sys.stderr)
            people, assets = setup(node.url, ids, args.holders)
            nonces = [0] * len(people)
            sweep = []
            for rate in (float(r) for r in args.rates.split(",")):
                r = run_rate([n.url for n in nodes], ids, people, assets, nonces, rate, args.seconds)
                print(f"target {rate:6.0f}/s offered {r['offered_per_s']:6.0f}/s: "
                      f"committed {r['committed_per_s']:7.0f}/s, latency p50 "
                      f"{r['latency_ms_p50']:6.1f} p95 {r['latency_ms_p95']:6.1f} p99 {r['latency_ms_p99']:6.1f} ms",
                      file=sys.stderr)
                sweep.append(r)
            pulls = [bench_pull(node.url, ids, size, args.pulls) for size in (1024, 100 * 1024)]
            for p in pulls:
                print(f"pull {p['package_field_bytes']:>6} B: p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms",
                      file=sys.stderr)
        finally:
            for n in nodes:
                n.stop()
    out = {"validators": args.validators, "date": time.strftime("%Y-%m-%d"),
           "machine": f"{platform.machine()}, Python {platform.python_version()}",
           "ed25519_verify_per_s": verify_rate, "sweep": sweep, "pulls": pulls}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
