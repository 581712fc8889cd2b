"""The validator's double-sign guard (node/privval.py, PV-1..PV-6): refusals below the last height/round/step
and of a conflicting message at the same one, idempotent re-signing, the timestamp rule, the state written
before a signature leaves (a failing pwrite or fdatasync releases none), the two-slot state file (its bytes,
alternating slots, torn and corrupt slots, sequence numbers), reopening, corrupt state files, the conversion
of the previous version's JSON file, the lock, and random walks (with injected write failures and torn
writes) against a model of what may ever be signed."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import node.privval as pvmod
from consensus.crypto import Domain, Ed25519Signer, account_id, signing_bytes, verify
from consensus.encoding import decode_value, encode_value
from consensus.types import PRECOMMIT, PREVOTE, Vote
from node.privval import (
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSAL,
    BadSignRequest,
    DoubleSignRisk,
    PrivValidator,
    PrivValLocked,
    PrivValStateError,
    StaleTimestamp,
    StateWriteError,
    read_state,
)

ROOT = Path(__file__).resolve().parent.parent
CHAIN = "mydata-test"
KEY = Ed25519Signer(hashlib.sha256(b"validator-0").digest())
OTHER = Ed25519Signer(hashlib.sha256(b"validator-1").digest())
ADDR = account_id(KEY.public_key)
BLOCK_A, BLOCK_B = hashlib.sha256(b"A").digest(), hashlib.sha256(b"B").digest()


def vote(vtype: int, height: int, round: int, block: bytes = BLOCK_A, ts: int = 1000, addr: bytes = ADDR) -> bytes:
    return Vote.signing_payload_of(vtype, height, round, block, ts, addr)


def proposal(height: int, round: int, block: bytes = BLOCK_A, ts: int = 1000) -> bytes:
    # [height, round, pol_round, block_hash, timestamp_ms, proposer]: only the first two are relied on
    return encode_value([height, round, 0, block, ts, ADDR])


class CountingSigner:
    """The wrapped signer, counting calls: shows when the key was (not) used."""

    def __init__(self, inner: Ed25519Signer = KEY) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def public_key(self) -> bytes:
        return self.inner.public_key

    def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes:
        self.calls += 1
        return self.inner.sign(domain, chain_id, payload)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "priv_validator_state"


@pytest.fixture
def pv(state: Path) -> Iterator[PrivValidator]:
    p = PrivValidator(state, KEY)
    yield p
    p.close()


# The state file, decoded here from its description in node/privval.py (not with the module's own code): two
# 4096-byte slots, each magic || sequence u64be || length u32be || SHA-256(header || content) || content || 0s.
SLOT, MAGIC = 4096, b"PVSTATE1"


def slot_bytes(seq: int, content: bytes, magic: bytes = MAGIC) -> bytes:
    header = struct.pack(">8sQI", magic, seq, len(content))
    body = header + hashlib.sha256(header + content).digest() + content
    return body + bytes(SLOT - len(body))


def state_file(*slots: tuple[int, bytes] | None) -> bytes:
    """A state file with these (sequence, content) slots; None is a slot never written."""
    return b"".join(bytes(SLOT) if s is None else slot_bytes(*s) for s in slots)


def read_slots(state: Path) -> list[tuple[int, dict[str, object]] | None]:
    raw = state.read_bytes()
    assert len(raw) == 2 * SLOT
    out: list[tuple[int, dict[str, object]] | None] = []
    for i in (0, 1):
        b = raw[i * SLOT:(i + 1) * SLOT]
        magic, seq, length = struct.unpack(">8sQI", b[:20])
        content = b[52:52 + length]
        ok = magic == MAGIC and hashlib.sha256(b[:20] + content).digest() == b[20:52]
        out.append((seq, dict(json.loads(content))) if ok else None)
    return out


def saved(state: Path) -> dict[str, object]:
    """The current state: the valid slot with the higher sequence number."""
    return max((s for s in read_slots(state) if s is not None), key=lambda s: s[0])[1]


# ------------------------------------------------------------------------------------------ signing


def test_signatures_verify_and_the_state_is_on_disk(pv: PrivValidator, state: Path) -> None:
    assert pv.public_key == KEY.public_key and pv.last_signed.hrs == (0, 0, 0)
    assert saved(state)["height"] == 0  # created on first open
    p = proposal(5, 0)
    sig = pv.sign_proposal(CHAIN, 5, 0, p)
    assert verify(KEY.public_key, Domain.PROPOSAL, CHAIN, p, sig)
    v = vote(PREVOTE, 5, 0)
    sig = pv.sign_vote(CHAIN, PREVOTE, 5, 0, v)
    assert verify(KEY.public_key, Domain.VOTE, CHAIN, v, sig)
    last = pv.last_signed
    assert (last.height, last.round, last.step, last.signature, last.payload) == (5, 0, STEP_PREVOTE, sig, v)
    assert last.sign_bytes_hash == hashlib.sha256(signing_bytes(Domain.VOTE, CHAIN, v)).digest()
    assert saved(state) == {"height": 5, "round": 0, "step": 2, "chain_id": CHAIN, "payload": v.hex(),
                            "sign_bytes_hash": last.sign_bytes_hash.hex(), "signature": sig.hex()}
    sig = pv.sign_vote(CHAIN, PRECOMMIT, 5, 0, vote(PRECOMMIT, 5, 0))
    assert pv.last_signed.step == STEP_PRECOMMIT and saved(state)["signature"] == sig.hex()
    assert read_state(state) == pv.last_signed  # the inspection reader, without the key or the lock


def test_it_is_a_signer_for_votes_and_passes_other_domains_through(pv: PrivValidator) -> None:
    v = Vote.create(pv, CHAIN, PREVOTE, 3, 1, BLOCK_A, 777)
    assert v.signature_valid(CHAIN, KEY.public_key)
    assert pv.last_signed.hrs == (3, 1, STEP_PREVOTE)
    tx = pv.sign(Domain.TX, CHAIN, b"anything")
    assert verify(KEY.public_key, Domain.TX, CHAIN, b"anything", tx)
    assert pv.last_signed.hrs == (3, 1, STEP_PREVOTE)  # no HRS for other domains
    pv.sign(Domain.HANDSHAKE, CHAIN, b"transcript")
    with pytest.raises(DoubleSignRisk):
        Vote.create(pv, CHAIN, PREVOTE, 3, 0, BLOCK_A, 777)


@pytest.mark.parametrize("lower", [
    ("vote", PREVOTE, 9, 5),         # lower height
    ("vote", PRECOMMIT, 10, 1),      # same height, lower round
    ("vote", PREVOTE, 10, 2),        # same height and round, lower step (prevote after precommit)
    ("proposal", 0, 10, 2),          # a proposal after a vote of the same round
])
def test_refuses_anything_below_the_last_signed(pv: PrivValidator, lower: tuple[str, int, int, int]) -> None:
    pv.sign_vote(CHAIN, PRECOMMIT, 10, 2, vote(PRECOMMIT, 10, 2))
    kind, vtype, h, r = lower
    with pytest.raises(DoubleSignRisk):
        if kind == "vote":
            pv.sign_vote(CHAIN, vtype, h, r, vote(vtype, h, r))
        else:
            pv.sign_proposal(CHAIN, h, r, proposal(h, r))
    assert pv.last_signed.hrs == (10, 2, STEP_PRECOMMIT)


@pytest.mark.parametrize("other", [
    vote(PREVOTE, 4, 0, BLOCK_B),              # another block
    vote(PREVOTE, 4, 0, b""),                  # nil instead of the block
    vote(PREVOTE, 4, 0, BLOCK_B, ts=2000),     # another block and another time
], ids=["other-block", "nil", "other-block-and-time"])
def test_refuses_a_conflicting_vote_at_the_same_hrs(pv: PrivValidator, state: Path, other: bytes) -> None:
    pv.sign_vote(CHAIN, PREVOTE, 4, 0, vote(PREVOTE, 4, 0))
    before = state.read_bytes()
    with pytest.raises(DoubleSignRisk, match="double signing"):
        pv.sign_vote(CHAIN, PREVOTE, 4, 0, other)
    with pytest.raises(DoubleSignRisk):
        pv.sign(Domain.VOTE, CHAIN, other)
    assert state.read_bytes() == before


def test_refuses_the_same_vote_for_another_chain_at_the_same_hrs(pv: PrivValidator) -> None:
    pv.sign_vote(CHAIN, PREVOTE, 4, 0, vote(PREVOTE, 4, 0))
    with pytest.raises(DoubleSignRisk):
        pv.sign_vote("another-chain", PREVOTE, 4, 0, vote(PREVOTE, 4, 0))


def test_refuses_a_conflicting_proposal_even_if_only_its_time_differs(pv: PrivValidator) -> None:
    pv.sign_proposal(CHAIN, 8, 1, proposal(8, 1, ts=1000))
    for other in (proposal(8, 1, BLOCK_B), proposal(8, 1, ts=1001)):
        with pytest.raises(DoubleSignRisk):
            pv.sign_proposal(CHAIN, 8, 1, other)


def test_re_signing_the_identical_message_returns_the_saved_signature(state: Path) -> None:
    counting = CountingSigner()
    with PrivValidator(state, counting) as pv:
        v = vote(PRECOMMIT, 6, 0)
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 6, 0, v)
        before = state.read_bytes()
        assert pv.sign_vote(CHAIN, PRECOMMIT, 6, 0, v) == sig
        assert pv.sign(Domain.VOTE, CHAIN, v) == sig
        assert state.read_bytes() == before  # nothing new to save
        p = proposal(7, 0)
        psig = pv.sign_proposal(CHAIN, 7, 0, p)
        assert pv.sign_proposal(CHAIN, 7, 0, p) == psig == pv.sign(Domain.PROPOSAL, CHAIN, p)
        assert counting.calls == 2
    with PrivValidator(state, counting) as pv:  # and after a restart
        assert pv.sign_proposal(CHAIN, 7, 0, p) == psig
        assert counting.calls == 2


def test_a_vote_differing_only_in_its_timestamp_gets_the_saved_signature(pv: PrivValidator) -> None:
    first = vote(PREVOTE, 12, 3, ts=5000)
    sig = pv.sign_vote(CHAIN, PREVOTE, 12, 3, first)
    later = vote(PREVOTE, 12, 3, ts=9000)
    # sign_vote: the saved signature, which signs the saved payload (the caller sends that one)
    assert pv.sign_vote(CHAIN, PREVOTE, 12, 3, later) == sig
    assert pv.last_signed.payload == first
    assert verify(KEY.public_key, Domain.VOTE, CHAIN, first, sig)
    assert not verify(KEY.public_key, Domain.VOTE, CHAIN, later, sig)
    assert pv.sign_message(Domain.VOTE, CHAIN, later) == (sig, first)
    # sign (the Signer protocol) never returns a signature of another payload: it says what to send instead
    with pytest.raises(StaleTimestamp) as err:
        pv.sign(Domain.VOTE, CHAIN, later)
    assert err.value.saved_payload == first and err.value.saved_signature == sig
    assert isinstance(err.value, DoubleSignRisk)
    with pytest.raises(StaleTimestamp):
        Vote.create(pv, CHAIN, PREVOTE, 12, 3, BLOCK_A, 9000)
    assert Vote.create(pv, CHAIN, PREVOTE, 12, 3, BLOCK_A, 5000).signature == sig


# ------------------------------------------------------------------------------------------ bad requests


@pytest.mark.parametrize("call", [
    lambda pv: pv.sign_vote(CHAIN, PREVOTE, 5, 0, vote(PREVOTE, 6, 0)),        # arguments disagree: height
    lambda pv: pv.sign_vote(CHAIN, PREVOTE, 5, 0, vote(PRECOMMIT, 5, 0)),      # type
    lambda pv: pv.sign_vote(CHAIN, 7, 5, 0, vote(PREVOTE, 5, 0)),              # unknown type
    lambda pv: pv.sign_vote(CHAIN, PREVOTE, 0, 0, vote(PREVOTE, 0, 0)),        # height 0
    lambda pv: pv.sign_proposal(CHAIN, 5, 1, proposal(5, 0)),                  # round
    lambda pv: pv.sign(Domain.VOTE, CHAIN, b"\x93garbage"),                    # not msgpack
    lambda pv: pv.sign(Domain.VOTE, CHAIN, encode_value([1, 2, 3])),            # too few fields
    lambda pv: pv.sign(Domain.VOTE, CHAIN, vote(PREVOTE, 5, 0, block=b"x")),   # bad block hash
    lambda pv: pv.sign(Domain.VOTE, CHAIN, vote(PREVOTE, 5, 0, addr=account_id(OTHER.public_key))),
    lambda pv: pv.sign(Domain.PROPOSAL, CHAIN, encode_value([5])),
    lambda pv: pv.sign(Domain.PROPOSAL, CHAIN, encode_value([b"5", 0])),
    lambda pv: pv.sign(Domain.PROPOSAL, CHAIN, encode_value([5, 2**40])),
    lambda pv: pv.sign_vote("c" * 256, PREVOTE, 5, 0, vote(PREVOTE, 5, 0)),  # chain id too long
])
def test_malformed_requests_are_refused_and_sign_nothing(state: Path,
                                                         call: Callable[[PrivValidator], bytes]) -> None:
    counting = CountingSigner()
    with PrivValidator(state, counting) as pv:
        before = state.read_bytes()
        with pytest.raises(BadSignRequest):
            call(pv)
        assert isinstance(BadSignRequest("x"), ValueError)
        assert counting.calls == 0 and state.read_bytes() == before


# ------------------------------------------------------------------------------------------ persistence first


def failing(name: str) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise OSError(28, f"injected failure in {name}")
    return fail


def test_a_signature_costs_one_pwrite_and_one_fdatasync(pv: PrivValidator, state: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def counted(name: str) -> Callable[..., object]:
        real = getattr(os, name)

        def call(*args: object, **kwargs: object) -> object:
            calls.append(name)
            return real(*args, **kwargs)
        return call

    for name in ("pwrite", "write", "fdatasync", "fsync", "open", "replace", "rename", "unlink"):
        monkeypatch.setattr(os, name, counted(name))
    inode = state.stat().st_ino
    pv.sign_vote(CHAIN, PREVOTE, 2, 0, vote(PREVOTE, 2, 0))
    assert calls == ["pwrite", "fdatasync"]
    calls.clear()
    pv.sign_vote(CHAIN, PREVOTE, 2, 0, vote(PREVOTE, 2, 0))  # PV-3: nothing to save
    assert calls == []
    monkeypatch.undo()
    assert state.stat().st_ino == inode and state.stat().st_size == 2 * SLOT  # in place, same size


@pytest.mark.parametrize("step", ["pwrite", "fdatasync"])
def test_no_signature_leaves_when_the_state_cannot_be_saved(state: Path, monkeypatch: pytest.MonkeyPatch,
                                                            step: str) -> None:
    counting = CountingSigner()
    with PrivValidator(state, counting) as pv:
        old_sig = pv.sign_vote(CHAIN, PREVOTE, 2, 0, vote(PREVOTE, 2, 0))
        before = state.read_bytes()
        monkeypatch.setattr(os, step, failing(step))  # the module calls os.<step>
        with pytest.raises(StateWriteError, match="not released"):
            pv.sign_vote(CHAIN, PRECOMMIT, 2, 0, vote(PRECOMMIT, 2, 0))
        monkeypatch.undo()
        assert counting.calls == 2  # the key signed; the signature did not come out
        assert pv.last_signed.hrs == (2, 0, STEP_PREVOTE) and pv.last_signed.signature == old_sig
        # the current state (slot 1, sequence 2) is untouched; after a failed fdatasync the other slot may show
        # the unreleased state (a restart would then refuse anything else at that HRS: the safe side)
        assert state.read_bytes()[SLOT:] == before[SLOT:]
        if step == "pwrite":
            assert state.read_bytes() == before
        # the failure changed nothing in memory: the same request now succeeds, in the same slot
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 2, 0, vote(PRECOMMIT, 2, 0))
        assert saved(state)["signature"] == sig.hex()
        assert [s and s[0] for s in read_slots(state)] == [3, 2]
    with PrivValidator(state, KEY, create=False) as pv:
        assert pv.last_signed.hrs == (2, 0, STEP_PRECOMMIT)


@pytest.mark.parametrize("step", ["open", "pwrite", "fsync", "replace", "fsync_dir"])
def test_a_failed_creation_leaves_no_state_and_no_temporary(state: Path, monkeypatch: pytest.MonkeyPatch,
                                                            step: str) -> None:
    if step == "fsync_dir":
        monkeypatch.setattr(pvmod, "fsync_dir", failing(step))
    elif step == "open":  # of the temporary file (not of the lock)
        real_open = os.open
        monkeypatch.setattr(os, "open", lambda path, *a: failing(step)() if ".tmp-" in str(path)
                            else real_open(path, *a))
    else:
        monkeypatch.setattr(os, step, failing(step))
    with pytest.raises(StateWriteError, match="could not create"):
        PrivValidator(state, KEY)
    monkeypatch.undo()
    assert not [p for p in state.parent.iterdir() if ".tmp-" in p.name]
    assert state.exists() == (step == "fsync_dir")  # renamed already: then it is complete
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (0, 0, 0)
        pv.sign_vote(CHAIN, PREVOTE, 1, 0, vote(PREVOTE, 1, 0))


def test_the_state_is_written_before_the_signer_returns(state: Path) -> None:
    seen: list[dict[str, object]] = []

    class Spy(CountingSigner):
        def sign(self, domain: Domain, chain_id: str, payload: bytes) -> bytes:
            seen.append(saved(state))  # at signing time the old state is on disk...
            return super().sign(domain, chain_id, payload)

    with PrivValidator(state, Spy()) as pv:
        sig = pv.sign_vote(CHAIN, PREVOTE, 1, 0, vote(PREVOTE, 1, 0))
        assert seen[-1]["height"] == 0
        assert saved(state)["signature"] == sig.hex()  # ...and the new one when the call returns


def test_a_state_that_does_not_fit_in_a_slot_is_refused_before_signing(state: Path) -> None:
    counting = CountingSigner()
    with PrivValidator(state, counting) as pv:
        before = state.read_bytes()
        big = encode_value([5, 0, 0, b"x" * 2100, 1000, ADDR])  # only height and round of a proposal are read
        with pytest.raises(StateWriteError, match="more than a slot holds"):
            pv.sign_proposal(CHAIN, 5, 0, big)
        assert counting.calls == 0 and state.read_bytes() == before and pv.last_signed.hrs == (0, 0, 0)
        # the largest state of the consensus machine fits: maximal fields, a 255-byte chain id, all escaped
        chain = "\x01" * 255
        p = encode_value([2**64 - 1, 2**32 - 1, 2**32, b"\xff" * 32, 2**64 - 1, ADDR])
        sig = pv.sign_proposal(chain, 2**64 - 1, 2**32 - 1, p)
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.signature == sig and pv.last_signed.chain_id == chain


# ------------------------------------------------------------------------------------------ the two-slot file


def test_the_state_file_bytes_and_alternating_slots(state: Path) -> None:
    with PrivValidator(state, KEY) as pv:
        zero = {"height": 0, "round": 0, "step": 0, "chain_id": "", "payload": "", "sign_bytes_hash": "",
                "signature": ""}
        # created: the zero state in slot 0 with sequence 1, slot 1 never written (zeros)
        assert state.read_bytes() == slot_bytes(1, json.dumps(zero).encode()) + bytes(SLOT)
        expected = [(1, zero), None]
        for n in range(6):
            pv.sign_vote(CHAIN, PREVOTE, 10 + n, 0, vote(PREVOTE, 10 + n, 0))
            expected[(n + 1) % 2] = (n + 2, pv.last_signed.to_json())
            assert read_slots(state) == expected  # the new state in the other slot, sequence + 1
            assert state.read_bytes()[(n + 1) % 2 * SLOT:][:SLOT] == slot_bytes(
                n + 2, json.dumps(pv.last_signed.to_json()).encode())
        # readable without this module: one line of JSON per slot
        assert b'{"height": 15, "round": 0, "step": 2, "chain_id": "mydata-test"' in state.read_bytes()
    with PrivValidator(state, KEY) as pv:  # reopened: it continues in the other slot
        pv.sign_vote(CHAIN, PRECOMMIT, 15, 0, vote(PRECOMMIT, 15, 0))
        assert [s and s[0] for s in read_slots(state)] == [7, 8]


def test_the_slot_with_the_higher_sequence_number_is_the_state(state: Path) -> None:
    older, newer = edited(), edited_at(PRECOMMIT, 9, 1)
    for slots, hrs in [(((4, older), (5, newer)), (9, 1, STEP_PRECOMMIT)),
                       (((5, newer), (4, older)), (9, 1, STEP_PRECOMMIT)),
                       (((6, older), (5, newer)), (9, 1, STEP_PREVOTE)),  # the sequence decides, not the HRS
                       (((2**32, newer), (2**32 - 1, older)), (9, 1, STEP_PRECOMMIT))]:  # no 32-bit wrap
        state.write_bytes(state_file(*slots))
        with PrivValidator(state, KEY) as pv:
            assert pv.last_signed.hrs == hrs
        assert read_state(state).hrs == hrs


def test_the_sequence_number_is_a_u64_that_never_wraps(state: Path) -> None:
    state.write_bytes(state_file((2**64 - 2, edited()), None))
    counting = CountingSigner()
    with PrivValidator(state, counting) as pv:
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 9, 1, vote(PRECOMMIT, 9, 1))
        assert [s and s[0] for s in read_slots(state)] == [2**64 - 2, 2**64 - 1]
        before = state.read_bytes()
        with pytest.raises(StateWriteError, match="exhausted"):
            pv.sign_vote(CHAIN, PREVOTE, 10, 0, vote(PREVOTE, 10, 0))
        assert counting.calls == 1 and state.read_bytes() == before  # refused before the key was used
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (9, 1, STEP_PRECOMMIT) and pv.last_signed.signature == sig


def torn(new: bytes, old: bytes, sectors: set[int]) -> bytes:
    """A slot of which only these 512-byte sectors of the new write reached the disk."""
    return b"".join((new if i in sectors else old)[i * 512:(i + 1) * 512] for i in range(SLOT // 512))


@pytest.mark.parametrize("how", ["prefix-0", "prefix-19", "prefix-51", "prefix-200", "prefix-up-to-the-last-change",
                                 "sector-0-only", "sector-1-only", "bit-flip-in-content", "bit-flip-in-sequence"])
def test_a_torn_newest_slot_falls_back_to_the_previous_state_which_still_refuses(state: Path, how: str) -> None:
    with PrivValidator(state, KEY) as pv:
        pv.sign_vote(CHAIN, PREVOTE, 7, 0, vote(PREVOTE, 7, 0))            # slot 1, sequence 2
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 7, 0, vote(PRECOMMIT, 7, 0))   # slot 0, sequence 3
    raw = state.read_bytes()
    # the write of the next state (a prevote at height 8, sequence 4) into slot 1, interrupted
    nxt = vote_state_json(vote(PREVOTE, 8, 0), chain=CHAIN + "-" * 100)  # longer: over two sectors
    new, old = slot_bytes(4, nxt), raw[SLOT:]
    assert 512 < 52 + len(nxt) < 1024  # header and content span sectors 0 and 1
    if how == "prefix-up-to-the-last-change":  # all but the last byte that differs from the old slot
        n = max(i for i in range(52 + len(nxt)) if new[i] != old[i])
        slot = new[:n] + old[n:]
    elif how.startswith("prefix-"):
        n = int(how.split("-")[1])
        slot = new[:n] + old[n:]
    elif how.startswith("sector-"):
        slot = torn(new, old, {int(how.split("-")[1])})
    else:
        at = 52 + 10 if how == "bit-flip-in-content" else 15
        slot = new[:at] + bytes([new[at] ^ 1]) + new[at + 1:]
    state.write_bytes(raw[:SLOT] + slot)
    with PrivValidator(state, KEY, create=False) as pv:
        assert pv.last_signed.hrs == (7, 0, STEP_PRECOMMIT) and pv.last_signed.signature == sig
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PREVOTE, 7, 0, vote(PREVOTE, 7, 0, BLOCK_B))
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PRECOMMIT, 7, 0, vote(PRECOMMIT, 7, 0, b""))
        assert pv.sign_vote(CHAIN, PRECOMMIT, 7, 0, vote(PRECOMMIT, 7, 0)) == sig
        pv.sign_vote(CHAIN, PREVOTE, 8, 0, vote(PREVOTE, 8, 0, BLOCK_B))  # the torn one was never released
        assert [s and s[0] for s in read_slots(state)] == [3, 4]  # into the torn slot


def test_a_complete_write_whose_fdatasync_did_not_return_is_the_state_after_a_restart(state: Path) -> None:
    """The whole slot reached the disk but the signature never left: the new state is used (the safe side)."""
    with PrivValidator(state, KEY) as pv:
        pv.sign_vote(CHAIN, PREVOTE, 7, 0, vote(PREVOTE, 7, 0))
    raw = state.read_bytes()
    nxt = vote(PRECOMMIT, 7, 0)
    state.write_bytes(slot_bytes(3, vote_state_json(nxt, PRECOMMIT)) + raw[SLOT:])
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (7, 0, STEP_PRECOMMIT)
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PRECOMMIT, 7, 0, vote(PRECOMMIT, 7, 0, b""))


def test_a_torn_write_in_process_falls_back_on_reopening(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the module: os.pwrite writes part of the slot and the process 'dies' (the validator is dropped)."""
    with PrivValidator(state, KEY) as pv:
        sig = pv.sign_vote(CHAIN, PREVOTE, 3, 0, vote(PREVOTE, 3, 0))
        real = os.pwrite

        def half(fd: int, data: bytes, offset: int) -> int:
            real(fd, bytes(data)[:100], offset)
            raise OSError(5, "power lost")

        monkeypatch.setattr(os, "pwrite", half)
        with pytest.raises(StateWriteError):
            pv.sign_vote(CHAIN, PRECOMMIT, 3, 0, vote(PRECOMMIT, 3, 0))
        monkeypatch.undo()
    assert read_slots(state)[0] is None  # the slot being written is torn
    with PrivValidator(state, KEY, create=False) as pv:
        assert pv.last_signed.hrs == (3, 0, STEP_PREVOTE) and pv.last_signed.signature == sig
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PREVOTE, 3, 0, vote(PREVOTE, 3, 0, b""))


