"""The consensus write-ahead log: every input of the consensus driver, and every message it signs, is appended
here before it is acted on, so that a restarted node resumes the height it was in (STYLE.md, "One driver,
inputs in order, WAL first"; CometBFT ``consensus/wal.go`` is the model).

Rules of this module (WAL-1..WAL-7):

- WAL-1  Byte format. A segment file is a sequence of frames, nothing else (no file header)::

             frame  = crc32 (4 bytes, big-endian) || length (4 bytes, big-endian) || record
             record = kind (1 byte) || data            (length = len(record), 1 <= length <= max_frame_bytes)
             crc32  = zlib CRC-32 (IEEE 802.3 polynomial, as in gzip/PNG) over length || record

         ``kind`` is 0x01 for a caller's record (``data`` = the opaque payload given to ``append``) and 0x02 for
         an end-of-height marker (``data`` = the height as u64 big-endian, so length = 9). Kind 0x00 is never
         written: a zero-filled region is never a frame. CRC-32 rather than CRC-32C: the standard library has
         no CRC-32C, and both detect every burst error up to 32 bits.
- WAL-2  Segments. ``DIR/<index, 8 decimal digits>.wal``, indices consecutive; the highest is the head, the
         only one written to. A segment is rotated (a new head created) before a frame would take it past
         ``max_file_bytes``; the old head is fsynced first, so every non-head segment is complete.
- WAL-3  Durability. ``append`` hands the frame to the operating system (one ``write``; it survives the
         process being killed) and fsyncs only with ``sync=True``; ``sync()`` fsyncs the head;
         ``write_end_height`` always fsyncs. A failed write is cut back off the file; after a failed fsync the
         log refuses further writes (the kernel may have dropped the dirty pages: fsync cannot be retried).
- WAL-4  Bounded reads. A length above ``max_frame_bytes`` (16 MiB by default) is corruption, decided
         before anything is read; frames are checked through a read-only memory map, so a corrupt length
         never allocates memory, and a record is copied out only after its CRC matched.
- WAL-5  Corruption. The first frame that is not valid (partial header, a length over the limit or past the
         end of the file, a CRC mismatch, an unknown kind) stops the reading with ``WALCorruption`` naming the
         file and offset. It is *at the tail* if it is in the head segment and no valid frame starts anywhere
         after it (a torn or half-flushed last write); otherwise it is *in the middle* (valid frames follow,
         or it is in an older segment, or a segment is missing), i.e. data that was once durable is damaged.
- WAL-6  Repair. ``repair()`` cuts a tail corruption off (truncates the head to the last good frame), keeping
         the cut bytes in ``<segment>.corrupt-<n>`` for forensics; it refuses a corruption in the middle
         (raises it again) unless ``force=True``, which keeps the longest valid prefix of the log: it cuts the
         bad segment at the bad frame and renames every later segment to ``<segment>.corrupt-<n>``. Nothing is
         ever deleted by a repair. ``recover()`` is what a starting driver calls: repair the tail if needed,
         refuse a middle corruption, replay.
- WAL-7  One writer. ``DIR/LOCK`` is held with ``fcntl.flock`` (exclusive, non-blocking) from open to close:
         a second ``WAL`` on the same directory, in this process or another, gets ``WALLocked``. Inside one
         process every method takes the instance's lock, so threads may share a ``WAL``.

Replay: ``replay_from_last_end_height()`` returns the height of the last end-of-height marker (0 if there is
none) and the records appended after it, oldest first. ``truncate_before(h)`` deletes the segments that only
hold records from before the last end-of-height marker below ``h``; the segment holding that marker stays, so
replay keeps working.

Exceptions::

    WALError                   a write-ahead log problem
    ├── WALCorruption          bytes on disk that are not a valid frame (file, offset, reason, at_tail)
    ├── WALLocked              another WAL object or process holds the directory
    └── WALRecordTooLarge      the caller's record exceeds the frame limit (also a ValueError)
"""

from __future__ import annotations

