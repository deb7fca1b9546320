"""PlainPBStore: append invariants, partitioning, reads and bisection on real files."""

from __future__ import annotations

import calendar
import math
import os
from pathlib import Path

import pytest

from pvarchiver.pb import PayloadType, Sample, header_line, sample_line
from pvarchiver.pb.sample import PayloadInfo
from pvarchiver.storage import PlainPBStore, StoreError, TypeMismatchError
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.naming import portable
from pvarchiver.storage.pbfile import PBFile

from .helpers.stores import make_store

PV = "EIOC:LI30:MP01:HEARTBEAT"
T0 = calendar.timegm((2012, 8, 24, 16, 0, 0))
D = PayloadType.SCALAR_DOUBLE


def in_store(store: PlainPBStore, aa_relpath: str) -> str:
    """A relative path as the AA spells it, as ``store`` spells it: byte for byte the AA's on
    an ordinary folder, the portable spelling (``:`` as U+F03A) where Windows' rules apply."""
    return portable(aa_relpath) if store.naming.portable else aa_relpath


def samples(n: int, t0: int = T0, step: int = 1) -> list[Sample]:
    return [Sample(t0 + i * step, (i * 7919) % 1_000_000_000, float(i)) for i in range(n)]


def test_first_append_creates_the_aa_file(sts: PlainPBStore) -> None:
    s = samples(3)
    r = append_samples(sts, PV, D, s)
    assert r.written == 3 and r.dropped_not_increasing == 0
    aa_name = "EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb"
    path = sts.root / in_store(sts, aa_name)
    assert r.files == [path]
    if sts.naming.portable:
        assert path.name == "HEARTBEAT\uf03a2012_08_24_16.pb"
    else:  # the AA's own file name, byte for byte
        assert path.relative_to(sts.root).as_posix() == aa_name
        assert os.fsencode(path.name) == b"HEARTBEAT:2012_08_24_16.pb"
    # header holds only type, pvname and year, as the AA's engine writes it
    expect = header_line(PayloadInfo(D, PV, 2012)) + b"".join(sample_line(D, 2012, x) for x in s)
    assert path.read_bytes() == expect


def test_older_or_equal_samples_are_dropped_and_counted(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(10))
    again = samples(15)  # first 10 are equal to what is stored
    again.insert(12, Sample(T0 + 3, 0, -1.0))  # older than its predecessor
    r = append_samples(sts, PV, D, again)
    assert (r.written, r.dropped_not_increasing) == (5, 11)
    vals = [x.val for x in sts.read_all(PV)]
    assert vals == [float(i) for i in range(15)]
    # same second, larger nanos is newer; same nanos is a duplicate
    r = append_samples(sts, PV, D, [Sample(T0 + 14, 0, 0.0), Sample(T0 + 14, 999_999_999, 1.5)])
    assert (r.written, r.dropped_not_increasing) == (1, 1)


def test_state_survives_a_new_store_object(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(10))
    fresh = PlainPBStore(sts.config, naming=sts.naming)
    r = append_samples(fresh, PV, D, samples(12))
    assert (r.written, r.dropped_not_increasing) == (2, 10)