# ------------------------------------------------------------------------------------------ reopen, corruption, lock


def test_the_state_survives_reopening(state: Path) -> None:
    with PrivValidator(state, KEY) as pv:
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 20, 4, vote(PRECOMMIT, 20, 4))
    with PrivValidator(state, KEY, create=False) as pv:
        assert pv.last_signed.hrs == (20, 4, STEP_PRECOMMIT) and pv.last_signed.signature == sig
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PREVOTE, 20, 4, vote(PREVOTE, 20, 4))
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PRECOMMIT, 20, 4, vote(PRECOMMIT, 20, 4, b""))
        assert pv.sign_vote(CHAIN, PRECOMMIT, 20, 4, vote(PRECOMMIT, 20, 4)) == sig
        pv.sign_proposal(CHAIN, 21, 0, proposal(21, 0))
    with PrivValidator(state, KEY, create=False) as pv:
        assert pv.last_signed.hrs == (21, 0, STEP_PROPOSAL)


def test_a_missing_state_is_created_only_when_asked(state: Path) -> None:
    with pytest.raises(PrivValStateError, match="no last-sign state"):
        PrivValidator(state, KEY, create=False)
    assert not state.exists()
    with PrivValidator(state, KEY):
        pass
    assert saved(state) == {"height": 0, "round": 0, "step": 0, "chain_id": "", "payload": "",
                            "sign_bytes_hash": "", "signature": ""}


