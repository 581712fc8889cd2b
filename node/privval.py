"""The validator's signer with double-sign protection (CometBFT ``privval/file.go``, "last sign state").

Rules of this module (PV-1..PV-6):

- PV-1  Every consensus signature has a height, round and step (HRS); steps are proposal = 1, prevote = 2,
        precommit = 3, compared as the tuple (height, round, step). The HRS is read from the payload itself,
        never only from the caller's arguments: a vote payload is the ``Vote.signing_payload_of`` array
        ``[type, height, round, block_hash, timestamp_ms, validator]``; of a proposal payload only the first
        two fields, height and round, are relied on. Other domains (tx, request, handshake) pass through to
        the wrapped signer without any state.
- PV-2  Refusals (``DoubleSignRisk``): an HRS lower than the last one signed; at the same HRS, a different
        message (domain, chain id and payload).
- PV-3  Re-signing is idempotent: the identical message at the last HRS gets the saved signature again
        (after a crash between signing and broadcasting, the driver may ask twice).
- PV-4  Timestamps (as CometBFT's ``checkVotesOnlyDifferByTimestamp``): a *vote* at the last HRS that
        differs from the saved one only in ``timestamp_ms`` is not signed again: the saved signature is the
        answer, and it is a signature of the *saved* payload (with the saved timestamp). ``sign_message``
        returns both; ``sign_vote`` returns the signature (the caller reads the payload it belongs to in
        ``last_signed.payload``); ``sign`` (the ``Signer`` protocol, which cannot say which payload it signed)
        raises ``StaleTimestamp`` carrying the saved payload and signature instead of returning a signature
        that would not verify for the payload it was given. Proposals get no such leniency (only their height
        and round are relied on): a re-proposal with another timestamp at the same HRS is refused, which
        costs the round, never safety.
- PV-5  Persistence first: the new last-sign state is written in place to the slot of the state file that
        does not hold the current state (``os.pwrite`` of the whole slot, then ``os.fdatasync``: one flush, no
        file creation, no rename, no directory fsync) before a signature is returned; if that fails, the
        signature is dropped, ``StateWriteError`` is raised and the in-memory state is unchanged. A state that
        would not fit in a slot is refused the same way, before the key is used. Loading reads both slots and
        takes the valid one with the higher sequence number; a slot that fails its checksum is ignored when the
        other is valid (a torn write of the slot being written: its signature was never released, so the
        previous state is the right one); it is the slot the next state overwrites.
- PV-6  A state file that cannot be read, parsed, or checked (neither slot valid; in the slot used, the hash
        of the saved message, the signature under this key, the HRS of the saved payload) is
        ``PrivValStateError``: never a silent reset to height 0. A missing file is created (zero state; the
        file is written under a temporary name, fsynced, renamed, and the directory fsynced, once) only if
        ``create=True``; a node that has signed before should open with ``create=False``. The JSON state
        file of the previous version, ``<state>.json``, is converted once when ``<state>`` is missing (with
        either ``create``), then renamed ``<state>.json.migrated`` so that nothing reads it again.
        ``<state>.lock`` is held with ``fcntl.flock`` while the validator is open (and ``<state>.json.lock``
        while a previous version's file is converted), so two processes never sign from the same state.

State file ``<state>`` (by convention ``HOME/priv_validator_state``): 8192 bytes, two slots of 4096 bytes at
offsets 0 and 4096, each on its own 4 KiB page and filesystem block, so that writing one never rewrites
the other. A slot::

    magic "PVSTATE1" (8) || sequence u64be (8) || length u32be (4) || SHA-256 (32) || content (length)
    || zero padding to 4096

The SHA-256 covers magic, sequence, length and content; a slot never written is all zeros. The sequence
number starts at 1 and grows by one with every state written (u64: it does not wrap; a write that would pass
2**64 - 1 is refused). The content (at most 4044 bytes) is the state as JSON text on one line, readable
with ``strings``; a proposal or vote payload of the consensus machine is at most 101 bytes, so a state is at
most 540 bytes with a short chain id, 790 with a 255-byte one, 2.1 KiB if all its characters are escaped::

    {"height": 7, "round": 0, "step": 2, "chain_id": "mydata-1", "payload": "96...",
     "sign_bytes_hash": "<sha256 of signing_bytes(domain, chain_id, payload)>", "signature": "<64 bytes>"}

Bytes are lowercase hex. The zero state (nothing signed yet) has height, round and step 0 and empty strings.
The previous version's ``<state>.json`` held that JSON object alone (replaced by temporary file and rename).

Exceptions::

    PrivValError
    ├── DoubleSignRisk        refused: signing this could be double signing (PV-2)
    │   └── StaleTimestamp    only from sign(): the same vote with another timestamp was signed (PV-4)
    ├── PrivValStateError     the state file is missing, unreadable or inconsistent (PV-6)
    │   └── StateWriteError   the new state could not be saved; no signature was returned (PV-5)
    ├── PrivValLocked         another process or object holds the state
    └── BadSignRequest        not a well-formed vote/proposal payload, or arguments that disagree with it
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from consensus.crypto import Domain, Signer, account_id, signing_bytes, verify
from consensus.encoding import Value, decode_value
from consensus.errors import DecodeError
from consensus.types import PRECOMMIT, PREVOTE
from node.fsutil import fsync_dir, release_flock, take_flock

__all__ = [
    "STEP_PRECOMMIT",
    "STEP_PREVOTE",
    "STEP_PROPOSAL",
    "BadSignRequest",
    "DoubleSignRisk",
    "LastSigned",
    "PrivValError",
    "PrivValLocked",
    "PrivValStateError",
    "PrivValidator",
    "Signed",
    "StaleTimestamp",
    "StateWriteError",
    "read_state",
]

log = logging.getLogger("mydata.node.privval")

STEP_PROPOSAL = 1
STEP_PREVOTE = 2
STEP_PRECOMMIT = 3
_VOTE_STEPS = {PREVOTE: STEP_PREVOTE, PRECOMMIT: STEP_PRECOMMIT}
_STEP_DOMAIN = {STEP_PROPOSAL: Domain.PROPOSAL, STEP_PREVOTE: Domain.VOTE, STEP_PRECOMMIT: Domain.VOTE}
_MAX_U64 = 2**64 - 1
_MAX_U32 = 2**32 - 1
_VOTE_TIMESTAMP = 4  # index of timestamp_ms in the vote signing payload
_FIELDS = ("height", "round", "step", "chain_id", "payload", "sign_bytes_hash", "signature")

# The state file (PV-5): two slots, each magic || sequence u64be || length u32be || SHA-256 || content.
SLOT_SIZE = 4096
_MAGIC = b"PVSTATE1"
_SLOT_HEADER = struct.Struct(">8sQI")
_DIGEST_SIZE = 32
_CONTENT_OFFSET = _SLOT_HEADER.size + _DIGEST_SIZE
MAX_CONTENT = SLOT_SIZE - _CONTENT_OFFSET
_FILE_SIZE = 2 * SLOT_SIZE
_LEGACY_SUFFIX = ".json"  # the previous version's state file: <state>.json, one JSON object
_SIGNATURE_SIZE = 64  # Ed25519, for the size check before signing


# ------------------------------------------------------------------------------------------------ errors


class PrivValError(Exception):
    """A problem of the validator's signer."""


