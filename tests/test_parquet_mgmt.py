"""Parquet stores in a PV's chain through the management API (issue 19 follow-ups): a real
``pvarchiver serve`` moves, renames, deletes and reports ``.parquet`` files as it does
``.pb`` ones, and refuses with the reason what it does not do for them (changeTypeForPV,
mergeInData into a Parquet store).

Data is written into the store folders before the typeinfos are put, with 2020 time stamps;
each step checks both the files on disk and what retrieval answers.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.parquet_store import ParquetStore
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import parse_store_url

from .helpers.mgmt import bpl
from .http_server import Server, running_server

D = PayloadType.SCALAR_DOUBLE
T0 = calendar.timegm((2020, 3, 1, 0, 0, 0))
SAMPLES = [Sample(T0 + i * 60, 0, float(i)) for i in range(100)]  # 100 minutes: 2 STS hours


def write(store: PlainPBStore | ParquetStore, pv: str, samples: Sequence[Sample]) -> None:
    """Seed a store."""
    append_samples(store, pv, D, list(samples))


def pb_url(folder: Path, name: str, gran: str = "PARTITION_YEAR") -> str:
    return f"pb://localhost?name={name}&rootFolder={folder}&partitionGranularity={gran}"


def pq_url(folder: Path, name: str = "LTS") -> str:
    return (
        f"parquet://localhost?name={name}&rootFolder={folder}"
        "&partitionGranularity=PARTITION_YEAR&compress=ZSTD"
    )


def files(folder: Path, ext: str) -> list[Path]:
    return sorted(p for p in folder.rglob(f"*{ext}") if "~TempFile~" not in p.name)


def count(base: str, pv: str) -> int:
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": "2019-01-01T00:00:00.000Z", "to": "2021-01-01T00:00:00.000Z"},
        timeout=30,
    )
    if r.status_code == 404:
        return 0
    assert r.status_code == 200, r.text
    return sum(len(p["data"]) for p in r.json())


def put(base: str, pv: str, stores: list[str]) -> None:
    ti = {"pvName": pv, "DBRType": "DBR_SCALAR_DOUBLE", "paused": "true", "dataStores": stores}
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": pv, "createnew": "true"}, json=ti)
    assert r.status_code == 200, r.text


def refused(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert text in r.json()["validation"], r.text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("pqmgmt")
    with running_server(root / "storage") as base:
        yield base, root


@pytest.mark.slow
def test_consolidate_into_parquet_and_change_store_both_ways(site: tuple[Server, Path]) -> None:
    base, root = site
    pv = "PQM:MOVE"
    sts_url = pb_url(root / "sts", "STS", "PARTITION_HOUR")
    sts = PlainPBStore(parse_store_url(sts_url))
    write(sts, pv, SAMPLES)
    put(base, pv, [sts_url, pq_url(root / "pq1")])
    assert count(base, pv) == 100
    r = bpl(base, "consolidateDataForPV", params={"pv": pv, "storage": "LTS"})
    assert r.status_code == 200, r.text
    assert r.json()["samplesMoved"] == "100"
    assert not files(root / "sts", ".pb")
    assert [p.name for p in files(root / "pq1", ".parquet")] == ["MOVE:2020.parquet"]
    assert count(base, pv) == 100
    # space reports walk the Parquet folder too
    rows = bpl(base, "getStorageMetrics").json()
    pq_row = next(row for row in rows if row["rootFolder"] == str(root / "pq1"))
    assert pq_row["fileCount"] == "1" and int(pq_row["pvarchiver_space_used_bytes"]) > 0
    consumed = bpl(base, "getPVsByStorageConsumed").json()
    assert any(row["pvName"] == pv and int(row["storageConsumed"]) > 0 for row in consumed)
    # parquet -> pb: the data moves (ETL's column path), the chain changes
    r = bpl(
        base,
        "changeStore",
        params={"pv": pv, "storage": "LTS", "newbackend": pb_url(root / "lts_pb", "LTS")},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["filesMoved"], r.json()["samplesMoved"]) == ("1", "100")
    assert not files(root / "pq1", ".parquet")
    assert [p.name for p in files(root / "lts_pb", ".pb")] == ["MOVE:2020.pb"]
    assert count(base, pv) == 100
    # pb -> parquet, into another folder
    r = bpl(
        base, "changeStore", params={"pv": pv, "storage": "LTS", "newbackend": pq_url(root / "pq2")}
    )
    assert r.status_code == 200, r.text
    assert r.json()["samplesMoved"] == "100"
    assert not files(root / "lts_pb", ".pb")
    assert len(files(root / "pq2", ".parquet")) == 1
    assert bpl(base, "getStoresForPV", params={"pv": pv}).json()["LTS"] == pq_url(root / "pq2")
    got = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": "2020-03-01T00:00:00.000Z", "to": "2020-03-01T01:40:00.000Z"},
        timeout=30,
    ).json()[0]["data"]
    assert [d["val"] for d in got] == [float(i) for i in range(100)]
    # a Parquet first store is still refused, with the reason
    refused(
        bpl(
            base,
            "changeStore",
            params={"pv": pv, "storage": "STS", "newbackend": pq_url(root / "x", "STS")},
        ),
        400,
        "cannot be a PV's first store",
    )
    # what is not done for Parquet files: refused before anything changes
    refused(
        bpl(base, "changeTypeForPV", params={"pv": pv, "newtype": "DBR_SCALAR_FLOAT"}),
        400,
        "holds it in Parquet files",
    )
    refused(
        bpl(
            base,
            "mergeInData",
            params={"pv": pv, "other": "http://127.0.0.1:9/retrieval", "storage": "LTS"},
        ),
        400,
        "it is a parquet:// store",
    )
    assert count(base, pv) == 100


@pytest.mark.slow
def test_rename_and_delete_with_parquet_files(site: tuple[Server, Path]) -> None:
    base, root = site
    pv, new = "PQM:OLD", "PQM:NEW"
    sts_url = pb_url(root / "sts_r", "STS", "PARTITION_HOUR")
    lts = ParquetStore(parse_store_url(pq_url(root / "pq_r")))
    write(lts, pv, SAMPLES[:60])
    write(PlainPBStore(parse_store_url(sts_url)), pv, SAMPLES[60:])
    put(base, pv, [sts_url, pq_url(root / "pq_r")])
    assert count(base, pv) == 100
    r = bpl(base, "renamePV", params={"pv": pv, "newname": new})
    assert r.status_code == 200, r.text
    renamed = lts.files_for_pv(new)
    assert len(renamed) == 1
    meta = pq.ParquetFile(renamed[0].path).schema_arrow.metadata
    assert meta[b"pvName"] == new.encode()
    assert count(base, new) == 100
    assert count(base, pv) == 100  # the old PV stays, paused, as in the AA
    for name in (pv, new):
        r = bpl(base, "deletePV", params={"pv": name, "deleteData": "true"})
        assert r.status_code == 200, r.text
    assert not files(root / "pq_r", ".parquet") and not files(root / "sts_r", ".pb")


@pytest.mark.slow
def test_import_from_a_parquet_source_into_a_parquet_store(site: tuple[Server, Path]) -> None:
    base, root = site
    pv = "PQM:IMPORT"
    sts_url = pb_url(root / "sts_i", "STS", "PARTITION_HOUR")
    dest = ParquetStore(parse_store_url(pq_url(root / "pq_i")))
    write(dest, pv, SAMPLES[:10])
    src = ParquetStore(parse_store_url(pq_url(root / "pq_src", "SRC")))
    write(src, pv, SAMPLES)
    put(base, pv, [sts_url, pq_url(root / "pq_i")])
    params = {
        "pv": pv,
        "from": "2020-03-01T00:00:00Z",
        "to": "2020-03-01T00:49:00Z",
        "src": pq_url(root / "pq_src", "SRC"),
        "dest": "LTS",
    }
    r = bpl(base, "importDataFromPlugin", params=params)
    assert r.status_code == 200, r.text
    got = list(dest.read_all(pv))
    assert [s.secs for s in got] == [T0 + i * 60 for i in range(50)]
    assert count(base, pv) == 50