import functools
import logging
import mmap
import os
import re
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from node.fsutil import fsync_dir, release_flock, take_flock

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_FRAME_BYTES",
    "HEADER_BYTES",
    "KIND_DATA",
    "KIND_END_HEIGHT",
    "WAL",
    "NullWAL",
    "RepairReport",
    "WALCorruption",
    "WALError",
    "WALLocked",
    "WALRecordTooLarge",
    "encode_frame",
]

log = logging.getLogger("mydata.node.wal")

DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
HEADER_BYTES = 8
KIND_DATA = 0x01
KIND_END_HEIGHT = 0x02
_KINDS = frozenset((KIND_DATA, KIND_END_HEIGHT))
_HEADER = struct.Struct(">II")
_U64 = struct.Struct(">Q")
_END_HEIGHT_LEN = 1 + _U64.size
_MAX_U64 = 2**64 - 1
_SEGMENT_RE = re.compile(r"^(\d{8,})\.wal$")
_LOCK_NAME = "LOCK"
#: How many bytes the search for a valid frame after a bad one may CRC before it gives up (and then assumes,
#: conservatively, that valid frames may follow: a corruption in the middle is never repaired silently).
_RESYNC_BUDGET = 256 * 1024 * 1024


# ------------------------------------------------------------------------------------------------ errors


class WALError(Exception):
    """A problem with the write-ahead log."""


class WALCorruption(WALError):
    """Bytes at ``offset`` of ``path`` are not a valid frame (WAL-5). ``at_tail``: a torn or half-written
    end of the log, which ``repair()`` cuts off; otherwise the corruption is in the middle and only
    ``repair(force=True)`` cuts it (with everything after it)."""

    def __init__(self, path: Path, offset: int, reason: str, *, at_tail: bool, missing: bool = False) -> None:
        where = ("at the tail of the log (a torn write): repair() cuts it off" if at_tail else
                 "in the middle of the log (valid data follows): repair(force=True) would cut everything "
                 "from here on")
        super().__init__(f"WAL corruption in {path} at offset {offset}: {reason}; {where}")
        self.path = path
        self.offset = offset
        self.reason = reason
        self.at_tail = at_tail
        #: True when segments are missing before ``path`` (numbering gap), rather than a bad frame in it.
        self.missing = missing


class WALLocked(WALError):
    """Another ``WAL`` (in this process or another) holds the directory's lock file."""


class WALRecordTooLarge(WALError, ValueError):
    """A record longer than the frame limit: the caller's mistake."""


@dataclass(frozen=True)
class RepairReport:
    """What ``repair`` did: the segment cut at ``offset`` (``cut_bytes`` removed, saved to ``backup``), and
    the later segments renamed aside (``moved``, only with ``force=True``)."""

    path: Path
    offset: int
    cut_bytes: int
    backup: Path | None
    at_tail: bool
    moved: tuple[Path, ...] = ()


# ------------------------------------------------------------------------------------------------ frames


def encode_frame(record: bytes) -> bytes:
    """``crc32(length || record) || length || record`` (WAL-1); ``record`` starts with its kind byte."""
    length = len(record).to_bytes(4, "big")
    crc = zlib.crc32(record, zlib.crc32(length))
    return crc.to_bytes(4, "big") + length + record


@dataclass(frozen=True, slots=True)
class _Frame:
    offset: int
    kind: int
    end: int  # offset of the next frame
    height: int  # of an end-of-height marker; 0 for a data record

    @property
    def data_start(self) -> int:
        return self.offset + HEADER_BYTES + 1


@dataclass
class _Scan:
    """One segment read through: its valid frames, and the first bad one (if any)."""

    path: Path
    size: int
    frames: list[_Frame]
    bad_offset: int | None = None
    bad_reason: str = ""
    followed_by_good: bool = False


