"""Real multi-validator networks for the BFT process tests (tests/test_bft_processes.py).

- `Net`: N validator homes (deterministic keys from a seed, the demo's parties as genesis members), each node
  its own `mydata node start HOME` process, on loopback or each in its own network namespace (`NetnsLab`);
  optionally M observers (loopback only): full nodes whose keys are genesis members but not validators,
  dialing every validator, at indices N..N+M-1 of `Net.nodes` (tests/test_observers.py).
- `NetnsLab`: a hub namespace holding the bridges (`mdbr0` for the peer network, `mdbr1` the other side of a
  split, `mdapibr` for the APIs), one namespace per node with a veth into each bridge, and one veth from the
  root namespace into the API bridge (an address of our own /24 in 10.78.0.0/16, so the test reaches the
  APIs; nothing is forwarded anywhere else: ip_forward is untouched). A split moves bridge ports from
  `mdbr0` to `mdbr1`; the APIs stay reachable throughout.
- `LoadGen`: a client thread signing transactions with explicit nonces, submitting them with
  `Client.submit(wait=False)` to rotating nodes and polling `GET /v1/txs/{hash}` until a node says
  "committed"; only those acknowledgements are held against the network afterwards.
- `chain_of` / `assert_one_chain`: block hashes per height, compared across nodes.

Every process started here is ours and is ended by its own pid; every namespace and interface is ours and is
deleted by name. Both are also recorded in module registries and removed at interpreter exit, as a last
resort if a test is interrupted before its own cleanup runs.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cli.demo import demo_genesis, validator_ids
from cli.localnet import free_port
from consensus.encoding import Struct
from consensus.types import Genesis, Tx
from contracts.genesis import AppGenesis, GenesisMember
from contracts.txs import RegisterHolder, RequestConsent
from node.config import NodeConfig, init_home
from wallet.actions import subject_ref
from wallet.client import ApiError, Client, NodeUnreachable
from wallet.devchain import Identity
from wallet.tx import make_tx

PARTIES = ["data-bureau", "public-security", "social-security", "market-regulator", "bank", "notary", "auditor",
           "citizen", "enterprise", "enterprise-clerk"]
P2P_PORT, API_PORT = 26656, 26657

# ------------------------------------------------------------------------------------------ last-resort cleanup

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LABS: list[NetnsLab] = []


def _cleanup_at_exit() -> None:
    for pid, p in list(_LIVE.items()):
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.kill()
            with contextlib.suppress(Exception):
                p.wait(5)
        _LIVE.pop(pid, None)
    for lab in list(_LABS):
        lab.teardown()


atexit.register(_cleanup_at_exit)


# ------------------------------------------------------------------------------------------ small helpers


def identities(seed: int, validators: int, observers: int = 0) -> dict[str, Identity]:
    """The demo's parties, `validators` validator keys and `observers` observer node keys (`observer-<j>`), all
    derived from `seed` (reproducible node ids)."""
    names = PARTIES + ["validator"] + [f"validator-{i}" for i in range(1, validators)]
    names += [f"observer-{j}" for j in range(observers)]
    s = seed.to_bytes(8, "big")
    return {n: Identity.derive(n, s) for n in names}


def with_members(genesis: Genesis, members: Sequence[tuple[Identity, tuple[str, ...]]]) -> Genesis:
    """The genesis with more founding member accounts (e.g. observers' node keys: members, not validators)."""
    app = AppGenesis.decode(genesis.app_state)
    extra = tuple(GenesisMember(i.name, tuple(sorted(roles)), i.pk, i.enc_pk) for i, roles in members)
    return dataclasses.replace(genesis, app_state=dataclasses.replace(app, members=app.members + extra).encode())


def wait_until(pred: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.1,
               diag: Callable[[], str] | None = None) -> Any:
    """Poll `pred` until it returns something truthy; AssertionError (with `diag()`) after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            got = pred()
            if got:
                return got
        except Exception as e:  # a node restarting, say: try again
            last_exc = e
        if time.monotonic() > deadline:
            extra = f"\nlast error: {last_exc!r}" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{extra}\n"
                                 + (diag() if diag else ""))
        time.sleep(interval)


def log_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


# ------------------------------------------------------------------------------------------ processes


class NodeProc:
    """One `python -m cli node start HOME` process (optionally under `ip netns exec NS`), logging to
    HOME/node.log. Only ever signalled by its own pid."""

    def __init__(self, name: str, home: Path, api: str, p2p: str, prefix: Sequence[str] = ()) -> None:
        self.name, self.home, self.api, self.p2p = name, home, api, p2p
        self.prefix = list(prefix)
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=3.0)

    @property
    def url(self) -> str:
        return f"http://{self.api}"

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        with open(self.log_path, "ab") as log:
            log.write(f"==== test harness: starting {self.name} at {time.strftime('%H:%M:%S')} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "cli", "node", "start", str(self.home), "--api", self.api],
                stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True)
        _LIVE[self.proc.pid] = self.proc

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if self.http.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} at {self.url} not healthy after {timeout} s:\n{self.log_tail()}")

    def start(self, timeout: float = 30.0) -> None:
        self.spawn()
        self.wait_healthy(timeout)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop in time; returns the exit code."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout)
        _LIVE.pop(p.pid, None)
        return p.returncode

    def kill9(self) -> None:
        p = self.proc
        if p is not None:
            if p.poll() is None:
                p.kill()
                p.wait(10)
            _LIVE.pop(p.pid, None)

    def close(self) -> None:
        self.kill9()
        self.http.close()

    def log_tail(self, lines: int = 25) -> str:
        return "\n".join(log_lines(self.log_path)[-lines:])

    def log_count(self, needle: str) -> int:
        return sum(needle in line for line in log_lines(self.log_path))

    def log_since_start(self) -> str:
        """The log of the current run (since the harness's last "starting" marker)."""
        text = "\n".join(log_lines(self.log_path))
        return text.rsplit("==== test harness: starting", 1)[-1]

    def status(self) -> dict[str, Any] | None:
        """GET /v1/status, or None if the node does not answer."""
        try:
            r = self.http.get(f"{self.url}/v1/status")
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def height(self) -> int:
        s = self.status()
        return -1 if s is None else int(s["height"])

    def block(self, height: int) -> dict[str, Any] | None:
        """GET /v1/blocks/{height} (public view: hash, header, tx_hashes, commits), None if there is none."""
        r = self.http.get(f"{self.url}/v1/blocks/{height}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())


# ------------------------------------------------------------------------------------------ namespaces


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and r.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed ({r.returncode}): {r.stderr.strip()}")
    return r


class NetnsLab:
    """Network namespaces for one test network: see the module docstring. All names carry a tag made of this
    process's pid, so two test runs never touch each other's namespaces; `teardown` deletes everything."""

    def __init__(self, n: int, tag: str | None = None) -> None:
        self.n = n
        self.tag = tag or str(os.getpid() % 100_000)
        self.hub = f"mdhub{self.tag}"
        self.nss = [f"mdn{i}x{self.tag}" for i in range(n)]
        self.root_if = f"mdr{self.tag}"[:15]
        self.octet = 20 + os.getpid() % 200
        self.ready = False

    # -- addresses --
    def p2p_ip(self, i: int) -> str:
        return f"10.77.{self.octet}.{i + 1}"

    def api_ip(self, i: int) -> str:
        return f"10.78.{self.octet}.{i + 1}"

    @property
    def root_ip(self) -> str:
        return f"10.78.{self.octet}.254"

    def prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.nss[i]]

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be used here, or None if they can."""
        if shutil.which("ip") is None:
            return "the `ip` command (iproute2) is not installed"
        if os.geteuid() != 0:
            return "not running as root (creating network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN)"
        probe = f"mdprobe{os.getpid() % 100_000}"
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"`ip netns add` fails: {r.stderr.strip()}"
        try:
            r = _ip("-n", probe, "link", "add", "mdprobebr", "type", "bridge", check=False)
            if r.returncode != 0:
                return f"cannot create a bridge in a namespace: {r.stderr.strip()}"
        finally:
            _ip("netns", "del", probe, check=False)
        return None

    def setup(self) -> None:
        _LABS.append(self)
        used = _ip("-4", "-o", "addr", "show").stdout
        if f"10.78.{self.octet}." in used or f"10.77.{self.octet}." in used:
            raise RuntimeError(f"10.77/10.78.{self.octet}.0/24 is already in use on this machine")
        _ip("netns", "add", self.hub)
        hub = ["-n", self.hub]
        _ip(*hub, "link", "set", "lo", "up")
        for br in ("mdbr0", "mdbr1", "mdapibr"):
            _ip(*hub, "link", "add", br, "type", "bridge")
            _ip(*hub, "link", "set", br, "up")
        for i, ns in enumerate(self.nss):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            for port, inner, br, addr in ((f"p{i}", "p2p0", "mdbr0", self.p2p_ip(i)),
                                          (f"a{i}", "api0", "mdapibr", self.api_ip(i))):
                _ip(*hub, "link", "add", port, "type", "veth", "peer", "name", inner, "netns", ns)
                _ip(*hub, "link", "set", port, "master", br)
                _ip(*hub, "link", "set", port, "up")
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
        _ip("link", "add", self.root_if, "type", "veth", "peer", "name", "aroot", "netns", self.hub)
        _ip(*hub, "link", "set", "aroot", "master", "mdapibr")
        _ip(*hub, "link", "set", "aroot", "up")
        _ip("addr", "add", f"{self.root_ip}/24", "dev", self.root_if)
        _ip("link", "set", self.root_if, "up")
        self.ready = True

    def partition(self, *groups: Iterable[int]) -> None:
        """Put the peer-network ports of the first group on mdbr0 and those of the second on mdbr1 (nodes on
        different bridges cannot reach each other; the API bridge is untouched)."""
        for bridge, group in zip(("mdbr0", "mdbr1"), groups, strict=False):
            for i in group:
                _ip("-n", self.hub, "link", "set", f"p{i}", "master", bridge)

    def heal(self) -> None:
        self.partition(range(self.n))

    def p2p_connections(self, i: int) -> int:
        """How many established TCP connections node i has on the peer network (ss, in its namespace)."""
        r = subprocess.run(["ip", "netns", "exec", self.nss[i], "ss", "-Htn", "state", "established", "dst",
                            f"10.77.{self.octet}.0/24"], capture_output=True, text=True, timeout=20, check=False)
        return len([ln for ln in r.stdout.splitlines() if ln.strip()])

    def isolate_all(self) -> None:
        """Detach every node's peer-network port from the bridges: nobody reaches anybody."""
        for i in range(self.n):
            _ip("-n", self.hub, "link", "set", f"p{i}", "nomaster")

    def drop_connections(self, i: int) -> None:
        """Destroy the established peer connections of node i, on its side and on every other node's
        (`ss -K`, inside our namespaces only). A cut link alone only delays TCP: what was queued is delivered
        after the heal. With the connections gone, queued messages are dropped with them, as after a long
        partition, and the node can come back only through redialing and block sync."""
        subprocess.run(["ip", "netns", "exec", self.nss[i], "ss", "-K", "dst", f"10.77.{self.octet}.0/24"],
                       capture_output=True, timeout=20, check=False)
        for j in range(self.n):
            if j != i:
                subprocess.run(["ip", "netns", "exec", self.nss[j], "ss", "-K", "dst", self.p2p_ip(i)],
                               capture_output=True, timeout=20, check=False)

    def teardown(self) -> None:
        for ns in [*self.nss, self.hub]:
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.root_if, check=False)  # normally gone with its peer in the hub
        self.ready = False
        if self in _LABS:
            _LABS.remove(self)

    def leftovers(self) -> list[str]:
        """Our namespaces or interfaces that still exist (after teardown: none)."""
        names = set(_ip("netns", "list", check=False).stdout.split())
        left = [ns for ns in [*self.nss, self.hub] if ns in names]
        if _ip("link", "show", self.root_if, check=False).returncode == 0:
            left.append(self.root_if)
        return left


# ------------------------------------------------------------------------------------------ the network


class Net:
    """`n` validators of one fresh chain; node i's home is base/node<i>. With `observers` (loopback only),
    observer j is `nodes[n + j]`, home base/observer<j>: its node key `observer-<j>` is a genesis member
    with the node operators' role (`validator`) but not in the validator set, and it dials every validator.
    Methods that take `nodes=None` mean the validators (`range(n)`); pass observer indices explicitly."""

    def __init__(self, base: Path, seed: int, n: int = 4, lab: NetnsLab | None = None,
                 chain_id: str = "mydata-bft", observers: int = 0) -> None:
        if observers and lab is not None:
            raise ValueError("observers run on loopback only")
        self.base, self.seed, self.n, self.lab = base, seed, n, lab
        self.ids = identities(seed, n, observers)
        self.genesis: Genesis = demo_genesis(self.ids, chain_id=chain_id, validators=n)
        self.obs = [self.ids[f"observer-{j}"] for j in range(observers)]
        if self.obs:
            self.genesis = with_members(self.genesis, [(o, ("validator",)) for o in self.obs])
        self.vals = validator_ids(self.ids)[:n]
        if lab is not None:
            apis = [f"{lab.api_ip(i)}:{API_PORT}" for i in range(n)]
            p2ps = [f"{lab.p2p_ip(i)}:{P2P_PORT}" for i in range(n)]
        else:
            apis = [f"127.0.0.1:{free_port()}" for _ in range(n)]
            p2ps = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        self.p2ps = p2ps
        self.nodes: list[NodeProc] = []
        for i, v in enumerate(self.vals):
            home = base / f"node{i}"
            init_home(home, NodeConfig(f"node{i}", self.genesis.chain_id, api=apis[i], p2p=p2ps[i],
                                       peers=self.peer_list(exclude=i)), self.genesis, v.seed)
            self.nodes.append(NodeProc(f"node{i}", home, apis[i], p2ps[i],
                                       lab.prefix(i) if lab is not None else ()))
        for j, o in enumerate(self.obs):
            api, p2p = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            home = base / f"observer{j}"
            init_home(home, NodeConfig(f"observer{j}", self.genesis.chain_id, api=api, p2p=p2p,
                                       peers=self.peer_list()), self.genesis, o.seed)
            self.nodes.append(NodeProc(f"observer{j}", home, api, p2p))
        #: Indices of the observers in `nodes` (after the validators).
        self.observers = list(range(n, n + len(self.obs)))
        (base / "genesis.json").write_bytes((base / "node0" / "genesis.json").read_bytes())
        self.extra: list[NodeProc] = []  # other processes of this test (a twin, an outsider), closed with us
        self._clients: dict[tuple[int, str], Client] = {}

    def peer_list(self, exclude: int | None = None, only: Iterable[int] | None = None) -> list[str]:
        keep = set(range(self.n) if only is None else only)
        return [f"{v.pk.hex()}@{self.p2ps[j]}" for j, v in enumerate(self.vals) if j != exclude and j in keep]

    def __getitem__(self, i: int) -> NodeProc:
        return self.nodes[i]

    def idx(self, nodes: Iterable[int] | None) -> list[int]:
        return list(range(self.n)) if nodes is None else list(nodes)

    # ---- processes --------------------------------------------------------------------------------------

    def start(self, nodes: Iterable[int] | None = None, timeout: float = 40.0) -> None:
        """Start the given nodes (default: all) in parallel, then wait until each answers."""
        which = [i for i in self.idx(nodes) if not self.nodes[i].alive]
        for i in which:
            self.nodes[i].spawn()
        for i in which:
            self.nodes[i].wait_healthy(timeout)

    def ensure_running(self) -> None:
        self.start([i for i in range(self.n) if not self.nodes[i].alive])

    def stop(self, nodes: Iterable[int] | None = None) -> None:
        for i in self.idx(nodes):
            if self.nodes[i].alive:
                self.nodes[i].proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        for i in self.idx(nodes):
            self.nodes[i].stop()

    def kill9(self, nodes: Iterable[int] | None = None) -> None:
        for i in self.idx(nodes):
            p = self.nodes[i].proc
            if p is not None and p.poll() is None:
                p.kill()
        for i in self.idx(nodes):
            self.nodes[i].kill9()

    def close(self) -> None:
        """Stop every process of this network (SIGTERM, then SIGKILL), ours by pid."""
        for p in self.extra:
            p.stop(5)
            p.close()
        self.stop(range(len(self.nodes)))  # the validators and the observers
        for node in self.nodes:
            node.close()
        for c in self._clients.values():
            c.close()
        self._clients.clear()

    # ---- reading ----------------------------------------------------------------------------------------

    def client(self, i: int, who: str = "auditor") -> Client:
        key = (i, who)
        if key not in self._clients:
            ident = self.ids[who]
            self._clients[key] = Client(self.nodes[i].url, chain_id=self.genesis.chain_id, signer=ident.signer,
                                        account=ident.id, timeout=5.0)
        return self._clients[key]

    def statuses(self, nodes: Iterable[int] | None = None) -> dict[int, dict[str, Any] | None]:
        return {i: self.nodes[i].status() for i in self.idx(nodes)}

    def heights(self, nodes: Iterable[int] | None = None) -> dict[int, int]:
        return {i: self.nodes[i].height() for i in self.idx(nodes)}

    def diag(self, nodes: Iterable[int] | None = None, lines: int = 15) -> str:
        out = []
        for i in (range(len(self.nodes)) if nodes is None else nodes):  # by default observers too
            node = self.nodes[i]
            s = node.status()
            brief = "down" if s is None else f"h={s['height']} app={s['app_hash'][:12]} mempool={s['mempool']}"
            out.append(f"--- {node.name} (pid {node.pid}, alive={node.alive}) {brief}\n{node.log_tail(lines)}")
        for node in self.extra:
            out.append(f"--- {node.name} (pid {node.pid}, alive={node.alive})\n{node.log_tail(lines)}")
        return "\n".join(out)

    def assert_clean_logs(self) -> None:
        """No node of this network logged an exception (a Traceback) so far."""
        for node in [*self.nodes, *self.extra]:
            text = "\n".join(log_lines(node.log_path))
            if "Traceback" in text:
                at = text.index("Traceback")
                raise AssertionError(f"{node.name} logged an exception:\n{text[max(0, at - 300):at + 3000]}")

    def wait(self, pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
        return wait_until(pred, timeout, what, interval=interval, diag=self.diag)

    def wait_height(self, at_least: int, nodes: Iterable[int] | None = None, timeout: float = 30.0) -> dict[int, int]:
        which = self.idx(nodes)

        def ok() -> dict[int, int] | None:
            hs = self.heights(which)
            return hs if all(h >= at_least for h in hs.values()) else None

        return self.wait(ok, timeout, f"nodes {which} at height >= {at_least}")  # type: ignore[no-any-return]

    def wait_converged(self, nodes: Iterable[int] | None = None, timeout: float = 30.0,
                       at_least: int = 0) -> tuple[int, str]:
        """Wait until the given nodes report one height (>= at_least) and one app hash, twice in a row."""
        which = self.idx(nodes)
        seen: list[tuple[int, str] | None] = [None]

        def same() -> tuple[int, str] | None:
            st = self.statuses(which)
            if any(s is None for s in st.values()):
                return None
            views = {(int(s["height"]), s["app_hash"], s["latest_block_hash"]) for s in st.values() if s}
            if len(views) != 1:
                seen[0] = None
                return None
            h, app, _ = views.pop()
            if h < at_least:
                return None
            if seen[0] == (h, app):
                return h, app
            seen[0] = (h, app)
            return None

        return self.wait(same, timeout, f"nodes {which} to agree on one height and app hash",  # type: ignore
                         interval=0.25)

    # ---- transactions -----------------------------------------------------------------------------------

    def nonce(self, who: str, nodes: Iterable[int] | None = None) -> int:
        """The account's next nonce: the highest any answering node reports (a lagging node's is stale)."""
        got = []
        for i in self.idx(nodes):
            with contextlib.suppress(NodeUnreachable, ApiError, httpx.HTTPError):
                got.append(int(self.client(i, who).account_info(self.ids[who].id)["nonce"]))
        if not got:
            raise AssertionError(f"no node answers for the nonce of {who}:\n{self.diag()}")
        return max(got)

    def tx(self, who: str, body: Struct, nonce: int) -> Tx:
        ident = self.ids[who]
        return make_tx(ident.signer, self.genesis.chain_id, nonce, body)

    def consent_request(self, nonce: int, who: str = "bank", holder: str = "citizen", tag: str = "") -> Tx:
        body = RequestConsent(self.ids[holder].id, ("social_security.payment_record",), ("monthly_wage",),
                              f"load {tag} #{nonce}", 86_400_000, 1)
        return self.tx(who, body, nonce)

    def tx_status(self, i: int, tx_hash: bytes) -> dict[str, Any] | None:
        """The node's view of a transaction (as the auditor), None if it does not know it."""
        try:
            return self.client(i).tx(tx_hash)
        except ApiError as e:
            if e.status == 404:
                return None
            raise

    def submit_wait(self, tx: Tx, nodes: Iterable[int] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        """Submit to the first node that takes it and wait until one of `nodes` reports it committed."""
        which = self.idx(nodes)
        for i in which:
            try:
                self.client(i).submit(tx, wait=False)
                break
            except (NodeUnreachable, httpx.HTTPError):
                continue

        def committed() -> dict[str, Any] | None:
            for i in which:
                with contextlib.suppress(NodeUnreachable, ApiError, httpx.HTTPError):
                    r = self.tx_status(i, tx.hash)
                    if r is not None and r.get("status") == "committed":
                        return r
            return None

        return self.wait(committed, timeout, f"tx {tx.hash.hex()[:12]} ({tx.type}) committed")  # type: ignore

    def ensure_holder(self, who: str = "citizen") -> None:
        """Register `who` as a holder (once per chain) so that consent requests to it succeed."""
        ident = self.ids[who]
        with contextlib.suppress(ApiError):
            info = self.client(0).account_info(ident.id)
            if info.get("kind") == "holder":
                return
        salt = self.seed.to_bytes(16, "big")
        body = RegisterHolder("person", subject_ref(salt, "person", f"id-of-{who}"), ident.pk, ident.enc_pk)
        r = self.submit_wait(self.tx("public-security", body, self.nonce("public-security")))
        assert r["code"] == "ok", r

    def work(self, count: int, who: str = "notary", nodes: Iterable[int] | None = None, tag: str = "") -> list[dict]:
        """`count` consent requests, one after the other (each committed before the next: ~one block each)."""
        which = self.idx(nodes)
        out = []
        nonce = self.nonce(who, which)
        for k in range(count):
            out.append(self.submit_wait(self.consent_request(nonce + k, who=who, tag=tag), [which[k % len(which)]]))
        return out


# ------------------------------------------------------------------------------------------ chain comparison


@dataclass
class BlockView:
    hash: str
    app_hash: str
    prev_hash: str
    tx_hashes: list[str]
    commit: dict[str, Any] | None


def chain_of(node: NodeProc, upto: int | None = None) -> dict[int, BlockView]:
    """Every block the node serves, from 1 up to `upto` (default: its height)."""
    top = node.height() if upto is None else upto
    out: dict[int, BlockView] = {}
    for h in range(1, top + 1):
        b = node.block(h)
        if b is None:
            break
        out[h] = BlockView(b["hash"], b["header"]["app_hash"], b["header"]["prev_hash"], list(b["tx_hashes"]),
                           b.get("commit"))
    return out


def assert_one_chain(chains: dict[str, dict[int, BlockView]]) -> dict[int, BlockView]:
    """No two different blocks at one height across the given chains, and each chain linked by prev_hash.
    Returns the union (height -> block)."""
    union: dict[int, BlockView] = {}
    owner: dict[int, str] = {}
    for name, chain in chains.items():
        for h, b in sorted(chain.items()):
            if h in union:
                assert union[h].hash == b.hash, (
                    f"FORK at height {h}: {owner[h]} has block {union[h].hash[:16]}, {name} has {b.hash[:16]}")
                assert union[h].app_hash == b.app_hash, f"app hash differs at height {h} ({owner[h]} vs {name})"
            else:
                union[h], owner[h] = b, name
            if h - 1 in chain:
                assert b.prev_hash == chain[h - 1].hash, f"{name}: block {h} does not link to block {h - 1}"
    return union


# ------------------------------------------------------------------------------------------ load


@dataclass
class Ack:
    tx_hash: bytes
    nonce: int
    height: int
    index: int
    node: int
    code: str


@dataclass
class LoadStats:
    submitted: int = 0
    resubmitted: int = 0
    submit_errors: int = 0
    poll_errors: int = 0
    last_error: str = ""
    refusals: list[str] = field(default_factory=list)


class LoadGen:
    """A client thread: `sender` files consent requests to `holder` with explicit nonces, at most `rate` a
    second and `window` outstanding, each submitted with wait=False to a node chosen by a seeded rng, then polled with
    GET /v1/txs/{hash} (as the auditor) on rotating nodes until one says "committed" (an acknowledgement).
    A transaction unacknowledged for `resubmit_after` seconds is submitted again (same bytes) to another
    node: a node killed with it in its mempool must not stall the sender's nonces."""

    def __init__(self, net: Net, rng: random.Random, *, sender: str = "bank", holder: str = "citizen",
                 window: int = 4, resubmit_after: float = 2.5, nodes: Iterable[int] | None = None,
                 rate: float = 40.0, tag: str = "") -> None:
        self.net, self.rng, self.sender, self.holder = net, rng, sender, holder
        self.window, self.resubmit_after = window, resubmit_after
        self.interval = 1.0 / rate
        self.targets = net.idx(nodes)
        self.tag = tag
        self.acks: list[Ack] = []
        self.stats = LoadStats()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._outstanding: dict[bytes, list[Any]] = {}  # hash -> [tx, nonce, submitted_at, last_node]
        self._thread = threading.Thread(target=self._run, name=f"load-{sender}", daemon=True)
        self._fatal: BaseException | None = None
        # One HTTP client per node for this thread (httpx clients are not shared across threads here).
        self._clients = [Client(n.url, chain_id=net.genesis.chain_id, signer=net.ids["auditor"].signer,
                                account=net.ids["auditor"].id, timeout=3.0) for n in net.nodes]

    def start(self) -> LoadGen:
        self._thread.start()
        return self

    @property
    def acked(self) -> int:
        with self._lock:
            return len(self.acks)

    def wait_acks(self, more_than: int, timeout: float) -> int:
        return self.net.wait(lambda: self.acked > more_than and self.acked, timeout,  # type: ignore[no-any-return]
                             f"the load to get more than {more_than} acknowledgements ({self.stats})")

    def stop(self, drain_timeout: float = 60.0) -> list[Ack]:
        """Stop making new transactions, wait until every one submitted is acknowledged, return the acks."""
        self._stop.set()
        if not self._done.wait(drain_timeout):
            raise AssertionError(f"the load did not drain in {drain_timeout} s: {len(self._outstanding)} "
                                 f"transactions unacknowledged ({self.stats})\n{self.net.diag()}")
        self._thread.join(5)
        for c in self._clients:
            c.close()
        if self._fatal is not None:
            raise AssertionError(f"the load thread failed: {self._fatal!r}")
        return list(self.acks)

    def abandon(self) -> None:
        """Stop without draining (cleanup after a failure)."""
        self._stop.set()
        self._done.wait(5)

    def _nonce(self) -> int | None:
        """The sender's next nonce + 1 (so that 0 is truthy for wait_until), from this thread's clients: the
        highest any target reports."""
        got = []
        for i in self.targets:
            with contextlib.suppress(NodeUnreachable, ApiError, httpx.HTTPError):
                got.append(int(self._clients[i].account_info(self.net.ids[self.sender].id)["nonce"]))
        return max(got) + 1 if got else None

    def _submit(self, tx: Tx, avoid: int | None) -> int | None:
        order = [i for i in self.targets if i != avoid] or list(self.targets)
        self.rng.shuffle(order)
        for i in order:
            try:
                r = self._clients[i].submit(tx, wait=False)
                if r.get("code") not in ("ok", "duplicate"):
                    self.stats.refusals.append(f"node{i}: {r}")
                return i
            except ApiError as e:
                if e.code == "bad_nonce":  # already committed (we will see it when polling)
                    return i
                self.stats.submit_errors += 1
                self.stats.last_error = f"submit to node{i}: {e}"
            except (NodeUnreachable, httpx.HTTPError) as e:
                self.stats.submit_errors += 1
                self.stats.last_error = f"submit to node{i}: {e}"
        return None

    def _run(self) -> None:
        try:
            nonce = wait_until(self._nonce, 30, f"the nonce of {self.sender}") - 1
            poll_at = 0
            next_at = time.monotonic()
            while True:
                if not self._stop.is_set():
                    while len(self._outstanding) < self.window and time.monotonic() >= next_at:
                        next_at = max(next_at + self.interval, time.monotonic() - 1.0)
                        tx = self.net.consent_request(nonce, who=self.sender, holder=self.holder, tag=self.tag)
                        node = self._submit(tx, None)
                        self._outstanding[tx.hash] = [tx, nonce, time.monotonic(), node]
                        self.stats.submitted += 1
                        nonce += 1
                elif not self._outstanding:
                    return
                for h, entry in sorted(self._outstanding.items(), key=lambda kv: kv[1][1]):
                    tx, n, at, last = entry
                    i = self.targets[poll_at % len(self.targets)]
                    poll_at += 1
                    try:
                        r = self._clients[i].tx(h)
                    except ApiError as e:
                        r = None
                        if e.status != 404:
                            self.stats.poll_errors += 1
                    except (NodeUnreachable, httpx.HTTPError) as e:
                        r = None
                        self.stats.poll_errors += 1
                        self.stats.last_error = f"poll node{i}: {e}"
                    if r is not None and r.get("status") == "committed":
                        with self._lock:
                            self.acks.append(Ack(h, n, int(r["height"]), int(r["index"]), i, str(r["code"])))
                        del self._outstanding[h]
                    elif time.monotonic() - at > self.resubmit_after:
                        entry[3] = self._submit(tx, last)
                        entry[2] = time.monotonic()
                        self.stats.resubmitted += 1
                time.sleep(0.02)
        except BaseException as e:  # never die silently: stop() reports it
            self._fatal = e
        finally:
            self._done.set()


def check_acks_everywhere(acks: Sequence[Ack], chain: dict[int, BlockView]) -> None:
    """Every acknowledged transaction is in the agreed chain, at the height and index it was acknowledged."""
    for a in acks:
        b = chain.get(a.height)
        assert b is not None, f"acknowledged tx {a.tx_hash.hex()[:12]} (height {a.height}) is LOST: no such block"
        assert a.index < len(b.tx_hashes) and b.tx_hashes[a.index] == a.tx_hash.hex(), (
            f"acknowledged tx {a.tx_hash.hex()[:12]} is LOST: not at {a.height}/{a.index} of the agreed chain")
        assert a.code == "ok", f"load tx {a.tx_hash.hex()[:12]} committed with code {a.code}"


# ------------------------------------------------------------------------------------------ WAL reading


def segment_frames(seg: Path) -> list[tuple[int, int, int, bytes]]:
    """(offset, end, kind, data) of the valid frames of one WAL segment, up to its first bad frame, read
    without the WAL's lock (the documented format, node/wal.py WAL-1)."""
    import zlib

    buf = seg.read_bytes()
    out: list[tuple[int, int, int, bytes]] = []
    pos = 0
    while pos + 8 <= len(buf):
        crc, length = int.from_bytes(buf[pos:pos + 4], "big"), int.from_bytes(buf[pos + 4:pos + 8], "big")
        end = pos + 8 + length
        if length == 0 or end > len(buf) or zlib.crc32(buf[pos + 4:end]) != crc:
            break
        out.append((pos, end, buf[pos + 8], buf[pos + 9:end]))
        pos = end
    return out


def wal_frames(wal_dir: Path) -> list[tuple[int, bytes]]:
    """(kind, data) of every valid frame of every segment of a WAL directory, oldest first."""
    return [(kind, data) for seg in sorted(wal_dir.glob("*.wal")) for _, _, kind, data in segment_frames(seg)]


def wal_votes(wal_dir: Path, validator: bytes) -> list[Any]:
    """The votes of `validator` recorded in a node's WAL (its own, when it is that validator)."""
    from consensus.errors import LedgerError
    from consensus.types import Vote
    from node import messages as m

    votes = []
    for kind, data in wal_frames(wal_dir):
        if kind != 1:
            continue
        try:
            env = m.Envelope.decode(data, max_bytes=m.MAX_MESSAGE + 64)
            if env.kind == m.VOTE:
                v = Vote.decode(env.payload)
                if v.validator == validator:
                    votes.append(v)
        except LedgerError:
            continue
    return votes


def conflicting_votes(a: Iterable[Any], b: Iterable[Any]) -> list[tuple[Any, Any]]:
    """Pairs (vote of a, vote of b) of one (type, height, round) for different blocks: double signing."""
    first: dict[tuple[int, int, int], Any] = {}
    for v in a:
        first.setdefault((v.type, v.height, v.round), v)
    pairs = []
    seen: set[tuple[int, int, int]] = set()
    for v in b:
        key = (v.type, v.height, v.round)
        w = first.get(key)
        if w is not None and w.block_hash != v.block_hash and key not in seen:
            seen.add(key)
            pairs.append((w, v))
    return pairs
