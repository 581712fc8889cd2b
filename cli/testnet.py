"""`mydata testnet init DIR --validators N` and `mydata testnet up DIR`: a local network with a genesis, one
home per node, and a wallet of demo identities (admin, registrar, issuers, holders, a bank, a notary, an
auditor)."""

from __future__ import annotations

import json
import os
import signal
import time
from argparse import Namespace
from pathlib import Path

from cli.context import Ctx
from cli.demo import LICENCE, PAYMENT, SCHEMAS
from cli.localnet import NodeProcess
from cli.output import CliError
from consensus.types import ConsensusParams
from node.config import NodeConfig, init_home, load_home, write_genesis
from wallet.devchain import Identity, dev_genesis
from wallet.keystore import KdfParams

ORGS = [
    ("data-bureau", ("admin",)),
    ("public-security", ("registrar",)),
    ("social-security", ("issuer",)),
    ("market-regulator", ("issuer",)),
    ("bank", ("consumer",)),
    ("notary", ("consumer",)),
    ("auditor", ("auditor",)),
]
HOLDERS = ["citizen", "enterprise"]


def testnet_init(ctx: Ctx, a: Namespace) -> None:
    d = Path(a.dir)
    if (d / "genesis.json").exists():
        raise CliError(f"{d} already holds a testnet")
    if not 1 <= a.validators <= 16:
        raise CliError("--validators must be between 1 and 16")
    passphrase = ctx.passphrase(confirm=True)
    vals = [Identity(f"validator-{i}", os.urandom(32)) for i in range(a.validators)]
    orgs = {name: Identity(name, os.urandom(32)) for name, _ in ORGS}
    holders = {name: Identity(name, os.urandom(32)) for name in HOLDERS}
    members = [(v, ("validator",)) for v in vals] + [(orgs[n], roles) for n, roles in ORGS]
    genesis = dev_genesis(a.chain_id, vals, members,
                          [(PAYMENT, SCHEMAS[PAYMENT], [orgs["social-security"]]),
                           (LICENCE, SCHEMAS[LICENCE], [orgs["market-regulator"]])],
                          genesis_time_ms=int(time.time() * 1000), params=ConsensusParams.default())
    d.mkdir(parents=True, exist_ok=True)
    write_genesis(d / "genesis.json", genesis)
    p2ps = [f"127.0.0.1:{a.base_port + 2 * i + 1}" for i in range(len(vals))]
    for i, v in enumerate(vals):
        api = f"127.0.0.1:{a.base_port + 2 * i}"
        peers = [f"{w.pk.hex()}@{p2ps[j]}" for j, w in enumerate(vals) if j != i]
        init_home(d / "nodes" / f"node{i}", NodeConfig(f"node{i}", genesis.chain_id, api=api, p2p=p2ps[i],
                                                       peers=peers), genesis, v.seed)
    ks = ctx.keystore.__class__(d / "wallet")
    kdf = KdfParams(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    for ident in [*orgs.values(), *holders.values()]:
        ks.import_seed(ident.name, passphrase, ident.seed, enc_secret=ident.enc_secret, kdf=kdf,
                       chain_id=genesis.chain_id, node_url=f"http://127.0.0.1:{a.base_port}")
    ctx.out.result({"dir": str(d), "chain_id": genesis.chain_id, "validators": a.validators,
                    "wallet": str(d / "wallet"), "identities": sorted([*orgs, *holders])},
                   f"testnet {genesis.chain_id} in {d}: {a.validators} validator(s), wallet {d / 'wallet'} with "
                   f"{', '.join(sorted([*orgs, *holders]))}\n"
                   f"start it with `mydata testnet up {d}`; the holders still need `mydata admin register-holder`")


def testnet_up(ctx: Ctx, a: Namespace) -> None:
    d = Path(a.dir)
    homes = sorted((d / "nodes").glob("node*"))
    if not homes:
        raise CliError(f"{d} holds no testnet; run `mydata testnet init {d} --validators N`")
    nodes = []
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for home in homes:
            config, _, _ = load_home(home)
            n = NodeProcess(home, config.api)
            ctx.out.progress(f"starting {config.name} at http://{config.api} ...")
            n.start()
            nodes.append((config, n))
        endpoints = {"nodes": [{"name": c.name, "api": f"http://{c.api}", "p2p": c.p2p, "pid": n.pid}
                               for c, n in nodes]}
        (d / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        ctx.out.result(endpoints, f"{len(nodes)} node(s) up; endpoints in {d / 'endpoints.json'}; Ctrl-C stops")
        reported: set[str] = set()
        while not stop["now"]:
            for c, n in nodes:
                if n.proc is not None and n.proc.poll() is not None and c.name not in reported:
                    # The others go on (a BFT chain survives f of them); the operator restarts this one with
                    # `mydata node start`.
                    reported.add(c.name)
                    ctx.out.progress(f"{c.name} exited with code {n.proc.returncode}; see {n.home}/node.log")
            if len(reported) == len(nodes):
                raise CliError("every node exited")
            time.sleep(0.2)
    finally:
        for _, n in nodes:
            n.stop()
        ctx.out.progress("stopped")