class DoubleSignRisk(PrivValError):
    """Refused: the request is below the last signed height/round/step, or conflicts with what was signed
    at the same one (PV-2)."""


class StaleTimestamp(DoubleSignRisk):
    """``sign()`` was asked for a vote already signed at this HRS with another timestamp (PV-4). The vote to
    send is the saved one: ``saved_payload`` with ``saved_signature``."""

    def __init__(self, message: str, saved_payload: bytes, saved_signature: bytes) -> None:
        super().__init__(message)
        self.saved_payload = saved_payload
        self.saved_signature = saved_signature


class PrivValStateError(PrivValError):
    """The last-sign state file is missing, unreadable or inconsistent (PV-6)."""


class StateWriteError(PrivValStateError):
    """The new last-sign state could not be saved: the signature was dropped, nothing changed (PV-5)."""


class PrivValLocked(PrivValError):
    """The state file is in use by another ``PrivValidator`` (this process or another)."""


class BadSignRequest(PrivValError, ValueError):
    """The payload is not a well-formed vote or proposal signing payload, or disagrees with the arguments."""


# ------------------------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class LastSigned:
    """The last consensus message signed: its HRS, the SHA-256 of its signing bytes, the signature, and the
    chain id and payload it was signed with (so that a timestamp-only re-sign can be recognised, PV-4)."""

    height: int
    round: int
    step: int
    sign_bytes_hash: bytes
    signature: bytes
    chain_id: str = ""
    payload: bytes = b""

    @property
    def hrs(self) -> tuple[int, int, int]:
        return self.height, self.round, self.step

    def to_json(self) -> dict[str, Any]:
        return {"height": self.height, "round": self.round, "step": self.step, "chain_id": self.chain_id,
                "payload": self.payload.hex(), "sign_bytes_hash": self.sign_bytes_hash.hex(),
                "signature": self.signature.hex()}


