"""Observer nodes (issue #4, item 4): full nodes that are not validators (a bank's, an auditor's) follow and
verify the chain, serve the API, and never take part in consensus. Real processes on 127.0.0.1.

- `TestObserver`: 4 validators and 1 observer (tests/bftnet.py `Net(observers=1)`: the observer's node key is
  a genesis member with the node operators' role, not in the validator set, and it dials every validator).
  (a) it follows: after transactions submitted to validators commit, it reaches their height and app hash and
  answers reads (status, blocks, transactions, accounts, listings, state proofs) exactly as a validator does;
  (b) it verifies: it holds a commit certificate of every block, valid against the validator set, and the
  auditor's replay through its API passes; (c) a transaction submitted to it is gossiped and committed by the
  validators; (d) it never signs: its key is in no commit certificate, its PrivValidator state (if it has one)
  is still "never signed anything", and no WAL (its own or a validator's) holds a proposal or vote of its key;
  (e) kill -9 of it under load, restart: it catches up by block sync to the validators' height and app hash,
  with every acknowledged transaction; (f) it holds no ciphertext of the validators (D-30): a pull of a
  package uploaded to a validator answers 409 package_missing at the observer and succeeds at a validator;
  and what it can serve: a ciphertext uploaded through it, which reaches the validators too (a regression
  test: that failed until 3a02a4c).
- `mydata testnet init --observers M` (files, genesis, ports, peers, bounds) and `mydata testnet up` with an
  observer (endpoints.json roles; the observer follows and takes submissions).

Safety is checked as in tests/test_bft_processes.py: every node's blocks through `GET /v1/blocks/{h}`, no two
different blocks at one height, no Traceback in any log. Every wait is a bounded poll, every test has a
pytest-timeout; every process is ours and is ended by its own pid (the network's in its fixture's `finally`,
and at interpreter exit as a last resort; `testnet up` and its nodes by the pids it wrote).

Seeds: MYDATA_BFT_SEED (default below) gives each test its seed; MYDATA_SHOW_NODE_LOG=1 prints the node logs
at the end of the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.demo import PAYMENT
from consensus.crypto import Ed25519Signer
from consensus.errors import LedgerError
from consensus.statetree import StateProof, verify_state_proof
from consensus.tendermint import ProposalMessage
from consensus.types import Block, CommitCertificate
from node import messages as m
from node.config import read_genesis
from tests.bftnet import (
    LoadGen,
    Net,
    assert_one_chain,
    chain_of,
    check_acks_everywhere,
    wait_until,
    wal_frames,
    wal_votes,
)
from wallet.actions import WalletSession, grant_window_ms
from wallet.auditor import replay_from_node
from wallet.client import ApiError

BASE_SEED = int(os.environ.get("MYDATA_BFT_SEED", "20260607"))
PASSPHRASE = "correct horse battery staple"
PAYMENT_RECORD = {"name": "Li Wei", "employer": "Jinan Light Industry Co.", "monthly_wage": "8650",
                  "months_paid": "94", "last_paid_month": "2026-10"}


def seed_for(name: str) -> int:
    seed = (BASE_SEED * 1_000_003 + zlib.crc32(name.encode())) % 2**31
    print(f"[seed] {name}: {seed} (MYDATA_BFT_SEED={BASE_SEED})")
    return seed


# ------------------------------------------------------------------------------------------ helpers


def pv_states(home: Path) -> list[dict[str, Any]]:
    """Every last-sign state in the node's PrivValidator state file(s) (node/privval.py): the one JSON object of
    `HOME/priv_validator_state.json`, or the one-line JSON text in each slot of a slot-format state file. The
    zero state (nothing signed yet) has height, round and step 0 and empty payload, hash and signature."""
    out = []
    for path in sorted(home.glob("priv_validator_state*")):
        if path.is_file() and not path.name.endswith(".lock"):
            out += [json.loads(mt.group()) for mt in re.finditer(rb'\{\s*"height":\s*\d+[^{}]*\}', path.read_bytes())]
    return out


def assert_never_signed(home: Path) -> int:
    """No last-sign state of the node's PrivValidator records a signature; returns how many states were read."""
    states = pv_states(home)
    for st in states:
        assert (st["height"], st["round"], st["step"], st["payload"], st["signature"]) == (0, 0, 0, "", ""), (
            f"the PrivValidator of {home.name} signed: {st}")
    return len(states)


