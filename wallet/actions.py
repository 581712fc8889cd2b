"""What a wallet does, one method per act of the data-authorization story, over a node's API.

`WalletSession(client, actor)` acts for one identity: it builds and signs transactions with the next nonce,
encrypts data before it leaves (issuers seal assets to holders; holders seal packages to grantees), uploads
ciphertexts to the vault, and verifies everything it receives against the chain. The CLI, the demo and the
integration tests all go through it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from consensus.crypto import Signer
from consensus.encoding import Struct, encode_value
from consensus.types import Tx
from contracts.txs import (
    Approve,
    Delegate,
    EraseAsset,
    GrantConsent,
    RecordAccess,
    RefuseRequest,
    RegisterHolder,
    RejectConsent,
    RequestAsset,
    RequestConsent,
    RequestCorrection,
    RevokeAsset,
    RevokeConsent,
    RotateKeys,
)
from wallet.assetdata import AssetPayload, open_asset, seal_asset
from wallet.client import ApiError, Client
from wallet.package import build_package, open_package, verify_disclosure
from wallet.tx import make_tx, propose


class Actor(Protocol):
    """An identity that can act: keys for signing and decryption, and the account it acts for."""

    @property
    def signer(self) -> Signer: ...

    @property
    def account_id(self) -> bytes: ...

    @property
    def enc_secret(self) -> bytes: ...


@dataclass(frozen=True)
class DelegateActor:
    """An enterprise's delegate: signs with its own key (registered as a delegate on chain) and decrypts with
    a copy of the enterprise's encryption key, which the enterprise hands to its delegates off chain."""

    signer: Signer
    account_id: bytes
    enc_secret: bytes

    def __repr__(self) -> str:
        return f"DelegateActor(account_id={self.account_id.hex()[:16]}...)"


