"""The handlers of `mydata wallet|issuer|consumer|admin|audit ...`: parse, act through a WalletSession, print."""

from __future__ import annotations

import json
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

from cli.context import Ctx, csv, hex32
from cli.output import CliError
from contracts.txs import RegisterMember, RegisterSchema, SetValidator, UpdateMember
from node.config import read_genesis
from wallet.actions import grant_window_ms

# ---------------------------------------------------------------------------------------------- wallet


def wallet_new(ctx: Ctx, a: Namespace) -> None:
    ident = ctx.keystore.create(a.name, ctx.passphrase(confirm=True))
    info = ctx.keystore.export_public(ident.name)
    ctx.out.result(info, f"created {ident.name}\n  account  {ident.account_id.hex()}\n"
                         f"  sign key {ident.sign_pk.hex()}\n  enc key  {ident.enc_pk.hex()}\n"
                         f"(keys encrypted at rest in {ctx.wallet_dir})")


def wallet_list(ctx: Ctx, a: Namespace) -> None:
    infos = ctx.keystore.list()
    data = [{"name": i.name, "account": i.account_id.hex(), "role": i.role} for i in infos]
    human = "\n".join(f"{i.name:<20} {i.account_id.hex()}" + (f"  ({i.role})" if i.role else "") for i in infos)
    ctx.out.result(data, human or f"no identities in {ctx.wallet_dir}; create one with `mydata wallet new NAME`")


def wallet_show(ctx: Ctx, a: Namespace) -> None:
    name = a.name or ctx.identity_name()
    info: dict[str, Any] = dict(ctx.keystore.export_public(name))
    if not a.offline:
        try:
            if a.name:
                a.as_ = a.name
            s = ctx.session()
            info["on_chain"] = s.me()
        except Exception as e:
            info["on_chain"] = f"unavailable: {e}"
    ctx.out.result(info)


def wallet_listing(what: str) -> Any:
    def run(ctx: Ctx, a: Namespace) -> None:
        data = ctx.session().listing(what)
        ctx.out.result(data)
    return run


def wallet_grant(ctx: Ctx, a: Namespace) -> None:
    s = ctx.session()
    assets = [hex32(x, "asset id") for x in csv(a.asset)]
    if not assets:
        raise CliError("name at least one asset: --asset ID[,ID...]")
    grantee = ctx.account(a.to)
    request_id = hex32(a.request, "request id") if a.request else b""
    ctx.out.progress("decrypting the assets, building the package for the grantee...")
    r = s.grant(grantee, assets, csv(a.fields), a.purpose, grant_window_ms(a.days), a.uses, request_id=request_id)
    ctx.out.result({"grant": r.object_id.hex(), **r.to_json()}, f"granted: grant {r.object_id.hex()} "
                   f"(height {r.height})")


def _simple(ctx: Ctx, r: Any, what: str) -> None:
    ctx.out.result(r.to_json(), f"{what} (height {r.height}, tx {r.tx_hash.hex()[:16]})")


def wallet_reject(ctx: Ctx, a: Namespace) -> None:
    _simple(ctx, ctx.session().reject(hex32(a.request, "request id"), a.reason or ""), "rejected")


def wallet_revoke(ctx: Ctx, a: Namespace) -> None:
    _simple(ctx, ctx.session().revoke(hex32(a.grant, "grant id")), "revoked")


def wallet_request_asset(ctx: Ctx, a: Namespace) -> None:
    r = ctx.session().request_asset(ctx.account(a.issuer), a.schema)
    _simple(ctx, r, f"asked for {a.schema}: request {r.object_id.hex()}")


def wallet_request_correction(ctx: Ctx, a: Namespace) -> None:
    r = ctx.session().request_correction(hex32(a.asset, "asset id"), csv(a.fields))
    _simple(ctx, r, f"correction requested: request {r.object_id.hex()}")


def wallet_erase(ctx: Ctx, a: Namespace) -> None:
    _simple(ctx, ctx.session().erase(hex32(a.asset, "asset id")), "erased; the vault deletes its ciphertext")


def wallet_open(ctx: Ctx, a: Namespace) -> None:
    payload = ctx.session().open_asset(hex32(a.asset, "asset id"))
    ctx.out.result({"schema": payload.schema, "fields": payload.record})

# ---------------------------------------------------------------------------------------------- issuer


