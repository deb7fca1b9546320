"""Per-PV store chains through the real server (issue 16): a policy ending in a blackhole
really deletes old data while the default chain keeps it; changeStore, modifyStoreURLForPV
and consolidateDataForPV (with ``date``) on a PV's own chain; bad chains refused with 400.

Data is written into the store folders before the server starts, with timestamps relative to
now, and ``PVARCHIVER_ETL_FIRST_RUN_SECONDS`` makes the server's own ETL run at once instead
of at its next aligned time, so no test waits for real hours.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pvarchiver.mgmt.default_policies import BLACKHOLE, STS
from pvarchiver.mgmt.default_policies import MTS_3_DAYS as MTS3
from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.store import PlainPBStore, iter_pb_files
from pvarchiver.storage.url import default_store_urls, parse_store_url

from .helpers.mgmt import bpl
from .helpers.wait import wait_for
from .http_server import Server, running_server

D = PayloadType.SCALAR_DOUBLE
HOUR = 3600
DAY = 86400
SHORT = "CHS:THREE_DAYS"  # the default policies' 3DaysMTSOnly: STS, MTS(hold=3), blackhole
LONG = "CHS:DEFAULT"  # STS, MTS, LTS
MOVED = "CHS:MOVED"
NOW = int(time.time())
#: one sample an hour for 10 days, ending 2 hours before the server starts
OLD = [Sample(t, 0, float(i)) for i, t in enumerate(range(NOW - 10 * DAY, NOW - 2 * HOUR, HOUR))]


def default_stores(root: Path) -> dict[str, PlainPBStore]:
    return {
        s.name: PlainPBStore(s)
        for s in (parse_store_url(u) for u in default_store_urls(root / "storage"))
    }


def typeinfo(name: str, stores: list[str] | None = None) -> dict[str, object]:
    ti: dict[str, object] = {"pvName": name, "DBRType": "DBR_SCALAR_DOUBLE", "paused": "true"}
    if stores is not None:
        ti["dataStores"] = stores
    return ti


def put(base: str, ti: dict[str, object]) -> httpx.Response:
    params = {"pv": str(ti["pvName"]), "createnew": "true"}
    return bpl(base, "putPVTypeInfo", "POST", params=params, json=ti)


def count(base: str, pv: str) -> int:
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": "2000-01-01T00:00:00.000Z", "to": "2100-01-01T00:00:00.000Z"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return sum(len(p["data"]) for p in r.json())


def oldest(store: PlainPBStore, pv: str) -> int | None:
    files = store.files_for_pv(pv)
    return files[0].start if files else None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("chains")
    stores = default_stores(root)
    for pv in (SHORT, LONG, MOVED):
        append_samples(stores["MTS"], pv, D, OLD[:-1])
        append_samples(stores["STS"], pv, D, OLD[-1:])  # the hour before last: due for the MTS
    env = {"PVARCHIVER_ETL_FIRST_RUN_SECONDS": "1"}
    with running_server(root / "storage", env) as base:
        for ti in (typeinfo(SHORT, [STS, MTS3, BLACKHOLE]), typeinfo(LONG), typeinfo(MOVED)):
            r = put(base, ti)
            assert r.status_code == 200, r.text
        yield base, root


@pytest.mark.slow
def test_a_blackhole_policy_deletes_old_data_and_the_default_chain_keeps_it(
    site: tuple[Server, Path],
) -> None:
    base, root = site
    stores = default_stores(root)

    def etl_done() -> bool:
        return (
            not stores["STS"].files_for_pv(SHORT)
            and not stores["STS"].files_for_pv(LONG)
            and bool(stores["LTS"].files_for_pv(LONG))
            and (oldest(stores["MTS"], SHORT) or 0) >= NOW - 4 * DAY - DAY
        )

    assert wait_for(etl_done, 60, 0.5), [pf.path.name for pf in stores["MTS"].files_for_pv(SHORT)]
    # the 3-day PV: nothing older than its MTS holds, nothing ever in the LTS
    assert not stores["LTS"].files_for_pv(SHORT)
    kept = count(base, SHORT)
    assert 0 < kept < len(OLD) - 24 * 5
    # the default PV: every sample still there, the old days now in the LTS
    assert count(base, LONG) == len(OLD)
    r = httpx.get(f"{base}/metrics", timeout=30)
    assert 'pvarchiver_etl_last_files_discarded{source="MTS",dest="BlackHole"}' in r.text


@pytest.mark.slow
def test_change_store_moves_the_data_and_the_chain(site: tuple[Server, Path]) -> None:
    base, root = site
    new_lts = (
        f"pb://localhost?name=LTS&rootFolder={root / 'storage' / 'archive2'}"
        "&partitionGranularity=PARTITION_YEAR"
    )
    # bad input first: nothing moves
    for params, status, text in [
        ({"pv": MOVED, "storage": "XTS", "newbackend": new_lts}, 400, "Cannot find storage"),
        ({"pv": MOVED, "storage": "LTS", "newbackend": "tar://x?name=LTS"}, 400, "scheme"),
        ({"pv": MOVED, "storage": "LTS", "newbackend": BLACKHOLE}, 400, "delete"),
        ({"pv": MOVED, "storage": "MTS", "newbackend": BLACKHOLE}, 400, "last"),
        ({"pv": "CHS:NOPE", "storage": "LTS", "newbackend": new_lts}, 404, "not being archived"),
        ({"pv": MOVED, "storage": "LTS"}, 400, "newbackend"),
    ]:
        r = bpl(base, "changeStore", params=params)
        assert r.status_code == status and text in r.json()["validation"], (params, r.text)
    before = count(base, MOVED)
    assert before == len(OLD)
    r = bpl(base, "consolidateDataForPV", params={"pv": MOVED, "storage": "LTS"})
    assert r.status_code == 200, r.text
    lts_files = default_stores(root)["LTS"].files_for_pv(MOVED)
    assert lts_files
    r = bpl(base, "changeStore", params={"pv": MOVED, "storage": "LTS", "newbackend": new_lts})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ok" and int(r.json()["filesMoved"]) == len(lts_files)
    assert not default_stores(root)["LTS"].files_for_pv(MOVED)
    assert list(iter_pb_files(root / "storage" / "archive2"))
    assert bpl(base, "getStoresForPV", params={"pv": MOVED}).json()["LTS"] == new_lts
    assert count(base, MOVED) == before


@pytest.mark.slow
def test_modify_store_url_and_consolidate_as_of_a_date(site: tuple[Server, Path]) -> None:
    base, root = site
    name = "CHS:MODIFY"
    stores = default_stores(root)
    # after the server's first ETL pass (which would move an unregistered PV's hours on)
    assert wait_for(lambda: not stores["STS"].files_for_pv(LONG), 60, 0.5)
    append_samples(
        stores["STS"], name, D, [Sample(NOW - 3 * DAY + h * HOUR, 0, float(h)) for h in range(48)]
    )
    assert put(base, typeinfo(name)).status_code == 200
    r = bpl(base, "modifyStoreURLForPV", params={"pv": name, "storage": "MTS", "plugin_url": "x"})
    assert r.status_code == 400, r.text
    mts5 = (
        "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
        "&partitionGranularity=PARTITION_DAY&hold=5&gather=1"
    )
    r = bpl(base, "modifyStoreURLForPV", params={"pv": name, "storage": "MTS", "plugin_url": mts5})
    assert r.status_code == 200 and r.json()["dataStores"][1] == mts5
    # as of two days ago: only the hours before that day's hour move on
    date = time.strftime("%Y-%m-%dT%H:00:00.000Z", time.gmtime(NOW - 2 * DAY))
    r = bpl(base, "consolidateDataForPV", params={"pv": name, "storage": "MTS", "date": date})
    assert r.status_code == 200, r.text
    left = stores["STS"].files_for_pv(name)
    assert left and all(pf.start >= NOW - 2 * DAY - HOUR for pf in left)
    assert stores["MTS"].files_for_pv(name)
    assert count(base, name) == 48
    r = bpl(base, "consolidateDataForPV", params={"pv": name, "storage": "MTS", "date": "nope"})
    assert r.status_code == 400


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stores", "why"),
    [
        ([STS, BLACKHOLE, MTS3], "must be the last"),
        ([STS, "tar://localhost?name=LTS&rootFolder=/tmp/x"], "unsupported store scheme"),
        (["parquet://localhost?name=STS&rootFolder=/tmp/x"], "cannot be a PV's first store"),
        ([STS, STS], "two data stores are named STS"),
    ],
)
def test_put_typeinfo_refuses_a_chain_that_cannot_be(
    site: tuple[Server, Path], stores: list[str], why: str
) -> None:
    base, _root = site
    r = put(base, typeinfo("CHS:BAD", stores))
    assert r.status_code == 400 and why in r.json()["validation"], r.text
    assert bpl(base, "getPVTypeInfo", params={"pv": "CHS:BAD"}).status_code == 404