def _frame_at(buf: memoryview, pos: int, size: int, max_frame: int) -> _Frame | str:
    """The valid frame starting at ``pos``, or why there is none (WAL-4: the length is bounded first)."""
    if size - pos < HEADER_BYTES:
        return f"partial frame header ({size - pos} of {HEADER_BYTES} bytes)"
    crc, length = _HEADER.unpack_from(buf, pos)
    if length > max_frame:
        return f"frame length {length} exceeds the limit of {max_frame}"
    if length == 0:
        return "empty frame (no record kind)"
    end = pos + HEADER_BYTES + length
    if end > size:
        return f"frame of {length} bytes runs {end - size} bytes past the end of the file"
    if zlib.crc32(buf[pos + 4:end]) != crc:
        return "CRC mismatch"
    kind = buf[pos + HEADER_BYTES]
    if kind not in _KINDS:
        return f"unknown record kind {kind}"
    height = 0
    if kind == KIND_END_HEIGHT:
        if length != _END_HEIGHT_LEN:
            return f"end-of-height marker of {length} bytes (expected {_END_HEIGHT_LEN})"
        (height,) = _U64.unpack_from(buf, pos + HEADER_BYTES + 1)
    return _Frame(pos, kind, end, height)


@functools.lru_cache(maxsize=8)
def _candidate_pattern(max_frame: int) -> re.Pattern[bytes]:
    """Offsets where a frame could start: length's top byte within the limit, a known kind after it."""
    top = min(max_frame >> 24, 0xFF)
    return re.compile(rb"(?=.{4}[\x00-" + b"\\x%02x" % top + rb"].{3}[\x01\x02])", re.DOTALL)


def _valid_frame_after(buf: memoryview, bad: int, size: int, max_frame: int) -> bool:
    """Whether a valid frame starts anywhere after offset ``bad`` (WAL-5). True also when the search runs
    out of budget: a corruption is only ever called a tail when nothing valid follows it."""
    # Fast path: a bit flip inside a frame leaves its length intact; the next frame is right after it.
    if size - bad >= HEADER_BYTES:
        _, length = _HEADER.unpack_from(buf, bad)
        nxt = bad + HEADER_BYTES + length
        if 0 < length <= max_frame and nxt < size and isinstance(_frame_at(buf, nxt, size, max_frame), _Frame):
            return True
    budget = _RESYNC_BUDGET
    for m in _candidate_pattern(max_frame).finditer(buf, bad + 1):
        pos = m.start()
        _, length = _HEADER.unpack_from(buf, pos)
        if length > max_frame or pos + HEADER_BYTES + length > size:
            continue
        budget -= length
        if budget < 0:
            return True
        if isinstance(_frame_at(buf, pos, size, max_frame), _Frame):
            return True
    return False


def _scan_file(path: Path, max_frame: int) -> _Scan:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        scan = _Scan(path, size, [])
        if size == 0:
            return scan
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm, memoryview(mm) as buf:
            pos = 0
            frames = scan.frames
            while pos < size:
                got = _frame_at(buf, pos, size, max_frame)
                if isinstance(got, str):
                    scan.bad_offset, scan.bad_reason = pos, got
                    scan.followed_by_good = _valid_frame_after(buf, pos, size, max_frame)
                    break
                frames.append(got)
                pos = got.end
    return scan


def _read_data(path: Path, frames: list[_Frame]) -> list[bytes]:
    """The data of the given (validated, consecutive or not) frames of one segment, in order."""
    if not frames:
        return []
    start, end = frames[0].offset, frames[-1].end
    with open(path, "rb") as f:
        f.seek(start)
        chunk = f.read(end - start)
    if len(chunk) != end - start:
        raise WALError(f"{path} shrank while being read")
    return [chunk[fr.data_start - start:fr.end - start] for fr in frames if fr.kind == KIND_DATA]


# ------------------------------------------------------------------------------------------------ file helpers


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _aside_name(path: Path) -> Path:
    """The first free ``<path>.corrupt-<n>``, n = 1, 2, ..."""
    n = 1
    while True:
        candidate = path.with_name(f"{path.name}.corrupt-{n}")
        if not candidate.exists():
            return candidate
        n += 1


# ------------------------------------------------------------------------------------------------ the log