def _record(items: list[str]) -> dict[str, str]:
    rec: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise CliError(f"--field takes name=value, got {item!r}")
        k, v = item.split("=", 1)
        rec[k.strip()] = v
    if not rec:
        raise CliError("give the record's fields: --field name=value (repeatable) or --record FILE.json")
    return rec


def _load_record(a: Namespace) -> dict[str, str]:
    if getattr(a, "record", None):
        try:
            obj = json.loads(Path(a.record).read_text())
        except (OSError, ValueError) as e:
            raise CliError(f"cannot read the record {a.record}: {e}") from None
        if not isinstance(obj, dict):
            raise CliError("a record file is a JSON object of field name -> value")
        bad = [k for k, v in obj.items() if isinstance(v, bool) or not isinstance(v, str | int)]
        if bad:
            raise CliError(f"field values are strings (or integers): fix {', '.join(map(str, bad))}")
        return {str(k): str(v) for k, v in obj.items()}
    return _record(a.field or [])


def issuer_issue(ctx: Ctx, a: Namespace) -> None:
    s = ctx.session()
    r = s.issue(ctx.account(a.holder), a.schema, _load_record(a),
                supersedes=hex32(a.supersedes, "asset id") if a.supersedes else b"",
                answers=hex32(a.answers, "request id") if a.answers else b"")
    ctx.out.result({"asset": r.object_id.hex(), **r.to_json()}, f"issued asset {r.object_id.hex()} "
                   f"(height {r.height})")


def issuer_revoke(ctx: Ctx, a: Namespace) -> None:
    _simple(ctx, ctx.session().revoke_asset(hex32(a.asset, "asset id"), a.reason), "revoked")


def issuer_resolve(ctx: Ctx, a: Namespace) -> None:
    s = ctx.session()
    rid = hex32(a.request, "request id")
    if a.refuse:
        _simple(ctx, s.refuse(rid, a.refuse), "refused")
        return
    req = s.client.object("asset-requests", rid)
    old = bytes.fromhex(req["asset_id"]) if req["asset_id"] else b""
    holder = bytes.fromhex(req["holder"])
    r = s.issue(holder, req["schema"], _load_record(a), supersedes=old, answers=rid)
    ctx.out.result({"asset": r.object_id.hex(), **r.to_json()}, f"answered with asset {r.object_id.hex()}")

# ---------------------------------------------------------------------------------------------- consumer


def consumer_request(ctx: Ctx, a: Namespace) -> None:
    r = ctx.session().request_consent(ctx.account(a.holder), csv(a.schemas or ""), csv(a.fields or ""), a.purpose,
                                      int(a.days * 86_400_000), a.uses)
    _simple(ctx, r, f"consent request {r.object_id.hex()} filed")


def consumer_pull(ctx: Ctx, a: Namespace) -> None:
    s = ctx.session()
    p = s.pull(hex32(a.grant, "grant id"), hex32(a.asset, "asset id") if a.asset else None)
    data = {"grant": p.grant_id.hex(), "access": p.access_id.hex(), "height": p.height,
            "package_hash": p.package_hash.hex(), "verified": True,
            "assets": {aid.hex(): fields for aid, fields in p.fields.items()}}
    if a.out:
        Path(a.out).write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"access {p.access_id.hex()[:16]} recorded at height {p.height}; every field verified on chain"]
    for aid, fields in p.fields.items():
        lines.append(f"asset {aid.hex()[:16]}:")
        lines.extend(f"  {k}: {v}" for k, v in fields.items())
    if a.out:
        lines.append(f"saved to {a.out}")
    ctx.out.result(data, "\n".join(lines))

# ---------------------------------------------------------------------------------------------- admin


def _pk(v: str, what: str) -> bytes:
    return hex32(v, what)


def _keys_of(ctx: Ctx, a: Namespace) -> tuple[bytes, bytes]:
    """The signing and encryption public keys of --identity NAME, or of --sign-pk/--enc-pk."""
    if a.identity:
        info = ctx.keystore.info(a.identity)
        return info.sign_pk, info.enc_pk
    if not (a.sign_pk and a.enc_pk):
        raise CliError("give --identity NAME (from this wallet) or both --sign-pk and --enc-pk")
    return _pk(a.sign_pk, "sign key"), _pk(a.enc_pk, "enc key")


