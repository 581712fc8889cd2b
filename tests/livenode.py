"""A real node process as tests see it: its parties' identities, its genesis, clients and wallet sessions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cli.localnet import NodeProcess
from consensus.types import Genesis
from wallet.actions import WalletSession
from wallet.client import Client
from wallet.devchain import Identity


@dataclass
class LiveNode:
    process: NodeProcess
    ids: dict[str, Identity]
    genesis: Genesis
    base: Path

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id

    def client(self, who: str | None = None) -> Client:
        c = Client(self.url, chain_id=self.chain_id)
        if who is None:
            return c
        i = self.ids[who]
        return c.as_(i.signer, i.id)

    def session(self, who: str) -> WalletSession:
        return WalletSession(Client(self.url, chain_id=self.chain_id), self.ids[who])
