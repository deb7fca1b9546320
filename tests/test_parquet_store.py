"""``parquet://`` stores (issue 19): write, read, append, ETL PlainPB -> Parquet -> Parquet ->
PlainPB with a clock the test controls, damaged and foreign files, and the CLI (validate,
dump, repair, convert) as real subprocesses. Real files throughout."""

from __future__ import annotations

import calendar
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.retrieval.sources import merged_chunks
from pvarchiver.storage import parquet_schema, parquet_store
from pvarchiver.storage.batch import Batch, append_samples
from pvarchiver.storage.etl import run_etl
from pvarchiver.storage.parquet_store import ParquetReadError, ParquetStore, open_file
from pvarchiver.storage.store import PlainPBStore, StoreError, TypeMismatchError
from pvarchiver.storage.url import parse_store_url
from pvarchiver.storage.validate import repair_file, validate_file

SRC = Path(__file__).resolve().parents[1] / "src"
D = PayloadType.SCALAR_DOUBLE
PV = "PQ:TEST:sine"
T0 = calendar.timegm((2024, 3, 10, 0, 0, 0))  # a midnight, UTC
HOUR, DAY = 3600, 86400
NS_MAX = 999_999_999


def pq_store(
    root: Path, name: str = "LTS", gran: str = "PARTITION_YEAR", extra: str = ""
) -> ParquetStore:
    url = f"parquet://localhost?name={name}&rootFolder={root}&partitionGranularity={gran}{extra}"
    return ParquetStore(parse_store_url(url))


def pb_store(root: Path, name: str = "STS", gran: str = "PARTITION_HOUR") -> PlainPBStore:
    url = f"pb://localhost?name={name}&rootFolder={root}&partitionGranularity={gran}"
    return PlainPBStore(parse_store_url(url))


def ramp(t_begin: int, t_end: int, step: int) -> list[Sample]:
    return [Sample(t, (t * 7919) % 1_000_000_000, t * 0.5) for t in range(t_begin, t_end, step)]


def stamps(samples: object) -> list[tuple[int, int]]:
    return [(s.secs, s.nanos) for s in samples]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- every type
ONE = {
    PayloadType.SCALAR_STRING: "héllo",
    PayloadType.SCALAR_SHORT: -7,
    PayloadType.SCALAR_FLOAT: 1.5,
    PayloadType.SCALAR_ENUM: 3,
    PayloadType.SCALAR_BYTE: b"\x07",
    PayloadType.SCALAR_INT: -123456,
    PayloadType.SCALAR_DOUBLE: 2.25,
    PayloadType.WAVEFORM_STRING: ["a", "", "c"],
    PayloadType.WAVEFORM_SHORT: [1, -2, 3],
    PayloadType.WAVEFORM_FLOAT: [0.5, -1.5],
    PayloadType.WAVEFORM_ENUM: [0, 1],
    PayloadType.WAVEFORM_BYTE: b"\x00\x01\xff",
    PayloadType.WAVEFORM_INT: [2**31 - 1, -(2**31)],
    PayloadType.WAVEFORM_DOUBLE: [1.0, 2.0, 3.5],
    PayloadType.V4_GENERIC_BYTES: b"\x01\x02generic",
}


@pytest.mark.parametrize("ptype", list(PayloadType), ids=lambda t: t.name)
def test_every_type_round_trips_with_metadata(tmp_path: Path, ptype: PayloadType) -> None:
    st = pq_store(tmp_path, extra="&compress=ZSTD")
    val = ONE[ptype]
    empty: object = b"" if isinstance(val, bytes) else ([] if isinstance(val, list) else val)
    written = [
        Sample(T0, 1, val, 0, 0, fields={"EGU": "mm", "HIHI": "5"}, fieldactualchange=True),
        Sample(T0 + 1, 2, val, 2, 17, repeatcount=4),
        Sample(T0 + 2, 999_999_999, empty),
    ]
    if ptype == PayloadType.V4_GENERIC_BYTES:
        written[2].user_tag = 9
    r = append_samples(st, PV, ptype, written)
    assert r.written == 3
    fresh = pq_store(tmp_path)
    assert list(fresh.read_all(PV)) == written
    assert fresh.last_known_timestamp(PV) == (T0 + 2, 999_999_999)


