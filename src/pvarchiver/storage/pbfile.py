"""Reading one PlainPB file without loading it: header, line access, time search, tail repair.

Samples in a file are strictly increasing in time, so a time can be found by bisecting on
byte offsets: seek, skip to the next LF, parse that one line, narrow. No index is needed, and a
one-minute query of a year-long file touches a few kilobytes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..pb import PayloadInfo, PBDecodeError, Sample, decode_header, decode_line, unescape
from ..pb.escape import EscapeError

log = logging.getLogger(__name__)

Instant = tuple[int, int]  # (epoch seconds, nanoseconds)

_CHUNK = 1 << 16
_LINEAR_SCAN_BYTES = 1 << 12
_MAX_BISECT_STEPS = 1000  # same bound as the AA's FileEventStreamSearch


class PBFileError(ValueError):
    """A file that is not a usable PlainPB file (bad header, wrong PV, ...)."""


@dataclass(slots=True)
class PBFile:
    """An open PlainPB file: its header and where the samples start and end.

    ``data_end`` is the offset just after the last LF: bytes after it are the remains of an
    interrupted write, which readers ignore and appenders truncate.
    """

    path: Path
    fh: BinaryIO
    header: PayloadInfo
    header_end: int
    size: int
    data_end: int

    @classmethod
    def open(cls, path: Path) -> PBFile:
        # unbuffered: bisection reads a few hundred bytes per step; a buffer would read 8 KiB
        fh = open(path, "rb", buffering=0)
        try:
            size = os.fstat(fh.fileno()).st_size
            header, header_end = read_header(fh, path)
            data_end = last_lf_end(fh, size, header_end)
            return cls(path, fh, header, header_end, size, data_end)
        except BaseException:
            fh.close()
            raise

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> PBFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def has_samples(self) -> bool:
        return self.data_end > self.header_end

    def decode(self, line: bytes) -> Sample:
        return decode_line(self.header.type, self.header.year, line)

    def timestamp_of(self, line: bytes) -> Instant:
        s = self.decode(line)
        return (s.secs, s.nanos)

    def read_line(self, start: int) -> tuple[bytes, int]:
        """The line starting at ``start`` (without LF) and the offset just after its LF."""
        return read_line(self.fh, start, self.data_end)

    def next_line_start(self, offset: int) -> int:
        """Offset of the first line that starts at or after ``offset`` (``data_end`` if none)."""
        if offset <= self.header_end:
            return self.header_end
        if offset >= self.data_end:
            return self.data_end
        # A line starts at offset iff the byte before it is LF.
        self.fh.seek(offset - 1)
        pos = offset - 1
        want = 256  # grow: most lines are short, waveform lines can be megabytes
        while pos < self.data_end:
            chunk = self.fh.read(min(want, self.data_end - pos))
            i = chunk.find(b"\n")
            if i >= 0:
                return pos + i + 1
            pos += len(chunk)
            want = min(want * 4, _CHUNK * 64)
        return self.data_end

    def prev_line_start(self, offset: int) -> int | None:
        """Start of the line that ends just before ``offset`` (a line start); None if none."""
        if offset <= self.header_end:
            return None
        # offset-1 is the LF of the previous line; look for the LF before that.
        found = last_lf_end(self.fh, offset - 1, self.header_end)
        return found

    def last_sample(self) -> Sample | None:
        start = self.prev_line_start(self.data_end)
        if start is None:
            return None
        line, _ = self.read_line(start)
        return self.decode(line)

    def first_sample(self) -> Sample | None:
        if not self.has_samples:
            return None
        line, _ = self.read_line(self.header_end)
        return self.decode(line)

    def find(self, target: Instant) -> int:
        """Offset of the first line whose timestamp is >= ``target`` (``data_end`` if none).

        Lines that fail to decode during the bisection are treated as if they were not there
        (the scan moves on to the next line), so one corrupt line cannot derail the search.
        """
        lo, hi = self.header_end, self.data_end
        steps = 0
        while hi - lo > _LINEAR_SCAN_BYTES and steps < _MAX_BISECT_STEPS:
            steps += 1
            mid_start = self.next_line_start((lo + hi) // 2)
            s, ts = mid_start, None
            while s < hi:
                line, e = self.read_line(s)
                try:
                    ts = self.timestamp_of(line)
                    break
                except (PBDecodeError, EscapeError):
                    s = e
            if ts is None:
                if mid_start >= hi:
                    break  # one long line spans the middle: finish with a linear scan
                hi = mid_start  # only undecodable lines in [mid, hi)
            elif ts < target:
                lo = e
            else:
                hi = s
        # linear scan of the remaining window, read in one go
        for off, line in self.iter_lines(lo, hi):
            try:
                if self.timestamp_of(line) >= target:
                    return off
            except (PBDecodeError, EscapeError):
                pass
        return hi

    def iter_lines(self, begin: int, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(offset, line) for every complete line in [begin, end)."""
        end = self.data_end if end is None else min(end, self.data_end)
        for block_start, block in self.iter_blocks(begin, end):
            pos = 0
            while pos < len(block):
                j = block.index(b"\n", pos)
                yield block_start + pos, block[pos:j]
                pos = j + 1

    def iter_blocks(
        self, begin: int, end: int | None = None, block_size: int = 1 << 20
    ) -> Iterator[tuple[int, bytes]]:
        """Blocks of whole lines (each ending with LF) covering [begin, end)."""
        end = self.data_end if end is None else min(end, self.data_end)
        pos = begin
        carry = b""
        self.fh.seek(pos)
        while pos < end:
            data = self.fh.read(min(block_size, end - pos))
            if not data:
                break
            pos += len(data)
            buf = carry + data if carry else data
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                carry = buf
                continue
            yield pos - len(buf), buf[:cut]
            carry = buf[cut:]
        if carry:
            log.warning("%s: %d bytes at %d end without LF", self.path, len(carry), pos)