def own_proposals(wal_dir: Path, proposer: bytes) -> list[Any]:
    """The proposals of `proposer` recorded in a WAL."""
    out = []
    for kind, data in wal_frames(wal_dir):
        if kind != 1:
            continue
        try:
            env = m.Envelope.decode(data, max_bytes=m.MAX_MESSAGE + 64)
            if env.kind == m.PROPOSAL:
                p = ProposalMessage.decode(env.payload).proposal
                if p.proposer == proposer:
                    out.append(p)
        except LedgerError:
            continue
    return out


def consensus_records(wal_dir: Path) -> int:
    """Proposals and votes in a WAL (message records of kind 1)."""
    return sum(1 for kind, _ in wal_frames(wal_dir) if kind == 1)


def vault_files(home: Path) -> list[Path]:
    """The ciphertexts in a node's vault (HOME/vault/<2 hex>/<64 hex>), temporary files left out."""
    return sorted(p for p in (home / "vault").rglob("*") if p.is_file() and len(p.name) == 64)


def blob_path(home: Path, blob_hash: bytes) -> Path:
    h = blob_hash.hex()
    return home / "vault" / h[:2] / h


def public_block(net: Net, i: int, h: int) -> dict[str, Any]:
    b = net[i].block(h)
    assert b is not None, f"{net[i].name} has no block {h}"
    return b


# ------------------------------------------------------------------------------------------ the network


@pytest.fixture(scope="class")
def obs_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    net = Net(tmp_path_factory.mktemp("obsnet"), seed_for("obs_net"), observers=1)
    try:
        net.start()  # the validators
        net.start(net.observers)
        net.ensure_holder("citizen")
        yield net
    finally:
        if os.environ.get("MYDATA_SHOW_NODE_LOG"):
            print(net.diag(lines=200))
        net.close()


def everyone(net: Net) -> list[int]:
    return list(range(net.n)) + net.observers


def converged(net: Net, at_least: int = 0, timeout: float = 60.0) -> tuple[int, str]:
    """The validators and the observer agree on one height (>= at_least) and app hash."""
    return net.wait_converged(everyone(net), timeout=timeout, at_least=at_least)