ZERO_STATE = LastSigned(0, 0, 0, b"", b"")


class Signed(NamedTuple):
    """A signature and the payload it signs: the payload asked for, or the saved one (PV-4)."""

    signature: bytes
    payload: bytes


def _message_hash(domain: Domain, chain_id: str, payload: bytes) -> bytes:
    return hashlib.sha256(signing_bytes(domain, chain_id, payload)).digest()


# ------------------------------------------------------------------------------------------------ payloads


def _decode(payload: bytes, what: str) -> tuple[Value, ...]:
    if type(payload) is not bytes:
        raise BadSignRequest(f"a {what} payload is bytes")
    try:
        value = decode_value(payload)
    except DecodeError as e:
        raise BadSignRequest(f"not a {what} signing payload: {e}") from None
    if type(value) is not tuple:
        raise BadSignRequest(f"a {what} signing payload is an array")
    return value


def _int(v: Value, name: str, lo: int, hi: int) -> int:
    if type(v) is not int or not lo <= v <= hi:
        raise BadSignRequest(f"{name} must be an integer in {lo}..{hi}")
    return v


def _vote_hrs(payload: bytes) -> tuple[tuple[int, int, int], tuple[Value, ...]]:
    """HRS of a ``Vote.signing_payload_of`` payload, and its fields (PV-1)."""
    fields = _decode(payload, "vote")
    if len(fields) != 6:
        raise BadSignRequest(f"a vote signing payload has 6 fields, not {len(fields)}")
    vote_type, height, round_, block_hash, timestamp, validator = fields
    if vote_type not in _VOTE_STEPS:
        raise BadSignRequest(f"unknown vote type {vote_type!r}")
    step = _VOTE_STEPS[vote_type]
    if type(block_hash) is not bytes or len(block_hash) not in (0, 32):
        raise BadSignRequest("vote block_hash must be 32 bytes, or empty for nil")
    _int(timestamp, "vote timestamp_ms", 0, _MAX_U64)
    if type(validator) is not bytes or len(validator) != 32:
        raise BadSignRequest("vote validator must be a 32-byte address")
    return (_int(height, "vote height", 1, _MAX_U64), _int(round_, "vote round", 0, _MAX_U32), step), fields


def _proposal_hrs(payload: bytes) -> tuple[int, int, int]:
    """HRS of a proposal payload: only its first two fields (height, round) are relied on (PV-1)."""
    fields = _decode(payload, "proposal")
    if len(fields) < 2:
        raise BadSignRequest("a proposal signing payload starts with height and round")
    return _int(fields[0], "proposal height", 1, _MAX_U64), _int(fields[1], "proposal round", 0, _MAX_U32), \
        STEP_PROPOSAL


