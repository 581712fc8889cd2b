"""Benchmark of the state tree's batched update over the in-memory store.

For each size N: build a tree of N keys (in large batches, progress on stderr), then time ``rounds`` batches
of ``batch`` random changes (half updates of existing keys, half inserts of new keys). Each round is timed
twice: ``update`` alone (hashing, the new root and node set) and the whole commit cycle (``update``, writing
the nodes to the store, ``set_root``). Reported: medians over the rounds, updates per second, and the cost
per update divided by log2(N): roughly flat across sizes if the cost grows as the tree's depth.

Run from the repository root: ``python -m bench.bench_statetree [sizes...]``.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time

from consensus.kv import MemoryKV
from consensus.statetree import StateTree

SEED = 20240601
BUILD_BATCH = 100_000


def _key(i: int) -> bytes:
    return b"acct/" + i.to_bytes(8, "big")


def bench_statetree(
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    batch: int = 1000,
    rounds: int = 20,
    seed: int = SEED,
) -> list[dict[str, float]]:
    """Run the benchmark; one result dict per size (see the module docstring for the fields)."""
    results: list[dict[str, float]] = []
    for n in sizes:
        rng = random.Random(seed + n)
        store = MemoryKV()
        tree = StateTree(store)
        t0 = time.perf_counter()
        for lo in range(0, n, BUILD_BATCH):
            hi = min(n, lo + BUILD_BATCH)
            root, puts = tree.update({_key(i): rng.randbytes(48) for i in range(lo, hi)})
            store.write(puts, sync=False)
            tree.set_root(root)
            print(f"  build N={n}: {hi}/{n} keys, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        build_s = time.perf_counter() - t0

        next_key = n
        update_times: list[float] = []
        cycle_times: list[float] = []
        for _ in range(rounds):
            changes: dict[bytes, bytes | None] = {}
            while len(changes) < batch:
                if rng.random() < 0.5:
                    changes[_key(rng.randrange(next_key))] = rng.randbytes(48)
                else:
                    changes[_key(next_key)] = rng.randbytes(48)
                    next_key += 1
            t1 = time.perf_counter()
            root, puts = tree.update(changes)
            t2 = time.perf_counter()
            store.write(puts, sync=False)
            tree.set_root(root)
            t3 = time.perf_counter()
            update_times.append(t2 - t1)
            cycle_times.append(t3 - t1)

        upd = statistics.median(update_times)
        cyc = statistics.median(cycle_times)
        log_n = math.log2(n)
        results.append(
            {
                "size": n,
                "build_s": build_s,
                "build_keys_per_s": n / build_s,
                "update_ms": upd * 1e3,
                "updates_per_s": batch / upd,
                "cycle_ms": cyc * 1e3,
                "cycle_updates_per_s": batch / cyc,
                "us_per_update_per_log2n": upd / batch * 1e6 / log_n,
                "nodes_stored": float(len(store)),
            }
        )
    return results


def _print_table(results: list[dict[str, float]], batch: int, rounds: int) -> None:
    print(f"state tree, batch={batch}, rounds={rounds} (medians); MemoryKV; seed={SEED}")
    header = (
        f"{'N':>10} {'build s':>8} {'build k/s':>10} {'update ms':>10} {'updates/s':>10} "
        f"{'+write ms':>10} {'cycle/s':>10} {'us/upd/log2N':>13} {'nodes':>10}"
    )
    print(header)
    for r in results:
        print(
            f"{int(r['size']):>10} {r['build_s']:>8.2f} {r['build_keys_per_s'] / 1e3:>10.1f} "
            f"{r['update_ms']:>10.2f} {r['updates_per_s']:>10.0f} {r['cycle_ms']:>10.2f} "
            f"{r['cycle_updates_per_s']:>10.0f} {r['us_per_update_per_log2n']:>13.3f} "
            f"{int(r['nodes_stored']):>10}"
        )


def main(argv: list[str]) -> int:
    sizes = tuple(int(a) for a in argv) if argv else (10_000, 100_000, 1_000_000)
    batch, rounds = 1000, 20
    _print_table(bench_statetree(sizes, batch, rounds), batch, rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