# ---------------------------------------------------------------------- appends
def test_appends_drop_old_samples_and_keep_row_groups_bounded(tmp_path: Path) -> None:
    st = pq_store(tmp_path, gran="PARTITION_DAY")
    for k in range(30):  # 30 appends to one partition: the AA would leave 30 row groups
        append_samples(st, PV, D, ramp(T0 + k * 100, T0 + (k + 1) * 100, 1))
    r = append_samples(st, PV, D, ramp(T0 + 2900, T0 + 3100, 1))  # first 100 are already there
    assert (r.written, r.dropped_not_increasing) == (100, 100)
    path = st.path_for(PV, T0)
    assert path.name == "sine:2024_03_10.parquet"
    f, _info = open_file(path)
    with f:
        assert f.metadata.num_rows == 3100
        assert f.metadata.num_row_groups == 1
    assert stamps(pq_store(tmp_path, gran="PARTITION_DAY").read_all(PV)) == stamps(
        ramp(T0, T0 + 3100, 1)
    )
    assert not list(path.parent.glob("~TempFile~*"))


def test_appends_split_partitions_and_refuse_other_pvs_and_types(tmp_path: Path) -> None:
    st = pq_store(tmp_path, gran="PARTITION_HOUR")
    append_samples(st, PV, D, ramp(T0, T0 + 3 * HOUR, 60))
    names = sorted(p.path.name for p in st.files_for_pv(PV))
    assert names == [f"sine:2024_03_10_0{h}.parquet" for h in range(3)]
    with pytest.raises(TypeMismatchError, match="holds SCALAR_DOUBLE"):
        append_samples(
            pq_store(tmp_path, gran="PARTITION_HOUR"),
            PV,
            PayloadType.SCALAR_INT,
            [Sample(T0 + 3 * HOUR - 1, 0, 1)],
        )
    # a file of another PV at this PV's path (a botched copy) is never overwritten
    other = st.path_for("PQ:TEST:other", T0)
    other.write_bytes(st.path_for(PV, T0).read_bytes())
    with pytest.raises(StoreError, match="belongs to PV 'PQ:TEST:sine'"):
        append_samples(st, "PQ:TEST:other", D, [Sample(T0 + HOUR - 1, 0, 1.0)])


def test_row_groups_follow_the_size_and_reads_skip_groups_outside_the_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet_store, "ROW_GROUP_BYTES", 64 * 1024)
    st = pq_store(tmp_path)
    n = 200_000
    secs = T0 + np.arange(n, dtype=np.int64)
    st.append(Batch.of_columns(PV, D, secs, np.zeros(n, np.int64), np.arange(n, dtype=float))).one()
    f, _ = open_file(st.path_for(PV, T0))
    groups = f.metadata.num_row_groups
    f.close()
    assert 10 < groups < 100
    read: list[int] = []
    real = pq.ParquetFile.read_row_group

    def counting(self: pq.ParquetFile, i: int, *a: object, **k: object) -> pa.Table:
        read.append(i)
        return real(self, i, *a, **k)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counting)
    got = list(st.read(PV, (T0 + 100_000, 0), (T0 + 100_010, 0)))
    assert [s.secs for s in got] == list(range(T0 + 100_000, T0 + 100_011))
    assert len(set(read)) <= 3, read  # the group of the sample at `from`, and the range's
    read.clear()
    got = list(st.read(PV, (T0 + 100_000, 1), (T0 + 100_010, 0)))
    assert [s.secs for s in got] == list(range(T0 + 100_000, T0 + 100_011))  # one before
    assert len(set(read)) <= 3, read