def good_state() -> dict[str, object]:
    v = vote(PREVOTE, 9, 1)
    return {"height": 9, "round": 1, "step": 2, "chain_id": CHAIN, "payload": v.hex(),
            "sign_bytes_hash": hashlib.sha256(signing_bytes(Domain.VOTE, CHAIN, v)).hexdigest(),
            "signature": KEY.sign(Domain.VOTE, CHAIN, v).hex()}


def edited(**changes: object) -> bytes:
    obj = good_state()
    obj.update(changes)
    return json.dumps({k: v for k, v in obj.items() if v is not None}).encode()


def vote_state_json(v: bytes, vtype: int = PREVOTE, chain: str = CHAIN) -> bytes:
    """The content of a slot holding the vote ``v`` (its type ``vtype``), signed by KEY."""
    fields = decode_value(v)
    assert isinstance(fields, tuple)
    return json.dumps({"height": fields[1], "round": fields[2], "step": 2 if vtype == PREVOTE else 3,
                       "chain_id": chain, "payload": v.hex(),
                       "sign_bytes_hash": hashlib.sha256(signing_bytes(Domain.VOTE, chain, v)).hexdigest(),
                       "signature": KEY.sign(Domain.VOTE, chain, v).hex()}).encode()


def edited_at(vtype: int, height: int, round: int) -> bytes:
    return vote_state_json(vote(vtype, height, round), vtype)