class ChainRefused(Exception):
    """The transaction was committed with a failure code (or refused by the mempool)."""

    def __init__(self, code: str, message: str = "", receipt: Receipt | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code, self.message, self.receipt = code, message, receipt


@dataclass(frozen=True)
class Receipt:
    tx_hash: bytes
    code: str
    height: int
    object_id: bytes

    @property
    def ok(self) -> bool:
        return self.code == "ok"

    def to_json(self) -> dict[str, Any]:
        return {"tx": self.tx_hash.hex(), "code": self.code, "height": self.height,
                "object_id": self.object_id.hex()}


@dataclass(frozen=True)
class Pulled:
    """Data a consumer pulled and verified: asset id -> {field: value}, with the on-chain access record."""

    grant_id: bytes
    access_id: bytes
    height: int
    package_hash: bytes
    fields: dict[bytes, dict[str, str]]


def subject_ref(salt: bytes, kind: str, subject_id: str) -> bytes:
    """The salted reference a registrar binds an account to (never the ID itself, HLD-1)."""
    return hashlib.sha256(encode_value([b"mydata/subject/v1", salt, kind, subject_id])).digest()


class WalletSession:
    def __init__(self, client: Client, actor: Actor, *, acting_for: bytes | None = None,
                 commit_timeout: float = 30.0) -> None:
        self.actor = actor
        self.account = acting_for or actor.account_id
        self.client = client.as_(actor.signer, self.account)
        self.commit_timeout = commit_timeout

    # ---- transactions -------------------------------------------------------------------------------------

    def next_nonce(self) -> int:
        return int(self.client.account_info(self.account)["nonce"])

    def sign(self, body: Struct, tx_type: str | None = None) -> Tx:
        return make_tx(self.actor.signer, self.client.chain_id, self.next_nonce(), body, sender=self.account,
                       tx_type=tx_type)

    def send(self, body: Struct, *, tx_type: str | None = None, blob: tuple[bytes, bytes] | None = None,
             check: bool = True) -> Receipt:
        """Sign, submit and wait for the commit; with `blob` (hash, bytes), upload it to the vault while the
        transaction that references it is pending. With `check`, a failure code raises ChainRefused."""
        tx = self.sign(body, tx_type)
        try:
            if blob is None:
                r = self.client.submit(tx, wait=True)
            else:
                self.client.submit(tx, wait=False)
                try:
                    self.client.vault_put(*blob)
                except ApiError as e:
                    # The transaction may have committed with a failure before the upload: its blob is then
                    # referenced by nothing. Report the chain's verdict, not the vault's.
                    if e.code != "not_referenced":
                        raise
                    r = self.wait(tx.hash)
                    if r["code"] == "ok":
                        self.client.vault_put(*blob)
                else:
                    r = self.wait(tx.hash)
        except ApiError as e:
            if e.status == 400 and check:
                raise ChainRefused(e.code, e.message) from None
            raise
        receipt = Receipt(tx.hash, str(r["code"]), int(r["height"]), bytes.fromhex(r["object_id"]))
        if check and not receipt.ok:
            raise ChainRefused(receipt.code, f"{tx.type} refused at height {receipt.height}", receipt)
        return receipt

    def wait(self, tx_hash: bytes) -> dict[str, Any]:
        deadline = time.monotonic() + self.commit_timeout
        delay = 0.005
        while True:
            try:
                r = self.client.tx(tx_hash)
                if r.get("status") == "committed":
                    return r
            except ApiError as e:
                if e.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise ChainRefused("commit_timeout", f"transaction {tx_hash.hex()} not committed in time")
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    # ---- reads --------------------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        return self.client.account_info(self.account)

    def listing(self, what: str) -> Any:
        return self.client.listing(self.account, what)

    def enc_pk_of(self, account: bytes) -> bytes:
        return bytes.fromhex(self.client.account_info(account)["enc_pk"])

    # ---- admin and registrar ------------------------------------------------------------------------------

    def propose(self, action: Struct) -> Receipt:
        return self.send(propose(action))

    def approve(self, proposal_id: bytes) -> Receipt:
        return self.send(Approve(proposal_id))

    def register_holder(self, kind: str, subject_id: str, salt: bytes, sign_pk: bytes, enc_pk: bytes) -> Receipt:
        return self.send(RegisterHolder(kind, subject_ref(salt, kind, subject_id), sign_pk, enc_pk))

    # ---- issuer -------------------------------------------------------------------------------------------

    def issue(self, holder: bytes, schema: str, record: Mapping[str, str], *, supersedes: bytes = b"",
              answers: bytes = b"") -> Receipt:
        """Seal the record to the holder's key, put its commitments on chain, its ciphertext in the vault."""
        sealed = seal_asset(schema, record, self.enc_pk_of(holder))
        return self.send(sealed.issue_body(holder, schema, supersedes=supersedes, answers=answers),
                         blob=(sealed.payload_hash, sealed.blob))

    def revoke_asset(self, asset_id: bytes, reason: str) -> Receipt:
        return self.send(RevokeAsset(asset_id, reason))

    def refuse(self, request_id: bytes, reason: str) -> Receipt:
        return self.send(RefuseRequest(request_id, reason))

    # ---- holder -------------------------------------------------------------------------------------------

    def asset(self, asset_id: bytes) -> dict[str, Any]:
        return self.client.object("assets", asset_id)

    def open_asset(self, asset_id: bytes) -> AssetPayload:
        """Fetch and decrypt one of my assets, checking it against its on-chain commitments."""
        rec = self.asset(asset_id)
        payload_hash = bytes.fromhex(rec["payload_hash"])
        blob = self.client.vault_get(payload_hash)
        return open_asset(blob, _secrets(self.actor), payload_hash=payload_hash,
                          field_root=bytes.fromhex(rec["field_root"]))

    def grant(self, grantee: bytes, assets: Sequence[bytes], fields: Iterable[str], purpose: str,
              not_after_ms: int, max_uses: int, request_id: bytes = b"") -> Receipt:
        """Disclose `fields` of `assets` to `grantee`: build the package encrypted to it, record the grant."""
        wanted = sorted(set(fields))
        items = []
        for aid in sorted(set(assets)):
            payload = self.open_asset(aid)
            items.append((aid, payload, [f for f in wanted if f in payload.names]))
        package = build_package(self.enc_pk_of(grantee), items)
        body = GrantConsent(grantee, tuple(sorted(set(assets))), tuple(wanted), purpose, not_after_ms, max_uses,
                            package.package_hash, request_id)
        return self.send(body, blob=(package.package_hash, package.blob))

    def reject(self, request_id: bytes, reason: str = "") -> Receipt:
        return self.send(RejectConsent(request_id, reason))

    def revoke(self, grant_id: bytes) -> Receipt:
        return self.send(RevokeConsent(grant_id))

    def request_asset(self, issuer: bytes, schema: str) -> Receipt:
        return self.send(RequestAsset(issuer, schema, b""))

    def request_correction(self, asset_id: bytes, fields: Iterable[str], note_hash: bytes = b"") -> Receipt:
        return self.send(RequestCorrection(asset_id, tuple(sorted(set(fields))), note_hash))

    def erase(self, asset_id: bytes) -> Receipt:
        return self.send(EraseAsset(asset_id))

    def add_delegate(self, pubkey: bytes) -> Receipt:
        return self.send(Delegate(pubkey), tx_type="holder.add_delegate")

    def rotate_keys(self, sign_pk: bytes, enc_pk: bytes) -> Receipt:
        return self.send(RotateKeys(sign_pk, enc_pk))

    # ---- consumer -----------------------------------------------------------------------------------------

    def request_consent(self, holder: bytes, schemas: Iterable[str], fields: Iterable[str], purpose: str,
                        duration_ms: int, max_uses: int) -> Receipt:
        return self.send(RequestConsent(holder, tuple(sorted(set(schemas))), tuple(sorted(set(fields))), purpose,
                                        duration_ms, max_uses))

    def pull(self, grant_id: bytes, asset_id: bytes | None = None) -> Pulled:
        """Record an access on chain, receive the package, and verify every field against the chain."""
        if asset_id is None:
            asset_id = bytes.fromhex(self.client.object("grants", grant_id)["assets"][0])
        # The node decides, on chain: a refused attempt is recorded too, and nothing is released for it.
        tx = self.sign(RecordAccess(grant_id, asset_id))
        blob, meta = self.client.pull(tx)
        grant = self.client.object("grants", grant_id)
        assets = [bytes.fromhex(a) for a in grant["assets"]]
        package_hash = bytes.fromhex(grant["package_hash"])
        disclosure = open_package(blob, _secrets(self.actor), package_hash=package_hash)
        records = {bytes.fromhex(a["id"]): a for a in grant["asset_records"]}
        fields = verify_disclosure(
            disclosure,
            {aid: bytes.fromhex(records[aid]["field_root"]) for aid in assets},
            grant["fields"],
            asset_fields={aid: list(records[aid]["fields"]) for aid in assets},
        )
        return Pulled(grant_id, bytes.fromhex(meta["access"]), int(meta["height"]), package_hash, fields)


def grant_window_ms(days: float) -> int:
    return int(time.time() * 1000 + days * 86_400_000)


__all__ = ["Actor", "ChainRefused", "DelegateActor", "Pulled", "Receipt", "WalletSession", "grant_window_ms",
           "subject_ref"]


def _secrets(actor: Actor) -> list[bytes]:
    """Every X25519 secret of the actor, newest first: blobs sealed before a key rotation still open."""
    return list(getattr(actor, "enc_secrets", None) or [actor.enc_secret])
