"""`mydata demo`: the whole data-authorization story on a fresh local node, with real keys, transactions,
encryption and an independent audit at the end. Exits 0 only if every step behaved as expected."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli.localnet import NodeProcess, free_port
from cli.output import CliError, Output
from consensus.types import ConsensusParams, Genesis
from contracts.txs import RegisterHolder
from node.config import NodeConfig, init_home
from wallet.actions import ChainRefused, DelegateActor, WalletSession, grant_window_ms, subject_ref
from wallet.auditor import replay_from_node
from wallet.client import ApiError, Client
from wallet.devchain import Identity, dev_genesis

PAYMENT = "social_security.payment_record"
LICENCE = "market_regulation.business_licence"
SCHEMAS = {
    PAYMENT: ("employer", "last_paid_month", "monthly_wage", "months_paid", "name"),
    LICENCE: ("business_scope", "company_name", "established", "legal_representative", "registered_capital"),
}


class DemoFailure(Exception):
    pass


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise DemoFailure(what)


@contextmanager
def refused(status: int, code: str) -> Iterator[None]:
    try:
        yield
    except ApiError as e:
        if e.status != status or e.code != code:
            raise DemoFailure(f"expected HTTP {status} {code}, got HTTP {e.status} {e.code}") from None
        return
    except ChainRefused as e:
        raise DemoFailure(f"expected HTTP {status} {code}, got a chain refusal {e.code}") from None
    raise DemoFailure(f"expected a refusal ({status} {code}), but it succeeded")


class Story:
    def __init__(self, out: Output) -> None:
        self.out = out
        self.n = 0

    def step(self, title: str) -> None:
        self.n += 1
        self.out.progress(f"\n[{self.n}] {title}")

    def say(self, line: str) -> None:
        self.out.progress(f"    {line}")


def short(b: bytes | str) -> str:
    h = b.hex() if isinstance(b, bytes) else b
    return h[:12]


def run_demo(out: Output, keep: bool = False, workdir: str | None = None, validators: int = 4) -> dict[str, Any]:
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="mydata-demo-"))
    nodes: list[NodeProcess] = []
    try:
        ids = demo_identities(validators)
        out.progress(f"starting a fresh network of {validators} validator node(s) in {base} ...")
        nodes = start_local_net(base, ids, demo_genesis(ids, validators=validators), validators)
        out.progress("nodes up at " + ", ".join(n.url for n in nodes))
        return _story(out, nodes, ids)
    except DemoFailure as e:
        raise CliError(f"demo failed: {e}") from None
    finally:
        for n in nodes:
            n.stop()
        if not keep and workdir is None:
            shutil.rmtree(base, ignore_errors=True)
        elif keep:
            out.progress(f"\nkept the demo's files in {base}")


def demo_identities(validators: int = 1) -> dict[str, Identity]:
    """Fresh keys for every party of the story (real Ed25519 and X25519 keys from the OS's randomness)."""
    names = ["data-bureau", "public-security", "social-security", "market-regulator", "bank", "notary",
             "auditor", "citizen", "enterprise", "enterprise-clerk"]
    names += ["validator"] + [f"validator-{i}" for i in range(1, validators)]
    return {n: Identity(n, os.urandom(32)) for n in names}


def validator_ids(ids: dict[str, Identity]) -> list[Identity]:
    return [ids["validator"]] + [ids[k] for k in sorted(ids) if k.startswith("validator-")]


def demo_genesis(ids: dict[str, Identity], chain_id: str = "mydata-demo",
                 params: ConsensusParams | None = None, validators: int = 1) -> Genesis:
    """The validators (their node keys are members too); the bureau as admin; public security as registrar;
    two issuers with their schemas; a bank and a notary as consumers; an auditor."""
    vals = validator_ids(ids)[:validators]
    members = [
        *[(v, ("validator",)) for v in vals],
        (ids["data-bureau"], ("admin",)),
        (ids["public-security"], ("registrar",)),
        (ids["social-security"], ("issuer",)),
        (ids["market-regulator"], ("issuer",)),
        (ids["bank"], ("consumer",)),
        (ids["notary"], ("consumer",)),
        (ids["auditor"], ("auditor",)),
    ]
    return dev_genesis(
        chain_id, vals, members,
        [(PAYMENT, SCHEMAS[PAYMENT], [ids["social-security"]]), (LICENCE, SCHEMAS[LICENCE], [ids["market-regulator"]])],
        genesis_time_ms=int(time.time() * 1000) - 1000, params=params or ConsensusParams.default())


def start_local_net(base: Path, ids: dict[str, Identity], genesis: Genesis, n: int) -> list[NodeProcess]:
    """n validator nodes (homes base/node0..), each its own process, in a full mesh on loopback."""
    if n == 1:
        return [start_local_node(base, ids, genesis)]
    vals = validator_ids(ids)[:n]
    apis = [f"127.0.0.1:{free_port()}" for _ in vals]
    p2ps = [f"127.0.0.1:{free_port()}" for _ in vals]
    nodes = []
    for i, v in enumerate(vals):
        peers = [f"{w.pk.hex()}@{p2ps[j]}" for j, w in enumerate(vals) if j != i]
        home = base / f"node{i}"
        init_home(home, NodeConfig(f"node{i}", genesis.chain_id, api=apis[i], p2p=p2ps[i], peers=peers),
                  genesis, v.seed)
        nodes.append(NodeProcess(home, apis[i]))
    (base / "genesis.json").write_bytes((base / "node0" / "genesis.json").read_bytes())
    try:
        for node in nodes:
            node.start()
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return nodes


def start_local_node(base: Path, ids: dict[str, Identity], genesis: Genesis | None = None) -> NodeProcess:
    """A node home in base/node0 for `genesis` (default: demo_genesis), started as a child process."""
    genesis = genesis or demo_genesis(ids)
    home = base / "node0"
    api = f"127.0.0.1:{free_port()}"
    init_home(home, NodeConfig("node0", genesis.chain_id, api=api), genesis, ids["validator"].seed)
    (base / "genesis.json").write_bytes((home / "genesis.json").read_bytes())
    node = NodeProcess(home, api)
    node.start()
    return node


#: Which node each party talks to (modulo the number of nodes): with several validators the story crosses
#: them, so every ciphertext must reach every node's vault and every transaction every mempool.
HOME_NODE = {"public-security": 0, "social-security": 0, "market-regulator": 1, "citizen": 1, "enterprise": 2,
             "enterprise-clerk": 2, "bank": 2, "notary": 3, "auditor": 3, "data-bureau": 0}


def _story(out: Output, nodes: list[NodeProcess], ids: dict[str, Identity]) -> dict[str, Any]:
    story = Story(out)
    node = nodes[0]
    clients = [Client(n.url) for n in nodes]

    def client_of(name: str) -> Client:
        return clients[HOME_NODE.get(name, 0) % len(clients)]

    client = client_of("citizen")
    s = {n: WalletSession(client_of(n), i) for n, i in ids.items()}
    citizen, enterprise = ids["citizen"], ids["enterprise"]
    bank, notary = s["bank"], s["notary"]
    events: list[dict[str, Any]] = []

    story.step("public security registers a citizen and an enterprise (salted subject references only)")
    salt = os.urandom(16)
    for who, kind, subject in ((citizen, "person", "370102199001011234"),
                               (enterprise, "enterprise", "91370100MA3C000000")):
        s["public-security"].send(RegisterHolder(kind, subject_ref(salt, kind, subject), who.pk, who.enc_pk))
        story.say(f"{who.name}: account {short(who.id)} ({kind})")
    s["enterprise"].add_delegate(ids["enterprise-clerk"].pk)
    story.say("the enterprise authorises its clerk's key as a delegate")
    listener = _listen(client, citizen, events)
    expect(listener.connected.wait(10), "the citizen's wallet must connect to its event stream")

    story.step("social security returns the citizen's payment record; the market regulator the licence")
    payment = {"name": "Li Wei", "employer": "Jinan Light Industry Co.", "monthly_wage": "8650",
               "months_paid": "94", "last_paid_month": "2026-10"}
    r = s["social-security"].issue(citizen.id, PAYMENT, payment)
    payment_id = r.object_id
    story.say(f"asset {short(payment_id)} issued at height {r.height}: on chain only salted commitments")
    licence = {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min",
               "registered_capital": "5000000", "business_scope": "software, data services",
               "established": "2019-03-18"}
    licence_id = s["market-regulator"].issue(enterprise.id, LICENCE, licence).object_id
    story.say(f"asset {short(licence_id)} issued to the enterprise")
    opened = s["citizen"].open_asset(payment_id)
    expect(opened.record == payment, "the citizen's wallet must decrypt exactly what was issued")
    story.say("the citizen's wallet decrypts its record and checks it against the chain")

    story.step("the bank asks the citizen for two fields, for a loan application")
    req = bank.request_consent(citizen.id, [PAYMENT], ["monthly_wage", "months_paid"], "personal loan application",
                               30 * 86_400_000, 3)
    story.say(f"consent request {short(req.object_id)} filed")
    pending = s["citizen"].listing("requests")["consent_requests"]
    expect(any(x["id"] == req.object_id.hex() and x["status"] == "requested" for x in pending),
           "the citizen must see the bank's request")

    story.step("the citizen grants them for 30 days and 3 uses")
    g = s["citizen"].grant(ids["bank"].id, [payment_id], ["monthly_wage", "months_paid"], "personal loan application",
                           grant_window_ms(30), 3, request_id=req.object_id)
    grant_id = g.object_id
    story.say(f"grant {short(grant_id)}: package encrypted to the bank, only its hash on chain")

    story.step("the bank pulls the data: the access is on chain before the data leaves the node")
    pulled = bank.pull(grant_id)
    got = pulled.fields[payment_id]
    expect(got == {"monthly_wage": "8650", "months_paid": "94"}, f"the bank must get exactly two fields, got {got}")
    story.say(f"access {short(pulled.access_id)} at height {pulled.height}; verified against the chain: {got}")

    story.step("a notary without a grant tries the same pull")
    with refused(403, "not_grantee"):
        notary.pull(grant_id, payment_id)
    story.say("refused (403 not_grantee), zero bytes released; the attempt is on chain")

    story.step("the enterprise's clerk grants the notary its licence; the notary pulls it")
    clerk = WalletSession(client_of("enterprise-clerk"), DelegateActor(ids["enterprise-clerk"].signer, enterprise.id,
                                                enterprise.enc_secret))
    ent_grant = clerk.grant(ids["notary"].id, [licence_id], ["company_name", "legal_representative"],
                            "notarisation of a company statement", grant_window_ms(7), 1).object_id
    got2 = notary.pull(ent_grant).fields[licence_id]
    expect(got2 == {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min"},
           f"the notary must get the two licence fields, got {got2}")
    story.say(f"notary verified {got2}")
    with refused(403, "grant_used_up"):
        notary.pull(ent_grant)
    story.say("a second pull of a one-use grant is refused (403 grant_used_up)")

    story.step("the citizen revokes the bank's grant; the bank's next pull is refused")
    s["citizen"].revoke(grant_id)
    with refused(403, "grant_revoked"):
        bank.pull(grant_id)
    story.say("refused (403 grant_revoked)")

    story.step("the citizen asks for a correction; social security issues a new version")
    corr = s["citizen"].request_correction(payment_id, ["months_paid"]).object_id
    corrected = {**payment, "months_paid": "95"}
    v2 = s["social-security"].issue(citizen.id, PAYMENT, corrected, supersedes=payment_id, answers=corr)
    rec = s["citizen"].asset(v2.object_id)
    expect(rec["version"] == 2 and rec["supersedes"] == payment_id.hex(), "the new version must supersede v1")
    expect(s["citizen"].asset(payment_id)["status"] == "superseded", "v1 must be superseded")
    story.say(f"asset {short(v2.object_id)} is version 2; version 1 is superseded")

    story.step("the citizen erases the old version (crypto-shredding)")
    old_blob = bytes.fromhex(s["citizen"].asset(payment_id)["payload_hash"])
    s["citizen"].erase(payment_id)
    with refused(404, "unknown_blob"):
        s["citizen"].client.vault_get(old_blob)
    story.say("its ciphertext is gone from the vault; the chain keeps only the salted commitments")

    story.step("the auditor replays the ledger from genesis, trusting nothing but the genesis file")
    from node.config import read_genesis

    genesis = read_genesis(node.home / "genesis.json")
    report = replay_from_node(client_of("auditor").as_(ids["auditor"].signer, ids["auditor"].id), genesis)
    expect(report.final_commit_verified, "the last block's commit must verify")
    story.say(f"{report.blocks} blocks, {report.transactions} transactions re-executed; app hash "
              f"{report.app_hash[:16]} matches; every signature and commit verified")
    names = {i.id.hex(): n for n, i in ids.items()}
    for ge in report.grants:
        story.say(f"grant  h{ge.height:<3} {names.get(ge.holder, short(ge.holder))} -> "
                  f"{names.get(ge.grantee, short(ge.grantee))}: {','.join(ge.fields)} for {ge.purpose!r}, "
                  f"{ge.max_uses} uses [{ge.code}]")
    for ae in report.accesses:
        story.say(f"access h{ae.height:<3} {names.get(ae.consumer, short(ae.consumer))} on "
                  f"{names.get(ae.holder, short(ae.holder)) or '?'}'s data [{ae.code}]")
    codes = [a.code for a in report.accesses]
    expect(codes.count("ok") == 2 and {"not_grantee", "grant_used_up", "grant_revoked"} <= set(codes),
           f"the audit must list 2 successful and 3 refused accesses, got {codes}")

    time.sleep(0.3)
    listener.stop()
    kinds = {e["kind"] for e in events}
    story.step("what the citizen's wallet heard, live (server-sent events)")
    story.say(", ".join(sorted(kinds)))
    expect({"asset_issued", "consent_requested", "data_accessed"} <= kinds,
           f"the citizen must hear of issue, request and access, heard {sorted(kinds)}")
    out.progress("\nevery step behaved as expected.")
    return {"ok": True, "blocks": report.blocks, "transactions": report.transactions, "app_hash": report.app_hash,
            "grants": len(report.grants), "accesses": [a.code for a in report.accesses],
            "events_heard": sorted(kinds)}


class _Listener:
    def __init__(self, run: Callable[[_Listener], None]) -> None:
        self.stop_flag = threading.Event()
        self.connected = threading.Event()
        self.thread = threading.Thread(target=run, args=(self,), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_flag.set()


def _listen(client: Client, who: Identity, sink: list[dict[str, Any]]) -> _Listener:
    def run(me: _Listener) -> None:
        c = client.as_(who.signer, who.id)
        deadline = time.monotonic() + 300
        while not me.stop_flag.is_set() and time.monotonic() < deadline:
            try:
                for ev in c.events(timeout=30.0, on_connect=me.connected.set):
                    sink.append(ev)
                    if me.stop_flag.is_set():
                        return
            except Exception:  # the account may not exist yet; try again shortly
                time.sleep(0.1)
    return _Listener(run)