def open_or_log(path: Path) -> PBFile | None:
    """Open for reading; an unreadable file is logged and skipped, never fatal to a read."""
    try:
        return PBFile.open(path)
    except (PBFileError, OSError) as e:
        log.error("cannot read %s: %s", path, e)
        return None


def read_header(fh: BinaryIO, path: Path | str = "") -> tuple[PayloadInfo, int]:
    """Header of an open file and the offset where its first sample starts."""
    fh.seek(0)
    buf = b""
    while True:
        chunk = fh.read(4096 if not buf else _CHUNK)
        buf += chunk
        i = buf.find(b"\n")
        if i >= 0:
            break
        if not chunk:
            if not buf:
                raise PBFileError(f"{path}: empty file (no header)")
            raise PBFileError(f"{path}: header line is incomplete (no LF)")
    try:
        return decode_header(unescape(buf[:i])), i + 1
    except (PBDecodeError, EscapeError) as e:
        raise PBFileError(f"{path}: bad header: {e}") from None


def read_line(fh: BinaryIO, start: int, limit: int) -> tuple[bytes, int]:
    """Read one line; starts small because most lines are a few dozen bytes."""
    fh.seek(start)
    parts: list[bytes] = []
    pos = start
    want = 256
    while pos < limit:
        chunk = fh.read(min(want, limit - pos))
        if not chunk:
            break
        i = chunk.find(b"\n")
        if i >= 0:
            parts.append(chunk[:i])
            return b"".join(parts), pos + i + 1
        parts.append(chunk)
        pos += len(chunk)
        want = min(want * 4, 1 << 22)
    raise PBFileError(f"no complete line at offset {start}")


def last_lf_end(fh: BinaryIO, size: int, floor: int) -> int:
    """Offset just after the last LF at or after ``floor`` (``floor`` if there is none)."""
    pos = size
    want = 512
    while pos > floor:
        lo = max(floor, pos - want)
        fh.seek(lo)
        chunk = fh.read(pos - lo)
        i = chunk.rfind(b"\n")
        if i >= 0:
            return lo + i + 1
        pos = lo
        want = min(want * 4, _CHUNK * 64)
    return floor