class TestObserver:
    @pytest.mark.timeout(180)
    def test_observer_follows_and_serves_the_same_reads(self, obs_net: Net) -> None:
        """(a) Transactions submitted to validators commit; the observer reaches the same height and app hash,
        and its answers equal a validator's: status (but its name and `validator: null`), every block (hash,
        header, transactions, previous commit), each transaction's lookup, accounts, listings, and state
        proofs of the new objects (which verify against its app hash)."""
        net = obs_net
        obs = net.observers[0]
        seed_for("observer_follows")
        live_before = net[obs].log_count("mydata.consensus committed block")
        done = net.work(4, who="notary", nodes=range(net.n), tag="follow")
        assert all(r["code"] == "ok" for r in done), done
        h, app = converged(net, at_least=max(int(r["height"]) for r in done))
        live = net[obs].log_count("mydata.consensus committed block") - live_before
        synced = net[obs].log_count("synced block")
        print(f"height {h}, app hash {app[:16]}; the observer decided {live} of the new blocks itself from the "
              f"validators' proposals and votes, and block-synced {synced} block(s) so far")
        assert live >= 1, "the observer never decided a block from the validators' consensus messages"

        st = {i: net[i].status() for i in everyone(net)}
        o = st[obs]
        assert o is not None and o["node"] == "observer0" and o["validator"] is None, o
        for i in range(net.n):
            v = st[i]
            assert v is not None and v["validator"] == net.vals[i].id.hex(), v
            for key in ("chain_id", "height", "latest_block_hash", "latest_block_time_ms", "app_hash",
                        "genesis_hash", "validators", "total_power"):
                assert o[key] == v[key], f"status {key}: observer {o[key]!r}, node{i} {v[key]!r}"

        chains = {net[i].name: chain_of(net[i], h) for i in everyone(net)}
        assert len(chains["observer0"]) == h, "the observer does not serve every block"
        assert_one_chain(chains)
        for x in range(1, h + 1):
            ob, vb = public_block(net, obs, x), public_block(net, x % net.n, x)
            for key in ("hash", "header", "tx_hashes", "last_commit"):
                assert ob[key] == vb[key], f"block {x}: {key} differs between the observer and node{x % net.n}"
            # Its own commit certificate (it may hold other precommits than a validator): checked in (b).
            assert ob["commit"] is not None and ob["commit"]["block_hash"] == ob["hash"], ob["commit"]

        for r in done:
            tx_hash = bytes.fromhex(r["hash"])
            views = [net.tx_status(i, tx_hash) for i in everyone(net)]
            assert all(v == views[0] for v in views), f"transaction lookups differ: {views}"
            assert views[0] is not None and views[0]["status"] == "committed"

        aud_obs, aud_val = net.client(obs, "auditor"), net.client(0, "auditor")
        for who in ("notary", "citizen", "auditor"):
            acct = net.ids[who].id
            assert aud_obs.account_info(acct) == aud_val.account_info(acct), who
        for who, what in (("notary", "requests"), ("citizen", "requests"), ("citizen", "grants")):
            acct = net.ids[who].id
            assert aud_obs.listing(acct, what) == aud_val.listing(acct, what), f"{who} {what}"

        for r in done:
            oid = bytes.fromhex(r["object_id"])
            p_obs, p_val = aud_obs.proof("consent-requests", oid), aud_val.proof("consent-requests", oid)
            assert p_obs == p_val, f"the proofs of consent request {oid.hex()[:12]} differ (chain idle at {h})"
            assert p_obs["height"] == h and p_obs["app_hash"] == app
            proof = StateProof.decode(bytes.fromhex(p_obs["proof"]))
            assert verify_state_proof(bytes.fromhex(p_obs["app_hash"]), bytes.fromhex(p_obs["key"]),
                                      bytes.fromhex(p_obs["value"]), proof)
            assert public_block(net, obs, h)["header"]["app_hash"] == p_obs["app_hash"]
        net.assert_clean_logs()

    @pytest.mark.timeout(180)
    def test_observer_holds_valid_commits_and_the_auditor_replay_passes(self, obs_net: Net) -> None:
        """(b) Signed as the auditor, the observer serves every block with the commit certificate that
        finalized it there; each is a quorum of valid precommits of validators for that block. The auditor's
        replay (wallet.auditor.replay_from_node, trusting nothing but the genesis) of the observer's chain
        passes, to the app hash and last block hash of the validators."""
        net = obs_net
        obs = net.observers[0]
        seed_for("observer_verifies")
        net.work(2, who="notary", nodes=range(net.n), tag="verify")
        h, app = converged(net)
        aud = net.client(obs, "auditor")
        vs = net.genesis.validators
        for x in range(1, h + 1):
            b = aud.block(x)
            block = Block.decode(bytes.fromhex(b["raw"]))
            assert block.hash.hex() == b["hash"] and block.header.height == x
            assert b["commit_raw"], f"the observer holds no commit certificate for block {x}"
            cc = CommitCertificate.decode(bytes.fromhex(b["commit_raw"]))
            assert (cc.height, cc.block_hash) == (x, block.hash), f"block {x}: the commit is for another block"
            cc.verify(net.genesis.chain_id, vs)  # raises unless a quorum of valid validator precommits
            if x > 1:
                assert block.last_commit is not None
                block.last_commit.verify(net.genesis.chain_id, vs)
        t0 = time.monotonic()
        report = replay_from_node(aud, net.genesis)
        assert report.final_commit_verified, "the auditor's replay did not verify the observer's final commit"
        assert (report.height, report.blocks, report.app_hash) == (h, h, app), (report.height, report.app_hash)
        assert report.last_block_hash == public_block(net, 0, h)["hash"]
        print(f"auditor replay of {h} blocks through the observer: {time.monotonic() - t0:.1f} s, "
              f"{report.transactions} transactions, app hash {app[:16]}")

    @pytest.mark.timeout(180)
    def test_transaction_submitted_to_the_observer_commits_on_the_validators(self, obs_net: Net) -> None:
        """(c) Transactions submitted only to the observer's API (one with wait=true, three without) are
        gossiped to the validators, proposed by them (an observer never proposes) and committed; every node
        knows each at the same height and index, and the observer's mempool empties."""
        net = obs_net
        obs = net.observers[0]
        seed_for("observer_submits")
        c = net.client(obs, "auditor")
        nonce = net.nonce("bank", everyone(net))
        txs = [net.consent_request(nonce + k, who="bank", tag="via-observer") for k in range(4)]
        first = c.submit(txs[0], wait=True)
        assert first["code"] == "ok", first
        for tx in txs[1:]:
            assert c.submit(tx, wait=False)["code"] == "ok"

        def placed() -> dict[bytes, set[tuple[int, int]]] | None:
            out: dict[bytes, set[tuple[int, int]]] = {}
            for tx in txs:
                seen = [net.tx_status(i, tx.hash) for i in everyone(net)]
                if any(r is None or r["status"] != "committed" for r in seen):
                    return None
                out[tx.hash] = {(int(r["height"]), int(r["index"])) for r in seen if r is not None}
            return out

        where = net.wait(placed, 60, "the observer's transactions committed on every node")
        for tx in txs:
            assert len(where[tx.hash]) == 1, f"{tx.hash.hex()[:12]} placed differently: {where[tx.hash]}"
        vals = {v.id.hex() for v in net.vals}
        for tx in txs:
            ((height, index),) = where[tx.hash]
            b = public_block(net, 0, height)
            assert b["tx_hashes"][index] == tx.hash.hex()
            assert b["header"]["proposer"] in vals, f"block {height} proposed by {b['header']['proposer']}"
            r = net.tx_status(0, tx.hash)
            assert r is not None and r["code"] == "ok", r
        net.wait(lambda: (net[obs].status() or {}).get("mempool", {}).get("txs") == 0, 20,
                 "the observer's mempool to empty")
        converged(net)

    @pytest.mark.timeout(180)
    def test_observer_never_signs(self, obs_net: Net) -> None:
        """(d) The observer's key signs nothing of consensus: it is in no commit certificate of any block on
        any node (nor in any block's previous commit), its PrivValidator state (if any) is the zero state, its own
        WAL holds the validators' proposals and votes but none of its key, and no validator's WAL holds a
        proposal or vote of its key. Its status says it is no validator."""
        net = obs_net
        obs = net.observers[0]
        seed_for("observer_never_signs")
        net.work(2, who="notary", nodes=range(net.n), tag="never-signs")
        h, _ = converged(net)
        me = net.obs[0].id
        vals = {v.id.hex() for v in net.vals}
        for i in everyone(net):
            for x, b in chain_of(net[i], h).items():
                for cert in (b.commit, public_block(net, i, x)["last_commit"]):
                    if cert is None:
                        continue
                    signers = {s["validator"] for s in cert["sigs"]}
                    assert me.hex() not in signers, f"{net[i].name}, block {x}: the observer's key signed a commit"
                    assert signers <= vals, f"{net[i].name}, block {x}: non-validator signers {signers - vals}"
        home = net[obs].home
        states = assert_never_signed(home)
        assert consensus_records(home / "wal") > 0, "the observer's WAL holds no consensus message at all"
        assert wal_votes(home / "wal", me) == [] and own_proposals(home / "wal", me) == []
        for i in range(net.n):
            wal = net[i].home / "wal"
            assert wal_votes(wal, me) == [] and own_proposals(wal, me) == [], f"node{i}'s WAL has the observer's"
        assert net[obs].log_count("refusing to sign") == 0
        st = net[obs].status()
        assert st is not None and st["validator"] is None and me.hex() not in {v["address"] for v in st["validators"]}
        print(f"{h} blocks; no signature of the observer's key anywhere ({states} PrivValidator state(s), zero); "
              f"its WAL holds {consensus_records(home / 'wal')} consensus records of the validators")

    @pytest.mark.timeout(240)
    def test_observer_killed_under_load_catches_up_by_block_sync(self, obs_net: Net) -> None:
        """(e) kill -9 of the observer while a client keeps submitting to the validators: they go on; the
        restarted observer catches up by block sync ("synced block" for the blocks it missed) to their height
        and app hash, serves every acknowledged transaction at its place, and still has signed nothing."""
        net = obs_net
        obs = net.observers[0]
        node = net[obs]
        rng = random.Random(seed_for("observer_kill9"))
        load = LoadGen(net, rng, sender="bank", rate=20, nodes=range(net.n), tag="observer-kill9").start()
        try:
            load.wait_acks(load.acked + 10, 60)
            h_obs = node.height()
            print(f"kill -9 observer0 (pid {node.pid}) at height {h_obs}")
            node.kill9()
            acked_at_kill = load.acked
            h_kill = max(net.heights().values())
            net.wait_height(h_kill + 8, timeout=60)
            load.wait_acks(acked_at_kill + 10, 60)
            h_restart = min(net.heights().values())
            synced_before = node.log_count("synced block")
            node.start()
            net.wait(lambda: node.height() >= h_restart, 60, f"the observer to reach height {h_restart}")
            load.wait_acks(load.acked + 5, 60)  # the load goes on while it caught up
            acks = load.stop()
        except BaseException:
            load.abandon()
            raise
        h, app = converged(net, at_least=h_restart)
        synced = node.log_count("synced block") - synced_before
        missed = h_restart - (h_obs + 1)  # it may have committed one more block before the kill landed
        print(f"observer down at {h_obs}..{h_restart}, caught up to {h} (app hash {app[:16]}; {synced} blocks synced); "
              f"{len(acks)} txs acknowledged; {load.stats}")
        assert synced >= missed, f"the observer block-synced {synced} blocks, it missed at least {missed}"
        chains = {net[i].name: chain_of(net[i], h) for i in everyone(net)}
        union = assert_one_chain(chains)
        check_acks_everywhere(acks, chains["observer0"])
        check_acks_everywhere(acks, union)
        for a in acks[-10:]:
            r = net.tx_status(obs, a.tx_hash)
            assert r is not None and (r["height"], r["index"]) == (a.height, a.index), r
        assert_never_signed(node.home)
        assert wal_votes(node.home / "wal", net.obs[0].id) == [] == own_proposals(node.home / "wal", net.obs[0].id)
        net.assert_clean_logs()

    @pytest.mark.timeout(180)
    def test_observer_holds_no_ciphertext_of_the_validators(self, obs_net: Net) -> None:
        """(f) D-30. An asset issued and a grant made through validator 0: every validator's vault gets both
        ciphertexts, the observer's none. The grantee's pull at the observer answers 409 package_missing
        (nothing recorded: the grant is unused), the holder cannot download the asset there (404
        unknown_blob); the same pull at another validator succeeds and verifies, and the observer then shows
        the access like everyone."""
        net = obs_net
        obs = net.observers[0]
        seed_for("observer_vault")
        ids = net.ids
        converged(net)
        assert vault_files(net[obs].home) == [], "the observer's vault holds ciphertexts before any upload to it"
        issuer = WalletSession(net.client(0), ids["social-security"])
        holder = WalletSession(net.client(0), ids["citizen"])
        asset = issuer.issue(ids["citizen"].id, PAYMENT, PAYMENT_RECORD).object_id
        payload_hash = bytes.fromhex(holder.asset(asset)["payload_hash"])
        grant = holder.grant(ids["bank"].id, [asset], ["monthly_wage"], "loan check", grant_window_ms(1), 2).object_id
        package_hash = bytes.fromhex(holder.client.object("grants", grant)["package_hash"])
        h, _ = converged(net)
        net.wait(lambda: all(blob_path(net[i].home, b).exists() for i in range(net.n)
                             for b in (payload_hash, package_hash)), 30,
                 "both ciphertexts in every validator's vault")
        time.sleep(2.0)  # replication had time to reach the observer too, if it ever would (it must not)
        assert vault_files(net[obs].home) == [], "the observer received ciphertexts from the validators"

        bank_at_obs = WalletSession(net.client(obs), ids["bank"])
        with pytest.raises(ApiError) as refused:
            bank_at_obs.pull(grant, asset)
        assert (refused.value.status, refused.value.code) == (409, "package_missing"), refused.value
        holder_at_obs = WalletSession(net.client(obs), ids["citizen"])
        with pytest.raises(ApiError) as missing:
            holder_at_obs.client.vault_get(payload_hash)
        assert (missing.value.status, missing.value.code) == (404, "unknown_blob"), missing.value
        assert holder_at_obs.client.object("grants", grant)["uses"] == 0, "a refused pull must record nothing"
        assert converged(net)[0] == h, "the refused pull at the observer made a block"

        other = 2
        pulled = WalletSession(net.client(other), ids["bank"]).pull(grant, asset)
        assert pulled.fields == {asset: {"monthly_wage": PAYMENT_RECORD["monthly_wage"]}}, pulled.fields
        converged(net, at_least=pulled.height)
        g = holder_at_obs.client.object("grants", grant)
        assert g["uses"] == 1, g
        accesses = net.client(obs, "auditor").listing(ids["citizen"].id, "accesses")["accesses"]
        assert pulled.access_id.hex() in {a["id"] for a in accesses}
        assert vault_files(net[obs].home) == [], "the observer received the package when it was pulled elsewhere"
        net.assert_clean_logs()

    @pytest.mark.timeout(180)
    def test_ciphertext_uploaded_through_the_observer_reaches_the_validators(self, obs_net: Net) -> None:
        """What an observer can serve: a ciphertext uploaded through its own API (an asset issued through
        it) is kept in its vault, and the holder opens it there. DESIGN: ciphertexts are "replicated to the
        validators", and the uploading node pushes it to its validator peers (ConsensusDriver.on_local_blob),
        so every validator's vault gets it too, and the holder opens it at any validator.

        Found a bug (fixed in 3a02a4c, "validators store blobs pushed by observers"): each validator dropped
        every VAULT_BLOB whose sender was not a validator and asked only validators for a blob it lacked, so
        an upload through an observer stayed on the observer only, and holders and pulls at the validators got
        404 unknown_blob / 409 package_missing for good."""
        net = obs_net
        obs = net.observers[0]
        seed_for("observer_upload")
        ids = net.ids
        before = set(vault_files(net[obs].home))
        issuer_at_obs = WalletSession(net.client(obs), ids["social-security"])
        holder_at_obs = WalletSession(net.client(obs), ids["citizen"])
        asset = issuer_at_obs.issue(ids["citizen"].id, PAYMENT, {**PAYMENT_RECORD, "months_paid": "95"}).object_id
        payload_hash = bytes.fromhex(holder_at_obs.asset(asset)["payload_hash"])
        assert set(vault_files(net[obs].home)) - before == {blob_path(net[obs].home, payload_hash)}
        assert holder_at_obs.open_asset(asset).record["months_paid"] == "95"
        converged(net)
        net.wait(lambda: all(blob_path(net[i].home, payload_hash).exists() for i in range(net.n)), 30,
                 "the ciphertext uploaded through the observer in every validator's vault")
        for i in range(net.n):
            assert WalletSession(net.client(i), ids["citizen"]).open_asset(asset).record["months_paid"] == "95"
        net.assert_clean_logs()