CORRUPT = {
    "empty content": b"",
    "truncated JSON": edited()[:40],
    "not JSON": b"\x00\xff garbage",
    "a list": b"[9, 1, 2]",
    "missing field": edited(signature=None),
    "extra field": edited(extra=1),
    "height as a string": edited(height="9"),
    "height as a boolean": edited(round=True),
    "negative round": edited(round=-1),
    "unknown step": edited(step=4),
    "step 0 at a height": edited(step=0),
    "uppercase hex": edited(signature=str(good_state()["signature"]).upper()),
    "bad hex": edited(payload="zz"),
    "hash mismatch": edited(sign_bytes_hash="00" * 32),
    "another key's signature": edited(signature=OTHER.sign(Domain.VOTE, CHAIN, vote(PREVOTE, 9, 1)).hex()),
    "payload of another height": edited(height=10),
    "height 0 with a signature": edited(height=0, round=0, step=0),
}


@pytest.mark.parametrize("name", list(CORRUPT))
def test_a_corrupt_state_is_a_clear_error_not_a_reset(state: Path, name: str) -> None:
    """A slot whose checksum is valid was written whole: bad content in it is corruption, never a torn write,
    so there is no falling back to the other slot (which holds an older, valid state here)."""
    state.write_bytes(state_file((1, edited_at(PREVOTE, 8, 0)), (2, edited())))
    with PrivValidator(state, KEY) as pv:  # the unedited file is fine
        assert pv.last_signed.hrs == (9, 1, STEP_PREVOTE)
    bad = state_file((1, edited_at(PREVOTE, 8, 0)), (2, CORRUPT[name]))
    state.write_bytes(bad)
    with pytest.raises(PrivValStateError, match="corrupt") as err:
        PrivValidator(state, KEY)
    assert str(state) in str(err.value)
    if name != "another key's signature":  # read_state has no key to check the signature with
        with pytest.raises(PrivValStateError, match="corrupt"):
            read_state(state)
    assert state.read_bytes() == bad  # untouched: nothing was reset


