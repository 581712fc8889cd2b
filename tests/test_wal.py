"""The consensus write-ahead log (node/wal.py, WAL-1..WAL-7): byte format, replay after end-of-height markers,
torn and corrupted tails (repaired, kept aside) against corruption in the middle (refused unless forced),
bounded frame lengths, rotation and truncation, the lock, failed writes, and real kill -9 crashes of a writer
process (its own child, by pid) with a restart after each."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import node.wal as walmod
from node.wal import (
    HEADER_BYTES,
    KIND_END_HEIGHT,
    WAL,
    NullWAL,
    WALCorruption,
    WALError,
    WALLocked,
    WALRecordTooLarge,
    encode_frame,
)

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = settings(max_examples=60, derandomize=True, deadline=None, database=None)


def payloads(n: int, size: int = 20, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    return [f"rec-{i}-".encode() + rng.randbytes(rng.randrange(size)) for i in range(n)]


def write_log(d: Path, records: list[bytes], **kw: int) -> list[int]:
    """Write `records` into a fresh WAL at `d`; return each frame's start offset in the (single) segment."""
    offsets = []
    with WAL(d, **kw) as w:
        for r in records:
            offsets.append(os.path.getsize(w.head))
            w.append(r)
    return offsets


def head_of(d: Path) -> Path:
    return sorted(p for p in d.iterdir() if p.name.endswith(".wal"))[-1]


def end_marker(height: int) -> bytes:
    return encode_frame(bytes((KIND_END_HEIGHT,)) + height.to_bytes(8, "big"))


# ------------------------------------------------------------------------------------------ format and replay


def test_byte_format_of_a_frame(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"abc")
        w.write_end_height(7)
    raw = (tmp_path / "00000001.wal").read_bytes()
    body = b"\x00\x00\x00\x04" + b"\x01abc"
    assert raw[:12] == zlib.crc32(body).to_bytes(4, "big") + body
    assert raw[:12].hex() == "e27b861c00000004" + "01616263"  # golden: CRC-32 (zlib) over length || record
    assert raw[12:] == end_marker(7)
    assert raw[12:].hex() == "43f3d06d" + "00000009" + "02" + "0000000000000007"


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    records = [b"", b"\x00", b"x" * 5000, *payloads(50)]
    with WAL(tmp_path) as w:
        for r in records:
            w.append(r)
        assert w.replay_from_last_end_height() == (0, records)  # readable while open
    with WAL(tmp_path) as w:
        assert w.replay_from_last_end_height() == (0, records)
        w.append(b"more", sync=True)
    with WAL(tmp_path) as w:
        assert w.replay_from_last_end_height() == (0, [*records, b"more"])
        w.check()


def test_replay_starts_after_the_last_end_height(tmp_path: Path) -> None:
    with WAL(tmp_path) as w:
        w.append(b"h1-a")
        w.write_end_height(1)
        w.append(b"h2-a")
        w.append(b"h2-b")
        w.write_end_height(2)
        assert w.replay_from_last_end_height() == (2, [])
        w.append(b"h3-a")
        w.append(b"h3-b")
    with WAL(tmp_path) as w:
        assert w.replay_from_last_end_height() == (2, [b"h3-a", b"h3-b"])
        with pytest.raises(ValueError, match="after end of height 2"):
            w.write_end_height(1)
        w.write_end_height(2)  # again (idempotent after a restart): allowed
        assert w.replay_from_last_end_height() == (2, [])
        with pytest.raises(ValueError):
            w.write_end_height(-1)


def test_an_unsynced_end_marker_costs_no_fsync_and_the_next_synced_record_makes_it_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    with WAL(tmp_path) as w:
        w.append(b"h1-own", sync=True)
        synced = len(calls)
        assert synced >= 1
        w.write_end_height(1, sync=False)
        w.append(b"h2-peer")
        assert len(calls) == synced  # the marker and a peer's message wait in the page cache
        w.append(b"h2-own", sync=True)
        assert len(calls) > synced
    with WAL(tmp_path) as w:
        assert w.replay_from_last_end_height() == (1, [b"h2-peer", b"h2-own"])


