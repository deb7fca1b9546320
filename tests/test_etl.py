"""ETL between PlainPB stores on real files: hold/gather, chains, bulk append, odd files, reruns."""

from __future__ import annotations

import calendar
import itertools
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pvarchiver.pb import PayloadInfo, PayloadType, Sample, header_line, sample_line
from pvarchiver.storage import PlainPBStore, consolidate, run_etl
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.etl import move_file
from pvarchiver.storage.naming import portable
from pvarchiver.storage.pbfile import PBFile
from pvarchiver.storage.store import PartitionFile, iter_pb_files
from pvarchiver.storage.validate import validate_file

from .helpers.stores import make_store

D = PayloadType.SCALAR_DOUBLE
HOUR = 3600
DAY = 86400
T0 = calendar.timegm((2024, 3, 10, 0, 0, 0))  # a midnight, UTC
PV = "SR-01:BPM:X"
# '-' and ':' both become folders; the _RAW suffix must never share X's files
PVS = ["SR-01:BPM:X", "SR-01:BPM:X_RAW", "LI:K-1", "ROOT"]


def sts_store(tmp_path: Path, extra: str = "") -> PlainPBStore:
    return make_store(tmp_path, "STS", "PARTITION_HOUR", extra)


def mts_store(tmp_path: Path, extra: str = "&hold=2&gather=1") -> PlainPBStore:
    return make_store(tmp_path, "MTS", "PARTITION_DAY", extra)


def lts_store(tmp_path: Path) -> PlainPBStore:
    return make_store(tmp_path, "LTS", "PARTITION_YEAR")


def stream(t_begin: int, t_end: int, step: int, rng: random.Random) -> list[Sample]:
    """Samples every ``step`` seconds in [t_begin, t_end) with random nanos and values."""
    return [
        Sample(t, rng.randrange(1_000_000_000), rng.uniform(-1e6, 1e6))
        for t in range(t_begin, t_end, step)
    ]


def files_of(store: PlainPBStore) -> list[Path]:
    return sorted(iter_pb_files(store.root)) if store.root.exists() else []


def names_of(store: PlainPBStore, pv: str) -> list[str]:
    return [pf.path.name for pf in store.files_for_pv(pv)]


def spelled(store: PlainPBStore, *aa_names: str) -> list[str]:
    """File names (or relative paths) as the AA spells them, as ``store`` spells them: the
    same bytes on an ordinary folder, the portable spelling (``:`` as U+F03A) where Windows'
    naming rules apply (``--storage-fs=ntfs``)."""
    return [portable(n) if store.naming.portable else n for n in aa_names]


def read_pv(store: PlainPBStore, pv: str) -> list[Sample]:
    got = list(store.read_all(pv))
    stamps = [s.timestamp for s in got]
    assert all(a < b for a, b in itertools.pairwise(stamps)), (
        f"{store.name}: {pv} not strictly increasing"
    )
    return got


def union_of(stores: list[PlainPBStore], pv: str) -> list[Sample]:
    """Every sample of the PV in the stores; fails on a sample held by two stores."""
    everything = [s for st in stores for s in read_pv(st, pv)]
    stamps = [s.timestamp for s in everything]
    assert len(set(stamps)) == len(stamps), f"{pv}: a sample is in more than one store"
    return sorted(everything, key=lambda s: s.timestamp)


def assert_all_files_valid(*stores: PlainPBStore) -> None:
    for st in stores:
        for path in files_of(st):
            rep = validate_file(path)
            assert rep.ok, f"{path}: {[str(p) for p in rep.problems]}"


def sample_lines(path: Path) -> bytes:
    """The bytes of a file after its header line."""
    with PBFile.open(path) as f:
        f.fh.seek(f.header_end)
        return f.fh.read()


# ------------------------------------------------------------------ hold / gather