def _only_timestamp_differs(saved: bytes, new: bytes) -> bool:
    try:
        a, b = decode_value(saved), decode_value(new)
    except DecodeError:
        return False
    if type(a) is not tuple or type(b) is not tuple or len(a) != 6 or len(b) != 6:
        return False
    return all(x == y for i, (x, y) in enumerate(zip(a, b, strict=True)) if i != _VOTE_TIMESTAMP)


# ------------------------------------------------------------------------------------------------ state file


def _content(state: LastSigned) -> bytes:
    """The state as one line of JSON text (the content of a slot)."""
    return json.dumps(state.to_json()).encode()


def _encode_slot(seq: int, content: bytes) -> bytes:
    """A whole slot: header, SHA-256 of header and content, content, zero padding (PV-5)."""
    if len(content) > MAX_CONTENT:
        raise ValueError(f"a state of {len(content)} bytes does not fit in a slot ({MAX_CONTENT} bytes)")
    header = _SLOT_HEADER.pack(_MAGIC, seq, len(content))
    body = header + hashlib.sha256(header + content).digest() + content
    return body + bytes(SLOT_SIZE - len(body))


class _Slot(NamedTuple):
    number: int
    seq: int
    content: bytes


def _decode_slot(index: int, raw: bytes) -> _Slot | str:
    """The sequence number and content of a slot, or why it is not valid."""
    if not any(raw):
        return "never written"
    magic, seq, length = _SLOT_HEADER.unpack_from(raw)
    if magic != _MAGIC:
        return f"magic {magic!r}"
    if length > MAX_CONTENT:
        return f"length {length}"
    content = raw[_CONTENT_OFFSET:_CONTENT_OFFSET + length]
    if hashlib.sha256(raw[:_SLOT_HEADER.size] + content).digest() != raw[_SLOT_HEADER.size:_CONTENT_OFFSET]:
        return "checksum mismatch"
    return _Slot(index, seq, content)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"pwrite wrote {n} bytes")
        view, offset = view[n:], offset + n


