"""Running one node: open its home, serve the API with uvicorn, produce blocks, stop cleanly on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from consensus.crypto import Ed25519Signer
from node.api import create_app
from node.config import NodeConfig, load_home
from node.core import NodeCore
from node.driver import ConsensusDriver, GuardedSigner
from node.messages import MAX_MESSAGE
from node.p2p import LocalNode, PeerConfig, PeerManager
from node.privval import PrivValidator
from node.service import NodeService
from node.wal import WAL

log = logging.getLogger("mydata.node")

#: Allocations (minus deallocations) between two first-generation garbage collections.
GC_THRESHOLD = 50_000


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def run_node(home: Path, api: str | None = None) -> None:
    config, genesis, signer = load_home(home)
    if api:
        config.api = api
    setup_logging(config.log_level)
    core = NodeCore.open(home, genesis, signer, config.name)
    status = core.status()
    log.info("node %s on chain %s at height %d, app hash %s; API on http://%s", config.name, genesis.chain_id,
             status["height"], status["app_hash"], config.api)
    service = NodeService(core)
    if config.peers or len(core.validators().validators) > 1:
        try:
            service.engine = _consensus_engine(home, config, core, service, signer)
        except BaseException:
            core.close()
            raise
        log.info("BFT consensus with %d validator(s); p2p on %s, %d peer(s) to dial",
                 len(core.validators().validators), config.p2p, len(config.peers))
    app = create_app(service)
    # Fewer, later garbage collections: a busy node allocates many short-lived objects per transaction, and
    # the default first-generation threshold (700) ran a collection every few transactions. The objects
    # made while starting (modules, the genesis, caches) are frozen out of every later collection.
    gc.set_threshold(GC_THRESHOLD, 20, 20)
    gc.freeze()
    server = _Server(uvicorn.Config(app, host=config.api_host, port=config.api_port, log_level="warning",
                                    access_log=False, lifespan="on", timeout_graceful_shutdown=5))

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _request_exit, server, sig)
        await server.serve()

    try:
        _run(serve())
    finally:
        core.close()
        log.info("node %s stopped", config.name)


def _consensus_engine(home: Path, config: NodeConfig, core: NodeCore, service: NodeService,
                      signer: Ed25519Signer) -> ConsensusDriver:
    """The multi-node engine: the validator's double-sign guard, the consensus WAL, the peer network (members
    only: a peer's node key must be an active member account on chain), and the driver."""

    def is_member(pubkey: bytes) -> bool:
        # The key must be the current signing key of an active member account: the same test as GOV-7's for
        # voting power, so a validator's node is always admitted.
        return core.state().active_member_by_key(pubkey) is not None

    # A node that has taken part in consensus before has a WAL: its double-sign state must be there too (a
    # missing state file would let it sign again what it signed before a crash).
    fresh = not (home / "wal").exists()
    pv = PrivValidator(home / "priv_validator_state", signer, create=fresh)
    wal = WAL(home / "wal", max_frame_bytes=MAX_MESSAGE + 1024)
    peers = PeerManager(LocalNode(signer, core.chain_id, is_member),
                        PeerConfig(listen=config.p2p, peers=tuple(config.peers), max_frame=MAX_MESSAGE + 1024),
                        metrics=service.metrics.p2p_hook())
    return ConsensusDriver(service, peers, GuardedSigner(pv), wal)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal capture: uvicorn re-raises a captured SIGTERM after shutting
    down, which would kill the process before the store is closed. The node installs its own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _request_exit(server: uvicorn.Server, sig: signal.Signals) -> None:
    log.info("received %s: stopping", sig.name)
    server.should_exit = True


def _run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