def test_hold0_gather0_moves_everything_before_the_current_partition(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path, "")
    data = stream(T0, T0 + 6 * HOUR, 60, random.Random(1))
    append_samples(sts, PV, D, data)
    assert len(names_of(sts, PV)) == 6
    now = T0 + 5 * HOUR + 1800  # inside the sixth hour
    st = run_etl(sts, mts, now=now)
    assert (st.files_moved, st.files_skipped, st.errors) == (5, 0, [])
    assert st.samples_moved == 5 * 60
    assert names_of(sts, PV) == spelled(sts, "X:2024_03_10_05.pb")
    assert names_of(mts, PV) == spelled(mts, "X:2024_03_10.pb")
    assert read_pv(mts, PV) == data[: 5 * 60]
    assert read_pv(sts, PV) == data[5 * 60 :]
    # a second pass in the same hour has nothing to do
    again = run_etl(sts, mts, now=now + 600)
    assert (again.files_moved, again.samples_moved) == (0, 0)


def test_current_partition_is_never_moved_unless_everything(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path, "")
    data = stream(T0 + 2 * HOUR, T0 + 2 * HOUR + 900, 10, random.Random(2))
    append_samples(sts, PV, D, data)
    # at any moment inside that hour (start, end, and early) the file stays put
    for now in (T0 + 2 * HOUR, T0 + 2 * HOUR + 1, T0 + 3 * HOUR - 1):
        st = run_etl(sts, mts, now=now)
        assert st.files_moved == 0
        assert names_of(sts, PV) == spelled(sts, "X:2024_03_10_02.pb")
    # data "from the future" is never moved either
    st = run_etl(sts, mts, now=T0)
    assert st.files_moved == 0 and files_of(mts) == []
    st = run_etl(sts, mts, now=T0 + 2 * HOUR + 5, everything=True)
    assert (st.files_moved, st.samples_moved) == (1, len(data))
    assert files_of(sts) == []
    assert read_pv(mts, PV) == data


def _day_files(store: PlainPBStore, days: range, rng: random.Random) -> dict[int, list[Sample]]:
    out = {}
    for d in days:
        out[d] = stream(T0 + d * DAY, T0 + (d + 1) * DAY, 1800, rng)
        append_samples(store, PV, D, out[d])
    return out


