"""A node's home directory (docs/operations.md):

    HOME/config.json     {"name", "chain_id", "api": "host:port", "p2p": "host:port", "log_level"}
    HOME/genesis.json    the chain's genesis document (JSON form; its hash is over canonical bytes)
    HOME/node_key.json   the node's Ed25519 key (validators sign with it), mode 0600
    HOME/data/           LevelDB: state, state tree, blocks, indexes
    HOME/vault/          the encrypted vault (content-addressed ciphertexts)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from consensus.crypto import Ed25519Signer
from consensus.errors import DecodeError, ValidationError
from consensus.types import Genesis
from contracts.genesis import genesis_from_json, genesis_to_json


class ConfigError(Exception):
    """A node home that is missing, incomplete or inconsistent: the message says what to fix."""


@dataclass
class NodeConfig:
    name: str
    chain_id: str
    api: str = "127.0.0.1:26657"
    p2p: str = "127.0.0.1:26656"
    log_level: str = "info"
    #: Peers to dial: "host:port" or "<node public key hex>@host:port". Non-empty, or a genesis with more than
    #: one validator, runs BFT consensus over the peer network; otherwise this node produces blocks alone.
    peers: list[str] = field(default_factory=list)

    @property
    def api_host(self) -> str:
        return self.api.rsplit(":", 1)[0]

    @property
    def api_port(self) -> int:
        return int(self.api.rsplit(":", 1)[1])


def write_private(path: Path, data: bytes) -> None:
    """Write a file atomically, readable by its owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_genesis(path: Path, genesis: Genesis) -> None:
    path.write_text(json.dumps(genesis_to_json(genesis), indent=2) + "\n")


def read_genesis(path: Path) -> Genesis:
    try:
        return genesis_from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"no genesis file at {path}") from None
    except (ValueError, DecodeError, ValidationError) as e:
        raise ConfigError(f"{path} is not a valid genesis file: {e}") from None


def init_home(home: Path, config: NodeConfig, genesis: Genesis, seed: bytes) -> None:
    if (home / "config.json").exists():
        raise ConfigError(f"{home} is already a node home")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    (home / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    write_genesis(home / "genesis.json", genesis)
    write_private(home / "node_key.json", json.dumps({"ed25519_seed": seed.hex()}).encode())


def load_home(home: Path) -> tuple[NodeConfig, Genesis, Ed25519Signer]:
    try:
        raw = json.loads((home / "config.json").read_text())
        config = NodeConfig(**raw)
    except FileNotFoundError:
        raise ConfigError(f"{home} is not a node home (no config.json); run `mydata node init` first") from None
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{home}/config.json is invalid: {e}") from None
    genesis = read_genesis(home / "genesis.json")
    if genesis.chain_id != config.chain_id:
        raise ConfigError(f"config says chain {config.chain_id!r}, genesis says {genesis.chain_id!r}")
    try:
        key = json.loads((home / "node_key.json").read_text())
        signer = Ed25519Signer(bytes.fromhex(key["ed25519_seed"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        raise ConfigError(f"{home}/node_key.json is missing or invalid") from None
    return config, genesis, signer