class WAL:
    """The append-only, segmented, CRC-framed write-ahead log in ``directory`` (created if missing).

    Opening never raises on corruption (so that ``repair`` can run); the reads (``replay_*``, ``check``) raise
    ``WALCorruption``, and appends are refused while the head segment is corrupt. Usual start-up::

        wal = WAL(home / "wal")
        height, records = wal.recover()   # cuts a torn tail (kept aside), refuses a middle corruption
    """

    def __init__(self, directory: str | os.PathLike[str], max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < _END_HEIGHT_LEN or max_frame_bytes > 0xFFFFFFFF:
            raise ValueError(f"max_frame_bytes must be in {_END_HEIGHT_LEN}..2**32-1")
        if max_file_bytes < HEADER_BYTES + _END_HEIGHT_LEN:
            raise ValueError("max_file_bytes is too small to hold a frame")
        self.dir = Path(directory)
        self.max_file_bytes = max_file_bytes
        self.max_frame_bytes = max_frame_bytes
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._failed: BaseException | None = None
        # the head segment; set by _open_head
        self._head_index = 0
        self._head = self.dir
        self._head_problem: WALCorruption | None = None
        self._size = 0
        self._last_end_height: int | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        try:
            self._open_head()
        except BaseException:
            self.close()
            raise

    # ---- opening and closing -----------------------------------------------------------------------------

    def _take_lock(self) -> int:
        try:
            fd = take_flock(self.dir / _LOCK_NAME, 0o644)
        except BlockingIOError:
            raise WALLocked(f"the WAL in {self.dir} is in use by another writer") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for name in os.listdir(self.dir):
            m = _SEGMENT_RE.match(name)
            if m:
                found.append((int(m.group(1)), self.dir / name))
        return sorted(found)

    def _segment_path(self, index: int) -> Path:
        return self.dir / f"{index:08d}.wal"

    def _open_head(self) -> None:
        """Find (or create) the head segment, scan it, and open it for appending."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        segments = self._segments()
        if not segments:
            index = 1
            os.close(os.open(self._segment_path(index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            fsync_dir(self.dir)
            segments = [(index, self._segment_path(index))]
        self._head_index, self._head = segments[-1]
        scan = _scan_file(self._head, self.max_frame_bytes)
        self._head_problem = self._corruption(scan, is_head=True)
        self._size = scan.size if scan.bad_offset is None else scan.bad_offset
        markers = [f.height for f in scan.frames if f.kind == KIND_END_HEIGHT]
        self._last_end_height = markers[-1] if markers else None
        self._fd = os.open(self._head, os.O_WRONLY | os.O_APPEND)

    def close(self) -> None:
        """Close the head and release the lock (idempotent)."""
        with self._mutex:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                release_flock(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    @property
    def head(self) -> Path:
        """The segment being written."""
        return self._head

    def segments(self) -> list[Path]:
        """Every segment file, oldest first."""
        with self._mutex:
            return [p for _, p in self._segments()]

    # ---- writing -----------------------------------------------------------------------------------------

    def _writable(self) -> int:
        if self._fd is None:
            raise WALError("the WAL is closed")
        if self._failed is not None:
            raise WALError(f"an earlier write or fsync of {self._head} failed ({self._failed}); the WAL cannot "
                           "be trusted until the node restarts")
        if self._head_problem is not None:
            raise self._head_problem
        return self._fd

    def _fsync_head(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as e:
            self._failed = e
            raise

    def _append_record(self, record: bytes, sync: bool) -> None:
        fd = self._writable()
        frame = encode_frame(record)
        if self._size > 0 and self._size + len(frame) > self.max_file_bytes:
            self._rotate()
            fd = self._writable()
        try:
            _write_all(fd, frame)
        except OSError as e:
            try:  # never leave half a frame for the next one to land behind (WAL-3)
                os.ftruncate(fd, self._size)
            except OSError:
                self._failed = e
            raise
        self._size += len(frame)
        if sync:
            self._fsync_head(fd)

    def append(self, payload: bytes, sync: bool = False) -> None:
        """Append one record (WAL-1); fsync it if ``sync`` (the driver's own signed messages)."""
        record = bytes((KIND_DATA,)) + bytes(payload)
        if len(record) > self.max_frame_bytes:
            raise WALRecordTooLarge(f"a record of {len(payload)} bytes exceeds the frame limit of "
                                    f"{self.max_frame_bytes - 1}")
        with self._mutex:
            self._append_record(record, sync)

    def sync(self) -> None:
        """fsync the head segment: every record appended so far is durable."""
        with self._mutex:
            self._fsync_head(self._writable())

    def write_end_height(self, height: int, *, sync: bool = True) -> None:
        """Append the end-of-height marker for ``height`` (fsynced unless ``sync=False``). Heights never go
        down. The consensus driver writes it unsynced: the block store, not the WAL, says what is committed,
        a lost marker only makes the replay skip that height's records (they are for a committed height), and
        the next fsynced record makes it durable with everything before it."""
        if type(height) is not int or not 0 <= height <= _MAX_U64:
            raise ValueError("a height is an integer in 0..2**64-1")
        with self._mutex:
            if self._last_end_height is not None and height < self._last_end_height:
                raise ValueError(f"end of height {height} after end of height {self._last_end_height}")
            self._append_record(bytes((KIND_END_HEIGHT,)) + _U64.pack(height), sync=sync)
            self._last_end_height = height

    def rotate(self) -> None:
        """Start a new head segment now (a no-op while the head is empty)."""
        with self._mutex:
            self._writable()
            if self._size > 0:
                self._rotate()

    def _rotate(self) -> None:
        assert self._fd is not None
        self._fsync_head(self._fd)  # WAL-2: a non-head segment is always complete
        index = self._head_index + 1
        path = self._segment_path(index)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fsync_dir(self.dir)
        except OSError as e:
            os.close(fd)
            self._failed = e
            raise
        os.close(self._fd)
        self._fd, self._head_index, self._head, self._size = fd, index, path, 0
        log.info("wal: rotated to %s", path.name)

    # ---- reading -----------------------------------------------------------------------------------------

    def _corruption(self, scan: _Scan, *, is_head: bool) -> WALCorruption | None:
        if scan.bad_offset is None:
            return None
        return WALCorruption(scan.path, scan.bad_offset, scan.bad_reason,
                             at_tail=is_head and not scan.followed_by_good)

    def _require_open(self) -> None:
        if self._fd is None:
            raise WALError("the WAL is closed")

    def _scan_checked(self, index: int, path: Path) -> _Scan:
        scan = _scan_file(path, self.max_frame_bytes)
        problem = self._corruption(scan, is_head=index == self._head_index)
        if problem is not None:
            raise problem
        return scan

    def _newest_first(self) -> list[tuple[int, Path]]:
        """Segments from the head back, stopping the caller at a gap in the numbering (a missing segment)."""
        return list(reversed(self._segments()))

    def _check_gap(self, index: int, newer: int | None, path: Path) -> None:
        if newer is not None and index != newer - 1:
            raise WALCorruption(self._segment_path(newer), 0, f"segments {index + 1:08d}..{newer - 1:08d} are "
                                f"missing (the one before is {path.name})", at_tail=False, missing=True)

    def replay_from_last_end_height(self) -> tuple[int, list[bytes]]:
        """The height of the last end-of-height marker (0 if there is none) and the records after it."""
        with self._mutex:
            self._require_open()
            later: list[bytes] = []
            newer: int | None = None
            for index, path in self._newest_first():
                self._check_gap(index, newer, path)
                scan = self._scan_checked(index, path)
                markers = [i for i, f in enumerate(scan.frames) if f.kind == KIND_END_HEIGHT]
                if markers:
                    last = markers[-1]
                    self._last_end_height = scan.frames[last].height
                    return scan.frames[last].height, _read_data(path, scan.frames[last + 1:]) + later
                later = _read_data(path, scan.frames) + later
                newer = index
            return 0, later

    def _first_problem(self) -> WALCorruption | None:
        previous: int | None = None
        for index, path in self._segments():
            if previous is not None and index != previous + 1:
                return WALCorruption(path, 0, f"segments {previous + 1:08d}..{index - 1:08d} are missing",
                                     at_tail=False, missing=True)
            problem = self._corruption(_scan_file(path, self.max_frame_bytes), is_head=index == self._head_index)
            if problem is not None:
                return problem
            previous = index
        return None

    def check(self) -> None:
        """Read every segment through; raise ``WALCorruption`` for the first bad frame or missing segment."""
        with self._mutex:
            self._require_open()
            problem = self._first_problem()
        if problem is not None:
            raise problem

    # ---- repair and recovery -----------------------------------------------------------------------------

    def repair(self, force: bool = False) -> RepairReport | None:
        """Cut the log back to its longest valid prefix (WAL-6); None if there was nothing to repair.

        A tail corruption is always cut; a corruption in the middle is raised again unless ``force``. The cut
        bytes are saved to ``<segment>.corrupt-<n>`` (fsynced before the segment is truncated), later segments
        are renamed to ``<segment>.corrupt-<n>``: nothing is deleted."""
        with self._mutex:
            self._require_open()
            problem = self._first_problem()
            if problem is None:
                return None
            if not problem.at_tail and not force:
                raise problem
            report = self._cut(problem)
            self._open_head()
        log.warning("wal: repaired %s: cut %d bytes at offset %d (%s; saved to %s), moved aside %s",
                    report.path, report.cut_bytes, report.offset, problem.reason, report.backup,
                    [p.name for p in report.moved] or "nothing")
        return report

    def _cut(self, problem: WALCorruption) -> RepairReport:
        path, offset = problem.path, problem.offset
        moved: list[Path] = []
        bad_index = int(path.name.split(".")[0])
        missing_before = problem.missing
        for index, seg in self._segments():
            if index > bad_index or (missing_before and index == bad_index):
                aside = _aside_name(seg)
                os.replace(seg, aside)
                moved.append(aside)
        backup: Path | None = None
        cut = 0
        if not missing_before:
            size = path.stat().st_size
            cut = size - offset
            backup = _aside_name(path)
            with open(path, "rb") as src:
                src.seek(offset)
                fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    while chunk := src.read(1 << 20):
                        _write_all(fd, chunk)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(self.dir)
        return RepairReport(path, offset, cut, backup, problem.at_tail, tuple(moved))

    def recover(self) -> tuple[int, list[bytes]]:
        """Start-up in one call: ``repair()`` a torn tail, raise a middle corruption, then
        ``replay_from_last_end_height()``. A restart after a crash at any moment never loops on an error."""
        self.repair(force=False)
        return self.replay_from_last_end_height()

    # ---- maintenance -------------------------------------------------------------------------------------

    def truncate_before(self, height: int) -> int:
        """Delete the segments that only hold records from before the last end-of-height marker whose height
        is below ``height``; the segment holding that marker and every later one stay, the head always
        stays. Returns how many segments were deleted."""
        with self._mutex:
            self._require_open()
            segments = self._segments()
            keep_from: int | None = None
            newer: int | None = None
            for index, path in reversed(segments):
                self._check_gap(index, newer, path)
                scan = self._scan_checked(index, path)
                if any(f.kind == KIND_END_HEIGHT and f.height < height for f in scan.frames):
                    keep_from = index
                    break
                newer = index
            if keep_from is None:
                return 0
            doomed = [path for index, path in segments if index < keep_from]
            for path in doomed:
                path.unlink()
            if doomed:
                fsync_dir(self.dir)
                log.info("wal: deleted %d segments before height %d", len(doomed), height)
            return len(doomed)


class NullWAL:
    """A write-ahead log that keeps nothing: for tests and tools that drive consensus without a disk."""

    def append(self, payload: bytes, sync: bool = False) -> None:
        pass

    def sync(self) -> None:
        pass

    def write_end_height(self, height: int, *, sync: bool = True) -> None:
        pass

    def rotate(self) -> None:
        pass

    def replay_from_last_end_height(self) -> tuple[int, list[bytes]]:
        return 0, []

    def recover(self) -> tuple[int, list[bytes]]:
        return 0, []

    def check(self) -> None:
        pass

    def repair(self, force: bool = False) -> RepairReport | None:
        return None

    def truncate_before(self, height: int) -> int:
        return 0

    def close(self) -> None:
        pass
