"""The whole data-authorization story driven ONLY through the `mydata` command line, as a person or a script
would: `testnet init`, `testnet up` as a background process, then register, issue, request, grant, pull,
refused pulls, revoke, correction, erasure, and the auditor's replay from the node and from the node's home.

Every command runs as its own process (`python -m cli ...`) with the passphrase in MYDATA_PASSPHRASE. What the
tests hold the CLI to (cli/output.py):

- with `--json`, stdout is exactly one JSON document on success and EMPTY on failure;
- every failure is one line `mydata: ...` on stderr (argparse usage errors: the usage, then one `error:`
  line), never a traceback, with exit code 1 (command error), 2 (usage), 3 (refused by node or chain) or 4
  (node unreachable).

The node is always stopped: `testnet up` by SIGTERM to its own pid, and, should it die without stopping its
node, the node by the pid `testnet up` wrote to endpoints.json (after checking that pid still runs our home).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.localnet import free_port

pytestmark = pytest.mark.timeout(180)

PASSPHRASE = "correct horse battery staple"
PAYMENT = "social_security.payment_record"
LICENCE = "market_regulation.business_licence"
IDENTITIES = ["auditor", "bank", "citizen", "data-bureau", "enterprise", "market-regulator", "notary",
              "public-security", "social-security"]
REGISTRAR_SALT = "5a17" * 8  # 16 bytes, the registrar's secret
PAYMENT_RECORD = {"name": "Li Wei", "employer": "Jinan Light Industry Co.", "monthly_wage": "8650",
                  "months_paid": "94", "last_paid_month": "2026-10"}
LICENCE_RECORD = {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min",
                  "registered_capital": "5000000", "business_scope": "software, data services",
                  "established": "2019-03-18"}
CLI_TIMEOUT = 60.0


# ---------------------------------------------------------------------------------------------- running the CLI


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MYDATA_NODE", "MYDATA_WALLET_DIR", "MYDATA_IDENTITY", "MYDATA_PASSPHRASE")}
    env["MYDATA_PASSPHRASE"] = PASSPHRASE
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True,
                          env=env or cli_env(), timeout=timeout, stdin=subprocess.DEVNULL)


def describe(r: subprocess.CompletedProcess[str]) -> str:
    return f"`mydata {' '.join(r.args[3:])}` exited {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"


def stderr_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.strip()]


def assert_one_line_error(r: subprocess.CompletedProcess[str], exit_code: int, *needles: str,
                          json_mode: bool = True) -> str:
    """Exit code as given, exactly one line on stderr (`mydata: ...`), no traceback; with --json, nothing at
    all on stdout. Returns the line."""
    assert r.returncode == exit_code, describe(r)
    assert "Traceback" not in r.stderr, describe(r)
    lines = stderr_lines(r)
    assert len(lines) == 1, "an error must be ONE line on stderr\n" + describe(r)
    line = lines[0]
    assert line.startswith("mydata: "), describe(r)
    for n in needles:
        assert n in line, f"{n!r} missing from the error line\n" + describe(r)
    if json_mode:
        assert r.stdout == "", "in --json mode a failure prints nothing on stdout\n" + describe(r)
    return line


@dataclass
class Net:
    """A testnet directory and its `testnet up` process."""

    dir: Path
    port: int
    up: subprocess.Popen[bytes] | None = None
    node_pid: int | None = None
    up_rc: int | None = None
    logs: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def wallet(self) -> Path:
        return self.dir / "wallet"

    @property
    def genesis(self) -> Path:
        return self.dir / "genesis.json"

    @property
    def home(self) -> Path:
        return self.dir / "nodes" / "node0"

    def cli(self, *args: str, as_json: bool = True, node: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`mydata --wallet-dir W --node URL [--json] ARGS...`"""
        g = ["--wallet-dir", str(self.wallet), "--node", node or self.url]
        if as_json:
            g.append("--json")
        return run_cli(*g, *args, env=env)

    def ok(self, *args: str) -> Any:
        """Run with --json, expect success, return the parsed stdout."""
        r = self.cli(*args)
        assert r.returncode == 0, describe(r)
        assert "Traceback" not in r.stderr, describe(r)
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise AssertionError("--json output must be one JSON document\n" + describe(r)) from None

    def human(self, *args: str) -> str:
        """Run without --json, expect success, return stdout."""
        r = self.cli(*args, as_json=False)
        assert r.returncode == 0, describe(r)
        assert "Traceback" not in r.stderr, describe(r)
        return r.stdout

    def status(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/v1/status", timeout=10).json())

    # ---- life cycle -----------------------------------------------------------------------------------

    def init(self) -> dict[str, Any]:
        r = run_cli("--json", "testnet", "init", str(self.dir), "--validators", "1", "--base-port", str(self.port))
        assert r.returncode == 0, describe(r)
        return dict(json.loads(r.stdout))

    def start(self, timeout: float = 45.0) -> None:
        self.logs = {"stdout": self.dir / "up.stdout", "stderr": self.dir / "up.stderr"}
        with open(self.logs["stdout"], "wb") as out, open(self.logs["stderr"], "wb") as err:
            self.up = subprocess.Popen([sys.executable, "-m", "cli", "testnet", "up", str(self.dir)],
                                       stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=cli_env(),
                                       start_new_session=True)
        deadline = time.monotonic() + timeout
        endpoints = self.dir / "endpoints.json"
        while time.monotonic() < deadline:
            if self.up.poll() is not None:
                raise AssertionError(f"`testnet up` exited with {self.up.returncode}:\n{self.log('stderr')}\n"
                                     f"node log:\n{self.node_log()}")
            if endpoints.exists():
                try:
                    ep = json.loads(endpoints.read_text())
                except ValueError:  # being written
                    ep = None
                if ep is not None:
                    self.node_pid = int(ep["nodes"][0]["pid"])
                    assert ep["nodes"][0]["api"] == self.url, ep
                    try:
                        if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
            time.sleep(0.05)
        raise AssertionError(f"the testnet did not come up in {timeout} s:\n{self.log('stderr')}")

    def log(self, which: str) -> str:
        p = self.logs.get(which)
        return p.read_text(errors="replace") if p is not None and p.exists() else ""

    def node_log(self) -> str:
        p = self.home / "node.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def node_alive(self) -> bool:
        """Whether the node `testnet up` started still runs (and is still that node: same home)."""
        if self.node_pid is None:
            return False
        try:
            cmdline = Path(f"/proc/{self.node_pid}/cmdline").read_bytes().replace(b"\0", b" ")
            state = Path(f"/proc/{self.node_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and str(self.home).encode() in cmdline

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM to `testnet up` (its own pid), wait; SIGKILL if it hangs; then make sure its node is gone."""
        p = self.up
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if p is not None and self.up_rc is None:
            self.up_rc = p.returncode
        deadline = time.monotonic() + 10
        while self.node_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.node_alive():  # `testnet up` died without stopping it: our grandchild, by its pid
            assert self.node_pid is not None
            os.kill(self.node_pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while self.node_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.up_rc


@pytest.fixture
def make_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    nets: list[Net] = []

    def make() -> Net:
        n = Net(tmp_path_factory.mktemp("testnet") / "net", free_port())
        nets.append(n)
        return n

    try:
        yield make
    finally:
        for n in nets:
            n.stop()


# ---------------------------------------------------------------------------------------------- the story


def test_the_whole_story_through_the_cli(make_net: Any, tmp_path: Path) -> None:
    net: Net = make_net()

    # -- testnet init / up ---------------------------------------------------------------------------------
    init = net.init()
    assert init["identities"] == IDENTITIES and init["validators"] == 1
    assert init["wallet"] == str(net.wallet)
    assert net.genesis.exists() and (net.home / "config.json").exists()
    net.start()
    acct = {i["name"]: i["account"] for i in net.ok("wallet", "list")}
    assert sorted(acct) == IDENTITIES
    assert all(len(a) == 64 for a in acct.values())
    s0 = net.status()
    assert s0["chain_id"] == "mydata-testnet" and s0["height"] == 0

    # -- the registrar registers the holders -----------------------------------------------------------------
    r = net.ok("admin", "register-holder", "--as", "public-security", "--kind", "person",
               "--subject-id", "370102199001011234", "--salt", REGISTRAR_SALT, "--identity", "citizen")
    assert r["code"] == "ok" and r["object_id"] == acct["citizen"] and r["height"] >= 1
    out = net.human("admin", "register-holder", "--as", "public-security", "--kind", "enterprise",
                    "--subject-id", "91370100MA3C000000", "--salt", REGISTRAR_SALT, "--identity", "enterprise")
    assert f"holder registered: account {acct['enterprise']}" in out, out
    assert not out.lstrip().startswith("{")

    # -- issuers return data: only commitments on chain --------------------------------------------------------
    fields = [f"{k}={v}" for k, v in PAYMENT_RECORD.items()]
    issued = net.ok("issuer", "issue", "--as", "social-security", "--holder", "citizen", "--schema", PAYMENT,
                    *[x for f in fields for x in ("--field", f)])
    assert issued["code"] == "ok"
    asset = issued["asset"]
    assert asset == issued["object_id"] and len(asset) == 64
    out = net.human("issuer", "issue", "--as", "market-regulator", "--holder", "enterprise", "--schema", LICENCE,
                    *[x for k, v in LICENCE_RECORD.items() for x in ("--field", f"{k}={v}")])
    assert out.startswith("issued asset ") and "(height " in out, out
    licence = out.split()[2]
    assert len(licence) == 64 and all(c in "0123456789abcdef" for c in licence), out

    listing = net.ok("wallet", "assets", "--as", "citizen")
    assert [a["id"] for a in listing["assets"]] == [asset]
    rec = listing["assets"][0]
    assert rec["schema"] == PAYMENT and rec["version"] == 1 and rec["status"] == "active"
    assert rec["holder"] == acct["citizen"] and rec["issuer"] == acct["social-security"]
    assert rec["fields"] == sorted(PAYMENT_RECORD)
    r_raw = net.cli("wallet", "assets", "--as", "citizen")
    assert "Li Wei" not in r_raw.stdout and "Jinan" not in r_raw.stdout, "no plaintext in the asset listing"
    out = net.human("wallet", "assets", "--as", "citizen")
    assert out.startswith("assets:") and f"- id: {asset}" in out and "status: active" in out, out
    assert net.ok("wallet", "open", "--as", "citizen", asset) == {"schema": PAYMENT, "fields": PAYMENT_RECORD}

    # -- the bank asks, the citizen sees the request and grants 2 fields for 3 uses ---------------------------
    req = net.ok("consumer", "request", "--as", "bank", "--holder", "citizen", "--schemas", PAYMENT,
                 "--fields", "monthly_wage,months_paid", "--purpose", "personal loan application", "--uses", "3")
    assert req["code"] == "ok"
    request_id = req["object_id"]
    pending = net.ok("wallet", "requests", "--as", "citizen")["consent_requests"]
    assert [(p["id"], p["status"], p["consumer"], p["fields"], p["max_uses"]) for p in pending] == [
        (request_id, "requested", acct["bank"], ["monthly_wage", "months_paid"], 3)]
    g = net.ok("wallet", "grant", "--as", "citizen", "--to", "bank", "--asset", asset,
               "--fields", "monthly_wage,months_paid", "--purpose", "personal loan application",
               "--days", "30", "--uses", "3", "--request", request_id)
    assert g["code"] == "ok"
    grant = g["grant"]
    answered = net.ok("wallet", "requests", "--as", "citizen")["consent_requests"]
    assert [(p["id"], p["status"], p["grant_id"]) for p in answered] == [(request_id, "granted", grant)]
    grants = net.ok("wallet", "grants", "--as", "citizen")["grants"]
    assert [(x["id"], x["grantee"], x["fields"], x["max_uses"], x["uses"], x["status"]) for x in grants] == [
        (grant, acct["bank"], ["monthly_wage", "months_paid"], 3, 0, "granted")]
    assert [x["id"] for x in net.ok("wallet", "grants", "--as", "bank")["grants"]] == [grant]

    # -- the bank pulls: the access is on chain, the fields verified, the file written --------------------------
    out_file = tmp_path / "pulled.json"
    pulled = net.ok("consumer", "pull", "--as", "bank", grant, "--out", str(out_file))
    assert pulled["verified"] is True and pulled["grant"] == grant
    assert pulled["assets"] == {asset: {"monthly_wage": "8650", "months_paid": "94"}}
    assert json.loads(out_file.read_text()) == pulled, "the saved file holds what the command reported"
    assert "Li Wei" not in out_file.read_text(), "undisclosed fields never reach the consumer"
    out = net.human("consumer", "pull", "--as", "bank", grant)
    assert "every field verified on chain" in out and "  monthly_wage: 8650" in out and "  months_paid: 94" in out
    assert "name:" not in out, out

    # -- a notary without a grant: refused; with --asset the attempt is on chain -------------------------------
    # Without --asset the CLI must first read the grant to find its asset, and a stranger may not read it: the
    # node answers as if it did not exist (404), nothing is submitted.
    assert_one_line_error(net.cli("consumer", "pull", "--as", "notary", grant), 3, "unknown_grant")
    line = assert_one_line_error(net.cli("consumer", "pull", "--as", "notary", grant, "--asset", asset), 3,
                                 "not_grantee")
    assert "HTTP 403" in line

    # -- the enterprise grants the notary one use of two licence fields ---------------------------------------
    eg = net.ok("wallet", "grant", "--as", "enterprise", "--to", "notary", "--asset", licence,
                "--fields", "company_name,legal_representative", "--purpose", "notarisation", "--days", "7")
    ent_grant = eg["grant"]
    got = net.ok("consumer", "pull", "--as", "notary", ent_grant)
    assert got["assets"] == {licence: {"company_name": "Quancheng Digital Ltd.", "legal_representative": "Zhang Min"}}
    assert_one_line_error(net.cli("consumer", "pull", "--as", "notary", ent_grant), 3, "grant_used_up")

    # -- the citizen revokes; the bank's next pull is refused ---------------------------------------------------
    rv = net.ok("wallet", "revoke", "--as", "citizen", grant)
    assert rv["code"] == "ok" and rv["object_id"] == grant
    assert_one_line_error(net.cli("consumer", "pull", "--as", "bank", grant), 3, "grant_revoked")
    assert_one_line_error(net.cli("wallet", "revoke", "--as", "citizen", grant), 3, "grant_not_active")
    assert [x["status"] for x in net.ok("wallet", "grants", "--as", "citizen")["grants"]] == ["revoked"]
    # the holder sees every successful use of its data (refused attempts are in the audit, below)
    accesses = net.ok("wallet", "accesses", "--as", "citizen")["accesses"]
    assert [(x["consumer"], x["grant"], x["asset"], x["use"]) for x in accesses] == [
        (acct["bank"], grant, asset, 2), (acct["bank"], grant, asset, 1)]
    assert accesses[1]["id"] == pulled["access"]

    # -- correction: the citizen asks, social security issues version 2 -----------------------------------------
    corr = net.ok("wallet", "request-correction", "--as", "citizen", asset, "--fields", "months_paid")
    assert corr["code"] == "ok"
    corrected = {**PAYMENT_RECORD, "months_paid": "95"}
    v2 = net.ok("issuer", "resolve-correction", "--as", "social-security", corr["object_id"],
                *[x for k, v in corrected.items() for x in ("--field", f"{k}={v}")])
    asset2 = v2["asset"]
    assert v2["code"] == "ok" and asset2 != asset
    by_id = {a["id"]: a for a in net.ok("wallet", "assets", "--as", "citizen")["assets"]}
    assert by_id[asset2]["version"] == 2 and by_id[asset2]["supersedes"] == asset
    assert by_id[asset]["status"] == "superseded" and by_id[asset]["superseded_by"] == asset2
    assert net.ok("wallet", "open", "--as", "citizen", asset2)["fields"] == corrected
    reqs = net.ok("wallet", "requests", "--as", "citizen")["asset_requests"]
    assert [(x["id"], x["status"]) for x in reqs] == [(corr["object_id"], "fulfilled")]

    # -- erasure: the old version's ciphertext is shredded -------------------------------------------------------
    er = net.ok("wallet", "erase", "--as", "citizen", asset)
    assert er["code"] == "ok"
    statuses = {a["id"]: a["status"] for a in net.ok("wallet", "assets", "--as", "citizen")["assets"]}
    assert statuses == {asset: "erased", asset2: "active"}
    assert_one_line_error(net.cli("wallet", "open", "--as", "citizen", asset), 3, "unknown_blob")
    assert_one_line_error(net.cli("wallet", "erase", "--as", "citizen", asset), 3, "asset_erased")
    assert net.ok("wallet", "open", "--as", "citizen", asset2)["fields"] == corrected

    # -- the auditor's replay from the node ---------------------------------------------------------------------
    status = net.status()
    report_file = tmp_path / "report.json"
    r = net.ok("audit", "replay", "--genesis", str(net.genesis), "--as", "auditor", "--json", str(report_file))
    assert r == {"ok": True, "report": str(report_file)}
    from_node = json.loads(report_file.read_text())
    assert from_node["final_commit_verified"] is True
    assert from_node["height"] == status["height"] == from_node["blocks"]
    assert from_node["app_hash"] == status["app_hash"]
    assert from_node["last_block_hash"] == status["latest_block_hash"]
    names = {v: k for k, v in acct.items()}
    assert [(names[x["holder"]], names[x["grantee"]], x["grant_id"], x["fields"], x["max_uses"], x["code"])
            for x in from_node["grants"]] == [
        ("citizen", "bank", grant, ["monthly_wage", "months_paid"], 3, "ok"),
        ("enterprise", "notary", ent_grant, ["company_name", "legal_representative"], 1, "ok")]
    assert from_node["grants"][0]["tx_hash"] == g["tx"] and from_node["grants"][1]["tx_hash"] == eg["tx"]
    assert [(names[x["consumer"]], names.get(x["holder"], "?"), x["grant_id"], x["code"])
            for x in from_node["accesses"]] == [
        ("bank", "citizen", grant, "ok"),
        ("bank", "citizen", grant, "ok"),
        ("notary", "citizen", grant, "not_grantee"),
        ("notary", "enterprise", ent_grant, "ok"),
        ("notary", "enterprise", ent_grant, "grant_used_up"),
        ("bank", "citizen", grant, "grant_revoked")]
    assert from_node["accesses"][0]["access_id"] == pulled["access"]
    assert [(x["grant_id"], x["code"]) for x in from_node["revocations"]] == [(grant, "ok"), (grant,
                                                                                              "grant_not_active")]
    failed = sorted(x["code"] for x in from_node["failures"])
    assert failed == sorted(["not_grantee", "grant_used_up", "grant_revoked", "grant_not_active", "asset_erased"])

    human = net.human("audit", "replay", "--genesis", str(net.genesis), "--as", "auditor")
    assert f"chain mydata-testnet: {status['height']} blocks" in human, human
    assert f"app hash {status['app_hash']}; final commit verified" in human
    assert "grants (2):" in human and "accesses (6):" in human and "failed transactions: 5" in human
    assert "[not_grantee]" in human and "[grant_revoked]" in human and "[grant_used_up]" in human

    # -- stop the testnet (SIGTERM to `testnet up`), then replay from the node's home ---------------------------
    rc = net.stop()
    assert rc == 0, f"`testnet up` must exit 0 on SIGTERM, got {rc}\n{net.log('stderr')}"
    assert not net.node_alive(), "stopping `testnet up` stops its node"
    assert "stopped" in net.log("stderr")
    up_out = net.log("stdout")
    assert "1 node(s) up" in up_out and str(net.dir / "endpoints.json") in up_out, up_out
    home_file = tmp_path / "report-home.json"
    r = run_cli("--json", "audit", "replay", "--home", str(net.home), "--genesis", str(net.genesis),
                "--json", str(home_file))
    assert r.returncode == 0, describe(r)
    from_home = json.loads(home_file.read_text())
    assert from_home["app_hash"] == from_node["app_hash"] and from_home["height"] == from_node["height"]
    assert from_home == from_node, "the replay from the home and from the node report the same chain"


# ---------------------------------------------------------------------------------------------- errors and output


@dataclass
class Prepared:
    net: Net
    acct: dict[str, str]
    asset: str


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prepared]:
    """A running testnet with the citizen registered and holding one asset (all through the CLI)."""
    net = Net(tmp_path_factory.mktemp("errors") / "net", free_port())
    try:
        net.init()
        net.start()
        acct = {i["name"]: i["account"] for i in net.ok("wallet", "list")}
        net.ok("admin", "register-holder", "--as", "public-security", "--kind", "person",
               "--subject-id", "370102199001011234", "--salt", REGISTRAR_SALT, "--identity", "citizen")
        asset = net.ok("issuer", "issue", "--as", "social-security", "--holder", "citizen", "--schema", PAYMENT,
                       *[x for k, v in PAYMENT_RECORD.items() for x in ("--field", f"{k}={v}")])["asset"]
        yield Prepared(net, acct, asset)
    finally:
        net.stop()


def test_bad_hex_id_is_one_line_exit_1(prepared: Prepared) -> None:
    net = prepared.net
    assert_one_line_error(net.cli("wallet", "revoke", "--as", "citizen", "not-hex"), 1, "grant id",
                          "64 lowercase hex")
    assert_one_line_error(net.cli("wallet", "revoke", "--as", "citizen", "AB" * 32), 1, "64 lowercase hex")
    assert_one_line_error(net.cli("wallet", "erase", "--as", "citizen", prepared.asset[:-1]), 1, "asset id")
    assert_one_line_error(net.cli("consumer", "pull", "--as", "bank", "00" * 32, "--asset", "zz"), 1, "asset id")
    # human mode: the same single line, and nothing on stdout either
    assert_one_line_error(net.cli("wallet", "revoke", "--as", "citizen", "xyz", as_json=False), 1,
                          "64 lowercase hex")


def test_unknown_identity_is_one_line_exit_1(prepared: Prepared) -> None:
    net = prepared.net
    assert_one_line_error(net.cli("wallet", "assets", "--as", "nobody"), 1, "nobody")
    assert_one_line_error(net.cli("wallet", "assets"), 1, "--as")  # several identities: say which acts
    assert_one_line_error(net.cli("issuer", "issue", "--as", "social-security", "--holder", "nobody",
                                  "--schema", PAYMENT, "--field", "name=x"), 1, "'nobody'")


def test_unknown_grantee_is_one_line(prepared: Prepared) -> None:
    """(Regression: `wallet grant` printed its progress line before resolving --to: two lines on stderr.)"""
    r = prepared.net.cli("wallet", "grant", "--as", "citizen", "--to", "nobody", "--asset", prepared.asset,
                         "--fields", "monthly_wage", "--purpose", "loan")
    assert_one_line_error(r, 1, "'nobody'")


def test_wrong_passphrase_is_one_line_exit_1(prepared: Prepared) -> None:
    net = prepared.net
    r = net.cli("wallet", "assets", "--as", "citizen", env=cli_env(MYDATA_PASSPHRASE="not the passphrase"))
    assert_one_line_error(r, 1, "citizen", "wrong passphrase")
    r = net.cli("wallet", "revoke", "--as", "citizen", "00" * 32, env=cli_env(MYDATA_PASSPHRASE=""))
    assert_one_line_error(r, 1, "wrong passphrase")


def test_unreachable_node_is_one_line_exit_4(prepared: Prepared) -> None:
    net = prepared.net
    dead = f"http://127.0.0.1:{free_port()}"
    assert_one_line_error(net.cli("wallet", "assets", "--as", "citizen", node=dead), 4, "cannot reach the node",
                          dead)
    assert_one_line_error(net.cli("wallet", "grants", "--as", "citizen", node=dead, as_json=False), 4, dead)
    assert_one_line_error(net.cli("audit", "replay", "--genesis", str(net.genesis), "--as", "auditor",
                                  node=dead), 4, dead)


def test_missing_required_option_is_a_usage_error_exit_2(prepared: Prepared) -> None:
    net = prepared.net
    r = net.cli("wallet", "grant", "--as", "citizen", "--asset", prepared.asset, "--fields", "name",
                "--purpose", "p")
    assert r.returncode == 2, describe(r)
    assert r.stdout == "" and "Traceback" not in r.stderr, describe(r)
    errors = [line for line in stderr_lines(r) if "error:" in line]
    assert errors == ["mydata wallet grant: error: the following arguments are required: --to"], describe(r)
    assert stderr_lines(r)[0].startswith("usage: mydata wallet grant"), describe(r)
    r = run_cli("audit", "replay")
    assert r.returncode == 2 and "the following arguments are required: --genesis" in r.stderr, describe(r)


def test_missing_files_are_one_line_exit_1(prepared: Prepared, tmp_path: Path) -> None:
    net = prepared.net
    assert_one_line_error(net.cli("audit", "replay", "--genesis", str(tmp_path / "nope.json")), 1, "no genesis file")
    assert_one_line_error(net.cli("issuer", "issue", "--as", "social-security", "--holder", "citizen",
                                  "--schema", PAYMENT, "--record", str(tmp_path / "nope.json")), 1, "cannot read")
    # a running node holds its home's LevelDB lock: reading the home is refused, in one line that says so
    line = assert_one_line_error(run_cli("--json", "audit", "replay", "--home", str(net.home), "--genesis",
                                         str(net.genesis)), 1)
    assert "in use" in line or "lock" in line.lower(), line
    assert "b'" not in line, line


def test_refusal_by_the_chain_is_one_line_exit_3(prepared: Prepared) -> None:
    net = prepared.net
    # committed with a failure code: `mydata: refused: CODE: TYPE refused at height H`
    assert_one_line_error(net.cli("wallet", "revoke", "--as", "citizen", "ab" * 32), 3, "refused: unknown_grant")
    assert_one_line_error(net.cli("wallet", "reject", "--as", "citizen", "ab" * 32), 3, "refused: unknown_request")
    assert_one_line_error(net.cli("wallet", "request-asset", "--as", "citizen", "--issuer", "bank", "--schema",
                                  PAYMENT), 3, "issuer_not_authorized")
    assert_one_line_error(net.cli("consumer", "request", "--as", "bank", "--holder", "social-security",
                                  "--schemas", PAYMENT, "--purpose", "p"), 3, "unknown_holder")
    # refused by the node's API (HTTP 4xx): an object the caller may not see does not exist for it
    assert_one_line_error(net.cli("consumer", "pull", "--as", "bank", "ab" * 32), 3, "HTTP 404", "unknown_grant")
    assert_one_line_error(net.cli("wallet", "open", "--as", "bank", prepared.asset), 3, "HTTP 404")


@pytest.mark.parametrize("args", [
    ("consumer", "request", "--as", "bank", "--holder", "citizen", "--purpose", "p"),  # no --schemas / --fields
    ("consumer", "request", "--as", "bank", "--holder", "citizen", "--schemas", PAYMENT, "--purpose", "p",
     "--uses", "0"),
    ("consumer", "request", "--as", "bank", "--holder", "citizen", "--schemas", PAYMENT, "--purpose", ""),
    ("wallet", "request-correction", "--as", "citizen", "{asset}", "--fields", ""),
    ("admin", "register-holder", "--as", "public-security", "--kind", "person", "--subject-id", "1",
     "--salt", "zz", "--identity", "enterprise"),
], ids=["no-schemas-no-fields", "uses-0", "empty-purpose", "no-correction-fields", "non-hex-salt"])
def test_bad_option_values_are_one_line_exit_1(prepared: Prepared, args: tuple[str, ...]) -> None:
    """(Regression: ValidationError / DecodeError from building the transaction, and the ValueError of a
    non-hex --salt, escaped main() as tracebacks.)"""
    r = prepared.net.cli(*[a.replace("{asset}", prepared.asset) for a in args])
    assert_one_line_error(r, 1)


def test_refused_issue_reports_the_chains_code(prepared: Prepared, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A blob-carrying transaction refused on chain is reported with the chain's code, even when its block
    commits before the blob's upload (the node then refuses the upload: not_referenced). In-process, to give
    the upload a deterministic latency. (Regression: the CLI reported `HTTP 403 not_referenced` instead.)"""
    from cli.main import main
    from wallet.client import Client

    upload = Client.vault_put

    def slow_upload(self: Client, blob_hash: bytes, data: bytes) -> None:
        time.sleep(0.3)  # a client some network distance away from the node
        upload(self, blob_hash, data)

    monkeypatch.setattr(Client, "vault_put", slow_upload)
    monkeypatch.setenv("MYDATA_PASSPHRASE", PASSPHRASE)
    net = prepared.net
    rc = main(["--wallet-dir", str(net.wallet), "--node", net.url, "--json", "issuer", "issue", "--as", "citizen",
               "--holder", "citizen", "--schema", PAYMENT, "--field", "name=x"])
    err = capsys.readouterr().err
    assert rc == 3 and "not_issuer" in err, err


def test_human_output_is_readable(prepared: Prepared) -> None:
    net, acct = prepared.net, prepared.acct
    out = net.human("wallet", "list")
    lines = out.splitlines()
    assert len(lines) == len(IDENTITIES), out
    for name, line in zip(IDENTITIES, lines, strict=True):
        assert line.split()[:2] == [name, acct[name]], out
    out = net.human("wallet", "show", "--as", "citizen", "--offline")
    assert f"account_id: {acct['citizen']}" in out and "name: citizen" in out, out
    out = net.human("wallet", "assets", "--as", "citizen")
    assert out.startswith("assets:\n") and f"  - id: {prepared.asset}" in out, out
    out = net.human("wallet", "requests", "--as", "citizen")
    assert out == "consent_requests: []\nasset_requests: []\n", out
    for o in (out, net.human("wallet", "grants", "--as", "citizen")):
        assert not o.lstrip().startswith("{") and "{'" not in o and "b'" not in o, o
    st = net.human("audit", "replay", "--genesis", str(net.genesis), "--as", "auditor")
    assert st.startswith("chain mydata-testnet: ") and "final commit verified" in st, st


def test_audit_replay_takes_node_after_the_command(prepared: Prepared, tmp_path: Path) -> None:
    """As DESIGN.md writes it: `mydata audit replay --node URL --genesis FILE`. (Regression: the global options
    were accepted only before the command, so this was a usage error, exit 2.)"""
    net = prepared.net
    report = tmp_path / "r.json"
    r = run_cli("--wallet-dir", str(net.wallet), "audit", "replay", "--node", net.url, "--genesis",
                str(net.genesis), "--as", "auditor", "--json", str(report))
    assert r.returncode == 0, describe(r)
    assert json.loads(report.read_text())["final_commit_verified"] is True
