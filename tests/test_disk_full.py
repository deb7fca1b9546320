"""A real full disk (a small tmpfs): appends fail cleanly, files stay valid, nothing is lost."""

from __future__ import annotations

import calendar
import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import StoreError
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.etl import run_etl
from pvarchiver.storage.validate import validate_file

from .helpers.stores import make_store
from .http_server import running_server

T0 = calendar.timegm((2025, 6, 1, 0, 0, 0))
D = PayloadType.SCALAR_DOUBLE


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str, options: str = "") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``mnt`` (needs root; skips the test otherwise)."""
    mnt.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (f",{options}" if options else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "256k") as mnt:
        yield mnt


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
            r = append_samples(sts, "FULL:PV", D, batch)
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
    r = append_samples(sts, "FULL:PV", D, failed)
    assert r.written == len(failed)
    assert [s.secs for s in sts.read_all("FULL:PV")] == [s.secs for s in written + failed]


def test_etl_into_a_full_disk_keeps_the_source(tmp_path: Path, small_disk: Path) -> None:
    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    mts = make_store(small_disk, "MTS", "PARTITION_DAY")
    samples = [Sample(T0 + i, 0, float(i)) for i in range(3 * 3600)]  # ~185 kB
    append_samples(sts, "FULL:ETL", D, samples)
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


def fill(path: Path) -> int:
    """Write ``path`` until the disk is full; returns the bytes written."""
    n = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(b"x" * 4096)
            except OSError:
                return n


def test_the_served_disk_fills_and_frees_and_nothing_is_lost(tmp_path: Path) -> None:
    """Issue 15, item 4, through the real server and a real IOC: the STS's file system runs
    low (a warning in getApplianceHealth, /metrics and the log, before any write fails),
    then full (the PVs' writes fail and say so; files stay valid), then is freed: every
    value the IOC produced in between is in the .pb files, because the engine kept them
    (and the journal, on another disk with room, held them)."""
    from .helpers.mgmt import ioc_env as ca_env
    from .helpers.serve_checks import assert_contiguous, metric, stored_values
    from .helpers.wait import wait_for
    from .ioc import IOC

    pvs = [f"DF:c{i}" for i in range(4)]
    db = "".join(
        f'record(calc, "{pv}") {{ field(SCAN, ".01 second") field(CALC, "A+1") '
        f'field(INPA, "{pv}") }}\n'
        for pv in pvs
    )
    root = tmp_path / "storage"
    with tmpfs(root / "sts", "2m") as sts_disk, IOC(db, tmp_path / "ioc", fast_scan=True) as ioc:
        env = {
            **ca_env(ioc),
            "PVARCHIVER_SECONDS_TO_BUFFER": "1",
            "PVARCHIVER_UNHEALTHY_AFTER_SECONDS": "3",
            "PVARCHIVER_LOW_SPACE_PERCENT": "0",
            "PVARCHIVER_LOW_SPACE_BYTES": "1MiB",
        }
        with running_server(root, env, ["--initial-sampling", "1"]) as base:

            def health() -> dict[str, object]:
                return httpx.get(base + "/mgmt/bpl/getApplianceHealth", timeout=10).json()

            def failing() -> set[str]:
                r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": ",".join(pvs)})
                return {row["pvName"] for row in r.json() if "archiveWriteError" in row}

            assert httpx.get(base + "/mgmt/bpl/archivePV", params={"pv": ",".join(pvs)}).is_success
            assert wait_for(lambda: all(stored_values(root, pv) for pv in pvs), 60, 0.2)
            assert health()["status"] == "ok"
            assert metric(base, 'pvarchiver_store_low_space{store="STS"}') == "0"
            # 1. low: a warning everywhere, while every write still succeeds
            (sts_disk / "filler-1").write_bytes(b"x" * (1200 << 10))
            filled = time.time()
            assert wait_for(lambda: health()["status"] == "warning", 30, 0.2)
            assert any(str(w).startswith("STS: low disk space") for w in health()["warnings"])
            assert metric(base, 'pvarchiver_store_low_space{store="STS"}') == "1"
            assert metric(base, "pvarchiver_stores_low_space") == "1"
            assert metric(base, "pvarchiver_write_errors_total") == "0" and not failing()
            log = next(tmp_path.glob("server-*.log"))
            assert wait_for(
                lambda: re.search(r"STS \(.*\): low disk space", log.read_text()), 20, 0.2
            )
            # 2. full: the writes fail, are reported, and the appliance turns unhealthy
            assert fill(sts_disk / "filler-2") > 0
            assert wait_for(lambda: failing() == set(pvs), 60, 0.2), failing()
            assert wait_for(lambda: health()["status"] == "unhealthy", 30, 0.2)
            assert metric(base, 'pvarchiver_store_write_failing{store="STS"}') == "1"
            for pf in sts_disk.rglob("*.pb"):
                rep = validate_file(pf)
                assert rep.ok, (pf, rep.problems)
            # 3. freed: the statuses clear by themselves and every held sample lands
            for f in sts_disk.glob("filler-*"):
                f.unlink()
            freed = time.time()
            assert wait_for(lambda: not failing() and health()["status"] == "ok", 30, 0.2)
            for pv in pvs:
                assert wait_for(lambda pv=pv: stored_values(root, pv)[-1][0] >= freed + 2, 30, 0.2)
                values = stored_values(root, pv)
                assert values[0][0] < filled  # from before the disk filled...
                assert_contiguous(values)  # ...to after it was freed, without a gap
            for pf in sts_disk.rglob("*.pb"):
                assert validate_file(pf).ok, pf
        text = log.read_text()
        assert "store STS: writes failing" in text and "writes succeed again" in text


def test_a_full_disk_does_not_stop_a_store_from_opening(tmp_path: Path) -> None:
    """serve opens its stores on a full disk (retrieval works, ETL can free space, failing
    writes are reported): the probe cannot create its scratch folder there, so the naming
    comes from the files already in the folder. (A tmpfs with few inodes, all taken: no
    folder or file can be created, as on a full ext4.)"""
    with tmpfs(tmp_path / "disk", "1m", "nr_inodes=16") as disk:
        _full_disk_opens(disk)


def _full_disk_opens(small_disk: Path) -> None:
    from pvarchiver.pb import PayloadType, Sample
    from pvarchiver.storage import open_store, parse_store_url
    from pvarchiver.storage.naming import KeyNaming
    from pvarchiver.storage.store import PlainPBStore

    url = f"pb://localhost?name=STS&rootFolder={small_disk / 'sts'}&partitionGranularity="
    config = parse_store_url(url + "PARTITION_HOUR")
    # a Windows-named store (as if copied from a Windows host), then the disk fills up
    append_samples(
        PlainPBStore(config, naming=KeyNaming(portable=True)),
        "F:X",
        PayloadType.SCALAR_DOUBLE,
        [Sample(1_700_000_000, 0, 1.0)],
    )
    for i in range(100):  # take every inode left
        try:
            (small_disk / f"f{i}").touch()
        except OSError:
            break
    with pytest.raises(OSError):
        (small_disk / "sts" / "probe").mkdir()
    st = open_store(config)
    assert st.naming.portable  # taken from the file there
    assert [s.val for s in st.read_all("F:X")] == [1.0]