def test_a_record_that_looks_like_a_marker_is_only_data(tmp_path: Path) -> None:
    tricky = end_marker(99)  # a payload holding the bytes of a frame is still one opaque record
    with WAL(tmp_path) as w:
        w.write_end_height(3)
        w.append(tricky)
        w.append(b"\x02" + (100).to_bytes(8, "big"))
    with WAL(tmp_path) as w:
        assert w.replay_from_last_end_height() == (3, [tricky, b"\x02" + (100).to_bytes(8, "big")])


def test_null_wal_keeps_nothing() -> None:
    w = NullWAL()
    w.append(b"x", sync=True)
    w.write_end_height(5)
    w.sync()
    w.rotate()
    w.check()
    assert w.replay_from_last_end_height() == (0, []) == w.recover()
    assert w.repair() is None and w.truncate_before(9) == 0
    w.close()


# ------------------------------------------------------------------------------------------ torn tails


def check_torn_at(tmp: Path, base: Path, records: list[bytes], last_start: int, cut: int, pad: bytes) -> None:
    """Copy the log in `base`, tear it at `cut` (inside the last frame), append `pad`, then recover."""
    d = tmp / f"cut-{cut}-{len(pad)}"
    shutil.copytree(base, d)
    seg = head_of(d)
    original = seg.read_bytes()
    with open(seg, "r+b") as f:
        f.truncate(cut)
        f.seek(cut)
        f.write(pad)
    with WAL(d) as w:
        with pytest.raises(WALCorruption) as err:
            w.replay_from_last_end_height()
        assert err.value.at_tail and err.value.offset == last_start and err.value.path == seg
        with pytest.raises(WALCorruption):
            w.append(b"refused until repaired")
        report = w.repair()
        assert report is not None and report.at_tail and report.offset == last_start
        assert report.cut_bytes == cut - last_start + len(pad)
        assert report.backup is not None and report.backup.read_bytes() == original[last_start:cut] + pad
        assert w.replay_from_last_end_height() == (0, records[:-1])
        w.append(b"after repair")
    with WAL(d) as w:  # the next restart is clean: no crash loop
        w.check()
        assert w.replay_from_last_end_height() == (0, [*records[:-1], b"after repair"])
    shutil.rmtree(d)


def test_a_torn_last_frame_is_detected_and_repaired_at_every_byte_offset(tmp_path: Path) -> None:
    records = [*payloads(6, seed=1), b"the last record, torn somewhere" * 2]
    base = tmp_path / "base"
    offsets = write_log(base, records)
    last_start, size = offsets[-1], os.path.getsize(head_of(base))
    for cut in range(last_start + 1, size):
        check_torn_at(tmp_path, base, records, last_start, cut, b"")
        # a delayed-allocation crash: the file grew, its new blocks read as zeros
        check_torn_at(tmp_path, base, records, last_start, cut, b"\x00" * (size - cut + 512))


def test_a_tail_cut_exactly_at_a_frame_boundary_is_clean(tmp_path: Path) -> None:
    records = payloads(5, seed=2)
    offsets = write_log(tmp_path, records)
    with open(head_of(tmp_path), "r+b") as f:
        f.truncate(offsets[-1])
    with WAL(tmp_path) as w:
        w.check()
        assert w.repair() is None
        assert w.recover() == (0, records[:-1])


@SETTINGS
@given(records=st.lists(st.binary(max_size=64), min_size=1, max_size=12), data=st.data())
def test_recovery_after_any_cut_and_garbage_keeps_the_whole_frames(tmp_path_factory: pytest.TempPathFactory,
                                                                  records: list[bytes],
                                                                  data: st.DataObject) -> None:
    d = tmp_path_factory.mktemp("wal")
    offsets = write_log(d, records)
    seg = head_of(d)
    size = seg.stat().st_size
    cut = data.draw(st.integers(0, size), label="cut")
    garbage = data.draw(st.binary(max_size=40), label="garbage")
    with open(seg, "r+b") as f:
        f.truncate(cut)
        f.seek(cut)
        f.write(garbage)
    whole = sum(1 for start, r in zip(offsets, records, strict=True) if start + HEADER_BYTES + 1 + len(r) <= cut)
    with WAL(d) as w:
        height, got = w.recover()
        assert height == 0 and got == records[:whole]
    with WAL(d) as w:  # recovering twice changes nothing
        w.check()
        assert w.recover() == (0, records[:whole])