# ---------------------------------------------------------------------- ETL
def test_etl_pb_to_parquet_to_parquet_to_pb_moves_everything_once(tmp_path: Path) -> None:
    sts = pb_store(tmp_path / "sts")
    mts = pq_store(tmp_path / "mts", "MTS", "PARTITION_DAY", "&compress=SNAPPY")
    lts = pq_store(tmp_path / "lts", "LTS", "PARTITION_YEAR", "&compress=ZSTD&zstdLevel=9")
    back = pb_store(tmp_path / "back", "BACK", "PARTITION_MONTH")
    data = ramp(T0, T0 + 3 * DAY, 10)
    data[5].fields = {"EGU": "V"}
    append_samples(sts, PV, D, data)
    now = T0 + 3 * DAY + 30
    s1 = run_etl(sts, mts, now=now)
    assert s1.errors == [] and s1.files_moved == 72 and s1.samples_moved == 3 * DAY // 10
    assert [p.path.name for p in mts.files_for_pv(PV)] == [
        "sine:2024_03_10.parquet",
        "sine:2024_03_11.parquet",
        "sine:2024_03_12.parquet",
    ]
    assert run_etl(sts, mts, now=now).files_moved == 0  # a rerun moves nothing
    s2 = run_etl(mts, lts, now=T0 + 400 * DAY)
    assert s2.errors == [] and s2.files_moved == 3
    append_samples(sts, PV, D, extra := ramp(T0 + 3 * DAY, T0 + 3 * DAY + 30, 10))
    s3 = run_etl(sts, lts, now=now, everything=True)  # the current hour too
    assert s3.files_moved == 1
    data += extra
    got = list(pq_store(tmp_path / "lts").read_all(PV))
    assert got == data  # nothing lost, nothing doubled, metadata kept
    run_etl(lts, back, now=T0, everything=True)
    assert list(back.read_all(PV)) == data
    assert not lts.files_for_pv(PV)


def test_etl_rerun_after_a_partial_move_does_not_duplicate(tmp_path: Path) -> None:
    sts = pb_store(tmp_path / "sts")
    lts = pq_store(tmp_path / "lts")
    data = ramp(T0, T0 + 2 * HOUR, 5)
    append_samples(sts, PV, D, data)
    # an earlier, interrupted pass left the first 100 samples in the LTS and the sources
    append_samples(lts, PV, D, data[:100])
    s = run_etl(sts, lts, now=T0 + 5 * HOUR)
    assert s.errors == [] and s.files_moved == 2
    assert list(pq_store(tmp_path / "lts").read_all(PV)) == data


def test_etl_keeps_sources_when_the_destination_holds_newer_data(tmp_path: Path) -> None:
    sts = pb_store(tmp_path / "sts")
    lts = pq_store(tmp_path / "lts")
    append_samples(sts, PV, D, ramp(T0, T0 + HOUR, 5))
    append_samples(lts, PV, D, [Sample(T0 + 100, 1, 0.0)])  # not a prefix of the source
    s = run_etl(sts, lts, now=T0 + 5 * HOUR)
    assert s.files_moved == 0 and "newer data" in s.errors[0]
    assert sts.files_for_pv(PV)


# ---------------------------------------------------------------------- damaged files
def _good_and_truncated(tmp_path: Path) -> tuple[ParquetStore, Path]:
    st = pq_store(tmp_path, gran="PARTITION_DAY")
    append_samples(st, PV, D, ramp(T0, T0 + 3 * DAY, 60))
    bad = st.path_for(PV, T0 + DAY)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    return pq_store(tmp_path, gran="PARTITION_DAY"), bad


def test_a_truncated_file_is_named_skipped_by_reads_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    st, bad = _good_and_truncated(tmp_path)
    with pytest.raises(ParquetReadError, match=str(bad.name)):
        open_file(bad)
    with caplog.at_level(logging.WARNING):
        got = list(st.read_all(PV))
    assert [s.secs for s in got] == [
        t for t in range(T0, T0 + 3 * DAY, 60) if not T0 + DAY <= t < T0 + 2 * DAY
    ]
    assert any(bad.name in r.getMessage() and "skipping" in r.getMessage() for r in caplog.records)
    rep = validate_file(bad)
    assert not rep.ok and rep.problems[0].kind == "bad-file" and bad.name in rep.problems[0].message
    rr = repair_file(bad)
    assert rr.unrepairable and not rr.changed
    # an append into a file that cannot be read leaves it as it is and names it
    last = st.path_for(PV, T0 + 2 * DAY)
    last.write_bytes(last.read_bytes()[:-10])
    fresh = pq_store(tmp_path, gran="PARTITION_DAY")
    before = last.read_bytes()
    with pytest.raises(StoreError, match=f"cannot append.*{last.name}"):
        append_samples(fresh, PV, D, [Sample(T0 + 2 * DAY + 30, 0, 1.0)])
    assert last.read_bytes() == before


