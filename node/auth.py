"""Signed API requests: who is calling, proven per request (docs/api.md, "Authentication").

A request carries five headers:

    X-MyData-Account    the calling account id (hex)
    X-MyData-Key        the Ed25519 public key that signed (hex): the account's key or a delegate's
    X-MyData-Time       milliseconds since the Unix epoch
    X-MyData-Nonce      16 random bytes (hex), never reused
    X-MyData-Signature  Ed25519 over Domain.REQUEST, the chain id and
                        consensus.crypto.request_payload(method, path?query, body, time, nonce)

The node accepts a request only if the signature verifies, the time is within `max_skew_ms` of its clock,
the nonce was not seen within that window, and the key may act for the account in the committed state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from consensus.crypto import Domain, request_payload, verify
from contracts.context import State
from contracts.records import Account, Role, Status

HEADERS = ("x-mydata-account", "x-mydata-key", "x-mydata-time", "x-mydata-nonce", "x-mydata-signature")


class AuthError(Exception):
    """A signed request that does not authenticate; `status` is 401 (who are you?) or 403 (not allowed)."""

    def __init__(self, code: str, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Caller:
    """An authenticated caller. `account` is the committed record of the account it acts for."""

    account: Account
    via_delegate: bool

    @property
    def id(self) -> bytes:
        return self.account.id

    def has(self, role: Role) -> bool:
        a = self.account
        return a.kind == "member" and a.status == Status.ACTIVE and role in a.roles

    @property
    def is_auditor(self) -> bool:
        return self.has(Role.AUDITOR)


class NonceCache:
    """Nonces seen within the skew window; older ones need no memory (their time is refused anyway)."""

    def __init__(self, window_ms: int, limit: int = 200_000) -> None:
        self.window_ms = window_ms
        self.limit = limit
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def check_and_add(self, nonce: bytes, time_ms: int, now_ms: int) -> bool:
        while self._seen:
            t = next(iter(self._seen.values()))
            if t >= now_ms - 2 * self.window_ms and len(self._seen) < self.limit:
                break
            self._seen.popitem(last=False)
        if nonce in self._seen:
            return False
        self._seen[nonce] = time_ms
        return True


class RequestAuthenticator:
    def __init__(self, chain_id: str, max_skew_ms: int = 60_000) -> None:
        self.chain_id = chain_id
        self.max_skew_ms = max_skew_ms
        self.nonces = NonceCache(max_skew_ms)

    def authenticate(self, state: State, method: str, path: str, body: bytes, headers: Mapping[str, str],
                     now_ms: int) -> Caller | None:
        """The caller, None for an unsigned request, or AuthError for a signed one that fails."""
        present = [h for h in HEADERS if h in headers]
        if not present:
            return None
        if len(present) != len(HEADERS):
            missing = sorted(set(HEADERS) - set(present))
            raise AuthError("incomplete_signature", f"signed request lacks {', '.join(missing)}")
        try:
            account_id = bytes.fromhex(headers["x-mydata-account"])
            pubkey = bytes.fromhex(headers["x-mydata-key"])
            time_ms = int(headers["x-mydata-time"])
            nonce = bytes.fromhex(headers["x-mydata-nonce"])
            sig = bytes.fromhex(headers["x-mydata-signature"])
        except ValueError:
            raise AuthError("malformed_signature", "signature headers are not valid hex / integers") from None
        if len(account_id) != 32 or len(pubkey) != 32 or len(sig) != 64 or not 8 <= len(nonce) <= 32:
            raise AuthError("malformed_signature", "signature headers have the wrong lengths")
        if abs(now_ms - time_ms) > self.max_skew_ms:
            raise AuthError("clock_skew", f"request time is more than {self.max_skew_ms // 1000} s from the "
                                          "node's clock")
        if not verify(pubkey, Domain.REQUEST, self.chain_id, request_payload(method, path, body, time_ms, nonce),
                      sig):
            raise AuthError("bad_signature", "the request signature does not verify")
        account = state.account(account_id)
        if account is None:
            raise AuthError("unknown_account", "no such account on this chain")
        via_delegate = pubkey != account.sign_pk
        if via_delegate and pubkey not in account.delegates:
            raise AuthError("key_not_authorized", "this key does not act for that account")
        if account.status != Status.ACTIVE:
            raise AuthError("account_suspended", "the account is suspended", 403)
        if not self.nonces.check_and_add(nonce, time_ms, now_ms):
            raise AuthError("replayed_request", "this request nonce was already used")
        return Caller(account, via_delegate)
