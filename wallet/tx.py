"""Building and signing transactions, and predicting the ids of the objects they create."""

from __future__ import annotations

from consensus.crypto import Signer, account_id
from consensus.encoding import Struct
from consensus.types import Tx
from contracts.context import new_object_id
from contracts.txs import ADMIN_ACTIONS, TX_BODIES, TYPE_OF, Propose

_ACTION_OF = {cls: name for name, cls in ADMIN_ACTIONS.items()}


def tx_type_of(body: Struct) -> str:
    try:
        return TYPE_OF[type(body)]
    except KeyError:
        raise TypeError(f"{type(body).__name__} is not a transaction body") from None


def make_tx(signer: Signer, chain_id: str, nonce: int, body: Struct, *, sender: bytes | None = None,
            tx_type: str | None = None) -> Tx:
    """Sign `body` as a transaction of `sender` (default: the signer's own account)."""
    t = tx_type or tx_type_of(body)
    if not isinstance(body, TX_BODIES[t]):
        raise TypeError(f"{type(body).__name__} is not the body of {t}")
    return Tx.create(signer, chain_id, sender or account_id(signer.public_key), nonce, t, body.encode())


def propose(action: Struct) -> Propose:
    """Wrap an admin action in a `gov.propose` body."""
    return Propose(_ACTION_OF[type(action)], action.encode())


def created_id(kind: bytes, tx: Tx) -> bytes:
    """The id of the object of `kind` (contracts.records.Kind) that `tx` creates if it succeeds."""
    return new_object_id(kind, tx.hash)
