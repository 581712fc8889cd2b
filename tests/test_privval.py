"""The validator's double-sign guard (node/privval.py, PV-1..PV-6): refusals below the last height/round/step
and of a conflicting message at the same one, idempotent re-signing, the timestamp rule, the state written
before a signature leaves (a failing write releases none), reopening, corrupt state files, the lock, and a
random walk against a model of what may ever be signed."""

from __future__ import annotations

import hashlib
import json
import os
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
    return tmp_path / "priv_validator_state.json"


@pytest.fixture
def pv(state: Path) -> Iterator[PrivValidator]:
    p = PrivValidator(state, KEY)
    yield p
    p.close()


def saved(state: Path) -> dict[str, object]:
    return dict(json.loads(state.read_text()))


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
        mtime = state.stat().st_mtime_ns
        assert pv.sign_vote(CHAIN, PRECOMMIT, 6, 0, v) == sig
        assert pv.sign(Domain.VOTE, CHAIN, v) == sig
        p = proposal(7, 0)
        psig = pv.sign_proposal(CHAIN, 7, 0, p)
        assert pv.sign_proposal(CHAIN, 7, 0, p) == psig == pv.sign(Domain.PROPOSAL, CHAIN, p)
        assert counting.calls == 2 and state.stat().st_mtime_ns >= mtime
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


@pytest.mark.parametrize("step", ["open", "write", "fsync", "replace"])
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
        assert counting.calls in (1, 2)  # the key may have signed; the signature did not come out
        assert pv.last_signed.hrs == (2, 0, STEP_PREVOTE) and pv.last_signed.signature == old_sig
        assert state.read_bytes() == before
        assert not [p for p in state.parent.iterdir() if ".tmp-" in p.name]
        # the failure changed nothing: the same request now succeeds
        sig = pv.sign_vote(CHAIN, PRECOMMIT, 2, 0, vote(PRECOMMIT, 2, 0))
        assert saved(state)["signature"] == sig.hex()


def test_a_failed_directory_fsync_after_the_rename_still_releases_nothing(state: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with PrivValidator(state, KEY) as pv:
        monkeypatch.setattr(pvmod, "_fsync_dir", failing("fsync_dir"))
        with pytest.raises(StateWriteError):
            pv.sign_vote(CHAIN, PREVOTE, 3, 0, vote(PREVOTE, 3, 0))
        monkeypatch.undo()
        assert pv.last_signed.hrs == (0, 0, 0)
    # the new state may be on disk: then a restart refuses anything else at that HRS (safe side)
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (3, 0, STEP_PREVOTE)
        with pytest.raises(DoubleSignRisk):
            pv.sign_vote(CHAIN, PREVOTE, 3, 0, vote(PREVOTE, 3, 0, BLOCK_B))


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


CORRUPT = {
    "empty file": b"",
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
def test_a_corrupt_state_file_is_a_clear_error_not_a_reset(state: Path, name: str) -> None:
    state.write_bytes(edited())
    with PrivValidator(state, KEY) as pv:  # the unedited file is fine
        assert pv.last_signed.hrs == (9, 1, STEP_PREVOTE)
    state.write_bytes(CORRUPT[name])
    with pytest.raises(PrivValStateError, match="corrupt") as err:
        PrivValidator(state, KEY)
    assert str(state) in str(err.value)
    assert state.read_bytes() == CORRUPT[name]  # untouched: nothing was reset


def test_a_crash_mid_write_leaves_the_old_state_and_a_temporary_that_is_cleaned(state: Path) -> None:
    with PrivValidator(state, KEY) as pv:
        pv.sign_vote(CHAIN, PREVOTE, 2, 0, vote(PREVOTE, 2, 0))
    tmp = state.with_name(state.name + ".tmp-99999")
    tmp.write_bytes(b'{"height": 3, "rou')  # a torn temporary: never renamed
    with PrivValidator(state, KEY) as pv:
        assert pv.last_signed.hrs == (2, 0, STEP_PREVOTE)
    assert not tmp.exists()


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
    state = tmp_path_factory.mktemp("pv") / "priv_validator_state.json"
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
