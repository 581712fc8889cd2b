"""`mydata`: the command line of MyData Ledger (docs/cli.md).

    mydata demo                                  the whole story on a fresh local network (4 validators)
    mydata node init HOME --genesis FILE ...     a node home;  mydata node start HOME
    mydata testnet init DIR --validators N       a local network and demo identities;  testnet up DIR
                        [--observers M]          with M non-voting full nodes (observers)
    mydata wallet new|list|show|assets|grants|accesses|requests|grant|reject|revoke|request-asset|
                  request-correction|erase|open
    mydata issuer issue|revoke-asset|resolve-correction
    mydata consumer request|pull
    mydata admin register-member|update-member|register-holder|register-schema|validators|approve
    mydata audit replay (--node URL | --home DIR) --genesis FILE [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.output import CliError


def _node_init(ctx: Any, a: argparse.Namespace) -> None:
    from node.config import NodeConfig, init_home, read_genesis

    genesis = read_genesis(Path(a.genesis))
    seed = bytes.fromhex(Path(a.key_file).read_text().strip()) if a.key_file else os.urandom(32)
    if len(seed) != 32:
        raise CliError("the key file must hold a 32-byte Ed25519 seed as hex")
    init_home(Path(a.home), NodeConfig(a.name, genesis.chain_id, api=a.api, p2p=a.p2p), genesis, seed)
    from consensus.crypto import Ed25519Signer, account_id

    pk = Ed25519Signer(seed).public_key
    ctx.out.result({"home": a.home, "chain_id": genesis.chain_id, "node_pubkey": pk.hex(),
                    "node_account": account_id(pk).hex()},
                   f"node home {a.home} for chain {genesis.chain_id}; node key {pk.hex()}")


def _node_start(ctx: Any, a: argparse.Namespace) -> None:
    from node.server import run_node

    run_node(Path(a.home), a.api)


def _demo(ctx: Any, a: argparse.Namespace) -> None:
    from cli.demo import run_demo

    result = run_demo(ctx.out, keep=a.keep, validators=a.validators)
    ctx.out.result(result, "demo: OK")


def build_parser() -> argparse.ArgumentParser:
    from cli import commands as c
    from cli import testnet as t

    p = argparse.ArgumentParser(prog="mydata", description="MyData Ledger: consent-controlled access to "
                                "government-held personal and enterprise data on a permissioned BFT chain.")
    p.add_argument("--node", help="node API URL (default $MYDATA_NODE or http://127.0.0.1:26657)")
    p.add_argument("--wallet-dir", help="keystore directory (default $MYDATA_WALLET_DIR or ~/.mydata/wallet)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # The global options are accepted after the command too (`mydata audit replay --node URL ...`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--node", default=argparse.SUPPRESS, help="node API URL")
    common.add_argument("--wallet-dir", default=argparse.SUPPRESS, help="keystore directory")
    common_json = argparse.ArgumentParser(add_help=False, parents=[common])
    common_json.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")

    def cmd(parent: Any, name: str, fn: Callable[..., None], help: str, acting: bool = False,
            json_flag: bool = True) -> Any:
        sp = parent.add_parser(name, help=help, description=help, parents=[common_json if json_flag else common])
        sp.set_defaults(func=fn)
        if acting:
            sp.add_argument("--as", dest="as_", metavar="NAME", help="the wallet identity that acts")
        return sp

    d = cmd(sub, "demo", _demo, "run the whole story on a fresh local network; exits 0 if every step behaves")
    d.add_argument("--keep", action="store_true", help="keep the demo's temporary directory")
    d.add_argument("--validators", type=int, default=4, choices=range(1, 8), metavar="N",
                   help="validator nodes, each its own process (default 4; 1 to 7)")

    node = sub.add_parser("node", help="run a node").add_subparsers(dest="sub", required=True, metavar="SUB")
    ni = cmd(node, "init", _node_init, "create a node home from a genesis file")
    ni.add_argument("home")
    ni.add_argument("--genesis", required=True)
    ni.add_argument("--name", required=True)
    ni.add_argument("--api", default="127.0.0.1:26657")
    ni.add_argument("--p2p", default="127.0.0.1:26656")
    ni.add_argument("--key-file", help="file with the node's Ed25519 seed (hex); default: a new key")
    ns = cmd(node, "start", _node_start, "start the node of HOME (Ctrl-C or SIGTERM stops it)")
    ns.add_argument("home")
    ns.add_argument("--api", help="override the API address host:port")

    tn = sub.add_parser("testnet", help="a local network").add_subparsers(dest="sub", required=True, metavar="SUB")
    ti = cmd(tn, "init", t.testnet_init, "genesis, node homes and demo identities in DIR")
    ti.add_argument("dir")
    ti.add_argument("--validators", type=int, default=1, metavar="N", help="validator nodes (default 1; 1 to 16)")
    ti.add_argument("--observers", type=int, default=0, metavar="M",
                    help="observer nodes: full nodes that follow and verify the chain and serve the API without "
                         "voting (default 0; 0 to 16)")
    ti.add_argument("--chain-id", default="mydata-testnet")
    ti.add_argument("--base-port", type=int, default=26657)
    tu = cmd(tn, "up", t.testnet_up, "start every node of DIR; writes DIR/endpoints.json")
    tu.add_argument("dir")

    w = sub.add_parser("wallet", help="keys, assets, grants").add_subparsers(dest="sub", required=True,
                                                                            metavar="SUB")
    wn = cmd(w, "new", c.wallet_new, "create an identity (keys encrypted at rest)")
    wn.add_argument("name")
    cmd(w, "list", c.wallet_list, "list the wallet's identities")
    ws = cmd(w, "show", c.wallet_show, "an identity's public keys and on-chain account", acting=True)
    ws.add_argument("name", nargs="?")
    ws.add_argument("--offline", action="store_true")
    for what in ("assets", "grants", "accesses", "requests"):
        lw = cmd(w, what, c.wallet_listing(what), f"my {what} (newest first)", acting=True)
        lw.add_argument("--for", dest="for_", metavar="ACCOUNT", help="act for an enterprise (as its delegate)")
    wg = cmd(w, "grant", c.wallet_grant, "grant a consumer chosen fields of chosen assets", acting=True)
    wg.add_argument("--to", required=True, help="the consumer (account id or wallet name)")
    wg.add_argument("--asset", required=True, help="asset id(s), comma-separated")
    wg.add_argument("--fields", required=True, help="field names, comma-separated")
    wg.add_argument("--purpose", required=True)
    wg.add_argument("--days", type=float, default=30.0)
    wg.add_argument("--uses", type=int, default=1)
    wg.add_argument("--request", help="the consent request this answers")
    wg.add_argument("--for", dest="for_", metavar="ACCOUNT", help="act for an enterprise (as its delegate)")
    wr = cmd(w, "reject", c.wallet_reject, "reject a consent request", acting=True)
    wr.add_argument("request")
    wr.add_argument("--reason", default="")
    wv = cmd(w, "revoke", c.wallet_revoke, "revoke a grant", acting=True)
    wv.add_argument("grant")
    wa = cmd(w, "request-asset", c.wallet_request_asset, "ask an issuer for an asset", acting=True)
    wa.add_argument("--issuer", required=True)
    wa.add_argument("--schema", required=True)
    wc = cmd(w, "request-correction", c.wallet_request_correction, "ask for a correction", acting=True)
    wc.add_argument("asset")
    wc.add_argument("--fields", required=True)
    we = cmd(w, "erase", c.wallet_erase, "erase an asset (its ciphertext is deleted)", acting=True)
    we.add_argument("asset")
    wo = cmd(w, "open", c.wallet_open, "decrypt one of my assets and check it against the chain", acting=True)
    wo.add_argument("asset")
    for sp in (wr, wv, wa, wc, we, wo):
        sp.add_argument("--for", dest="for_", metavar="ACCOUNT", help="act for an enterprise (as its delegate)")

    i = sub.add_parser("issuer", help="issue and maintain data assets").add_subparsers(dest="sub", required=True,
                                                                                      metavar="SUB")
    ii = cmd(i, "issue", c.issuer_issue, "issue an asset to a holder", acting=True)
    ii.add_argument("--holder", required=True)
    ii.add_argument("--schema", required=True)
    ii.add_argument("--field", action="append", metavar="NAME=VALUE")
    ii.add_argument("--record", metavar="FILE.json")
    ii.add_argument("--supersedes")
    ii.add_argument("--answers", help="the holder's request this fulfils")
    ir = cmd(i, "revoke-asset", c.issuer_revoke, "revoke an asset", acting=True)
    ir.add_argument("asset")
    ir.add_argument("--reason", required=True)
    ic = cmd(i, "resolve-correction", c.issuer_resolve, "answer a correction (new version) or refuse it",
             acting=True)
    ic.add_argument("request")
    ic.add_argument("--field", action="append", metavar="NAME=VALUE", help="the corrected record")
    ic.add_argument("--record", metavar="FILE.json")
    ic.add_argument("--refuse", metavar="REASON")

    co = sub.add_parser("consumer", help="ask for consent and pull data").add_subparsers(dest="sub", required=True,
                                                                                        metavar="SUB")
    cr = cmd(co, "request", c.consumer_request, "ask a holder for consent", acting=True)
    cr.add_argument("--holder", required=True)
    cr.add_argument("--schemas", default="")
    cr.add_argument("--fields", default="")
    cr.add_argument("--purpose", required=True)
    cr.add_argument("--days", type=float, default=30.0)
    cr.add_argument("--uses", type=int, default=1)
    cp = cmd(co, "pull", c.consumer_pull, "pull authorized data, verify it against the chain, save it",
             acting=True)
    cp.add_argument("grant")
    cp.add_argument("--asset")
    cp.add_argument("--out", metavar="FILE.json")

    ad = sub.add_parser("admin", help="governance").add_subparsers(dest="sub", required=True, metavar="SUB")
    rm = cmd(ad, "register-member", c.admin_register_member, "propose a new member organisation", acting=True)
    rm.add_argument("name")
    rm.add_argument("--roles", required=True)
    rm.add_argument("--identity", help="take the keys from this wallet identity")
    rm.add_argument("--sign-pk")
    rm.add_argument("--enc-pk")
    um = cmd(ad, "update-member", c.admin_update_member, "propose new roles or status for a member", acting=True)
    um.add_argument("account")
    um.add_argument("--roles", required=True)
    um.add_argument("--status", choices=["active", "suspended"], default="active")
    rh = cmd(ad, "register-holder", c.admin_register_holder, "register a person or enterprise (registrar)",
             acting=True)
    rh.add_argument("--kind", choices=["person", "enterprise"], required=True)
    rh.add_argument("--subject-id", required=True, help="national ID or credit code (only its salted hash leaves)")
    rh.add_argument("--salt", help="the registrar's secret salt, hex")
    rh.add_argument("--identity")
    rh.add_argument("--sign-pk")
    rh.add_argument("--enc-pk")
    rs = cmd(ad, "register-schema", c.admin_register_schema, "propose a data schema", acting=True)
    rs.add_argument("name")
    rs.add_argument("--fields", required=True)
    rs.add_argument("--issuers", default="")
    av = cmd(ad, "validators", c.admin_validators, "list the validators, or propose a change", acting=True)
    av.add_argument("--set", metavar="PUBKEY")
    av.add_argument("--power", type=int)
    av.add_argument("--name")
    ap = cmd(ad, "approve", c.admin_approve, "approve an admin proposal", acting=True)
    ap.add_argument("proposal")

    au = sub.add_parser("audit", help="independent verification").add_subparsers(dest="sub", required=True,
                                                                                metavar="SUB")
    ar = cmd(au, "replay", c.audit_replay, "re-verify the chain from genesis and report every grant and access",
             acting=True, json_flag=False)
    ar.add_argument("--home", help="read the blocks from a node home instead of a node")
    ar.add_argument("--genesis", required=True)
    ar.add_argument("--json", dest="json_file", metavar="FILE", help="write the full report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    from cli.context import Ctx
    from wallet.actions import ChainRefused
    from wallet.assetdata import WalletCryptoError
    from wallet.client import ApiError, NodeUnreachable
    from wallet.keystore import KeystoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ctx = Ctx(args)
        args.func(ctx, args)
        return 0
    except CliError as e:
        print(f"mydata: {e}", file=sys.stderr)
        return e.exit_code
    except ChainRefused as e:
        print(f"mydata: refused: {e}", file=sys.stderr)
        return 3
    except ApiError as e:
        print(f"mydata: the node refused (HTTP {e.status}): {e.code}: {e.message}", file=sys.stderr)
        return 3
    except NodeUnreachable as e:
        print(f"mydata: {e}", file=sys.stderr)
        return 4
    except KeystoreError as e:
        print(f"mydata: keystore: {e}", file=sys.stderr)
        return 1
    except WalletCryptoError as e:
        print(f"mydata: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mydata: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        from consensus.errors import LedgerError
        from node.config import ConfigError
        from node.core import NodeError
        from node.privval import PrivValError
        from node.wal import WALError

        if isinstance(e, ConfigError | NodeError | LedgerError | PrivValError | WALError | OSError | ValueError):
            print(f"mydata: {_one_line(e)}", file=sys.stderr)
            return 1
        raise


def _one_line(e: Exception) -> str:
    text = e.args[0] if len(e.args) == 1 and isinstance(e.args[0], bytes | str) else str(e)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


if __name__ == "__main__":
    raise SystemExit(main())