# ================================================================================================ the CLI


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MYDATA_NODE", "MYDATA_WALLET_DIR", "MYDATA_IDENTITY", "MYDATA_PASSPHRASE")}
    return {**env, "MYDATA_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}


def run_cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, env=cli_env(),
                          timeout=timeout, stdin=subprocess.DEVNULL)


def free_port_range(count: int, tries: int = 50) -> int:
    """A base port such that base .. base+count-1 are all free on 127.0.0.1 right now."""
    rng = random.Random()
    for _ in range(tries):
        base = rng.randrange(20_000, 60_000 - count)
        socks = []
        try:
            for p in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no {count} consecutive free ports found")


def node_pubkey(home: Path) -> str:
    seed = bytes.fromhex(json.loads((home / "node_key.json").read_text())["ed25519_seed"])
    return Ed25519Signer(seed).public_key.hex()


def describe(r: subprocess.CompletedProcess[str]) -> str:
    return f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


@pytest.mark.timeout(120)
def test_testnet_init_with_observers(tmp_path: Path) -> None:
    """`testnet init --validators 2 --observers 2`: homes nodes/node0, node1, observer0, observer1; the
    observers' keys are genesis members (role `validator`), not validators; ports follow the validators';
    observers dial every validator (keys pinned), validators dial only each other. A lone validator lists its
    observers (so it runs the peer network they need). Out-of-range --observers: one-line error, nothing
    written."""
    d = tmp_path / "net"
    r = run_cli("--json", "testnet", "init", str(d), "--validators", "2", "--observers", "2", "--base-port", "31000")
    assert r.returncode == 0, describe(r)
    out = json.loads(r.stdout)
    assert (out["validators"], out["observers"]) == (2, 2), out
    assert sorted(p.name for p in (d / "nodes").iterdir()) == ["node0", "node1", "observer0", "observer1"]
    genesis = read_genesis(d / "genesis.json")
    cfg, pk = {}, {}
    for name in ("node0", "node1", "observer0", "observer1"):
        home = d / "nodes" / name
        assert {"config.json", "genesis.json", "node_key.json"} <= {p.name for p in home.iterdir()}, name
        assert (home / "node_key.json").stat().st_mode & 0o077 == 0, f"{name}: node_key.json readable by others"
        assert read_genesis(home / "genesis.json").hash == genesis.hash
        cfg[name] = json.loads((home / "config.json").read_text())
        pk[name] = node_pubkey(home)
        assert cfg[name]["name"] == name and cfg[name]["chain_id"] == genesis.chain_id
    assert len(set(pk.values())) == 4, "every node needs a key of its own"
    ports = {n: (cfg[n]["api"], cfg[n]["p2p"]) for n in cfg}
    assert ports == {"node0": ("127.0.0.1:31000", "127.0.0.1:31001"), "node1": ("127.0.0.1:31002", "127.0.0.1:31003"),
                     "observer0": ("127.0.0.1:31004", "127.0.0.1:31005"),
                     "observer1": ("127.0.0.1:31006", "127.0.0.1:31007")}, ports
    val_peers = [f"{pk['node0']}@127.0.0.1:31001", f"{pk['node1']}@127.0.0.1:31003"]
    assert cfg["observer0"]["peers"] == val_peers and cfg["observer1"]["peers"] == val_peers
    assert cfg["node0"]["peers"] == val_peers[1:] and cfg["node1"]["peers"] == val_peers[:1]
    assert {v.pubkey.hex() for v in genesis.validators.validators} == {pk["node0"], pk["node1"]}
    app = json.loads((d / "genesis.json").read_text())["app_state"]
    members = {mb["sign_pk"]: mb for mb in app["members"]}
    for name in ("observer0", "observer1"):
        assert members[pk[name]]["roles"] == ["validator"], members[pk[name]]
        assert members[pk[name]]["name"] == f"observer-{name[-1]}"

    lone = tmp_path / "lone"
    r = run_cli("--json", "testnet", "init", str(lone), "--observers", "1", "--base-port", "32000")
    assert r.returncode == 0, describe(r)
    obs_key = node_pubkey(lone / "nodes" / "observer0")
    assert json.loads((lone / "nodes" / "node0" / "config.json").read_text())["peers"] == [
        f"{obs_key}@127.0.0.1:32003"]

    for bad in ("17", "-1"):
        target = tmp_path / f"bad{bad}"
        r = run_cli("--json", "testnet", "init", str(target), "--observers", bad)
        assert r.returncode == 1 and r.stdout == "", describe(r)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert lines == ["mydata: --observers must be between 0 and 16"], describe(r)
        assert not target.exists(), "a refused init must write nothing"
    r = run_cli("testnet", "init", str(tmp_path / "human"), "--validators", "1", "--observers", "3",
                "--base-port", "33000")
    assert r.returncode == 0 and "1 validator(s), 3 observer(s)" in r.stdout, describe(r)


