"""The application's part of the genesis document: founding members, admin threshold, data schemas.

`consensus.types.Genesis.app_state` holds `AppGenesis.encode()`. For people, a genesis file is JSON with the
app state expanded in place (`genesis_to_json` / `genesis_from_json`); its hash is always over the canonical
bytes, so the JSON layout does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.crypto import account_id
from consensus.encoding import PUBKEY, U32, ListOf, Nested, Struct, field_
from consensus.errors import DecodeError, ValidationError
from consensus.types import NAME, Genesis
from contracts.records import FIELDS, IDS, ROLES, SCHEMA_NAME, Role


@dataclass(frozen=True)
class GenesisMember(Struct):
    name: str = field_(NAME)
    roles: tuple[str, ...] = field_(ROLES)
    sign_pk: bytes = field_(PUBKEY)
    enc_pk: bytes = field_(PUBKEY)

    @property
    def id(self) -> bytes:
        return account_id(self.sign_pk)


@dataclass(frozen=True)
class GenesisSchema(Struct):
    name: str = field_(SCHEMA_NAME)
    fields: tuple[str, ...] = field_(FIELDS)
    issuers: tuple[bytes, ...] = field_(IDS)


@dataclass(frozen=True)
class AppGenesis(Struct):
    members: tuple[GenesisMember, ...] = field_(ListOf(Nested(GenesisMember), 1024))
    admin_threshold: int = field_(U32)
    schemas: tuple[GenesisSchema, ...] = field_(ListOf(Nested(GenesisSchema), 1024))

    def validate_basic(self) -> None:
        ids = [m.id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValidationError("two genesis members share a signing key")
        admins = sum(1 for m in self.members if Role.ADMIN in m.roles)
        if not 1 <= self.admin_threshold <= admins:
            raise ValidationError(f"admin threshold {self.admin_threshold} must be in 1..{admins} (the admins)")
        issuers = {m.id for m in self.members if Role.ISSUER in m.roles}
        names = [s.name for s in self.schemas]
        if len(set(names)) != len(names):
            raise ValidationError("two genesis schemas share a name")
        for s in self.schemas:
            if not s.fields:
                raise ValidationError(f"schema {s.name} has no fields")
            if not set(s.issuers) <= issuers:
                raise ValidationError(f"schema {s.name} names an issuer that is not a genesis issuer")


def genesis_to_json(g: Genesis) -> dict[str, Any]:
    out = g.to_json()
    out["app_state"] = AppGenesis.decode(g.app_state).to_json()
    return out


def genesis_from_json(obj: object) -> Genesis:
    if not isinstance(obj, dict) or not isinstance(obj.get("app_state"), dict):
        raise DecodeError("a genesis file is a JSON object with an app_state object")
    app = AppGenesis.from_json(obj["app_state"], "app_state")
    return Genesis.from_json({**obj, "app_state": app.encode().hex()})


