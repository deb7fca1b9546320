"""The archiver on folders with Windows' rules, for real: ntfs-3g mounted with
``windows_names`` (``:`` ``"*<>?|``, trailing dots and device names refused, as on Windows)
and lowntfs-3g with ``ignore_case`` (NTFS as Windows uses it: case-insensitive).

Before the naming work, ``serve`` on such a folder accepted every PV, said "Being archived"
and never wrote a sample. These tests run the store, ETL and the whole server there.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import default_store_urls, parse_store_url, run_etl
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.probe import probe_folder
from pvarchiver.storage.store import open_store

from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC

# PV names (valid EPICS record names) with characters and components Windows refuses in a
# file name: ``:`` everywhere, ``<>``, a device name as a folder
PVS = ["WIN:DEMO:CNT", "CON:TEMP", "WIN:A<1>", "AUX:Q>R"]


def _counter_db(names: list[str]) -> str:
    return "".join(
        f'record(calc, "{n}") {{ field(SCAN, ".1 second") field(CALC, "A+1") '
        f'field(INPA, "{n}") }}\n'
        for n in names
    )


def _store(root: Path, name: str, gran: str):
    folder = root / name.lower()
    return open_store(
        parse_store_url(
            f"pb://localhost?name={name}&rootFolder={folder}&partitionGranularity={gran}"
        )
    )


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + "Z"


def test_probe_sees_windows_rules(ntfs_root: Path, ntfs_ci_root: Path) -> None:
    p = probe_folder(ntfs_root)
    assert set(':"*<>?|.') <= p.refused and "\uf03a" not in p.refused
    assert not p.case_insensitive
    q = probe_folder(ntfs_ci_root)
    assert ":" in q.refused and q.case_insensitive


def test_store_and_etl_under_ntfs_rules(ntfs_root: Path) -> None:
    sts = _store(ntfs_root, "STS", "PARTITION_HOUR")
    mts = _store(ntfs_root, "MTS", "PARTITION_DAY")
    assert sts.naming.portable and sts.naming.file_terminator == "\uf03a"
    t0 = 1_700_000_000
    for k, pv in enumerate(PVS):
        append_samples(
            sts, pv, PayloadType.SCALAR_DOUBLE, [Sample(t0 + i * 900, 0, k + i) for i in range(8)]
        )
    names = {str(p.relative_to(ntfs_root / "sts")) for p in (ntfs_root / "sts").rglob("*.pb")}
    assert "WIN/DEMO/CNT\uf03a2023_11_14_22.pb" in names
    assert any(n.startswith("CO\uf04e/TEMP\uf03a") for n in names)
    for pv in PVS:
        assert [s.val for s in sts.read_all(pv)] == [float(PVS.index(pv) + i) for i in range(8)]
    run_etl(sts, mts, now=t0 + 10 * 86400)
    assert not list((ntfs_root / "sts").rglob("*.pb"))
    for k, pv in enumerate(PVS):
        assert [s.val for s in mts.read_all(pv)] == [float(k + i) for i in range(8)]


def test_case_insensitive_store_finds_its_files(ntfs_ci_root: Path) -> None:
    """lowntfs-3g lists every name in lower case: the store still finds a PV's files."""
    sts = _store(ntfs_ci_root, "STS", "PARTITION_HOUR")
    assert sts.naming.case_insensitive
    t0 = 1_700_000_000
    append_samples(
        sts, "SR:Bpm1:X", PayloadType.SCALAR_DOUBLE, [Sample(t0 + i, 0, i) for i in range(5)]
    )
    assert [s.val for s in sts.read_all("SR:Bpm1:X")] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sts.files_for_pvs(["SR:Bpm1:X"])["SR:Bpm1:X"]
    sts.forget("SR:Bpm1:X")
    assert sts.last_known_timestamp("SR:Bpm1:X") == (t0 + 4, 0)


def test_archive_pv_refuses_a_name_differing_only_in_case(ntfs_ci_root: Path) -> None:
    root = ntfs_ci_root / "storage"
    with running_server(root, {}, ["--initial-sampling", "0.5"]) as base:
        r = httpx.get(base + "/mgmt/bpl/archivePV", params={"pv": "SR:Bpm1:X"})
        assert r.status_code == 200 and r.json()[0]["status"] == "Archive request submitted"
        r = httpx.get(base + "/mgmt/bpl/archivePV", params={"pv": "SR:BPM1:X"})
        assert r.status_code == 400
        assert "SR:BPM1:X" in r.text and "SR:Bpm1:X" in r.text and "ignores case" in r.text
        # the same request twice in one POST, neither archived before: refused as a whole
        r = httpx.post(base + "/mgmt/bpl/archivePV", json=[{"pv": "A:b"}, {"pv": "A:B"}])
        assert r.status_code == 400 and "A:b" in r.text
        r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": "A:b"})
        assert r.json()[0]["status"] == "Not being archived"
        # a name that cannot be a file name at all
        r = httpx.get(base + "/mgmt/bpl/archivePV", params={"pv": "A/B:C"})
        assert r.status_code == 400 and "A/B:C" in r.text


@pytest.mark.slow
def test_serve_on_ntfs_archives_and_reads_back_after_restart(
    ntfs_root: Path, tmp_path: Path
) -> None:
    root = ntfs_root / "storage"
    with IOC(_counter_db(PVS), tmp_path / "ioc") as ioc:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
        }
        args = [a for pv in PVS for a in ("--archive", pv)]
        with running_server(root, env, [*args, "--initial-sampling", "0.5"]) as base:
            rows: list[dict[str, str]] = []

            def all_archived() -> bool:
                nonlocal rows
                r = httpx.get(base + "/mgmt/bpl/getPVStatus", params={"pv": ",".join(PVS)})
                rows = r.json()
                return all(row["status"] == "Being archived" for row in rows)

            assert wait_for(all_archived, 60, 0.2), rows
            time.sleep(2)
        # SIGTERM flushed the engine (and consolidateOnShutdown moved STS on): the files are
        # on the NTFS folder, with portable names
        files = [p.relative_to(root) for p in root.rglob("*.pb")]
        assert len(files) == len(PVS), files
        assert all(":" not in str(f) and "\uf03a" in f.name for f in files)
        first: dict[str, list[float]] = {}
        stores = [open_store(parse_store_url(u)) for u in default_store_urls(root)]
        for pv in PVS:
            first[pv] = [s.val for st in reversed(stores) for s in st.read_all(pv)]
            assert len(first[pv]) >= 15, (pv, first[pv])
        # restart on the same folder: the old data is read back and archiving goes on
        with running_server(root, env, ["--initial-sampling", "0.5"]) as base:
            vals: dict[str, list[float]] = {}

            def archiving_on() -> bool:
                for pv in PVS:
                    r = httpx.get(
                        base + "/retrieval/data/getData.json",
                        params={
                            "pv": pv,
                            "from": _iso(time.time() - 600),
                            "to": _iso(time.time() + 60),
                        },
                        timeout=10,
                    )
                    vals[pv] = (
                        [d["val"] for d in r.json()[0]["data"]] if r.status_code == 200 else []
                    )
                return all(len(vals[pv]) > len(first[pv]) + 5 for pv in PVS)

            wait_for(archiving_on, 60, 0.3)
        for pv in PVS:
            got = vals[pv]
            assert got[: len(first[pv])] == first[pv], pv
            assert len(got) > len(first[pv]) + 5, pv
            assert all(b > a for a, b in itertools.pairwise(got)), pv