FILE_CORRUPT = {
    "empty file": b"",
    "short file": state_file((1, edited()), None)[:SLOT + 100],
    "long file": state_file((1, edited()), None) + b"\0",
    "both slots never written": state_file(None, None),
    "both slots torn": (slot_bytes(1, edited())[:60] + bytes(SLOT - 60)) * 2,
    "both checksums wrong": (lambda s: s[:30] + b"\0" + s[31:])(slot_bytes(1, edited())) * 2,
    "bad magic and a never-written slot": slot_bytes(1, edited(), magic=b"PVSTATE2") + bytes(SLOT),
    "bad length": (lambda s: s[:16] + b"\xff\xff\xff\xff" + s[20:])(slot_bytes(1, edited())) + bytes(SLOT),
    "the same sequence twice": state_file((3, edited()), (3, edited())),
}


@pytest.mark.parametrize("name", list(FILE_CORRUPT))
def test_a_state_file_without_a_usable_slot_is_a_clear_error_not_a_reset(state: Path, name: str) -> None:
    state.write_bytes(FILE_CORRUPT[name])
    with pytest.raises(PrivValStateError, match="corrupt") as err:
        PrivValidator(state, KEY)
    assert str(state) in str(err.value)
    assert state.read_bytes() == FILE_CORRUPT[name]


