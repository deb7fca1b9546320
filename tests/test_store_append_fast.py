"""The store's append fast path (a file this store appended to last is not re-read): it must
be exactly as safe as the full check whenever the file changed behind the store's back, and
a failed write must leave the file as it was."""

from __future__ import annotations

import calendar
import errno
import os
from pathlib import Path

import numpy as np
import pytest

from pvarchiver.pb import PayloadType, Sample, header_line, sample_line
from pvarchiver.pb.sample import PayloadInfo
from pvarchiver.storage import PlainPBStore, StoreError
from pvarchiver.storage.batch import Batch, append_samples

PV = "EIOC:LI30:MP01:HEARTBEAT"
T0 = calendar.timegm((2012, 8, 24, 16, 0, 0))
D = PayloadType.SCALAR_DOUBLE


def s(i: int) -> Sample:
    return Sample(T0 + i, 0, float(i))


def lines(*idx: int) -> bytes:
    return b"".join(sample_line(D, 2012, s(i)) for i in idx)


HEADER = header_line(PayloadInfo(D, PV, 2012))


def test_second_append_is_byte_identical_to_the_first_kind(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, [s(0), s(1)])
    append_samples(sts, PV, D, [s(2)])  # the fast path: the file is as the store left it
    path = sts.path_for(PV, T0)
    assert path.read_bytes() == HEADER + lines(0, 1, 2)


def test_partial_line_written_behind_the_cache_is_cut(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, [s(0)])
    path = sts.path_for(PV, T0)
    with open(path, "ab") as fh:  # a crashed writer (another process) left half a line
        fh.write(lines(1)[:5])
    r = append_samples(sts, PV, D, [s(2)])
    assert r.written == 1
    assert path.read_bytes() == HEADER + lines(0, 2)


def test_file_deleted_behind_the_cache_is_created_again(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, [s(0)])
    path = sts.path_for(PV, T0)
    path.unlink()  # e.g. ETL moved it to the MTS
    assert append_samples(sts, PV, D, [s(1)]).written == 1
    assert path.read_bytes() == HEADER + lines(1)


def test_file_replaced_by_another_pvs_file_is_refused(sts: PlainPBStore) -> None:
    append_samples(sts, PV, D, [s(0)])
    path = sts.path_for(PV, T0)
    foreign = header_line(PayloadInfo(D, "OTHER:PV", 2012))
    path.write_bytes(foreign)
    with pytest.raises(StoreError, match="belongs to PV"):
        append_samples(sts, PV, D, [s(1)])
    assert path.read_bytes() == foreign


def test_failed_write_leaves_the_file_as_it_was_and_retry_works(
    sts: PlainPBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    append_samples(sts, PV, D, [s(0)])
    path = sts.path_for(PV, T0)
    real_write = os.write

    def half_then_full(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[: len(data) // 2]))  # some bytes reach the file, then...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pvarchiver.storage.store.os.write", half_then_full)
    with pytest.raises(StoreError, match="No space left"):
        append_samples(sts, PV, D, [s(1), s(2)])
    assert path.read_bytes() == HEADER + lines(0)
    monkeypatch.setattr("pvarchiver.storage.store.os.write", real_write)
    assert append_samples(sts, PV, D, [s(1), s(2)]).written == 2
    assert path.read_bytes() == HEADER + lines(0, 1, 2)


def test_batch_path_uses_the_same_safe_append(
    sts: PlainPBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = ["A:1", "B:2"]

    def cols(first: int, n: int) -> tuple[np.ndarray, ...]:
        secs = np.array([T0 + first + i for i in range(n)] * 2, dtype=np.int64)
        return (
            secs,
            np.zeros(2 * n, dtype=np.int64),
            secs.astype(np.float64),
            np.zeros(2 * n, dtype=np.int32),
            np.zeros(2 * n, dtype=np.int32),
        )

    res = sts.append(Batch.of_many(D, names, [3, 3], *cols(0, 3)))
    assert not res.failures and res.written == [3, 3]
    before = {n: sts.path_for(n, T0).read_bytes() for n in names}

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pvarchiver.storage.store.os.write", full)
    res = sts.append(Batch.of_many(D, names, [2, 2], *cols(3, 2)))
    assert set(res.failures) == set(names) and res.written == [0, 0]
    assert {n: sts.path_for(n, T0).read_bytes() for n in names} == before
    monkeypatch.undo()
    res = sts.append(Batch.of_many(D, names, [2, 2], *cols(3, 2)))
    assert not res.failures and res.written == [2, 2]
    for n in names:
        got = [x.secs - T0 for x in sts.read_all(n)]
        assert got == [0, 1, 2, 3, 4]


def test_new_files_are_not_left_open(sts: PlainPBStore, tmp_path: Path) -> None:
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for i in range(50):
        append_samples(sts, f"X:{i}", D, [s(0)])
        append_samples(sts, f"X:{i}", D, [s(1)])
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds + 1


def test_many_pv_batch_writes_the_same_bytes_and_counts_per_pv(tmp_path: Path) -> None:
    from .helpers.stores import make_store

    a = make_store(tmp_path / "a", "STS", "PARTITION_HOUR")
    b = make_store(tmp_path / "b", "STS", "PARTITION_HOUR")
    names = ["P:1", "P:2", "P:3"]
    append_samples(a, "P:2", D, [s(1)])  # P:2 already holds its second row: one dropped
    append_samples(b, "P:2", D, [s(1)])
    # P:3 crosses an hour: two partitions, two files
    secs = np.array([T0, T0 + 1, T0, T0 + 1, T0 + 3599, T0 + 3600], dtype=np.int64)
    cols = (
        secs,
        np.zeros(6, dtype=np.int64),
        secs.astype(np.float64),
        np.zeros(6, dtype=np.int32),
        np.zeros(6, dtype=np.int32),
    )
    res = a.append(Batch.of_many(D, names, [2, 2, 2], *cols))
    one = [append_samples(b, n, D, [Sample(int(t), 0, float(t)) for t in secs[2 * i : 2 * i + 2]])
           for i, n in enumerate(names)]  # fmt: skip
    assert not res.failures
    assert res.written == [r.written for r in one] == [2, 0, 2]
    assert res.dropped_not_increasing == [r.dropped_not_increasing for r in one] == [0, 2, 0]
    assert res.bytes_written == [r.bytes_written for r in one]
    rel_a = [f.relative_to(a.root) for f in res.files]
    assert rel_a == [f.relative_to(b.root) for r in one for f in r.files] and len(rel_a) == 3
    assert res.total_written == 4
    empty = a.append(Batch.of_many(D, [], [], *(c[:0] for c in cols)))
    assert (empty.written, empty.failures, empty.files) == ([], {}, [])
    for n in names:
        for fa, fb in zip(a.files_for_pv(n), b.files_for_pv(n), strict=True):
            assert fa.path.read_bytes() == fb.path.read_bytes()
