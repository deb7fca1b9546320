"""Write-ahead journal: every sample the engine keeps is on disk within one tick (100 ms).

Why: the engine buffers samples for a write period (10 s) before they go to the PV's
``.pb`` file, as the AA does; a killed process (OOM, a Windows service stopped hard, a
crash) lost up to that much of every PV. Here each sample is also appended to one
sequential journal, a few bytes per sample, one ``write`` per tick for all PVs. At start
the journal is replayed into the stores (:mod:`.journal_replay`); segments whose samples
are all in ``.pb`` files are deleted after each write cycle.

Layout: ``<folder>/seg-<n>.jrn`` files of records ``type (1 byte), length (4), crc32 (4),
payload``. A record whose CRC does not match, or that is cut short, ends the segment: a
torn tail is never replayed. Record types:

* ``DEFINE``: journal id (u32), payload type (u16), PV name. Each segment starts with the
  definitions of every registered PV, so a segment never needs an older one.
* ``ROWS``: a typecode and rows of ``id (u32) + the engine's packed row`` (numeric scalars:
  the same bytes the engine buffers, so journaling costs one ``bytearray`` append per event).
* ``OBJ``: one sample of another type (strings, waveforms), pickled.
* ``FIELDS``: fieldvalues attached to a sample (connection fields).
* ``FORGET``: a PV deleted or renamed: its earlier samples must not be replayed.
* ``BLOCK``: one PV's id, typecode and packed rows: samples carried from a segment about to
  be deleted into the current one, because they are not in a ``.pb`` file yet (a failed
  write, a paused PV).

Durability: every tick's bytes reach the page cache at once, so a killed process loses
nothing that was journaled; ``fsync`` runs every ``fsync_seconds`` (0: every tick) in a
worker thread, which bounds what a power cut can lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..pb import PayloadType

log = logging.getLogger(__name__)

DEFINE, ROWS, OBJ, FIELDS, FORGET, BLOCK = 1, 2, 3, 4, 5, 6
HEADER = struct.Struct("<BII")  # type, payload length, crc32 of the payload
#: DEFINE payload head (journal id, payload type) and a bare journal id
DEF_HEAD = struct.Struct("<IH")
JID = struct.Struct("<I")
SEGMENT_GLOB = "seg-*.jrn"
#: how often the journal is written: the bound on what a killed process can lose
TICK_SECONDS = 0.1
#: a record longer than this is damage, not data (bounds what a corrupt length can cost)
MAX_RECORD = 256 << 20


def record(rtype: int, payload: bytes) -> bytes:
    return HEADER.pack(rtype, len(payload), zlib.crc32(payload)) + payload


def segment_path(folder: Path, n: int) -> Path:
    return folder / f"seg-{n:012d}.jrn"


def segment_numbers(folder: Path) -> list[int]:
    out = []
    for p in folder.glob(SEGMENT_GLOB):
        try:
            out.append(int(p.stem[4:]))
        except ValueError:
            continue
    return sorted(out)


def iter_records(data: bytes) -> Iterator[tuple[int, bytes, int]]:
    """(type, payload, offset of the next record) of each whole, intact record; stops at
    the first torn or damaged one."""
    off = 0
    n = len(data)
    while off + HEADER.size <= n:
        rtype, length, crc = HEADER.unpack_from(data, off)
        start = off + HEADER.size
        end = start + length
        if length > MAX_RECORD or end > n:
            return
        payload = data[start:end]
        if zlib.crc32(payload) != crc or not DEFINE <= rtype <= BLOCK:
            return
        off = end
        yield rtype, payload, off


@dataclass
class JournalStats:
    ticks: int = 0
    bytes_written: int = 0
    fsyncs: int = 0
    segments_dropped: int = 0
    write_errors: int = 0
    last_error: str = ""


class Journal:
    """The journal being written. Everything except :meth:`fsync` runs on the event loop.

    PVs are registered once (:meth:`register`); numeric scalar PVs then append their packed
    rows to the shared per-typecode ``bytearray`` they are handed (see
    :class:`~.archived_pv.ArchivedPV`), other samples go through :meth:`add_obj`.
    """

    def __init__(self, folder: Path, fsync_seconds: float = 1.0, first_segment: int = 1) -> None:
        self.folder = folder
        self.fsync_seconds = max(0.0, fsync_seconds)
        folder.mkdir(parents=True, exist_ok=True)
        #: typecode -> rows of (id + packed row) not yet written
        self.rows: dict[str, bytearray] = {}
        self._records: list[bytes] = []
        self._defs: dict[int, bytes] = {}  # id -> its DEFINE record, for each new segment
        self._next_id = 1
        self.stats = JournalStats()
        self.segment = first_segment
        self._fd = self._open(first_segment)
        self._dirty_since_fsync = False
        self._since_fsync = 0.0

    # ------------------------------------------------------------------ registration
    def register(
        self, name: str, ptype: PayloadType, typecode: str | None
    ) -> tuple[int, bytes, bytearray | None]:
        """A new journal id for a PV; returns (id, id as 4 bytes, rows bytearray or None)."""
        jid = self._next_id
        self._next_id += 1
        rec = record(DEFINE, DEF_HEAD.pack(jid, int(ptype)) + name.encode("utf-8"))
        self._defs[jid] = rec
        self._records.append(rec)
        rows = None
        if typecode is not None:
            rows = self.rows.get(typecode)
            if rows is None:
                rows = self.rows[typecode] = bytearray()
        return jid, JID.pack(jid), rows

    def forget(self, jid: int) -> None:
        """A PV deleted or renamed: none of its journaled samples may come back."""
        self._stage_rows()  # its rows so far go before the FORGET
        self._records.append(record(FORGET, JID.pack(jid)))
        self._defs.pop(jid, None)

    # ------------------------------------------------------------------ samples
    def add_obj(self, jid: int, secs: int, nanos: int, val: Any, sev: int, stat: int) -> None:
        self._records.append(record(OBJ, pickle.dumps((jid, secs, nanos, val, sev, stat), 5)))

    def add_fields(self, jid: int, secs: int, nanos: int, fields: dict[str, str]) -> None:
        self._records.append(record(FIELDS, pickle.dumps((jid, secs, nanos, fields), 5)))

    def _stage_rows(self) -> None:
        for tc, rows in self.rows.items():
            if rows:
                self._records.append(record(ROWS, tc.encode("ascii") + bytes(rows)))
                rows.clear()

    def carry(self, jid: int, buf: Any) -> None:
        """Journal a whole engine buffer again (see ``BLOCK``): its samples are about to lose
        their place in an older segment while they are still not in a ``.pb`` file."""
        if not len(buf):
            return
        if buf.objs is None:
            self._records.append(
                record(BLOCK, JID.pack(jid) + buf.typecode.encode("ascii") + bytes(buf.data))
            )
        else:
            for i in range(len(buf)):
                self.add_obj(jid, *buf.row(i))
        for i, fields in buf.fields.items():
            secs, nanos = buf.row(i)[:2]
            self.add_fields(jid, secs, nanos, fields)

    # ------------------------------------------------------------------ writing
    def _open(self, n: int) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0)
        return os.open(segment_path(self.folder, n), flags, 0o644)

    def flush(self) -> bool:
        """Write everything journaled so far, in one write; False if the write failed (the
        samples are still in the engine's buffers: only their crash protection is lost,
        and that is counted and reported)."""
        self._stage_rows()
        if not self._records:
            return True
        data = b"".join(self._records)
        self._records.clear()
        try:
            os.write(self._fd, data)
        except OSError as e:
            self.stats.write_errors += 1
            self.stats.last_error = f"{e.strerror or e}"
            log.error("journal write failed (%d bytes): %s", len(data), e)
            return False
        self.stats.bytes_written += len(data)
        self._dirty_since_fsync = True
        return True

    def tick(self, elapsed: float) -> bool:
        """The periodic write; True when an fsync is due (the caller runs :meth:`fsync` in
        a worker thread)."""
        self.stats.ticks += 1
        self.flush()
        self._since_fsync += elapsed
        if self._dirty_since_fsync and self._since_fsync >= self.fsync_seconds:
            self._since_fsync = 0.0
            self._dirty_since_fsync = False
            return True
        return False

    def fsync(self) -> None:
        """Worker thread: make what was written durable."""
        try:
            os.fsync(self._fd)
            self.stats.fsyncs += 1
        except OSError as e:
            self.stats.write_errors += 1
            self.stats.last_error = f"fsync: {e.strerror or e}"
            log.error("journal fsync failed: %s", e)

    def rotate(self) -> int | None:
        """Close the current segment and start the next one (at the start of an engine write
        cycle, with no event handled in between); returns the number of the sealed one, or
        None when the next one cannot be created (a full disk): the current one then goes
        on, and nothing is dropped until a rotation succeeds."""
        self.flush()
        sealed = self.segment
        try:
            fd = self._open(sealed + 1)
        except OSError as e:
            self.stats.write_errors += 1
            self.stats.last_error = f"new segment: {e.strerror or e}"
            log.error("journal: cannot start segment %d: %s", sealed + 1, e)
            return None
        old = self._fd
        self.segment = sealed + 1
        self._fd = fd
        os.close(old)
        # the new segment starts with every live definition: it never needs an older one
        self._records[:0] = list(self._defs.values())
        return sealed

    def drop_through(self, sealed: int) -> int:
        """Delete the segments up to ``sealed``, whose samples are all in ``.pb`` files or
        carried into a newer segment, once what is pending is written; returns how many."""
        if not self.flush():
            return 0
        dropped = 0
        for n in segment_numbers(self.folder):
            if n > sealed:
                break
            try:
                segment_path(self.folder, n).unlink()
                dropped += 1
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot remove journal segment %d: %s", n, e)
        self.stats.segments_dropped += dropped
        return dropped

    def close(self, drop_all: bool) -> None:
        """At shutdown, after the final write of every buffer: ``drop_all`` when nothing is
        left unwritten, so that the next start has nothing to replay."""
        self.flush()
        os.close(self._fd)
        if drop_all:
            for n in segment_numbers(self.folder):
                segment_path(self.folder, n).unlink(missing_ok=True)


async def run_journal(journal: Journal, stop: asyncio.Event, period: float = TICK_SECONDS) -> None:
    """Write the journal every ``period`` until ``stop``; fsyncs run in a worker thread
    while the ticks go on (at most one at a time)."""
    loop = asyncio.get_running_loop()
    syncing: asyncio.Future[None] | None = None
    last = loop.time()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), period)
        now = loop.time()
        due = journal.tick(now - last)
        last = now
        if due and (syncing is None or syncing.done()):
            syncing = asyncio.ensure_future(asyncio.to_thread(journal.fsync))
    if syncing is not None:
        await syncing
