"""Running one node: open its home, serve the API with uvicorn, produce blocks, stop cleanly on a signal."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import uvicorn

from node.api import create_app
from node.config import load_home
from node.core import NodeCore
from node.service import NodeService

log = logging.getLogger("mydata.node")


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
    app = create_app(service)
    server = uvicorn.Server(uvicorn.Config(app, host=config.api_host, port=config.api_port, log_level="warning",
                                           access_log=False, lifespan="on"))
    try:
        server.run()
    finally:
        core.close()
        log.info("node %s stopped", config.name)