def _write_new_file(path: Path, data: bytes) -> None:
    """Creation only: temporary file, fsync, rename to ``path``, fsync of the directory (PV-6)."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _pwrite_all(fd, data, 0)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _remove_temporaries(path: Path) -> None:
    """Temporary files left by a crash during a creation (we hold the lock)."""
    prefix = f"{path.name}.tmp-"
    for name in os.listdir(path.parent):
        if name.startswith(prefix):
            with contextlib.suppress(OSError):
                (path.parent / name).unlink()


def _take_flock(lock: Path, busy: str) -> int:
    try:
        return take_flock(lock)
    except BlockingIOError:
        raise PrivValLocked(busy) from None


def _corrupt(path: Path | str, why: str) -> PrivValStateError:
    return PrivValStateError(f"the last-sign state {path} is corrupt ({why}); refusing to sign. Restore it from a "
                             "backup, or, only if this key has never signed on any chain at a higher height, "
                             "rewrite it by hand")


def _current_slot(path: Path, raw: bytes) -> _Slot:
    """Of the two slots, the valid one with the higher sequence number (PV-5); neither valid is PV-6."""
    if raw[:1] == b"{":
        raise PrivValStateError(f"{path} is a JSON state file of the previous version: open "
                                f"{path.with_suffix('')} instead, which converts it")
    if len(raw) != _FILE_SIZE:
        raise _corrupt(path, f"{len(raw)} bytes, expected {_FILE_SIZE}")
    decoded = [_decode_slot(i, raw[i * SLOT_SIZE:(i + 1) * SLOT_SIZE]) for i in (0, 1)]
    valid = [d for d in decoded if isinstance(d, _Slot)]
    if not valid:
        raise _corrupt(path, f"neither slot is valid: slot 0 {decoded[0]}, slot 1 {decoded[1]}")
    if len(valid) == 2 and valid[0].seq == valid[1].seq:
        raise _corrupt(path, f"both slots have sequence number {valid[0].seq}")
    current = max(valid, key=lambda d: d.seq)
    other = decoded[1 - current.number]
    if isinstance(other, str) and other != "never written":
        log.warning("last-sign state %s: slot %d is not valid (%s), slot %d (sequence %d) is used: a write "
                    "interrupted before its signature was released", path, 1 - current.number, other,
                    current.number, current.seq)
    return current


def _parse_state(path: Path | str, raw: bytes, public_key: bytes | None) -> LastSigned:
    """Read and check a state (PV-6): every field, the hash of the saved message, the signature (unless
    ``public_key`` is None)."""

    def bad(why: str) -> PrivValStateError:
        return _corrupt(path, why)

    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise bad("not a JSON object")
    if sorted(obj) != sorted(_FIELDS):
        raise bad(f"fields {sorted(obj)}, expected {sorted(_FIELDS)}")
    for name, hi in (("height", _MAX_U64), ("round", _MAX_U32), ("step", STEP_PRECOMMIT)):
        v = obj[name]
        if type(v) is not int or not 0 <= v <= hi:
            raise bad(f"{name} {v!r} is not an integer in 0..{hi}")
    if not isinstance(obj["chain_id"], str):
        raise bad("chain_id is not a string")
    blobs: dict[str, bytes] = {}
    for name in ("payload", "sign_bytes_hash", "signature"):
        v = obj[name]
        try:
            blobs[name] = bytes.fromhex(v) if isinstance(v, str) else b""
        except ValueError:
            blobs[name] = b""
        if not isinstance(v, str) or blobs[name].hex() != v:
            raise bad(f"{name} is not lowercase hex")
    state = LastSigned(obj["height"], obj["round"], obj["step"], blobs["sign_bytes_hash"], blobs["signature"],
                       obj["chain_id"], blobs["payload"])
    if state.height == 0:
        if state != ZERO_STATE:
            raise bad("height 0 with a round, step or signed message")
        return state
    if state.step not in _STEP_DOMAIN:
        raise bad(f"step {state.step} at height {state.height}")
    domain = _STEP_DOMAIN[state.step]
    try:
        message_hash = _message_hash(domain, state.chain_id, state.payload)
        hrs = _proposal_hrs(state.payload) if domain is Domain.PROPOSAL else _vote_hrs(state.payload)[0]
    except (BadSignRequest, ValueError) as e:
        raise bad(f"saved payload: {e}") from None
    if hrs != state.hrs:
        raise bad(f"saved payload is for {hrs}, the state says {state.hrs}")
    if message_hash != state.sign_bytes_hash:
        raise bad("sign_bytes_hash is not the hash of the saved message")
    if public_key is not None and not verify(public_key, domain, state.chain_id, state.payload,
                                             state.signature):
        raise bad("the saved signature is not this key's signature of the saved message (another validator's "
                  "state file?)")
    return state


def read_state(path: str | os.PathLike[str]) -> LastSigned:
    """The current last-sign state in a state file, for inspection (tests, monitoring): the slots and the
    saved message are checked, the signature is not (no key is needed), and no lock is taken."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise PrivValStateError(f"cannot read the last-sign state {p}: {e}") from None
    slot = _current_slot(p, raw)
    return _parse_state(f"{p} (slot {slot.number})", slot.content, None)


# ------------------------------------------------------------------------------------------------ validator


