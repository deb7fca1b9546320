"""A real full disk (a small tmpfs): appends fail cleanly, files stay valid, nothing is lost."""

from __future__ import annotations

import calendar
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import StoreError
from pvarchiver.storage.etl import run_etl
from pvarchiver.storage.validate import validate_file

from .conftest import make_store

T0 = calendar.timegm((2025, 6, 1, 0, 0, 0))
D = PayloadType.SCALAR_DOUBLE


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_append_on_a_full_disk_keeps_files_valid_and_loses_nothing(small_disk: Path) -> None:
    sts = make_store(small_disk, "STS", "PARTITION_DAY")
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * 150_000)
    written: list[Sample] = []
    failed: list[Sample] = []
    t = T0
    while not failed:
        batch = [Sample(t + i, 0, float(t + i)) for i in range(500)]
        t += 500
        try:
            r = sts.append("FULL:PV", D, batch)
        except StoreError as e:
            assert "failed" in str(e) or "cannot create" in str(e)
            failed = batch
            break
        assert r.written == len(batch)
        written += batch
    assert written, "the disk filled up before anything was written"
    for pf in sts.files_for_pv("FULL:PV"):
        rep = validate_file(pf.path)
        assert rep.ok, rep.problems
    assert [s.secs for s in sts.read_all("FULL:PV")] == [s.secs for s in written]
    # free space: the batch that failed goes in, nothing is duplicated or missing
    filler.unlink()
    r = sts.append("FULL:PV", D, failed)
    assert r.written == len(failed)
    assert [s.secs for s in sts.read_all("FULL:PV")] == [s.secs for s in written + failed]


def test_etl_into_a_full_disk_keeps_the_source(tmp_path: Path, small_disk: Path) -> None:
    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    mts = make_store(small_disk, "MTS", "PARTITION_DAY")
    samples = [Sample(T0 + i, 0, float(i)) for i in range(3 * 3600)]  # ~185 kB
    sts.append("FULL:ETL", D, samples)
    (small_disk / "filler").write_bytes(b"x" * 200_000)
    stats = run_etl(sts, mts, now=T0 + 2 * 86400)
    assert stats.files_skipped >= 1 and stats.errors
    everything = {s.secs for st in (sts, mts) for s in st.read_all("FULL:ETL")}
    assert everything == {s.secs for s in samples}
    (small_disk / "filler").unlink()
    stats = run_etl(sts, mts, now=T0 + 2 * 86400)
    assert not stats.errors
    assert [s.secs for s in mts.read_all("FULL:ETL")] == [s.secs for s in samples]
    assert sts.files_for_pv("FULL:ETL") == []
    for pf in mts.files_for_pv("FULL:ETL"):
        assert validate_file(pf.path).ok
