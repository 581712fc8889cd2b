"""`mydata testnet init DIR --validators N [--observers M]` and `mydata testnet up DIR`: a local network with a
genesis, one home per node (validators `DIR/nodes/node<i>`, observers `DIR/nodes/observer<j>`), and a wallet
of demo identities (admin, registrar, issuers, holders, a bank, a notary, an auditor).

An observer is a full node that is not a validator: its node key is an active member account of the genesis
(role `validator`, the node operators' role, as operations.md prescribes for any node key), it follows and
verifies the chain through the validators' proposals, votes and block sync, and serves the API; it never
signs a consensus message and receives no vault ciphertexts over the peer network (D-30)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from argparse import Namespace
from pathlib import Path

import httpx

from cli.context import Ctx
from cli.demo import LICENCE, PAYMENT, SCHEMAS
from cli.localnet import NodeProcess
from cli.output import CliError
from consensus.types import ConsensusParams, Genesis
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
MAX_VALIDATORS = 16
MAX_OBSERVERS = 16
#: Node homes under DIR/nodes: validators first, then observers, each by number.
HOME_NAME = re.compile(r"^(node|observer)(\d+)$")


def testnet_init(ctx: Ctx, a: Namespace) -> None:
    d = Path(a.dir)
    if (d / "genesis.json").exists():
        raise CliError(f"{d} already holds a testnet")
    if not 1 <= a.validators <= MAX_VALIDATORS:
        raise CliError(f"--validators must be between 1 and {MAX_VALIDATORS}")
    if not 0 <= a.observers <= MAX_OBSERVERS:
        raise CliError(f"--observers must be between 0 and {MAX_OBSERVERS}")
    if not 1 <= a.base_port <= 65536 - 2 * (a.validators + a.observers):
        raise CliError(f"--base-port must leave room for {2 * (a.validators + a.observers)} ports below 65536")
    passphrase = ctx.passphrase(confirm=True)
    vals = [Identity(f"validator-{i}", os.urandom(32)) for i in range(a.validators)]
    observers = [Identity(f"observer-{j}", os.urandom(32)) for j in range(a.observers)]
    orgs = {name: Identity(name, os.urandom(32)) for name, _ in ORGS}
    holders = {name: Identity(name, os.urandom(32)) for name in HOLDERS}
    # Every node key is a member (peers admit members only); observers have the node operators' role too,
    # which gives them no say in consensus: only the validator set does.
    members = ([(v, ("validator",)) for v in vals] + [(o, ("validator",)) for o in observers]
               + [(orgs[n], roles) for n, roles in ORGS])
    genesis = dev_genesis(a.chain_id, vals, members,
                          [(PAYMENT, SCHEMAS[PAYMENT], [orgs["social-security"]]),
                           (LICENCE, SCHEMAS[LICENCE], [orgs["market-regulator"]])],
                          genesis_time_ms=int(time.time() * 1000), params=ConsensusParams.default())
    d.mkdir(parents=True, exist_ok=True)
    write_genesis(d / "genesis.json", genesis)
    nodes = [(f"node{i}", v) for i, v in enumerate(vals)] + [(f"observer{j}", o) for j, o in enumerate(observers)]
    apis = [f"127.0.0.1:{a.base_port + 2 * k}" for k in range(len(nodes))]
    p2ps = [f"127.0.0.1:{a.base_port + 2 * k + 1}" for k in range(len(nodes))]
    val_peers = [f"{v.pk.hex()}@{p2ps[i]}" for i, v in enumerate(vals)]
    obs_peers = [f"{o.pk.hex()}@{p2ps[len(vals) + j]}" for j, o in enumerate(observers)]
    # Validators dial each other (a full mesh) and observers dial the validators. A lone validator lists the
    # observers instead: a node with peers runs BFT consensus and listens on its p2p address, which the
    # observers need (alone and without peers it would produce blocks with no peer network at all).
    peers = [[p for p in val_peers if p != val_peers[i]] or obs_peers for i in range(len(vals))]
    peers += [val_peers for _ in observers]
    for k, (name, ident) in enumerate(nodes):
        init_home(d / "nodes" / name, NodeConfig(name, genesis.chain_id, api=apis[k], p2p=p2ps[k], peers=peers[k]),
                  genesis, ident.seed)
    ks = ctx.keystore.__class__(d / "wallet")
    kdf = KdfParams(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    for ident in [*orgs.values(), *holders.values()]:
        ks.import_seed(ident.name, passphrase, ident.seed, enc_secret=ident.enc_secret, kdf=kdf,
                       chain_id=genesis.chain_id, node_url=f"http://127.0.0.1:{a.base_port}")
    ctx.out.result({"dir": str(d), "chain_id": genesis.chain_id, "validators": a.validators,
                    "observers": a.observers, "wallet": str(d / "wallet"),
                    "identities": sorted([*orgs, *holders])},
                   f"testnet {genesis.chain_id} in {d}: {a.validators} validator(s), {a.observers} observer(s), "
                   f"wallet {d / 'wallet'} with {', '.join(sorted([*orgs, *holders]))}\n"
                   f"start it with `mydata testnet up {d}`; the holders still need `mydata admin register-holder`")


def node_homes(d: Path) -> list[Path]:
    """The node homes of a testnet: DIR/nodes/node<i> by number, then DIR/nodes/observer<j> by number."""
    found = []
    for home in (d / "nodes").glob("*"):
        m = HOME_NAME.match(home.name)
        if m and (home / "config.json").exists():
            found.append((m.group(1) != "node", int(m.group(2)), home))
    return [home for *_, home in sorted(found)]


def node_role(url: str, pubkey: bytes, genesis: Genesis) -> str:
    """"validator" if the node says its key is in the current validator set (its committed state), else
    "observer"; the genesis decides if the node does not answer."""
    try:
        return "validator" if httpx.get(f"{url}/v1/status", timeout=5.0).json()["validator"] else "observer"
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return "validator" if pubkey in {v.pubkey for v in genesis.validators.validators} else "observer"


def testnet_up(ctx: Ctx, a: Namespace) -> None:
    d = Path(a.dir)
    homes = node_homes(d)
    if not homes:
        raise CliError(f"{d} holds no testnet; run `mydata testnet init {d} --validators N`")
    nodes = []
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        roles: dict[str, str] = {}
        for home in homes:
            config, genesis, signer = load_home(home)
            n = NodeProcess(home, config.api)
            ctx.out.progress(f"starting {config.name} at http://{config.api} ...")
            n.start()
            nodes.append((config, n))
            roles[config.name] = node_role(n.url, signer.public_key, genesis)
        endpoints = {"nodes": [{"name": c.name, "api": f"http://{c.api}", "p2p": c.p2p, "pid": n.pid,
                                "role": roles[c.name]} for c, n in nodes]}
        (d / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
        n_obs = sum(r == "observer" for r in roles.values())
        ctx.out.result(endpoints, f"{len(nodes)} node(s) up ({len(nodes) - n_obs} validator(s), {n_obs} "
                                  f"observer(s)); endpoints in {d / 'endpoints.json'}; Ctrl-C stops")
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