def test_a_foreign_parquet_file_is_refused_with_its_name(tmp_path: Path) -> None:
    st = pq_store(tmp_path, gran="PARTITION_DAY")
    path = st.path_for(PV, T0)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"time": [1, 2], "value": [1.0, 2.0]}), path)
    with pytest.raises(ParquetReadError, match="not an archiver Parquet file"):
        open_file(path)
    assert "not an archiver Parquet file" in validate_file(path).problems[0].message
    assert list(st.read_all(PV)) == []
    with pytest.raises(StoreError, match=path.name):
        append_samples(st, PV, D, [Sample(T0 + 1, 0, 1.0)])
    # the right keys over a foreign schema
    meta = parquet_schema.footer_metadata(PV, 2024, D)
    pq.write_table(
        pa.table(
            {
                "secondsintoyear": pa.array([1], pa.int32()),
                "nano": pa.array([0], pa.int32()),
                "val": ["x"],
            }
        ).replace_schema_metadata(meta),
        path,
    )
    with pytest.raises(ParquetReadError, match="foreign schema: column 'val'"):
        open_file(path)


def test_merged_retrieval_reads_parquet_and_pb_and_the_sample_before(tmp_path: Path) -> None:
    sts = pb_store(tmp_path / "sts")
    lts = pq_store(tmp_path / "lts")
    append_samples(lts, PV, D, ramp(T0, T0 + DAY, 60))
    append_samples(sts, PV, D, ramp(T0 + DAY, T0 + DAY + HOUR, 60))
    chunks = merged_chunks([sts, lts], PV, (T0 + DAY - 90, 0), (T0 + DAY + 120, NS_MAX))
    got = [c.block.sample(i).secs for c in chunks for i in range(len(c))]
    assert got == [T0 + DAY - 120, T0 + DAY - 60, T0 + DAY, T0 + DAY + 60, T0 + DAY + 120]


# ---------------------------------------------------------------------- CLI
def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "pvarchiver", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_validate_dump_repair_and_convert(tmp_path: Path) -> None:
    sts = pb_store(tmp_path / "pb", gran="PARTITION_DAY")
    data = ramp(T0, T0 + 2 * DAY, 30)
    data[3].fields = {"EGU": "A"}
    append_samples(sts, PV, D, data)
    append_samples(
        sts, "PQ:TEST:text", PayloadType.SCALAR_STRING, [Sample(T0, 0, "a"), Sample(T0 + 1, 0, "b")]
    )
    r = run("pb", "convert", str(tmp_path / "pb"), str(tmp_path / "pq"), "--to", "parquet")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "3 files converted" in r.stdout
    again = run("pb", "convert", str(tmp_path / "pb"), str(tmp_path / "pq"), "--to", "parquet")
    assert (
        again.returncode == 0
        and "0 files converted" in again.stdout
        and "3 already" in again.stdout
    )
    lts = pq_store(tmp_path / "pq", gran="PARTITION_DAY")
    assert list(lts.read_all(PV)) == data
    f = str(lts.path_for(PV, T0))
    v = run("pb", "validate", f)
    assert v.returncode == 0 and f"OK: {PV} SCALAR_DOUBLE year 2024, 2880 samples" in v.stdout
    d = run("pb", "dump", f)
    lines = d.stdout.splitlines()
    assert json.loads(lines[0]) == {"header": {"type": "SCALAR_DOUBLE", "pvname": PV, "year": 2024}}
    assert json.loads(lines[4])["fields"] == {"EGU": "A"} and len(lines) == 2881
    back = run("pb", "convert", str(tmp_path / "pq"), str(tmp_path / "pb2"), "--to", "pb")
    assert back.returncode == 0, back.stdout
    for rel in ("PQ/TEST/sine:2024_03_10.pb", "PQ/TEST/text:2024_03_10.pb"):
        assert (tmp_path / "pb2" / rel).read_bytes() == (tmp_path / "pb" / rel).read_bytes()
    # a conflicting file in DST is not overwritten
    victim = tmp_path / "pb2" / "PQ/TEST/text:2024_03_10.pb"
    victim.write_bytes((tmp_path / "pb" / "PQ/TEST/sine:2024_03_10.pb").read_bytes())
    c = run("pb", "convert", str(tmp_path / "pq"), str(tmp_path / "pb2"), "--to", "pb")
    assert c.returncode == 1 and "1 conflicts" in c.stdout
    # validate of a truncated file names it and fails
    Path(f).write_bytes(Path(f).read_bytes()[:100])
    bad = run("pb", "validate", f)
    assert bad.returncode == 1 and "bad-file" in bad.stdout