def _pid_runs(pid: int, needle: str) -> bool:
    """Whether `pid` is alive (not a zombie) and its command line mentions `needle` (still our process)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and needle.encode() in cmdline


@pytest.mark.timeout(240)
def test_testnet_up_with_an_observer(tmp_path: Path) -> None:
    """`testnet up` on a testnet of 2 validators and 1 observer: endpoints.json lists the three with their
    roles; a transaction submitted through the observer's API (the CLI's `admin register-holder`) commits, and
    the observer reaches the validators' height and app hash. SIGTERM to `testnet up` stops all three."""
    d = tmp_path / "net"
    base = free_port_range(6)
    r = run_cli("--json", "testnet", "init", str(d), "--validators", "2", "--observers", "1",
                "--base-port", str(base))
    assert r.returncode == 0, describe(r)
    with open(tmp_path / "up.out", "wb") as out, open(tmp_path / "up.err", "wb") as err:
        up = subprocess.Popen([sys.executable, "-m", "cli", "testnet", "up", str(d)], stdout=out, stderr=err,
                              stdin=subprocess.DEVNULL, env=cli_env(), start_new_session=True)
    pids: list[int] = []

    def diag() -> str:
        logs = "\n".join(f"--- {h.name}\n" + (h / "node.log").read_text(errors="replace")[-2000:]
                         for h in sorted((d / "nodes").iterdir()) if (h / "node.log").exists())
        return f"testnet up stderr:\n{(tmp_path / 'up.err').read_text(errors='replace')}\n{logs}"

    try:
        def endpoints() -> dict[str, Any] | None:
            if up.poll() is not None:
                raise AssertionError(f"`testnet up` exited with {up.returncode}\n{diag()}")
            try:
                return dict(json.loads((d / "endpoints.json").read_text()))
            except (OSError, ValueError):
                return None

        ep = wait_until(endpoints, 90, "endpoints.json", diag=diag)
        pids.extend(int(n["pid"]) for n in ep["nodes"])
        assert [(n["name"], n["role"]) for n in ep["nodes"]] == [
            ("node0", "validator"), ("node1", "validator"), ("observer0", "observer")], ep
        assert [n["api"] for n in ep["nodes"]] == [f"http://127.0.0.1:{base + 2 * k}" for k in range(3)], ep
        assert [n["p2p"] for n in ep["nodes"]] == [f"127.0.0.1:{base + 2 * k + 1}" for k in range(3)], ep
        urls = {n["name"]: n["api"] for n in ep["nodes"]}
        for n in ep["nodes"]:
            assert set(n) == {"name", "api", "p2p", "pid", "role"}, n
            assert _pid_runs(int(n["pid"]), str(d / "nodes" / n["name"])), n
        reg = run_cli("--wallet-dir", str(d / "wallet"), "--node", urls["observer0"], "--json", "admin",
                      "register-holder", "--as", "public-security", "--kind", "person", "--subject-id",
                      "370102199001011234", "--salt", "5a17" * 8, "--identity", "citizen", timeout=90)
        assert reg.returncode == 0, describe(reg) + diag()
        committed = json.loads(reg.stdout)
        assert committed["code"] == "ok", committed

        def same() -> tuple[int, str] | None:
            st = [httpx.get(f"{u}/v1/status", timeout=3).json() for u in urls.values()]
            views = {(s["height"], s["app_hash"]) for s in st}
            return views.pop() if len(views) == 1 and st[0]["height"] >= committed["height"] else None

        h, app = wait_until(same, 60, "the three nodes at one height and app hash", diag=diag)
        obs_status = httpx.get(f"{urls['observer0']}/v1/status", timeout=3).json()
        assert obs_status["validator"] is None and obs_status["node"] == "observer0"
        print(f"height {h}, app hash {app[:16]} on both validators and the observer")
        assert "3 node(s) up (2 validator(s), 1 observer(s))" in (tmp_path / "up.out").read_text()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                up.kill()
                up.wait(10)
        # `testnet up` stops its nodes; should it have died without doing so, they are our grandchildren:
        # end each by the pid it wrote, after checking that pid still runs one of our homes.
        deadline = time.monotonic() + 15
        while any(_pid_runs(p, str(d)) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in pids if _pid_runs(p, str(d))]
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
    assert up.returncode == 0, f"`testnet up` must exit 0 on SIGTERM, got {up.returncode}\n{diag()}"
    assert not left, f"`testnet up` left nodes running: {left}"
