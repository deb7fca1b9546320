"""Merging stores the AA's way: oldest store first, one sample at or before `from`, no dups."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pvarchiver.pb import PayloadType, Sample, sample_line
from pvarchiver.retrieval.model import Chunk
from pvarchiver.retrieval.sources import merged_chunks
from pvarchiver.retrieval.times import (
    TimeParseError,
    parse_period,
    parse_time,
    resolve_range,
)
from pvarchiver.storage import PlainPBStore
from pvarchiver.storage.batch import append_samples

from .helpers.stores import make_store

D = PayloadType.SCALAR_DOUBLE
T0 = calendar.timegm((2025, 3, 1, 0, 0, 0))


def rows(chunks: Iterator[Chunk]) -> list[tuple[int, int, float]]:
    out = []
    for c in chunks:
        for i in range(len(c)):
            out.append((int(c.block.secs[i]) - T0, int(c.block.nanos[i]), float(c.block.vals[i])))
    return out


def three(tmp_path: Path) -> list[PlainPBStore]:
    return [
        make_store(tmp_path, "STS", "PARTITION_HOUR"),
        make_store(tmp_path, "MTS", "PARTITION_DAY"),
        make_store(tmp_path, "LTS", "PARTITION_YEAR"),
    ]


def test_overlapping_stores_give_each_sample_once(tmp_path: Path) -> None:
    sts, mts, lts = three(tmp_path)
    append_samples(lts, "P", D, [Sample(T0 + i, 0, 1.0) for i in range(0, 100)])
    append_samples(mts, "P", D, [Sample(T0 + i, 0, 2.0) for i in range(50, 200)])  # overlaps LTS
    append_samples(sts, "P", D, [Sample(T0 + i, 0, 3.0) for i in range(150, 300)])
    got = rows(merged_chunks([sts, mts, lts], "P", (T0, 0), (T0 + 1000, 0)))
    assert [r[0] for r in got] == list(range(300))
    # oldest store wins where they overlap, as in the AA
    assert {r[2] for r in got[:100]} == {1.0} and {r[2] for r in got[100:200]} == {2.0}


def test_one_sample_at_or_before_from(tmp_path: Path) -> None:
    sts, mts, lts = three(tmp_path)
    append_samples(lts, "P", D, [Sample(T0 + 10, 0, 1.0)])
    append_samples(mts, "P", D, [Sample(T0 + 20, 0, 2.0)])
    append_samples(sts, "P", D, [Sample(T0 + 30, 0, 3.0), Sample(T0 + 40, 0, 4.0)])
    stores = [sts, mts, lts]
    assert rows(merged_chunks(stores, "P", (T0 + 25, 0), (T0 + 35, 0))) == [
        (20, 0, 2.0),
        (30, 0, 3.0),
    ]
    # an exact hit at `from` is the one sample at or before it
    assert rows(merged_chunks(stores, "P", (T0 + 20, 0), (T0 + 35, 0))) == [
        (20, 0, 2.0),
        (30, 0, 3.0),
    ]
    # from == to: the last sample at or before
    assert rows(merged_chunks(stores, "P", (T0 + 39, 0), (T0 + 39, 0))) == [(30, 0, 3.0)]
    assert rows(merged_chunks(stores, "P", (T0 + 5, 0), (T0 + 5, 0))) == []
    assert rows(merged_chunks(stores, "P", (T0 + 99, 0), (T0 + 99, 0))) == [(40, 0, 4.0)]


def test_raw_bytes_pass_through_only_when_unfiltered(tmp_path: Path) -> None:
    sts, mts, lts = three(tmp_path)
    samples = [Sample(T0 + i, 5, float(i)) for i in range(100)]
    append_samples(sts, "P", D, samples)
    chunks = list(merged_chunks([sts, mts, lts], "P", (T0 + 10, 0), (T0 + 20, 0)))
    raw = b"".join(c.raw for c in chunks if c.raw is not None)
    assert raw == b"".join(sample_line(D, 2025, s) for s in samples[9:20])


def test_corrupt_and_out_of_order_lines_are_skipped(tmp_path: Path) -> None:
    sts, mts, lts = three(tmp_path)
    append_samples(sts, "P", D, [Sample(T0 + i, 0, float(i)) for i in range(5)])
    path = sts.files_for_pv("P")[0].path
    with open(path, "ab") as fh:
        fh.write(b"\x08\x01junk\n")
        fh.write(sample_line(D, 2025, Sample(T0 + 2, 0, -1.0)))  # older: dropped
        fh.write(sample_line(D, 2025, Sample(T0 + 9, 0, 9.0)))
    chunks = list(merged_chunks([sts, mts, lts], "P", (T0, 0), (T0 + 100, 0)))
    assert [r[0] for r in rows(iter(chunks))] == [0, 1, 2, 3, 4, 9]
    # the block holding the junk is re-encoded, never passed through
    assert all(c.raw is None for c in chunks if len(c) > 1)


def test_engine_buffer_is_merged_last_without_duplicates(tmp_path: Path) -> None:
    """The real engine, caught between writing a buffer and releasing it: its in-flight
    samples are on disk and still in memory; the merge must give each sample once."""
    from pvarchiver.engine.writer import Engine

    sts, mts, lts = three(tmp_path)
    engine = Engine(sts, clock=lambda: T0 + 100)
    pv = engine.add_pv("P", D)
    pv.on_connect(D)
    for i in range(10):
        pv.on_event(T0 + i, 0, 0, 0, float(i))
    taken = engine.take_all()
    engine.write_buffers(taken)  # on disk, not yet released: in both places
    for i in range(10, 15):
        pv.on_event(T0 + i, 0, 0, 0, float(i))
    got = rows(merged_chunks([sts, mts, lts], "P", (T0, 0), (T0 + 100, 0), engine))
    assert [r[0] for r in got] == list(range(15))
    engine.finish(taken, {})
    got = rows(merged_chunks([sts, mts, lts], "P", (T0 + 3, 0), (T0 + 12, 0), engine))
    assert [r[0] for r in got] == list(range(3, 13))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 20_000)), min_size=1, max_size=80),
    st.integers(0, 20_000),
    st.integers(0, 20_000),
)
def test_merge_matches_a_reference(
    tmp_path_factory: pytest.TempPathFactory, placed: list[tuple[int, int]], a: int, b: int
) -> None:
    stores = three(tmp_path_factory.mktemp("m"))
    start, end = (T0 + min(a, b), 0), (T0 + max(a, b), 0)
    for idx in range(3):  # each store gets its samples sorted, as stores hold them
        ts = sorted({t for s, t in placed if s == idx})
        append_samples(stores[idx], "P", D, [Sample(T0 + t, 0, float(idx)) for t in ts])
    got = [r[0] for r in rows(merged_chunks(stores, "P", start, end))]
    # reference, written from aa.md 3.3: the latest sample at or before `from` over all stores,
    # then each store's samples in [from, to], oldest store first, strictly increasing
    lo, hi = start[0] - T0, end[0] - T0
    per_store = [sorted({t for s, t in placed if s == idx}) for idx in (2, 1, 0)]
    at_or_before = [t for ts in per_store for t in ts if t <= lo]
    want: list[int] = [max(at_or_before)] if at_or_before else []
    for ts in per_store:
        for t in ts:
            if lo <= t <= hi and (not want or t > want[-1]):
                want.append(t)
    assert got == want


def test_times() -> None:
    assert parse_time("2024-05-01T10:00:00Z") == (1714557600, 0)
    assert parse_time("2024-05-01T10:00:00.1Z") == (1714557600, 100_000_000)
    assert parse_time("2024-05-01T10:00:00.123456789Z") == (1714557600, 123456789)
    assert parse_time("2024-05-01T03:00:00.000-07:00") == (1714557600, 0)
    assert parse_time("2024-05-01T15:30:00+05:30") == (1714557600, 0)
    for bad in ("", "2024-05-01", "2024-13-01T00:00:00Z", "now", "2024-05-01T10:00:00.1234567890Z"):
        with pytest.raises(TimeParseError):
            parse_time(bad)
    start, end = resolve_range(None, None, now=1_000_000)
    assert end == (1_000_000 + 3600, 0) and start == (1_000_000 + 3600 - 86400, 0)
    with pytest.raises(TimeParseError):
        resolve_range("2024-05-02T00:00:00Z", "2024-05-01T00:00:00Z")
    assert parse_period("P1D") == 86400 and parse_period("PT1H30M") == 5400
    with pytest.raises(TimeParseError):
        parse_period("1 day")
