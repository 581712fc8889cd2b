"""What every command needs: output, the node client, the keystore, identities and account references."""

from __future__ import annotations

import getpass
import os
import re
import sys
from argparse import Namespace
from pathlib import Path

from cli.output import CliError, Output
from wallet.actions import WalletSession
from wallet.client import Client
from wallet.keystore import Keystore, KeystoreError, WalletIdentity

DEFAULT_NODE = "http://127.0.0.1:26657"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Ctx:
    def __init__(self, args: Namespace) -> None:
        self.args = args
        self.out = Output(as_json=bool(getattr(args, "json", False)))
        self.node_url = args.node or os.environ.get("MYDATA_NODE") or DEFAULT_NODE
        self.wallet_dir = Path(args.wallet_dir or os.environ.get("MYDATA_WALLET_DIR")
                               or Path.home() / ".mydata" / "wallet")
        self._client: Client | None = None
        self._passphrase: str | None = None

    @property
    def keystore(self) -> Keystore:
        return Keystore(self.wallet_dir)

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.node_url)
        return self._client

    def passphrase(self, confirm: bool = False) -> str:
        if self._passphrase is not None:
            return self._passphrase
        env = os.environ.get("MYDATA_PASSPHRASE")
        if env is not None:
            self._passphrase = env
            return env
        if not sys.stdin.isatty():
            raise CliError("no passphrase: set MYDATA_PASSPHRASE or run in a terminal")
        p = getpass.getpass("keystore passphrase: ")
        if confirm and getpass.getpass("again: ") != p:
            raise CliError("the passphrases differ")
        self._passphrase = p
        return p

    def identity_name(self) -> str:
        name = getattr(self.args, "as_", None) or os.environ.get("MYDATA_IDENTITY")
        if name:
            return str(name)
        infos = self.keystore.list()
        if len(infos) == 1:
            return infos[0].name
        raise CliError("say which identity acts: --as NAME (or MYDATA_IDENTITY); "
                       f"the wallet has {', '.join(i.name for i in infos) or 'none'}")

    def identity(self) -> WalletIdentity:
        name = self.identity_name()
        try:
            return self.keystore.load(name, self.passphrase())
        except KeystoreError as e:
            raise CliError(f"{name}: {e}") from None

    def session(self) -> WalletSession:
        ident = self.identity()
        acting_for = getattr(self.args, "for_", None)
        return WalletSession(self.client, ident, acting_for=self.account(acting_for) if acting_for else None)

    def account(self, ref: str) -> bytes:
        """An account id from 64 hex characters, or from the name of an identity in the wallet."""
        if _HEX64.match(ref):
            return bytes.fromhex(ref)
        try:
            return self.keystore.info(ref).account_id
        except (KeystoreError, FileNotFoundError, KeyError):
            raise CliError(f"{ref!r} is neither an account id (64 hex) nor an identity in {self.wallet_dir}") from None


def hex32(value: str, what: str) -> bytes:
    if not _HEX64.match(value):
        raise CliError(f"{what} must be 64 lowercase hex characters, got {value!r}")
    return bytes.fromhex(value)


def csv(value: str) -> list[str]:
    return [x.strip() for x in value.split(",") if x.strip()]