def test_clean_partitions_and_year_boundary(tmp_path: Path) -> None:
    store = make_store(tmp_path, "STS", "PARTITION_HOUR")
    t0 = calendar.timegm((2024, 12, 31, 22, 30, 0))
    s = samples(3 * 3600 // 60, t0, 60)
    append_samples(store, PV, D, s)
    names = sorted(p.name for p in (store.root / "EIOC/LI30/MP01").iterdir())
    assert names == [
        in_store(store, name)
        for name in (
            "HEARTBEAT:2024_12_31_22.pb",
            "HEARTBEAT:2024_12_31_23.pb",
            "HEARTBEAT:2025_01_01_00.pb",
            "HEARTBEAT:2025_01_01_01.pb",
        )
    ]
    for pf in store.files_for_pv(PV):
        with PBFile.open(pf.path) as f:
            got = [f.decode(line) for _, line in f.iter_lines(f.header_end)]
            assert all(pf.start <= x.secs < pf.end for x in got)
            assert f.header.year == (2024 if pf.start < t0 + 5400 else 2025)
    assert [x.val for x in store.read_all(PV)] == [x.val for x in s]


@pytest.mark.parametrize(
    "gran",
    [
        "PARTITION_5MIN",
        "PARTITION_15MIN",
        "PARTITION_30MIN",
        "PARTITION_DAY",
        "PARTITION_MONTH",
        "PARTITION_YEAR",
    ],
)
def test_every_granularity_round_trips(tmp_path: Path, gran: str) -> None:
    store = make_store(tmp_path, "X", gran)
    s = samples(500, calendar.timegm((2023, 12, 31, 23, 0, 0)), 3607)
    append_samples(store, PV, D, s)
    assert [(x.secs, x.nanos, x.val) for x in store.read_all(PV)] == [
        (x.secs, x.nanos, x.val) for x in s
    ]
    for pf in store.files_for_pv(PV):
        with PBFile.open(pf.path) as f:
            assert all(
                pf.start <= f.decode(ln).secs < pf.end for _, ln in f.iter_lines(f.header_end)
            )


def test_partial_last_line_is_truncated_before_append(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(5))
    path = sts.files_for_pv(PV)[0].path
    good = path.read_bytes()
    partial = sample_line(D, 2012, Sample(T0 + 5, 0, 5.0))[:7]
    with open(path, "ab") as fh:
        fh.write(partial)
    fresh = PlainPBStore(sts.config, naming=sts.naming)
    # readers ignore the partial tail
    assert len(list(fresh.read_all(PV))) == 5
    append_samples(fresh, PV, D, [Sample(T0 + 6, 0, 6.0)])
    assert path.read_bytes() == good + sample_line(D, 2012, Sample(T0 + 6, 0, 6.0))


def test_header_is_checked_before_appending(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(2))
    path = sts.files_for_pv(PV)[0].path
    fresh = PlainPBStore(sts.config, naming=sts.naming)
    with pytest.raises(TypeMismatchError):
        append_samples(fresh, PV, PayloadType.SCALAR_INT, [Sample(T0 + 10, 0, 3)])
    path.write_bytes(header_line(PayloadInfo(D, "OTHER:PV", 2012)))
    fresh = PlainPBStore(sts.config, naming=sts.naming)
    with pytest.raises(StoreError, match="belongs to PV"):
        append_samples(fresh, PV, D, [Sample(T0 + 10, 0, 3.0)])
    assert path.read_bytes() == header_line(PayloadInfo(D, "OTHER:PV", 2012))


def test_zero_byte_file_gets_a_header(sts: PlainPBStore) -> None:
    path = sts.path_for(PV, T0)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    append_samples(sts, PV, D, samples(1))
    with PBFile.open(path) as f:
        assert f.header.pvname == PV and f.last_sample() is not None


def test_read_range_includes_the_last_sample_before_from(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(3 * 3600, T0, 1))
    got = list(sts.read(PV, (T0 + 5000, 0), (T0 + 5010, 0)))
    # sample 4999 (before from), then 5000..5009 (5010 has nanos > 0, so it is after `to`)
    assert [x.secs - T0 for x in got] == list(range(4999, 5010))
    # across a partition boundary: from is the first second of the next hour
    got = list(sts.read(PV, (T0 + 3600, 0), (T0 + 3601, 0)))
    assert [x.secs - T0 for x in got] == [3599, 3600]
    # a range before all data yields nothing; after all data only the last sample
    assert list(sts.read(PV, (T0 - 100, 0), (T0 - 50, 0))) == []
    assert [x.secs - T0 for x in sts.read(PV, (T0 + 99999, 0), (T0 + 100000, 0))] == [3 * 3600 - 1]


def test_read_finds_previous_sample_in_older_file_across_gaps(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, [Sample(T0, 0, 1.0)])
    append_samples(sts, PV, D, [Sample(T0 + 5 * 3600, 0, 2.0)])
    got = list(sts.read(PV, (T0 + 2 * 3600, 0), (T0 + 3 * 3600, 0)))
    assert [x.val for x in got] == [1.0]


def _rchar() -> int:
    with open("/proc/self/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io")
def test_one_minute_of_a_year_reads_kilobytes_not_the_file(tmp_path: Path) -> None:
    store = make_store(tmp_path, "LTS", "PARTITION_YEAR")
    t0 = calendar.timegm((2023, 1, 1, 0, 0, 0))
    step = 20  # 1.5 M samples would be the real 1 Hz year; 20 s keeps the test quick
    append_samples(store, PV, D, samples(365 * 86400 // step, t0, step))
    size = store.files_for_pv(PV)[0].path.stat().st_size
    assert size > 25_000_000 // step
    mid = t0 + 200 * 86400
    before = _rchar()
    got = list(store.read(PV, (mid, 0), (mid + 60, 0)))
    read = _rchar() - before
    assert [x.secs for x in got] == [mid - step + step * i for i in range(4)]
    assert read < 50_000, f"read {read} bytes of a {size}-byte file"


def test_nan_and_corrupt_lines_do_not_stop_a_read(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, [Sample(T0, 0, math.nan), Sample(T0 + 1, 0, 1.0)])
    path = sts.files_for_pv(PV)[0].path
    with open(path, "ab") as fh:
        fh.write(b"\x08garbage\x1b\n")
        fh.write(sample_line(D, 2012, Sample(T0 + 2, 0, 2.0)))
    got = list(PlainPBStore(sts.config, naming=sts.naming).read_all(PV))
    assert math.isnan(got[0].val) and [x.val for x in got[1:]] == [1.0, 2.0]


def test_files_with_foreign_partition_names_are_skipped(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(2))
    folder = sts.files_for_pv(PV)[0].path.parent
    # a day name in an hourly store, and a backup copy, both spelled as the store spells names
    (folder / in_store(sts, "HEARTBEAT:2012_08_24.pb")).write_bytes(b"junk")
    (folder / in_store(sts, "HEARTBEAT:2012_08_24_16.pb.bak")).write_bytes(b"junk")
    assert len(sts.files_for_pv(PV)) == 1
    assert len(list(sts.read_all(PV))) == 2


def test_unreadable_file_is_skipped_not_fatal(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, samples(2))
    append_samples(sts, PV, D, samples(2, T0 + 7200))
    first = sts.files_for_pv(PV)[0].path
    first.write_bytes(b"\x1b")  # bad header
    assert [x.secs for x in PlainPBStore(sts.config, naming=sts.naming).read_all(PV)] == [
        T0 + 7200,
        T0 + 7201,
    ]


def test_all_types_append_and_read(tmp_path: Path) -> None:
    store = make_store(tmp_path, "STS", "PARTITION_HOUR")
    values = {
        PayloadType.SCALAR_STRING: "a\nb\x1bc",
        PayloadType.SCALAR_SHORT: -3,
        PayloadType.SCALAR_FLOAT: 1.5,
        PayloadType.SCALAR_ENUM: 2,
        PayloadType.SCALAR_BYTE: b"\n",
        PayloadType.SCALAR_INT: -70000,
        PayloadType.SCALAR_DOUBLE: 2.25,
        PayloadType.WAVEFORM_STRING: ["x", "", "\r"],
        PayloadType.WAVEFORM_SHORT: [1, -2],
        PayloadType.WAVEFORM_FLOAT: [0.5],
        PayloadType.WAVEFORM_ENUM: [1, 0],
        PayloadType.WAVEFORM_BYTE: b"\x00\n\r\x1b",
        PayloadType.WAVEFORM_INT: [2**31 - 1],
        PayloadType.WAVEFORM_DOUBLE: [],
        PayloadType.V4_GENERIC_BYTES: b"\x01\x02",
    }
    for pt, v in values.items():
        pv = f"T:{pt.name}"
        append_samples(
            store, pv, pt, [Sample(T0, 1, v, severity=1, status=3, fields={"EGU": "mA"})]
        )
        (got,) = list(store.read_all(pv))
        assert (got.val, got.severity, got.status, got.fields) == (v, 1, 3, {"EGU": "mA"})
    assert sorted(store.pv_names()) == sorted(f"T:{pt.name}" for pt in values)
