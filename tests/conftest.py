"""Shared fixtures. `live_node` starts a real node process (`mydata node start`) on a free loopback port,
with the demo's parties as genesis members, and always stops it (by its own pid) when the test ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli.demo import demo_genesis, demo_identities, start_local_node
from cli.localnet import NodeProcess
from consensus.types import Genesis
from node.config import read_genesis
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

    def client(self, who: str | None = None) -> Client:
        c = Client(self.url)
        if who is None:
            return c
        i = self.ids[who]
        return c.as_(i.signer, i.id)

    def session(self, who: str) -> WalletSession:
        return WalletSession(Client(self.url), self.ids[who])


@pytest.fixture
def live_node(tmp_path: Path) -> Iterator[LiveNode]:
    ids = demo_identities()
    node = start_local_node(tmp_path, ids, demo_genesis(ids))
    try:
        yield LiveNode(node, ids, read_genesis(tmp_path / "genesis.json"), tmp_path)
    finally:
        node.stop()
        if os.environ.get("MYDATA_SHOW_NODE_LOG"):
            print(node.log_tail(200))