# ------------------------------------------------------------------------------------------ corruption: tail vs middle


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes((b[0] ^ 0x40,)))


@pytest.mark.parametrize("where", ["crc", "length", "payload"])
def test_crc_corruption_in_the_last_frame_is_a_tail(tmp_path: Path, where: str) -> None:
    records = payloads(5, seed=3)
    offsets = write_log(tmp_path, records)
    seg = head_of(tmp_path)
    flip(seg, offsets[-1] + {"crc": 1, "length": 7, "payload": HEADER_BYTES + 3}[where])
    with WAL(tmp_path) as w:
        with pytest.raises(WALCorruption) as err:
            w.check()
        assert err.value.at_tail and err.value.offset == offsets[-1] and str(seg) in str(err.value)
        assert w.recover() == (0, records[:-1])
        assert len(list(tmp_path.glob("*.corrupt-*"))) == 1


@pytest.mark.parametrize("where", ["crc", "payload", "length_up", "kind"])
def test_corruption_in_the_middle_is_reported_not_repaired(tmp_path: Path, where: str) -> None:
    records = payloads(6, seed=4)
    offsets = write_log(tmp_path, records)
    seg = head_of(tmp_path)
    original = seg.read_bytes()
    bad = offsets[2]
    if where == "length_up":  # a length that now runs past the end of the file: good frames still follow
        with open(seg, "r+b") as f:
            f.seek(bad + 4)
            f.write((len(original) * 2).to_bytes(4, "big"))
    else:
        flip(seg, bad + {"crc": 0, "payload": HEADER_BYTES + 2, "kind": HEADER_BYTES}[where])
    damaged = seg.read_bytes()
    with WAL(tmp_path) as w:
        for call in (w.replay_from_last_end_height, w.check, w.recover, w.repair, lambda: w.append(b"x")):
            with pytest.raises(WALCorruption) as err:
                call()
            assert not err.value.at_tail and err.value.offset == bad and err.value.path == seg
            assert "middle" in str(err.value)
        assert seg.read_bytes() == damaged  # nothing was touched
        assert not list(tmp_path.glob("*.corrupt-*"))
        report = w.repair(force=True)
        assert report is not None and not report.at_tail and report.offset == bad
        assert report.backup is not None and report.backup.read_bytes() == damaged[bad:]
        assert w.replay_from_last_end_height() == (0, records[:2])
        w.append(b"new")
    with WAL(tmp_path) as w:
        assert w.recover() == (0, [*records[:2], b"new"])


def test_corruption_in_an_older_segment_is_in_the_middle(tmp_path: Path) -> None:
    records = payloads(30, seed=5)
    with WAL(tmp_path, max_file_bytes=200) as w:
        for r in records:
            w.append(r)
        segs = w.segments()
    assert len(segs) >= 3
    flip(segs[0], 10)
    with WAL(tmp_path, max_file_bytes=200) as w:
        with pytest.raises(WALCorruption) as err:
            w.recover()
        assert not err.value.at_tail and err.value.path == segs[0]
        w.append(b"the head itself is fine")  # appends go on: only reads of the old segment fail
        now = w.segments()
        report = w.repair(force=True)
        assert report is not None and report.offset == 0 and len(report.moved) == len(now) - 1
        assert sorted(p.name.split(".corrupt-")[0] for p in report.moved) == [s.name for s in now[1:]]
        assert w.segments() == [segs[0]]
        height, got = w.recover()
        assert height == 0 and got == records[:len(got)] and len(got) < len(records)


def test_a_missing_segment_is_corruption_in_the_middle(tmp_path: Path) -> None:
    with WAL(tmp_path, max_file_bytes=120) as w:
        for r in payloads(20, seed=6):
            w.append(r)
        segs = w.segments()
    assert len(segs) >= 4
    segs[1].unlink()
    with WAL(tmp_path, max_file_bytes=120) as w:
        with pytest.raises(WALCorruption, match="missing") as err:
            w.replay_from_last_end_height()
        assert not err.value.at_tail and err.value.missing
        with pytest.raises(WALCorruption):
            w.recover()
        report = w.repair(force=True)
        assert report is not None and report.backup is None and len(report.moved) == len(segs) - 2
        assert w.segments() == [segs[0]]
        w.append(b"continues in the prefix")
        w.check()