def _days_in(store: PlainPBStore) -> list[int]:
    return [(pf.start - T0) // DAY for pf in store.files_for_pv(PV)]


def test_mts_hold2_gather1_keeps_one_completed_partition(tmp_path: Path) -> None:
    mts, lts = mts_store(tmp_path), lts_store(tmp_path)
    data = _day_files(mts, range(5), random.Random(3))
    st = run_etl(mts, lts, now=T0 + 5 * DAY + 300)  # day 5 is current
    assert st.files_moved == 4
    assert _days_in(mts) == [4]  # one completed day left behind
    assert read_pv(lts, PV) == [s for d in range(4) for s in data[d]]
    # the kept day only moves once it is two days old
    assert run_etl(mts, lts, now=T0 + 6 * DAY - 1).files_moved == 0
    assert run_etl(mts, lts, now=T0 + 6 * DAY).files_moved == 1
    assert files_of(mts) == []
    assert read_pv(lts, PV) == [s for d in range(5) for s in data[d]]


def test_mts_hold2_waits_while_the_oldest_file_is_young(tmp_path: Path) -> None:
    mts, lts = mts_store(tmp_path), lts_store(tmp_path)
    _day_files(mts, range(3, 5), random.Random(4))
    assert run_etl(mts, lts, now=T0 + 5 * DAY - 1).files_moved == 0  # oldest is day 3 = cur-1
    assert _days_in(mts) == [3, 4]
    assert run_etl(mts, lts, now=T0 + 5 * DAY).files_moved == 1  # now day 3 = cur-2
    assert _days_in(mts) == [4]


def test_hold5_gather3_waits_then_moves_three(tmp_path: Path) -> None:
    mts, lts = mts_store(tmp_path, "&hold=5&gather=3"), lts_store(tmp_path)
    data = _day_files(mts, range(5), random.Random(5))
    # the oldest file (day 0) is not yet 5 partitions old
    for cur in (1, 2, 3, 4):
        assert run_etl(mts, lts, now=T0 + cur * DAY + 300).files_moved == 0
        assert _days_in(mts) == [0, 1, 2, 3, 4]
    st = run_etl(mts, lts, now=T0 + 5 * DAY + 300)
    assert st.files_moved == 3
    assert _days_in(mts) == [3, 4]  # hold - gather = 2 completed partitions stay
    assert read_pv(lts, PV) == [s for d in range(3) for s in data[d]]
    more = _day_files(mts, range(5, 8), random.Random(6))
    data.update(more)
    # day 3 is now the oldest: it has to become 5 partitions old first
    for cur in (6, 7):
        assert run_etl(mts, lts, now=T0 + cur * DAY + 300).files_moved == 0
    st = run_etl(mts, lts, now=T0 + 8 * DAY + 300)
    assert st.files_moved == 3
    assert _days_in(mts) == [6, 7]
    assert read_pv(lts, PV) == [s for d in range(6) for s in data[d]]
    assert union_of([mts, lts], PV) == [s for d in range(8) for s in data[d]]


# ------------------------------------------------------------------ chains


def test_sts_mts_lts_chain_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """Five simulated days across New Year, ETL on the AA's schedule, checked every hour."""
    sts, mts, lts = sts_store(tmp_path), mts_store(tmp_path), lts_store(tmp_path)
    chain = [sts, mts, lts]
    rng = random.Random(7)
    start = calendar.timegm((2024, 12, 29, 0, 0, 0))
    appended: dict[str, list[Sample]] = {pv: [] for pv in PVS}
    for h in range(5 * 24):
        hour = start + h * HOUR
        for pv in PVS:
            if rng.random() < 0.1:
                continue  # hours without data for this PV
            batch = stream(hour + rng.randrange(60), hour + HOUR, rng.choice((61, 300, 900)), rng)
            # two appends per hour, the second also re-sending a few old samples (dropped)
            cut = rng.randrange(len(batch) + 1)
            append_samples(sts, pv, D, batch[:cut])
            r = append_samples(sts, pv, D, batch[max(0, cut - 3) :])
            assert r.written == len(batch) - cut
            appended[pv].extend(batch)
        now = hour + HOUR + 300  # hh:05 of the next hour
        st = run_etl(sts, mts, now=now)
        assert st.errors == []
        # nothing before the current hour is left in the STS
        assert files_of(sts) == []
        if (now // HOUR) % 8 in (0, 7):  # check around each MTS -> LTS pass (every 8 hours)
            for pv in PVS:
                assert union_of(chain, pv) == appended[pv]
        if (now // HOUR) % 8 == 0:
            assert run_etl(mts, lts, now=now).errors == []
            for pv in PVS:
                assert union_of(chain, pv) == appended[pv]
    assert_all_files_valid(*chain)
    for pv in PVS:
        # the last MTS pass ran at day 5 00:05: only day 4 (one completed day) is left
        assert [pf.start for pf in mts.files_for_pv(pv)] == [start + 4 * DAY]
    # year files in the LTS, one per year
    assert names_of(lts, "SR-01:BPM:X") == spelled(lts, "X:2024.pb", "X:2025.pb")
    consolidate(chain, "LTS")
    assert files_of(sts) == [] and files_of(mts) == []
    for pv in PVS:
        assert read_pv(lts, pv) == appended[pv]
    assert_all_files_valid(lts)


def test_year_boundary_ends_in_two_year_files(tmp_path: Path) -> None:
    sts, mts, lts = sts_store(tmp_path), mts_store(tmp_path), lts_store(tmp_path)
    begin = calendar.timegm((2024, 12, 31, 20, 0, 0))
    end = calendar.timegm((2025, 1, 1, 4, 0, 0))
    data = stream(begin, end, 13, random.Random(8))
    append_samples(sts, PV, D, data)
    now = calendar.timegm((2025, 1, 5, 0, 5, 0))
    assert run_etl(sts, mts, now=now).files_moved == 8
    assert names_of(mts, PV) == spelled(mts, "X:2024_12_31.pb", "X:2025_01_01.pb")
    assert run_etl(mts, lts, now=now).files_moved == 2
    assert names_of(lts, PV) == spelled(lts, "X:2024.pb", "X:2025.pb")
    y2024, y2025 = (pf.path for pf in lts.files_for_pv(PV))
    with PBFile.open(y2024) as a, PBFile.open(y2025) as b:
        assert (a.header.year, b.header.year) == (2024, 2025)
        assert a.header.pvname == b.header.pvname == PV
    new_year = calendar.timegm((2025, 1, 1, 0, 0, 0))
    assert read_pv(lts, PV) == data
    assert validate_file(y2024).last[0] < new_year <= validate_file(y2025).first[0]
    assert_all_files_valid(lts)


def test_many_pvs_with_dashes_and_colons(tmp_path: Path) -> None:
    sts, mts, lts = sts_store(tmp_path), mts_store(tmp_path), lts_store(tmp_path)
    rng = random.Random(9)
    names = [*PVS, "A-B-C", "A:B:C:D", "X:Y_Z-1:VAL", "X:Y_Z-1:VAL:SUB"]
    data = {pv: stream(T0 + i, T0 + 30 * HOUR, 97 + i, rng) for i, pv in enumerate(names)}
    for pv, samples in data.items():
        append_samples(sts, pv, D, samples)
    now = T0 + 4 * DAY
    st = run_etl(sts, mts, now=now)
    assert st.errors == [] and st.files_moved == 30 * len(names)
    run_etl(mts, lts, now=now)
    assert files_of(sts) == [] and files_of(mts) == []
    assert lts.pv_names() == sorted(names)
    for relpath in spelled(lts, "A/B/C:2024.pb", "X/Y_Z/1/VAL/SUB:2024.pb"):
        assert (lts.root / relpath).exists()
    if not lts.naming.portable:  # an ordinary folder: the AA's own names, byte for byte
        assert (lts.root / "A/B/C:2024.pb").exists()
        assert (lts.root / "X/Y_Z/1/VAL/SUB:2024.pb").exists()
    for pv, samples in data.items():
        assert read_pv(lts, pv) == samples
        with PBFile.open(lts.files_for_pv(pv)[0].path) as f:
            assert f.header.pvname == pv


def test_bulk_append_is_byte_exact(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    rng = random.Random(10)
    data = stream(T0, T0 + DAY, 11, rng)
    # values with bytes that need escaping, and non-zero severity/status
    data += [
        Sample(T0 + DAY + 1, 0x0A0D1B, 1.0, severity=2, status=3),
        Sample(T0 + DAY + 2, 0x1B1B, float.fromhex("0x1.0a0d1b0a0d1bp+0")),
    ]
    append_samples(sts, PV, D, data)
    paths = [pf.path for pf in sts.files_for_pv(PV)]
    assert len(paths) == 25
    expected_day0 = header_line(PayloadInfo(D, PV, 2024)) + b"".join(
        sample_lines(p) for p in paths[:24]
    )
    expected_day1 = header_line(PayloadInfo(D, PV, 2024)) + sample_lines(paths[24])
    st = run_etl(sts, mts, now=T0 + 3 * DAY)
    assert st.files_moved == 25
    day0, day1 = (pf.path for pf in mts.files_for_pv(PV))
    assert day0.read_bytes() == expected_day0
    assert day1.read_bytes() == expected_day1
    assert st.bytes_moved == len(expected_day0) + len(expected_day1) - 2 * len(
        header_line(PayloadInfo(D, PV, 2024))
    )
    assert st.samples_moved == len(data)


def test_all_types_survive_the_chain(tmp_path: Path) -> None:
    sts, mts, lts = sts_store(tmp_path), mts_store(tmp_path), lts_store(tmp_path)
    vals = {
        PayloadType.SCALAR_STRING: lambda i: f"s\n{i}\r\x1b",
        PayloadType.SCALAR_INT: lambda i: i * 1000 - 5,
        PayloadType.SCALAR_ENUM: lambda i: i % 4,
        PayloadType.WAVEFORM_DOUBLE: lambda i: [i / 3.0] * (i % 5),
        PayloadType.WAVEFORM_STRING: lambda i: ["a", f"b{i}", "\n"],
        PayloadType.WAVEFORM_BYTE: lambda i: bytes([i % 256, 10, 13, 27]),
    }
    data = {}
    for t, make in vals.items():
        pv = f"TYPES:{t.name}"
        data[pv] = [Sample(T0 + i * 601, i, make(i)) for i in range(200)]
        append_samples(sts, pv, t, data[pv])
    run_etl(sts, mts, now=T0 + 5 * DAY)
    run_etl(mts, lts, now=T0 + 5 * DAY)
    assert files_of(sts) == [] and files_of(mts) == []
    for pv, samples in data.items():
        assert read_pv(lts, pv) == samples
    assert_all_files_valid(lts)


# ------------------------------------------------------------------ odd files


class SourceGrowsDuringMove(PlainPBStore):
    """A real destination store that, while the move is in progress, runs ``during`` once.

    The hook fires after the destination file was prepared and before the lines are copied,
    so the source changes between the listing and the delete decision.
    """

    during: Callable[[], None] | None = None

    def _prepare_file(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        out = super()._prepare_file(*args, **kwargs)
        hook, self.during = self.during, None
        if hook is not None:
            hook()
        return out


def test_source_modified_during_the_move_is_not_deleted(tmp_path: Path) -> None:
    sts = sts_store(tmp_path)
    mts = SourceGrowsDuringMove(mts_store(tmp_path).config)
    data = stream(T0, T0 + 1800, 10, random.Random(11))
    append_samples(sts, PV, D, data)
    (pf,) = sts.files_for_pv(PV)
    late = Sample(T0 + 3000, 5, 42.0)  # same hour, after the last sample

    def writer_appends() -> None:
        assert append_samples(sts, PV, D, [late]).written == 1

    mts.during = writer_appends
    n, nbytes = move_file(sts, mts, PV, pf)
    assert n == len(data) and nbytes > 0
    assert pf.path.exists(), "a source that changed during the move must be kept"
    assert read_pv(sts, PV) == [*data, late]
    assert read_pv(mts, PV) == data
    # the next pass appends only what is missing and then deletes the source
    plain_mts = mts_store(tmp_path)
    st = run_etl(sts, plain_mts, now=T0 + 2 * HOUR)
    assert (st.files_moved, st.samples_moved) == (1, 1)
    assert not pf.path.exists()
    assert read_pv(plain_mts, PV) == [*data, late]
    assert_all_files_valid(plain_mts)


def test_source_modified_during_a_run_etl_pass_is_kept(tmp_path: Path) -> None:
    sts = sts_store(tmp_path)
    mts = SourceGrowsDuringMove(mts_store(tmp_path).config)
    data = stream(T0, T0 + 2 * HOUR, 10, random.Random(12))
    append_samples(sts, PV, D, data)
    first_hour = sts.files_for_pv(PV)[0].path
    # grow the file currently being moved (the first hour) by one line
    extra = Sample(T0 + HOUR - 1, 999_999_999, -1.0)

    def grow() -> None:
        with open(first_hour, "ab") as fh:
            fh.write(sample_line(D, 2024, extra))

    mts.during = grow
    st = run_etl(sts, mts, now=T0 + 2 * HOUR + 300)
    assert st.files_moved == 2  # both copied; the changed one is kept
    assert names_of(sts, PV) == spelled(sts, "X:2024_03_10_00.pb")
    st = run_etl(sts, mts_store(tmp_path), now=T0 + 2 * HOUR + 300)
    # the extra line is older than what the destination holds by then: it cannot be appended
    # in order, so the file stays (reported), rather than being deleted with that sample
    assert st.samples_moved == 0 and st.files_skipped == 1 and "newer data" in st.errors[0]
    assert names_of(sts, PV) == spelled(sts, "X:2024_03_10_00.pb")
    assert read_pv(mts_store(tmp_path), PV) == data
    assert extra.secs in [s.secs for s in read_pv(sts, PV)]
    assert_all_files_valid(mts)


def test_zero_byte_and_header_only_files_are_deleted_when_old(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    now = T0 + 10 * HOUR + 300
    header = header_line(PayloadInfo(D, PV, 2024))

    def sts_file(h: int, content: bytes) -> Path:
        p = sts.path_for(PV, T0 + h * HOUR)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return p

    old_zero = sts_file(3, b"")
    old_header = sts_file(4, header)
    last_hour_header = sts_file(9, header)
    cur_zero = sts_file(10, b"")
    st = run_etl(sts, mts, now=now)
    assert st.files_deleted_empty == 3
    assert st.files_moved == 0 and st.errors == []
    assert not old_zero.exists() and not old_header.exists() and not last_hour_header.exists()
    assert cur_zero.exists()  # the current partition stays
    assert files_of(mts) == []

    # MTS (hold=2): empty files go once older than hold+1 partitions
    lts = lts_store(tmp_path)
    mnow = T0 + 10 * DAY + 300

    def mts_file(d: int, content: bytes) -> Path:
        p = mts.path_for(PV, T0 + d * DAY)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        return p

    d7_header, d8_header, d9_zero, d6_zero = (
        mts_file(7, header),
        mts_file(8, header),
        mts_file(9, b""),
        mts_file(6, b""),
    )
    st = run_etl(mts, lts, now=mnow)
    assert st.files_deleted_empty == 2
    assert not d7_header.exists() and not d6_zero.exists()
    assert d8_header.exists() and d9_zero.exists()
    st = run_etl(mts, lts, now=mnow + DAY)
    assert st.files_deleted_empty == 1 and d9_zero.exists()
    st = run_etl(mts, lts, now=mnow + 2 * DAY)
    assert st.files_deleted_empty == 1
    assert files_of(mts) == [] and files_of(lts) == []


def test_header_only_file_in_the_current_partition_is_kept(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    p = sts.path_for(PV, T0)
    p.parent.mkdir(parents=True)
    p.write_bytes(header_line(PayloadInfo(D, PV, 2024)))
    st = run_etl(sts, mts, now=T0 + 60)
    assert st.files_deleted_empty == 0 and p.exists()
    st = run_etl(sts, mts, now=T0 + 60, everything=True)
    assert st.files_deleted_empty == 1 and not p.exists()
    assert files_of(mts) == []


def test_corrupt_source_file_is_skipped_and_left_in_place(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    data = stream(T0, T0 + 3 * HOUR, 30, random.Random(13))
    append_samples(sts, PV, D, data)
    bad = sts.files_for_pv(PV)[1].path
    with PBFile.open(bad) as f:
        lines = [line for _off, line in f.iter_lines(f.header_end)]
        f.fh.seek(0)
        head = f.fh.read(f.header_end)
    corrupt = head + b"".join(x + b"\n" for x in lines[:50])
    corrupt += b"garbage in the middle\n" + b"".join(x + b"\n" for x in lines[50:])
    bad.write_bytes(corrupt)
    st = run_etl(sts, mts, now=T0 + 5 * HOUR)
    # the hour before it moves; the hours after it wait, so that once the bad file is
    # repaired it can still be appended in order (moving them first would strand it)
    assert st.files_moved == 1 and st.files_skipped == 1
    assert len(st.errors) == 1 and str(bad) in st.errors[0]
    assert "corrupt" in st.errors[0]
    assert bad.read_bytes() == corrupt
    assert names_of(sts, PV) == [bad.name, *spelled(sts, "X:2024_03_10_02.pb")]
    assert read_pv(mts, PV) == data[:120]
    # the next pass reports it again and still leaves it alone
    again = run_etl(sts, mts, now=T0 + 6 * HOUR)
    assert again.files_skipped == 1 and bad.read_bytes() == corrupt
    # after `pvarchiver pb repair` the rest moves, in order, with only the garbage line gone
    from pvarchiver.storage.validate import repair_file

    repair_file(bad)
    done = run_etl(sts, mts, now=T0 + 6 * HOUR)
    assert done.files_moved == 2 and not done.errors
    assert read_pv(mts, PV) == data


def test_file_whose_header_names_another_pv_is_not_moved(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    rng = random.Random(14)
    mine = stream(T0, T0 + 2 * HOUR, 60, rng)
    append_samples(sts, PV, D, mine)
    other = "OTHER:PV"
    theirs = stream(T0, T0 + HOUR, 45, rng)
    append_samples(sts, other, D, theirs)
    # a file of OTHER:PV lands at the path of PV's second hour (e.g. a botched rename)
    misplaced = sts.files_for_pv(PV)[1].path
    shutil.copyfile(sts.files_for_pv(other)[0].path, misplaced)
    before = misplaced.read_bytes()
    st = run_etl(sts, mts, now=T0 + 3 * HOUR)
    assert misplaced.exists() and misplaced.read_bytes() == before
    assert any(str(misplaced) in e for e in st.errors)
    # PV's own first hour and OTHER:PV's own file moved, each to its own place
    assert read_pv(mts, PV) == mine[:60]
    assert read_pv(mts, other) == theirs
    assert names_of(sts, other) == []


def test_rerun_after_partial_move_appends_only_missing_lines(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    data = stream(T0, T0 + HOUR, 9, random.Random(15))
    append_samples(sts, PV, D, data)
    (src,) = (pf.path for pf in sts.files_for_pv(PV))
    src_bytes = src.read_bytes()
    with PBFile.open(src) as f:
        offsets = [off for off, _ in f.iter_lines(f.header_end)]
    half = offsets[len(offsets) // 2]
    # a killed move left the header and the first half in the destination
    dst = mts.path_for(PV, T0)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src_bytes[:half])
    st = run_etl(sts, mts, now=T0 + DAY)
    assert (st.files_moved, st.samples_moved) == (1, len(offsets) - len(offsets) // 2)
    assert dst.read_bytes() == src_bytes
    assert not src.exists()
    assert read_pv(mts, PV) == data


def test_rerun_after_kill_mid_line_truncates_and_completes(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    data = stream(T0, T0 + HOUR, 9, random.Random(16))
    append_samples(sts, PV, D, data)
    (src,) = (pf.path for pf in sts.files_for_pv(PV))
    src_bytes = src.read_bytes()
    with PBFile.open(src) as f:
        offsets = [off for off, _ in f.iter_lines(f.header_end)]
    cut = offsets[100] + 5  # five bytes into line 101
    dst = mts.path_for(PV, T0)
    dst.parent.mkdir(parents=True)
    dst.write_bytes(src_bytes[:cut])
    assert [p.kind for p in validate_file(dst).problems] == ["partial-tail"]
    st = run_etl(sts, mts, now=T0 + DAY)
    assert st.samples_moved == len(offsets) - 100
    assert dst.read_bytes() == src_bytes
    assert not src.exists()


def test_rerun_when_destination_already_has_everything(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    data = stream(T0, T0 + HOUR, 20, random.Random(17))
    append_samples(sts, PV, D, data)
    (src,) = (pf.path for pf in sts.files_for_pv(PV))
    dst = mts.path_for(PV, T0)
    dst.parent.mkdir(parents=True)
    shutil.copyfile(src, dst)  # killed after the fsync, before the delete
    st = run_etl(sts, mts, now=T0 + DAY)
    assert (st.files_moved, st.samples_moved, st.bytes_moved) == (1, 0, 0)
    assert not src.exists()
    assert dst.read_bytes() == header_line(PayloadInfo(D, PV, 2024)) + b"".join(
        sample_line(D, 2024, s) for s in data
    )


def test_consolidate_moves_the_current_partition_too(tmp_path: Path) -> None:
    sts, mts, lts = sts_store(tmp_path), mts_store(tmp_path), lts_store(tmp_path)
    now = int(time.time())
    rng = random.Random(18)
    data = {pv: stream(now - 3 * HOUR, now + 1, 31, rng) for pv in PVS}
    for pv, samples in data.items():
        append_samples(sts, pv, D, samples)
    # into the MTS only
    stats = consolidate([sts, mts, lts], "MTS", pvs=[PVS[0]])
    assert [s.dest for s in stats] == ["MTS"]
    assert names_of(sts, PVS[0]) == []
    assert read_pv(mts, PVS[0]) == data[PVS[0]]
    assert names_of(sts, PVS[1]) != []  # other PVs untouched
    stats = consolidate([sts, mts, lts], "LTS")
    assert [(s.source, s.dest) for s in stats] == [("STS", "MTS"), ("MTS", "LTS")]
    assert files_of(sts) == [] and files_of(mts) == []
    for pv, samples in data.items():
        assert read_pv(lts, pv) == samples
    assert_all_files_valid(lts)
    with pytest.raises(ValueError):
        consolidate([sts, mts, lts], "XTS")


def test_destination_finer_than_source_goes_event_by_event(tmp_path: Path) -> None:
    day = make_store(tmp_path, "DAYS", "PARTITION_DAY")
    hour = make_store(tmp_path, "HOURS", "PARTITION_HOUR")
    data = stream(T0 + 1800, T0 + 2 * DAY, 123, random.Random(19))
    append_samples(day, PV, D, data)
    # a killed earlier pass had already put the first 100 samples into the hourly store
    append_samples(hour, PV, D, data[:100])
    st = run_etl(day, hour, now=T0 + 3 * DAY)
    assert (st.files_moved, st.samples_moved, st.errors) == (2, len(data) - 100, [])
    assert files_of(day) == []
    assert len(names_of(hour, PV)) == 48
    assert read_pv(hour, PV) == data
    assert_all_files_valid(hour)
    for pf in hour.files_for_pv(PV):
        rep = validate_file(pf.path)
        assert pf.start <= rep.first[0] and rep.last[0] < pf.end


def test_pvs_filter_moves_only_the_named_pvs(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    rng = random.Random(20)
    for pv in PVS:
        append_samples(sts, pv, D, stream(T0, T0 + 2 * HOUR, 300, rng))
    st = run_etl(sts, mts, now=T0 + 3 * HOUR, pvs=[PVS[2]])
    assert st.files_moved == 2
    assert mts.pv_names() == [PVS[2]]
    assert sorted(sts.pv_names()) == sorted(set(PVS) - {PVS[2]})


def test_etl_source_store_keeps_appending_after_a_move(tmp_path: Path) -> None:
    """The engine keeps writing into the STS object whose files the ETL deleted."""
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    rng = random.Random(21)
    first = stream(T0, T0 + HOUR, 10, rng)
    append_samples(sts, PV, D, first)
    run_etl(sts, mts, now=T0 + HOUR + 300)
    assert files_of(sts) == []
    second = stream(T0 + HOUR, T0 + 2 * HOUR, 10, rng)
    assert append_samples(sts, PV, D, second).written == len(second)
    run_etl(sts, mts, now=T0 + 2 * HOUR + 300)
    assert read_pv(mts, PV) == first + second
    assert_all_files_valid(sts, mts)


def test_partition_file_listing_matches_what_etl_moves(tmp_path: Path) -> None:
    sts, mts = sts_store(tmp_path), mts_store(tmp_path)
    append_samples(sts, PV, D, stream(T0, T0 + 3 * HOUR, 600, random.Random(22)))
    listed = sts.files_for_pv(PV)
    assert [type(pf) for pf in listed] == [PartitionFile] * 3
    assert [pf.end - pf.start for pf in listed] == [HOUR] * 3
    st = run_etl(sts, mts, now=T0 + 3 * HOUR)
    assert st.files_moved == 3 and files_of(sts) == []
