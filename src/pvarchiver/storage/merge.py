"""Merge another appliance's samples of a PV into one store (``mergeInData``), and the
reader of the ``.raw`` (PB over HTTP) stream that brings them.

Why a rewrite and not an append: the other appliance's samples may fall anywhere in time,
between samples already stored here, and a file's samples must stay strictly increasing.
Each partition that the other side has data for is rewritten as the sorted merge of both,
a timestamp present on both sides kept once (ours), and replaced atomically
(:mod:`.rewrite`): a crash leaves each file either as it was or wholly merged, and merging
again gives the same files, so a rerun after a crash finishes the job. The remote stream
comes in time order, so one partition at a time is held in memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..pb import (
    PayloadInfo,
    PayloadType,
    Sample,
    decode_header,
    decode_line,
    unescape,
    year_of,
)
from ..pb.escape import EscapeError
from ..pb.sample import PBDecodeError
from .partitions import partition_start, shift_partition
from .pbfile import PBFile, PBFileError
from .rewrite import commit, remove_stale_temps, sample_lines, write_temp
from .store import PlainPBStore


class MergeError(ValueError):
    """Data that cannot be merged (another type, an unreadable stream or file)."""


def parse_raw(blocks: Iterable[bytes]) -> Iterator[tuple[PayloadInfo, Sample]]:
    """The samples of a ``getData.raw`` body, each with its chunk's header.

    The body is escaped lines: a header first, then samples; an empty line means that the
    next line is a header (the AA's ``PBRAWResponse`` framing)."""
    header: PayloadInfo | None = None
    expect_header = True
    carry = b""
    for block in blocks:
        data = carry + block if carry else block
        lines = data.split(b"\n")
        carry = lines.pop()
        for line in lines:
            if not line:
                expect_header = True
                continue
            try:
                if expect_header:
                    header = decode_header(unescape(line))
                    expect_header = False
                    continue
                assert header is not None
                yield header, decode_line(header.type, header.year, line)
            except (PBDecodeError, EscapeError) as e:
                raise MergeError(f"the other appliance sent an unreadable line: {e}") from None
    if carry:
        raise MergeError("the other appliance's data ends in the middle of a line")


@dataclass
class MergeReport:
    """What one merge did."""

    partitions: int = 0
    created: int = 0
    remote_samples: int = 0
    added: int = 0


def _local_samples(f: PBFile | None) -> Iterator[Sample]:
    if f is None:
        return
    for _off, line in f.iter_lines(f.header_end):
        try:
            yield f.decode(line)
        except (PBDecodeError, EscapeError):
            continue


def _merged(
    local: Iterable[Sample], remote: Iterable[Sample], added: list[int]
) -> Iterator[Sample]:
    """Both sorted streams as one, strictly increasing; of equal timestamps the local one
    (listed first) is kept. ``added[0]`` counts the remote samples that made it."""
    tagged_local = ((s.secs, s.nanos, 0, s) for s in local)
    tagged_remote = ((s.secs, s.nanos, 1, s) for s in remote)
    last: tuple[int, int] | None = None
    for secs, nanos, side, s in heapq.merge(tagged_local, tagged_remote, key=lambda t: t[:3]):
        if last is not None and (secs, nanos) <= last:
            continue
        last = (secs, nanos)
        added[0] += side
        yield s


def merge_partition(
    store: PlainPBStore, pv: str, ptype: PayloadType, remote: list[Sample], rep: MergeReport
) -> None:
    """Rewrite the partition file of ``remote`` (samples of one partition, time order) as
    the merge of what it holds and ``remote``; create it if there is none. The caller
    holds the PV's lock in ``store``."""
    path = store.path_for(pv, remote[0].secs)
    try:
        f: PBFile | None = PBFile.open(path)
    except FileNotFoundError:
        f = None
    except (PBFileError, OSError) as e:
        raise MergeError(f"{store.name}: cannot read {path}: {e}") from None
    try:
        header = PayloadInfo(ptype, pv, year_of(remote[0].secs))
        if f is not None:
            if f.header.type != ptype:
                raise MergeError(
                    f"{store.name}: {path.name} holds {f.header.type.arch_dbr_name}, not "
                    f"{ptype.arch_dbr_name}; finish changeTypeForPV first"
                )
            if f.header.pvname != pv:
                raise MergeError(f"{store.name}: {path.name} belongs to {f.header.pvname!r}")
            header = f.header
        added, count = [0], [0]
        merged = _merged(_local_samples(f), remote, added)
        tmp = write_temp(path, sample_lines(header, merged, count))
    finally:
        if f is not None:
            f.close()
    commit(tmp, path)
    store.forget(pv)
    rep.partitions += 1
    rep.created += f is None
    rep.added += added[0]


def merge_into(
    store: PlainPBStore, pv: str, ptype: PayloadType, remote: Iterable[tuple[PayloadInfo, Sample]]
) -> MergeReport:
    """Merge ``remote`` (the other appliance's samples of ``pv``, in time order, with their
    chunk headers) into ``store``, one partition at a time; partitions the other side has
    no data for are not touched. The caller holds the PV's lock in ``store``.

    A chunk of another type than ``ptype`` stops the merge with MergeError; partitions
    merged before it stay merged (each one whole), and a second run merges nothing twice."""
    rep = MergeReport()
    remove_stale_temps(store, pv)
    part: list[Sample] = []
    start = end = 0
    for header, s in remote:
        if header.type != ptype:
            raise MergeError(
                f"the other appliance has {pv} as {header.type.arch_dbr_name}, "
                f"here it is {ptype.arch_dbr_name}; change one side's type first"
            )
        if part and not start <= s.secs < end:
            merge_partition(store, pv, ptype, _increasing(part), rep)
            part = []
        if not part:
            start = partition_start(s.secs, store.granularity)
            end = shift_partition(start, store.granularity, 1)
        part.append(s)
        rep.remote_samples += 1
    if part:
        merge_partition(store, pv, ptype, _increasing(part), rep)
    return rep


def _increasing(samples: list[Sample]) -> list[Sample]:
    """The samples sorted by time, each timestamp once (a remote stream should already be)."""
    samples.sort(key=lambda s: (s.secs, s.nanos))
    out: list[Sample] = []
    for s in samples:
        if not out or (s.secs, s.nanos) > (out[-1].secs, out[-1].nanos):
            out.append(s)
    return out