def test_repair_keeps_every_cut_aside_and_never_reuses_a_name(tmp_path: Path) -> None:
    write_log(tmp_path, payloads(3, seed=7))
    seg = head_of(tmp_path)
    for i in range(3):
        with open(seg, "ab") as f:
            f.write(b"\xde\xad" * (i + 1))
        with WAL(tmp_path) as w:
            report = w.repair()
            assert report is not None and report.backup == seg.with_name(f"{seg.name}.corrupt-{i + 1}")
            assert report.backup.read_bytes() == b"\xde\xad" * (i + 1)
            assert w.repair() is None
    with WAL(tmp_path) as w:
        assert w.segments() == [seg]  # .corrupt-n files are never taken for segments
        assert w.recover() == (0, payloads(3, seed=7))


def test_unknown_kind_with_a_good_crc_at_the_tail(tmp_path: Path) -> None:
    write_log(tmp_path, [b"a", b"b"])
    with open(head_of(tmp_path), "ab") as f:
        f.write(encode_frame(b"\x07future record"))
    with WAL(tmp_path) as w:
        with pytest.raises(WALCorruption, match="unknown record kind 7") as err:
            w.check()
        assert err.value.at_tail
        assert w.recover() == (0, [b"a", b"b"])


# ------------------------------------------------------------------------------------------ bounded lengths


@pytest.mark.parametrize("claimed", [0xFFFFFFFF, 0x7FFFFFFF, 16 * 1024 * 1024 + 1])
def test_a_corrupt_length_never_allocates(tmp_path: Path, claimed: int) -> None:
    write_log(tmp_path, [b"a", b"b"])
    with open(head_of(tmp_path), "ab") as f:
        f.write(b"\x00\x00\x00\x00" + claimed.to_bytes(4, "big") + b"\x01" + b"y" * 100)
    tracemalloc.start()
    try:
        with WAL(tmp_path) as w:
            with pytest.raises(WALCorruption, match="exceeds the limit") as err:
                w.check()
            assert err.value.at_tail
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1024 * 1024


def test_a_length_over_the_limit_is_refused_before_reading_even_if_the_file_is_long_enough(tmp_path: Path) -> None:
    limit = 4096
    write_log(tmp_path, [b"a"], max_frame_bytes=limit)
    rest = random.Random(8).randbytes(2 * 1024 * 1024)
    with open(head_of(tmp_path), "ab") as f:
        f.write(b"\x00\x00\x00\x00" + (1024 * 1024).to_bytes(4, "big") + rest)
    tracemalloc.start()
    try:
        with WAL(tmp_path, max_frame_bytes=limit) as w:
            with pytest.raises(WALCorruption, match=f"exceeds the limit of {limit}") as err:
                w.check()
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert err.value.at_tail and peak < 512 * 1024


def test_a_record_over_the_limit_is_refused(tmp_path: Path) -> None:
    with WAL(tmp_path, max_frame_bytes=100) as w:
        w.append(b"x" * 99)  # kind byte + 99 = the limit
        with pytest.raises(WALRecordTooLarge):
            w.append(b"x" * 100)
        assert w.replay_from_last_end_height() == (0, [b"x" * 99])


def test_resync_search_over_a_big_segment_is_fast(tmp_path: Path) -> None:
    rng = random.Random(9)
    records = [rng.randbytes(rng.randrange(1, 4000)) for _ in range(2000)]
    offsets = write_log(tmp_path, records)
    seg = head_of(tmp_path)
    with open(seg, "r+b") as f:  # the first frame's length now runs past the end of the file
        f.seek(4)
        f.write((8 * 1024 * 1024).to_bytes(4, "big"))
    assert seg.stat().st_size > 3 * 1024 * 1024
    t0 = time.monotonic()
    with WAL(tmp_path) as w:
        with pytest.raises(WALCorruption) as err:
            w.check()
        assert not err.value.at_tail and err.value.offset == offsets[0]
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("fill", ["random", "zeros"])
def test_a_big_garbage_tail_is_searched_through_quickly(tmp_path: Path, fill: str) -> None:
    write_log(tmp_path, [b"a", b"b"])
    size = 8 * 1024 * 1024
    with open(head_of(tmp_path), "ab") as f:
        f.write(random.Random(10).randbytes(size) if fill == "random" else bytes(size))
    t0 = time.monotonic()
    with WAL(tmp_path) as w:
        assert w.recover() == (0, [b"a", b"b"])
    assert time.monotonic() - t0 < 10