def test_a_crash_during_creation_leaves_a_temporary_that_is_cleaned(state: Path) -> None:
    with PrivValidator(state, KEY) as pv:
        pv.sign_vote(CHAIN, PREVOTE, 2, 0, vote(PREVOTE, 2, 0))
    tmp = state.with_name(state.name + ".tmp-99999")
    tmp.write_bytes(b"PVSTATE1\0\0")  # a torn temporary: never renamed
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (2, 0, STEP_PREVOTE)
    assert not tmp.exists()


# ------------------------------------------------------------------------------------------ the previous version


def legacy_of(state: Path) -> Path:
    return state.with_name(state.name + ".json")


@pytest.mark.parametrize("create", [True, False])
def test_the_previous_versions_json_state_is_converted_once(state: Path, create: bool) -> None:
    legacy = legacy_of(state)
    assert legacy.name == "priv_validator_state.json"
    legacy.write_text(json.dumps(good_state(), indent=2) + "\n")  # as the previous version wrote it
    stale_tmp = legacy.with_name(legacy.name + ".tmp-4242")
    stale_tmp.write_text("{")
    with PrivValidator(state, KEY, create=create) as pv:
        assert pv.last_signed.hrs == (9, 1, STEP_PREVOTE)
        assert pv.last_signed.signature.hex() == good_state()["signature"]
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PREVOTE, 9, 0, vote(PREVOTE, 9, 0))
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PREVOTE, 9, 1, vote(PREVOTE, 9, 1, BLOCK_B))
    assert read_slots(state) == [(1, good_state()), None]
    assert not legacy.exists() and not stale_tmp.exists()
    retired = legacy.with_name("priv_validator_state.json.migrated")
    assert json.loads(retired.read_text()) == good_state()
    with PrivValidator(state, KEY, create=False) as pv:  # from now on the new file
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 9, 1, vote(PRECOMMIT, 9, 1))
    retired.unlink()
    with PrivValidator(state, KEY, create=False) as pv:
        assert pv.last_signed.signature == sig