class PrivValidator:
    """Wraps a ``Signer`` with the last-sign state in ``state_path`` (PV-1..PV-6). Implements ``Signer``."""

    def __init__(self, state_path: str | os.PathLike[str], signer: Signer, *, create: bool = True) -> None:
        self.state_path = Path(state_path)
        self._signer = signer
        self._mutex = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None  # the state file, open for the validator's lifetime
        self._slot = 0  # the slot holding the current state, and its sequence number
        self._seq = 0
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _take_flock(self.state_path.with_name(self.state_path.name + ".lock"),
                                    f"{self.state_path} is in use by another validator process")
        try:
            self._last = self._load(create)
        except BaseException:
            self.close()
            raise

    def _load(self, create: bool) -> LastSigned:
        _remove_temporaries(self.state_path)
        legacy = self.state_path.with_name(self.state_path.name + _LEGACY_SUFFIX)
        if os.path.lexists(legacy):
            self._retire_legacy(legacy)
        try:
            self._fd = os.open(self.state_path, os.O_RDWR)
        except FileNotFoundError:
            if not create:
                raise PrivValStateError(f"no last-sign state at {self.state_path}") from None
            self._create(ZERO_STATE)
            self._fd = os.open(self.state_path, os.O_RDWR)
        except OSError as e:
            raise PrivValStateError(f"cannot read the last-sign state {self.state_path}: {e}") from None
        try:
            raw = os.pread(self._fd, _FILE_SIZE + 1, 0)
        except OSError as e:
            raise PrivValStateError(f"cannot read the last-sign state {self.state_path}: {e}") from None
        slot = _current_slot(self.state_path, raw)
        state = _parse_state(f"{self.state_path} (slot {slot.number})", slot.content, self._signer.public_key)
        self._slot, self._seq = slot.number, slot.seq
        return state

    def _create(self, state: LastSigned) -> None:
        """A new state file: ``state`` in slot 0 with sequence number 1, slot 1 never written (PV-6)."""
        try:
            _write_new_file(self.state_path, _encode_slot(1, _content(state)) + bytes(SLOT_SIZE))
        except (OSError, ValueError) as e:
            raise StateWriteError(f"could not create the last-sign state {self.state_path} ({e})") from e

    def _retire_legacy(self, legacy: Path) -> None:
        """The previous version's JSON state file: converted if the state file is missing, then renamed so that
        nothing reads it again (PV-6). Its own lock keeps a process of the previous version out meanwhile."""
        lock_fd = _take_flock(legacy.with_name(legacy.name + ".lock"),
                              f"{legacy} is in use by a validator process of the previous version")
        try:
            _remove_temporaries(legacy)
            if os.path.lexists(self.state_path):
                log.warning("last-sign state: %s exists, the previous version's %s is not used", self.state_path,
                            legacy)
            else:
                try:
                    raw = legacy.read_bytes()
                except OSError as e:
                    raise PrivValStateError(f"cannot read the last-sign state {legacy}: {e}") from None
                state = _parse_state(legacy, raw, self._signer.public_key)
                self._create(state)
                log.info("last-sign state %s converted to %s (height %d, round %d, step %d)", legacy,
                         self.state_path, *state.hrs)
            try:
                os.replace(legacy, legacy.with_name(legacy.name + ".migrated"))
                fsync_dir(legacy.parent)
            except OSError as e:
                raise PrivValStateError(f"could not rename {legacy} after its conversion: {e}") from None
        finally:
            release_flock(lock_fd)

    def _check_fits(self, state: LastSigned) -> None:
        """Before the key is used: the state (with a signature of the usual size) fits in a slot, and the
        sequence number can grow (PV-5)."""
        size = len(_content(state))
        if size > MAX_CONTENT:
            raise StateWriteError(f"the last-sign state would be {size} bytes, more than a slot holds "
                                  f"({MAX_CONTENT}); nothing was signed")
        if self._seq >= _MAX_U64:
            raise StateWriteError(f"the sequence number of {self.state_path} is exhausted; nothing was signed")

    def _save(self, state: LastSigned) -> None:
        """The new state into the other slot, ``pwrite`` then ``fdatasync`` (PV-5)."""
        assert self._fd is not None
        seq, slot = self._seq + 1, 1 - self._slot
        try:
            if seq > _MAX_U64:
                raise ValueError("the sequence number is exhausted")
            _pwrite_all(self._fd, _encode_slot(seq, _content(state)), slot * SLOT_SIZE)
            os.fdatasync(self._fd)
        except (OSError, ValueError) as e:
            raise StateWriteError(f"could not save the last-sign state {self.state_path} ({e}); the signature "
                                  "was not released") from e
        self._slot, self._seq = slot, seq

    def close(self) -> None:
        """Close the state file and release its lock (idempotent); the object must not sign afterwards."""
        with self._mutex:  # not while a state is being saved
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                release_flock(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # ---- public surface ----------------------------------------------------------------------------------

    @property
    def public_key(self) -> bytes:
        return self._signer.public_key

    @property
    def last_signed(self) -> LastSigned:
        return self._last

    def sign_vote(self, chain_id: str, vote_type: int, height: int, round: int, payload: bytes) -> bytes:
        """Sign a prevote or precommit signing payload (``Vote.signing_payload_of``) under ``Domain.VOTE``.

        With a timestamp-only difference from the vote saved at this HRS, the saved signature is returned:
        it signs ``last_signed.payload`` (PV-4)."""
        if vote_type not in _VOTE_STEPS:
            raise BadSignRequest(f"unknown vote type {vote_type!r}")
        (h, r, _), fields = _vote_hrs(payload)
        if (fields[0], h, r) != (vote_type, height, round):
            raise BadSignRequest(f"the payload is a vote of type {fields[0]!r} at height {h} round {r}, the "
                                 f"arguments say type {vote_type} at height {height} round {round}")
        return self.sign_message(Domain.VOTE, chain_id, payload).signature

    def sign_proposal(self, chain_id: str, height: int, round: int, payload: bytes) -> bytes:
        """Sign a proposal signing payload (``[height, round, ...]``) under ``Domain.PROPOSAL``."""
        h, r, _ = _proposal_hrs(payload)
        if (h, r) != (height, round):
            raise BadSignRequest(f"the payload is a proposal at height {h} round {r}, the arguments say "
                                 f"height {height} round {round}")
        return self.sign_message(Domain.PROPOSAL, chain_id, payload).signature

    def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes:
        """The ``Signer`` protocol: a signature of exactly ``payload``, or an exception (PV-4)."""
        signed = self.sign_message(domain, chain_id, payload)
        if signed.payload != payload:
            raise StaleTimestamp("this vote was already signed at this height/round/step with another "
                                 "timestamp: send the saved one", signed.payload, signed.signature)
        return signed.signature

    def sign_message(self, domain: Domain, chain_id: str, payload: bytes) -> Signed:
        """Sign under ``domain`` with the double-sign checks for votes and proposals (PV-1..PV-5); other
        domains pass through. Returns the signature and the payload it signs (the saved one, PV-4)."""
        if self._lock_fd is None:
            raise PrivValError("the validator is closed")
        if domain is Domain.VOTE:
            vote_hrs, fields = _vote_hrs(payload)
            if fields[5] != account_id(self.public_key):
                raise BadSignRequest("the vote is for another validator's address")
            return self._sign_checked(domain, chain_id, payload, vote_hrs)
        if domain is Domain.PROPOSAL:
            return self._sign_checked(domain, chain_id, payload, _proposal_hrs(payload))
        return Signed(self._signer.sign(domain, chain_id, payload), payload)

    def _sign_checked(self, domain: Domain, chain_id: str, payload: bytes, hrs: tuple[int, int, int]) -> Signed:
        try:
            message_hash = _message_hash(domain, chain_id, payload)
        except (ValueError, AttributeError) as e:
            raise BadSignRequest(f"bad chain id: {e}") from None
        with self._mutex:
            if self._lock_fd is None:
                raise PrivValError("the validator is closed")
            last = self._last
            if hrs < last.hrs:
                raise DoubleSignRisk(f"refusing to sign at height/round/step {hrs}: already signed at "
                                     f"{last.hrs}")
            if hrs == last.hrs:
                if message_hash == last.sign_bytes_hash:
                    return Signed(last.signature, last.payload)  # PV-3
                if (domain is Domain.VOTE and chain_id == last.chain_id
                        and _only_timestamp_differs(last.payload, payload)):
                    return Signed(last.signature, last.payload)  # PV-4
                raise DoubleSignRisk(f"refusing to sign a different message at height/round/step {hrs}: "
                                     "that would be double signing")
            self._check_fits(LastSigned(*hrs, message_hash, bytes(_SIGNATURE_SIZE), chain_id, payload))
            signature = self._signer.sign(domain, chain_id, payload)
            new = LastSigned(hrs[0], hrs[1], hrs[2], message_hash, signature, chain_id, payload)
            self._save(new)  # PV-5: before the signature leaves
            self._last = new
            return Signed(signature, payload)