# ------------------------------------------------------------------------------------------ rotation and truncation


def test_rotation_into_numbered_segments(tmp_path: Path) -> None:
    records = payloads(60, size=40, seed=10)
    with WAL(tmp_path, max_file_bytes=256) as w:
        for r in records:
            w.append(r)
        segs = w.segments()
        assert w.head == segs[-1]
    assert len(segs) > 5
    assert [p.name for p in segs] == [f"{i:08d}.wal" for i in range(1, len(segs) + 1)]
    assert all(p.stat().st_size <= 256 for p in segs)
    with WAL(tmp_path, max_file_bytes=256) as w:
        assert w.replay_from_last_end_height() == (0, records)
        w.rotate()
        w.rotate()  # a no-op on an empty head
        assert len(w.segments()) == len(segs) + 1
        w.append(b"x" * 1000)  # bigger than a segment: alone in one
        w.append(b"y")
        assert w.replay_from_last_end_height() == (0, [*records, b"x" * 1000, b"y"])


def test_replay_across_segments_after_a_marker(tmp_path: Path) -> None:
    with WAL(tmp_path, max_file_bytes=100) as w:
        w.write_end_height(4)
        later = payloads(20, seed=11)
        for r in later:
            w.append(r)
        assert len(w.segments()) > 3
    with WAL(tmp_path, max_file_bytes=100) as w:
        assert w.replay_from_last_end_height() == (4, later)


def test_truncate_before_keeps_the_marker_replay_needs(tmp_path: Path) -> None:
    with WAL(tmp_path, max_file_bytes=300) as w:
        for h in range(1, 11):
            for r in payloads(4, seed=h):
                w.append(r)
            w.write_end_height(h)
        tail = payloads(3, seed=99)
        for r in tail:
            w.append(r)
        before = w.segments()
        assert w.truncate_before(0) == 0  # no marker below 0
        removed = w.truncate_before(8)
        after = w.segments()
        assert removed > 0 and after == before[removed:] and w.head == before[-1]
        assert end_marker(7) in after[0].read_bytes()  # the segment with the last marker below 8 stays
        assert not any(end_marker(6) in p.read_bytes() for p in after[1:])
        assert w.replay_from_last_end_height() == (10, tail)
        assert w.truncate_before(8) == 0  # idempotent
        assert w.truncate_before(10**6) >= 0
        assert w.head in w.segments()
    with WAL(tmp_path, max_file_bytes=300) as w:
        w.check()
        assert w.recover() == (10, tail)


def test_truncate_before_without_markers_removes_nothing(tmp_path: Path) -> None:
    with WAL(tmp_path, max_file_bytes=100) as w:
        for r in payloads(20, seed=12):
            w.append(r)
        n = len(w.segments())
        assert w.truncate_before(5) == 0 and len(w.segments()) == n


# ------------------------------------------------------------------------------------------ one writer, failures