def _propose(ctx: Ctx, action: Any, what: str) -> None:
    r = ctx.session().propose(action)
    ctx.out.result({"proposal": r.object_id.hex(), **r.to_json()},
                   f"{what}: proposal {r.object_id.hex()} (it runs once the admins' approvals reach the "
                   "threshold, at once if the threshold is 1; others approve with `mydata admin approve ID`)")


def admin_register_member(ctx: Ctx, a: Namespace) -> None:
    sign_pk, enc_pk = _keys_of(ctx, a)
    _propose(ctx, RegisterMember(a.name, tuple(sorted(csv(a.roles))), sign_pk, enc_pk), "register member")


def admin_update_member(ctx: Ctx, a: Namespace) -> None:
    _propose(ctx, UpdateMember(ctx.account(a.account), tuple(sorted(csv(a.roles))), a.status), "update member")


def admin_register_holder(ctx: Ctx, a: Namespace) -> None:
    sign_pk, enc_pk = _keys_of(ctx, a)
    salt = bytes.fromhex(a.salt) if a.salt else None
    if salt is None or len(salt) < 16:
        raise CliError("--salt HEX (at least 16 bytes, the registrar's secret) is needed for the subject reference")
    r = ctx.session().register_holder(a.kind, a.subject_id, salt, sign_pk, enc_pk)
    _simple(ctx, r, f"holder registered: account {r.object_id.hex()}")


def admin_register_schema(ctx: Ctx, a: Namespace) -> None:
    issuers = tuple(sorted(ctx.account(x) for x in csv(a.issuers or "")))
    _propose(ctx, RegisterSchema(a.name, tuple(sorted(csv(a.fields))), issuers), "register schema")


def admin_validators(ctx: Ctx, a: Namespace) -> None:
    if a.set:
        if a.power is None or not a.name:
            raise CliError("--set PUBKEY needs --power N (0 removes) and --name NAME")
        _propose(ctx, SetValidator(_pk(a.set, "validator key"), a.power, a.name), "set validator")
        return
    ctx.out.result(ctx.client.get("/v1/validators"))


def admin_approve(ctx: Ctx, a: Namespace) -> None:
    _simple(ctx, ctx.session().approve(hex32(a.proposal, "proposal id")), "approved")

# ---------------------------------------------------------------------------------------------- audit


def audit_replay(ctx: Ctx, a: Namespace) -> None:
    from contracts.audit import AuditFailure, replay
    from wallet.auditor import FetchError, replay_from_node

    genesis = read_genesis(Path(a.genesis))
    t0 = time.monotonic()

    def progress(h: int, top: int) -> None:
        if h % 100 == 0 or h == top:
            ctx.out.progress(f"verified {h}/{top} blocks")

    try:
        if a.home:
            from node.blockstore import BlockStore
            from node.kvstore import LevelDBKV

            store = LevelDBKV(Path(a.home) / "data", create_if_missing=False)
            try:
                bs = BlockStore(store)
                top = bs.height()
                report = replay(genesis, bs.iter_blocks(1), bs.commit(top) if top else None,
                                progress=lambda h: progress(h, top))
            finally:
                store.close()
        else:
            client = ctx.session().client if (getattr(a, "as_", None) or ctx.keystore.list()) else ctx.client
            report = replay_from_node(client, genesis, progress)
    except AuditFailure as e:
        raise CliError(f"the chain does NOT verify: {e}") from None
    except FetchError as e:
        raise CliError(str(e)) from None
    data = report.to_json()
    if a.json_file:
        Path(a.json_file).write_text(json.dumps(data, indent=2) + "\n")
    lines = [f"chain {report.chain_id}: {report.blocks} blocks, {report.transactions} transactions verified "
             f"in {time.monotonic() - t0:.1f} s",
             f"app hash {report.app_hash}; final commit {'verified' if report.final_commit_verified else 'absent'}",
             f"grants ({len(report.grants)}):"]
    for g in report.grants:
        lines.append(f"  h{g.height} {g.holder[:12]} -> {g.grantee[:12]} fields={','.join(g.fields)} "
                     f"uses={g.max_uses} purpose={g.purpose!r} [{g.code}]")
    lines.append(f"accesses ({len(report.accesses)}):")
    for x in report.accesses:
        lines.append(f"  h{x.height} {x.consumer[:12]} on {x.holder[:12] or '?'} grant {x.grant_id[:12]} [{x.code}]")
    lines.append(f"failed transactions: {len(report.failures)}")
    ctx.out.result(data if not a.json_file else {"ok": True, "report": a.json_file}, "\n".join(lines))


