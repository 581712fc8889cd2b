"""Shared fixtures. `live_node` starts a real node process (`mydata node start`) on a free loopback port,
with the demo's parties as genesis members, and always stops it (by its own pid) when the test ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.demo import demo_genesis, demo_identities, start_local_node
from node.config import read_genesis
from tests.livenode import LiveNode


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