def test_a_second_writer_is_locked_out(tmp_path: Path) -> None:
    w = WAL(tmp_path)
    with pytest.raises(WALLocked):
        WAL(tmp_path)
    probe = ("import sys\nfrom node.wal import WAL, WALLocked\n"
             "try:\n    WAL(sys.argv[1])\nexcept WALLocked:\n    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 3
    w.close()
    w.close()
    with WAL(tmp_path) as w2:
        w2.append(b"ok")
    with pytest.raises(WALError, match="closed"):
        w.append(b"closed")


def test_concurrent_appends_from_threads_stay_whole(tmp_path: Path) -> None:
    with WAL(tmp_path, max_file_bytes=4096) as w:
        def work(t: int) -> None:
            for i in range(200):
                w.append(f"{t}:{i}:".encode() + b"z" * (i % 50))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        _, got = w.replay_from_last_end_height()
    assert len(got) == 1600
    for t in range(8):  # each thread's records in its own order
        mine = [g for g in got if g.startswith(f"{t}:".encode())]
        assert [int(g.split(b":")[1]) for g in mine] == list(range(200))


def test_a_failed_write_is_cut_back_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with WAL(tmp_path) as w:
        w.append(b"first")
        size = os.path.getsize(w.head)

        def half_then_fail(fd: int, data: bytes) -> None:
            os.write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(walmod, "_write_all", half_then_fail)
        with pytest.raises(OSError):
            w.append(b"second, never whole")
        assert os.path.getsize(w.head) == size
        monkeypatch.undo()
        w.append(b"third")
    with WAL(tmp_path) as w:
        w.check()
        assert w.replay_from_last_end_height() == (0, [b"first", b"third"])


def test_a_failed_fsync_stops_all_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with WAL(tmp_path) as w:
        w.append(b"first")

        def fail(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "fsync", fail)  # the module calls os.fsync
        with pytest.raises(OSError):
            w.append(b"second", sync=True)
        monkeypatch.undo()
        calls: list[Callable[[], None]] = [lambda: w.append(b"third"), w.sync, lambda: w.write_end_height(1)]
        for call in calls:
            with pytest.raises(WALError, match="cannot be trusted"):
                call()
    with WAL(tmp_path) as w:  # a restart reads what is there
        assert w.recover() == (0, [b"first", b"second"])


# ------------------------------------------------------------------------------------------ real crashes

CHILD = r"""
import os, sys, time
import node.wal as walmod

def slow_write_all(fd, data):  # a write in small pieces, so that a kill lands inside a frame
    view = memoryview(data)
    while view:
        n = os.write(fd, view[:7])
        view = view[n:]
        time.sleep(0.0001)

walmod._write_all = slow_write_all
wal = walmod.WAL(sys.argv[1], max_file_bytes=2048)
cycle = int(sys.argv[2])
height, records = wal.recover()
print("start", height, len(records), flush=True)
wal.write_end_height(cycle)
i = 0
while True:
    wal.append(b"%d-%d:" % (cycle, i) + bytes([i % 251]) * (150 + i % 97), sync=i % 3 == 0)
    print(i, flush=True)
    i += 1
"""


def record(cycle: int, i: int) -> bytes:
    return b"%d-%d:" % (cycle, i) + bytes([i % 251]) * (150 + i % 97)


@pytest.mark.timeout(120)
def test_kill_9_mid_append_then_restart_never_loops(tmp_path: Path) -> None:
    rng = random.Random(13)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    expected = (0, 0)  # what the next writer must find: (height, number of records after it)
    torn = 0
    for cycle in range(1, 9):
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), str(cycle)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            start = proc.stdout.readline().split()
            assert start[:2] == ["start", str(expected[0])] and int(start[2]) == expected[1], start
            acked = 0
            for _ in range(rng.randrange(2, 25)):
                assert int(proc.stdout.readline()) == acked
                acked += 1
        finally:
            os.kill(proc.pid, signal.SIGKILL)  # our own child, by pid
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
        # Recover a copy; repair the original on even cycles only, so that on odd ones the next writer's own
        # recover() meets the torn tail.
        copy = tmp_path.parent / f"{tmp_path.name}-copy-{cycle}"
        shutil.copytree(tmp_path, copy)
        with WAL(copy, max_file_bytes=2048) as w:
            torn += w.repair() is not None
            height, got = w.replay_from_last_end_height()
        shutil.rmtree(copy)
        if cycle % 2 == 0:
            with WAL(tmp_path, max_file_bytes=2048) as w:
                w.repair()
        assert height == cycle
        assert len(got) >= acked  # every append that returned survived the kill
        assert got == [record(cycle, i) for i in range(len(got))]  # a prefix, in order, nothing torn
        expected = (height, len(got))
    assert torn >= 1  # the kills did land inside frames
    with WAL(tmp_path, max_file_bytes=2048) as w:
        w.check()
        assert len(w.segments()) > 1