def test_a_corrupt_previous_state_is_not_converted(state: Path) -> None:
    legacy = legacy_of(state)
    legacy.write_bytes(edited(height=10))
    with pytest.raises(PrivValStateError, match="corrupt") as err:
        PrivValidator(state, KEY)
    assert str(legacy) in str(err.value)
    assert not state.exists() and legacy.read_bytes() == edited(height=10)


def test_a_previous_state_beside_the_new_file_is_retired_not_used(state: Path) -> None:
    with PrivValidator(state, KEY) as pv:
        pv.sign_vote(CHAIN, PREVOTE, 20, 0, vote(PREVOTE, 20, 0))
    legacy_of(state).write_bytes(edited())  # a crash before the rename, or a restored old file: older
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (20, 0, STEP_PREVOTE)
    assert not legacy_of(state).exists()
    assert legacy_of(state).with_name("priv_validator_state.json.migrated").read_bytes() == edited()


def test_the_previous_versions_lock_keeps_its_process_out_of_the_conversion(state: Path) -> None:
    legacy_of(state).write_bytes(edited())
    fd = os.open(state.with_name("priv_validator_state.json.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a running validator of the previous version
        with pytest.raises(PrivValLocked, match="previous version"):
            PrivValidator(state, KEY)
        assert not state.exists() and legacy_of(state).exists()
    finally:
        os.close(fd)
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (9, 1, STEP_PREVOTE)


def test_opening_the_previous_file_by_its_old_name_says_what_to_do(tmp_path: Path) -> None:
    old = tmp_path / "priv_validator_state.json"
    old.write_bytes(edited())
    with pytest.raises(PrivValStateError, match=r"previous version.*priv_validator_state instead"):
        PrivValidator(old, KEY)
    assert old.read_bytes() == edited()


def test_one_holder_of_the_state_at_a_time(state: Path) -> None:
    pv = PrivValidator(state, KEY)
    with pytest.raises(PrivValLocked):
        PrivValidator(state, KEY)
    probe = ("import sys, hashlib\nfrom consensus.crypto import Ed25519Signer\n"
             "from node.privval import PrivValidator, PrivValLocked\n"
             "try:\n    PrivValidator(sys.argv[1], Ed25519Signer(hashlib.sha256(b'validator-0').digest()))\n"
             "except PrivValLocked:\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(state)], cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 3
    pv.close()
    with pytest.raises(Exception, match="closed"):
        pv.sign_vote(CHAIN, PREVOTE, 1, 0, vote(PREVOTE, 1, 0))
    with PrivValidator(state, KEY):
        pass


# ------------------------------------------------------------------------------------------ model check

REQUEST = st.tuples(st.sampled_from(["proposal", "prevote", "precommit", "reopen"]), st.integers(1, 4),
                    st.integers(0, 2), st.sampled_from([BLOCK_A, BLOCK_B, b""]), st.integers(0, 2))


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(requests=st.lists(REQUEST, max_size=40))
def test_random_requests_never_yield_two_signatures_for_one_hrs(tmp_path_factory: pytest.TempPathFactory,
                                                                requests: list[tuple[str, int, int, bytes, int]]
                                                                ) -> None:
    state = tmp_path_factory.mktemp("pv") / "priv_validator_state"
    pv = PrivValidator(state, KEY)
    released: dict[tuple[int, int, int], bytes] = {}  # HRS -> the one signed message released for it
    last = (0, 0, 0)
    try:
        for kind, h, r, block, ts in requests:
            if kind == "reopen":
                pv.close()
                pv = PrivValidator(state, KEY, create=False)
                continue
            if kind == "proposal":
                payload, domain, hrs = proposal(h, r, block or BLOCK_A, ts), Domain.PROPOSAL, (h, r, STEP_PROPOSAL)
            else:
                vtype = PREVOTE if kind == "prevote" else PRECOMMIT
                payload, domain = vote(vtype, h, r, block, ts), Domain.VOTE
                hrs = (h, r, STEP_PREVOTE if vtype == PREVOTE else STEP_PRECOMMIT)
            try:
                sig, signed_payload = pv.sign_message(domain, CHAIN, payload)
            except DoubleSignRisk:
                assert hrs < last or (hrs == last and released[hrs] != payload)
                continue
            assert verify(KEY.public_key, domain, CHAIN, signed_payload, sig)
            assert hrs >= last
            assert released.setdefault(hrs, signed_payload) == signed_payload
            if signed_payload != payload:  # only a vote's timestamp may differ
                a, b = decode_value(signed_payload), decode_value(payload)
                assert domain is Domain.VOTE and isinstance(a, tuple) and isinstance(b, tuple)
                assert a[:4] + a[5:] == b[:4] + b[5:] and a[4] != b[4]
            last = hrs
            assert pv.last_signed.hrs == last
    finally:
        pv.close()


FAULTS = ["fail-pwrite", "fail-fdatasync", "torn-pwrite"]


@pytest.mark.parametrize("seed", range(25))
def test_random_requests_with_write_faults_and_crashes_never_yield_two_signatures_for_one_hrs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """A seeded walk: requests, reopenings, and writes that fail or tear (the process then 'dies' and a new one
    opens the file). Never two signed messages released for one HRS, never a state behind a released one. The
    seed is in the test id and in every assertion message."""
    rng = random.Random(seed)
    state = tmp_path / "priv_validator_state"
    pv = PrivValidator(state, KEY)
    released: dict[tuple[int, int, int], bytes] = {}
    last = (0, 0, 0)  # the highest HRS released
    real_pwrite = os.pwrite
    try:
        for step in range(200):
            why = f"seed {seed}, step {step}"
            action = rng.choice(["proposal", "prevote", "precommit"] * 4 + ["reopen"] + FAULTS)
            if action == "reopen":
                pv.close()
                pv = PrivValidator(state, KEY, create=False)
                assert pv.last_signed.hrs >= last, why
                continue
            fault = action if action in FAULTS else None
            kind = rng.choice(["proposal", "prevote", "precommit"]) if fault else action
            # around the current height, so that most requests need a write (and some are refused)
            h = max(1, pv.last_signed.height + rng.randint(-1, 1))
            r, block, ts = rng.randint(0, 2), rng.choice([BLOCK_A, BLOCK_B, b""]), rng.randint(0, 2)
            if kind == "proposal":
                payload, domain, hrs = proposal(h, r, block or BLOCK_A, ts), Domain.PROPOSAL, (h, r, STEP_PROPOSAL)
            else:
                vtype = PREVOTE if kind == "prevote" else PRECOMMIT
                payload, domain = vote(vtype, h, r, block, ts), Domain.VOTE
                hrs = (h, r, STEP_PREVOTE if vtype == PREVOTE else STEP_PRECOMMIT)
            triggered: list[str] = []
            cut = rng.randint(0, 700)  # a state is about 520 bytes after the 52-byte header

            def torn_pwrite(fd: int, data: bytes, offset: int, _cut: int = cut, _t: list[str] = triggered) -> int:
                _t.append("pwrite")
                real_pwrite(fd, bytes(data)[:_cut], offset)
                raise OSError(5, "power lost")

            def fail(*a: object, _t: list[str] = triggered) -> object:
                _t.append("fail")
                raise OSError(5, "injected")

            with monkeypatch.context() as m:
                if fault == "fail-pwrite":
                    m.setattr(os, "pwrite", fail)
                elif fault == "fail-fdatasync":
                    m.setattr(os, "fdatasync", fail)
                elif fault == "torn-pwrite":
                    m.setattr(os, "pwrite", torn_pwrite)
                before = pv.last_signed
                try:
                    sig, signed_payload = pv.sign_message(domain, CHAIN, payload)
                except DoubleSignRisk:
                    assert hrs <= pv.last_signed.hrs, why
                    continue
                except StateWriteError:
                    assert triggered, why
                    assert pv.last_signed == before, why
                    if fault == "torn-pwrite" or rng.random() < 0.5:  # the process dies; a new one starts
                        pv.close()
                        m.undo()
                        pv = PrivValidator(state, KEY, create=False)
                        assert pv.last_signed.hrs >= last, why  # never behind a released signature
                    continue
            assert not triggered, why  # a write that failed never ends in a released signature
            assert verify(KEY.public_key, domain, CHAIN, signed_payload, sig), why
            assert hrs >= last, why
            assert released.setdefault(hrs, signed_payload) == signed_payload, f"{why}: two messages at {hrs}"
            last = hrs
            assert pv.last_signed.hrs == last, why
    finally:
        pv.close()
