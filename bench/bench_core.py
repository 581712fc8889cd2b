"""Micro-benchmark of the ledger core, in one run (issue #2):

- raw Ed25519 verifications per second (pynacl / libsodium), over the same message sizes as transactions;
- transactions executed per second through `apply_block`, signatures checked (no cache): blocks of consent
  grants and blocks of accesses, and the ratio to the raw verify rate;
- state-tree updates per second at 10 k, 100 k and 1 M keys (bench_statetree).

Usage: python -m bench.bench_core [--txs 2000] [--blocks 5] [--sizes 10000,100000,1000000] [--json FILE]
Figures are medians over repeated runs; see bench/README.md for recorded results.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from typing import Any

from consensus.crypto import Domain, Ed25519Signer, signing_bytes, verify
from consensus.kv import MemoryKV
from contracts.execute import Ledger, apply_block
from contracts.records import Kind
from contracts.txs import GrantConsent, IssueAsset, RecordAccess, RegisterHolder
from wallet.devchain import DevChain, Identity, dev_genesis
from wallet.tx import created_id


def bench_verify(n: int = 20_000) -> float:
    s = Ed25519Signer(bytes(range(32)))
    payload = bytes(180)
    sig = s.sign(Domain.TX, "bench", payload)
    pk = s.public_key
    t0 = time.perf_counter()
    for _ in range(n):
        verify(pk, Domain.TX, "bench", payload, sig)
    raw_rate = n / (time.perf_counter() - t0)
    assert signing_bytes(Domain.TX, "bench", payload)
    return raw_rate


def _build_chain(n: int, blocks: int) -> tuple[DevChain, list[int]]:
    """A chain whose blocks 3.. alternate: `n` grants, then `n` accesses under them."""
    ident = Identity.derive
    val = ident("validator-0")
    admin, reg, issuer, bank = ident("admin"), ident("registrar"), ident("issuer"), ident("bank")
    g = dev_genesis("bench-chain", [val],
                    [(admin, ("admin",)), (reg, ("registrar",)), (issuer, ("issuer",)), (bank, ("consumer",))],
                    [("social_security.payment", ("monthly_wage", "months_paid", "name"), [issuer])])
    c = DevChain(g, [val])
    holders = [ident(f"holder-{i}") for i in range(n)]
    c.produce([c.tx(reg, RegisterHolder("person", i.to_bytes(32, "big"), h.pk, h.enc_pk))
               for i, h in enumerate(holders)])
    issues = [c.tx(issuer, IssueAsset(h.id, "social_security.payment", ("monthly_wage", "months_paid", "name"),
                                      bytes(32), bytes(32), b"", b"")) for h in holders]
    assets = [created_id(Kind.ASSET, t) for t in issues]
    c.produce(issues)
    kinds: list[int] = []
    for _ in range(blocks):
        grants = [c.tx(h, GrantConsent(bank.id, (a,), ("monthly_wage",), "loan application",
                                       c.time_ms + 10**10, 3, bytes(32), b""))
                  for h, a in zip(holders, assets, strict=True)]
        ids = [created_id(Kind.GRANT, t) for t in grants]
        c.produce(grants)
        kinds.append(0)
        c.produce([c.tx(bank, RecordAccess(gid, a)) for gid, a in zip(ids, assets, strict=False)])
        kinds.append(1)
    return c, kinds


def bench_apply(n: int, blocks: int) -> dict[str, Any]:
    print(f"building {blocks} blocks of {n} grants and {blocks} of {n} accesses...", file=sys.stderr)
    chain, kinds = _build_chain(n, blocks)
    ledger = Ledger(MemoryKV())
    ledger.init_chain(chain.genesis)
    for b in chain.blocks[:2]:
        apply_block(ledger, b)
    rates: dict[int, list[float]] = {0: [], 1: []}
    for b, kind in zip(chain.blocks[2:], kinds, strict=False):
        t0 = time.perf_counter()
        ex = apply_block(ledger, b)
        rates[kind].append(len(b.txs) / (time.perf_counter() - t0))
        assert all(c == "ok" for c in ex.codes()), "every benchmark transaction must succeed"
    return {"grants_per_s": statistics.median(rates[0]), "accesses_per_s": statistics.median(rates[1])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, default=2000, help="transactions per block")
    ap.add_argument("--blocks", type=int, default=5, help="blocks of each kind")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="state-tree sizes")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)

    from bench.bench_statetree import bench_statetree

    verify_before = bench_verify()
    applied = bench_apply(args.txs, args.blocks)
    verify_after = bench_verify()
    v = statistics.median([verify_before, verify_after])
    sizes = tuple(int(x) for x in args.sizes.split(","))
    tree = bench_statetree(sizes=sizes)
    out = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "ed25519_verify_per_s": v,
        **applied,
        "verify_over_grants": v / applied["grants_per_s"],
        "verify_over_accesses": v / applied["accesses_per_s"],
        "statetree": tree,
    }
    print(f"Ed25519 verify/s                 {v:10.0f}")
    print(f"apply_block grants/s (sigs on)   {applied['grants_per_s']:10.0f}   verify/exec ratio "
          f"{out['verify_over_grants']:.2f}")
    print(f"apply_block accesses/s (sigs on) {applied['accesses_per_s']:10.0f}   verify/exec ratio "
          f"{out['verify_over_accesses']:.2f}")
    for r in tree:
        print(f"state tree N={r['size']:>9,}: {r['updates_per_s']:8.0f} updates/s (batches of 1000), "
              f"{r['us_per_update_per_log2n']:.2f} us per update per log2(N)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
