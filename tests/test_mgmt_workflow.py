"""The archive workflow end to end: a real softIoc, a real ``pvarchiver serve`` process, the
BPL over HTTP. Requests go through Initial sampling to Being archived, data lands in the STS,
pause/resume/delete behave as the AA's, and a restart (SIGTERM or kill -9) archives every
registered PV again and resumes requests that were still being sampled."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pvarchiver.storage import PlainPBStore, default_store_urls, open_store, parse_store_url

from .helpers.fixtures import ioc_fixture
from .helpers.mgmt import bpl, ca_env, statuses, wait_status
from .helpers.wait import wait_for
from .http_server import Server, running_server
from .ioc import IOC

DB = """
record(ai, "WF:AI1") { field(SCAN, ".1 second") field(INP, "WF:CNT") field(EGU, "mm") }
record(ai, "WF:AI2") { field(SCAN, "1 second") field(INP, "WF:CNT") }
record(ao, "WF:AO") { field(DRVH, "10") field(DRVL, "-10") }
record(calc, "WF:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "WF:CNT") }
alias("WF:CNT", "WF:CNT_ALIAS")
"""

ALL_STATUSES = {
    "Being archived",
    "Paused",
    "Initial sampling",
    "Not being archived",
    "Appliance assigned",
}


def _immutable(path: Path, on: bool) -> bool:
    """chattr +i/-i (root, on ext4/xfs/btrfs); False where the file system has no such flag."""
    chattr = shutil.which("chattr")
    if chattr is None:
        return False
    flag = "+i" if on else "-i"
    return subprocess.run([chattr, flag, str(path)], capture_output=True).returncode == 0


def served_sts(root: Path) -> PlainPBStore:
    """The STS of a server on ``root``, opened (probed) as serve opens it. Opened before the
    server starts: the file names a test expects come from this store's naming (the AA's on an
    ordinary folder, portable ones where Windows' rules apply)."""
    (sts,) = (s for s in map(parse_store_url, default_store_urls(root)) if s.name == "STS")
    return open_store(sts)


def measured_events(base: str, pv: str) -> int:
    """Events of ``pv`` seen so far in its initial sampling (getMetaGets; 0 before it
    connects or once it is no longer measured)."""
    for row in bpl(base, "getMetaGets").json():
        if row["pvName"] == pv and row["isScheduled"] == "true":
            return int(row["eventsSoFar"])
    return 0


def sts_files(sts: PlainPBStore, pv: str) -> list[Path]:
    """The files of ``pv`` in the STS: those under its key (``WF/AI1:`` for WF:AI1)."""
    key = sts.naming.match_key(sts.key(pv))
    return [
        p
        for p in sts.root.rglob("*.pb")
        if sts.naming.match_key(p.relative_to(sts.root).as_posix()).startswith(key)
    ]


ioc = ioc_fixture(DB, scope="function")


@pytest.mark.slow
def test_archive_pause_resume_delete(tmp_path: Path, ioc: IOC) -> None:
    root = tmp_path / "storage"
    sts = served_sts(root)
    with running_server(root, ca_env(ioc)) as base:
        r = bpl(
            base,
            "archivePV",
            "POST",
            json=[
                {"pv": "WF:AI1", "samplingperiod": "1.0", "samplingmethod": "MONITOR"},
                {"pv": "WF:CNT_ALIAS"},
                {"pv": "WF:AO.DRVH"},
            ],
        )
        assert r.status_code == 200, r.text
        assert [x["status"] for x in r.json()] == ["Archive request submitted"] * 3
        r = bpl(base, "archivePV", params={"pv": "WF:AI2,WF:AI1"})
        assert [x["status"] for x in r.json()] == ["Archive request submitted", "Already submitted"]
        first = statuses(base, ["WF:AI2"])
        assert first["WF:AI2"] == "Initial sampling"
        names = ["WF:AI1", "WF:AI2", "WF:CNT_ALIAS", "WF:AO"]
        wait_status(base, names, "Being archived")
        # the alias (.NAME) archives the real name and is listed as an alias of it
        assert bpl(base, "getAllAliases").json() == [
            {"aliasName": "WF:CNT_ALIAS", "srcPVName": "WF:CNT"}
        ]
        row = bpl(base, "getPVStatus", params={"pv": "WF:CNT_ALIAS"}).json()[0]
        assert (row["pvName"], row["pvNameOnly"], row["connectionState"]) == (
            "WF:CNT_ALIAS",
            "WF:CNT",
            "true",
        )
        assert bpl(base, "getAllPVs").json() == ["WF:AI1", "WF:AI2", "WF:AO", "WF:CNT"]
        assert bpl(base, "getAllPVs", params={"pv": "WF:AI*", "limit": "1"}).json() == ["WF:AI1"]
        ti = bpl(base, "getPVTypeInfo", params={"pv": "WF:AO"}).json()
        assert ti["DBRType"] == "DBR_SCALAR_DOUBLE" and ti["extraFields"]["RTYP"] == "ao"
        assert "DRVH" in ti["archiveFields"] and ti["upperCtrlLimit"] == "10.0"
        ti = bpl(base, "getPVTypeInfo", params={"pv": "WF:AI1"}).json()
        assert (
            ti["units"] == "mm" and ti["policyName"] == "2HzPVs" and ti["samplingPeriod"] == "1.0"
        )
        assert set(bpl(base, "getStoresForPV", params={"pv": "WF:AI1"}).json()) == {
            "STS",
            "MTS",
            "LTS",
        }
        assert "WF:CNT_ALIAS" in bpl(base, "getAllExpandedPVNames").json()
        details = {
            d["name"]: d["value"] for d in bpl(base, "getPVDetails", params={"pv": "WF:AI1"}).json()
        }
        assert details["Is this PV currently connected?"] == "Yes"
        # data reaches the STS at the engine's first write (10 s)
        assert wait_for(lambda: sts_files(sts, "WF:AI1"), 40, 0.5)
        # retrieval knows the alias too
        got = httpx.get(
            base + "/retrieval/data/getData.json",
            params={
                "pv": "WF:CNT_ALIAS",
                "from": "2000-01-01T00:00:00Z",
                "to": "2100-01-01T00:00:00Z",
            },
        )
        assert got.status_code == 200 and got.json()[0]["data"], got.text

        # delete refuses a PV that is not paused, as the AA does
        r = bpl(base, "deletePV", params={"pv": "WF:AI1", "deleteData": "true"})
        assert r.status_code == 400 and "not paused" in r.json()["validation"]
        r = bpl(base, "pauseArchivingPV", params={"pv": "WF:AI1"})
        assert r.json()["status"] == "ok"
        assert bpl(base, "pauseArchivingPV", params={"pv": "WF:AI1"}).json()["validation"] == (
            "PV WF:AI1 is already paused"
        )
        assert statuses(base, ["WF:AI1"])["WF:AI1"] == "Paused"
        assert [p["pvName"] for p in bpl(base, "getPausedPVsReport").json()] == ["WF:AI1"]
        bpl(base, "resumeArchivingPV", params={"pv": "WF:AI1"})
        wait_status(base, ["WF:AI1"], "Being archived")
        rows = bpl(
            base,
            "pauseArchivingPV",
            "POST",
            content=b"WF:AI1\nWF:AI2\n",
            headers={"content-type": "text/plain"},
        ).json()
        assert [r["status"] for r in rows] == ["ok", "ok"]
        # A data file that cannot be removed (on Windows: held open by a reader; here made
        # immutable) keeps the PV registered and paused, with a 409 saying why.
        held = sts_files(sts, "WF:AI1")
        assert held
        if _immutable(held[0], True):
            try:
                r = bpl(base, "deletePV", params={"pv": "WF:AI1", "deleteData": "true"})
                assert r.status_code == 409, r.text
                assert "could not be removed" in r.json()["validation"], r.text
                assert statuses(base, ["WF:AI1"])["WF:AI1"] == "Paused"
            finally:
                _immutable(held[0], False)
        r = bpl(base, "deletePV", params={"pv": "WF:AI1", "deleteData": "true"})
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        assert sts_files(sts, "WF:AI1") == []
        assert statuses(base, ["WF:AI1"])["WF:AI1"] == "Not being archived"
        # rename: refused while archiving, then the data is copied under the new name
        r = bpl(base, "renamePV", params={"pv": "WF:AO", "newname": "WF:AO_NEW"})
        assert r.status_code == 400 and "Need to pause" in r.json()["validation"]
        r = bpl(base, "renamePV", params={"pv": "WF:AI2", "newname": "WF:AI2_NEW"})
        assert r.json() == {"status": "ok", "desc": "Successfully renamed PV WF:AI2 to WF:AI2_NEW"}
        renamed = sts_files(sts, "WF:AI2_NEW")
        assert renamed
        if not sts.naming.portable:  # an ordinary folder: the AA's own names, byte for byte
            assert all(
                re.fullmatch(r"WF/AI2_NEW:\d{4}(_\d\d){3}\.pb", p.relative_to(sts.root).as_posix())
                for p in renamed
            ), renamed
        # both stay paused, as the AA's rename (a copy); the new one is then resumed
        assert statuses(base, ["WF:AI2_NEW"])["WF:AI2_NEW"] == "Paused"
        bpl(base, "resumeArchivingPV", params={"pv": "WF:AI2_NEW"})
        wait_status(base, ["WF:AI2_NEW"], "Being archived")
        assert statuses(base, ["WF:AI2"])["WF:AI2"] == "Paused"
        got = httpx.get(
            base + "/retrieval/data/getData.json",
            params={
                "pv": "WF:AI2_NEW",
                "from": "2000-01-01T00:00:00Z",
                "to": "2100-01-01T00:00:00Z",
            },
        )
        assert got.status_code == 200 and got.json()[0]["meta"]["name"] == "WF:AI2_NEW"
        r = bpl(base, "deletePV", params={"pv": "WF:AI2"})  # keeps the data
        assert r.status_code == 200
        assert bpl(base, "getAllPVs").json() == ["WF:AI2_NEW", "WF:AO", "WF:CNT"]
        r = bpl(
            base,
            "changeArchivalParameters",
            params={"pv": "WF:AO", "samplingperiod": "2.5", "samplingmethod": "SCAN"},
        )
        assert r.json()["status"] == "ok"
        row = bpl(base, "getPVStatus", params={"pv": "WF:AO"}).json()[0]
        assert (row["samplingPeriod"], row["isMonitored"]) == ("2.5", "false")


@pytest.mark.slow
def test_restart_and_kill9_resume_everything(tmp_path: Path, ioc: IOC) -> None:
    root = tmp_path / "storage"
    with running_server(root, ca_env(ioc)) as base:
        bpl(base, "archivePV", params={"pv": "WF:AI1,WF:AI2"})
        wait_status(base, ["WF:AI1", "WF:AI2"], "Being archived")
        bpl(base, "pauseArchivingPV", params={"pv": "WF:AI2"})
        os.kill(base.pid, signal.SIGKILL)
    # restarted with a long sampling window: nothing is requested again
    with running_server(root, ca_env(ioc, window=120)) as base:
        wait_status(base, ["WF:AI1"], "Being archived")
        assert statuses(base, ["WF:AI2"])["WF:AI2"] == "Paused"
        bpl(base, "archivePV", params={"pv": "WF:CNT"})
        # measured for longer than the 1 s window of the other servers here (WF:CNT counts
        # at 10 Hz), and still in its initial sampling
        assert wait_for(lambda: measured_events(base, "WF:CNT") >= 15)
        assert statuses(base, ["WF:CNT"])["WF:CNT"] == "Initial sampling"
        os.kill(base.pid, signal.SIGKILL)
    db = sqlite3.connect(root / "registry.sqlite")
    assert db.execute("SELECT pvName FROM ArchivePVRequests").fetchall() == [("WF:CNT",)]
    db.close()
    # the request that was in Initial sampling resumes by itself
    with running_server(root, ca_env(ioc)) as base:
        wait_status(base, ["WF:AI1", "WF:CNT"], "Being archived")
        assert statuses(base, ["WF:AI2"])["WF:AI2"] == "Paused"
    # an orderly restart too
    with running_server(root, ca_env(ioc)) as base:
        wait_status(base, ["WF:AI1", "WF:CNT"], "Being archived")


POLICY = """
def getPolicyList():
    return {"Custom": "test policy"}

def getFieldsArchivedAsPartOfStream():
    return ["HIHI", "LOLO"]

def determinePolicy(pvInfo):
    if pvInfo["pvName"].endswith("AI2"):
        raise RuntimeError("no policy for " + pvInfo["pvName"])
    return {"policyName": "Custom", "samplingPeriod": 2.0, "samplingMethod": "SCAN",
            "archiveFields": ["HIHI"], "dataStores": []}
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("mgmt")
    (tmp / "policies.py").write_text(POLICY)
    with IOC(DB, tmp / "ioc") as ioc:
        env = ca_env(
            ioc, ARCHAPPL_POLICIES=str(tmp / "policies.py"), PVARCHIVER_MGMT_MAX_BODY="100000"
        )
        with running_server(tmp / "storage", env) as base:
            yield base, tmp / "storage"


@pytest.mark.slow
def test_site_policy_file_and_a_failing_policy(shared: tuple[Server, Path]) -> None:
    base, _ = shared
    assert bpl(base, "getPolicyList").json() == {"Custom": "test policy"}
    assert "def determinePolicy" in bpl(base, "getPolicyText").text
    bpl(base, "archivePV", params={"pv": "WF:AI1,WF:AI2"})
    wait_status(base, ["WF:AI1"], "Being archived")
    ti = bpl(base, "getPVTypeInfo", params={"pv": "WF:AI1"}).json()
    assert (ti["policyName"], ti["samplingMethod"], ti["samplingPeriod"]) == (
        "Custom",
        "SCAN",
        "2.0",
    )
    assert ti["archiveFields"] == ["HIHI"]
    # PV.LOLO (a stream field of this policy file) adds LOLO to the archived PV; .VAL is the PV
    r = bpl(base, "archivePV", params={"pv": "WF:AI1.LOLO,WF:AI1.VAL"}).json()
    assert r == [{"pvName": "WF:AI1", "status": "Already submitted"}] * 2
    ti = bpl(base, "getPVTypeInfo", params={"pv": "WF:AI1"}).json()
    assert ti["archiveFields"] == ["HIHI", "LOLO"]
    # two fields of one PV in one request both stick
    bpl(base, "archivePV", "POST", json=[{"pv": "WF:CNT"}])
    wait_status(base, ["WF:CNT"], "Being archived")
    bpl(base, "archivePV", "POST", json=["WF:CNT.HIHI", "WF:CNT.LOLO"])
    ti = bpl(base, "getPVTypeInfo", params={"pv": "WF:CNT"}).json()
    assert ti["archiveFields"] == ["HIHI", "LOLO"]
    assert statuses(base, ["WF:AI1.LOLO"])["WF:AI1.LOLO"] == "Being archived"
    # the failing policy: a clear status, not a PV stuck in Initial sampling
    row: dict[str, str] = {}

    def decided() -> bool:
        nonlocal row
        row = bpl(base, "getPVStatus", params={"pv": "WF:AI2"}).json()[0]
        return row["status"] != "Initial sampling"

    wait_for(decided, 20, 0.2)
    assert row["status"] == "Not being archived"
    assert "policy error" in row["validation"] and "no policy for WF:AI2" in row["validation"]
    # it can be aborted (cleared) and requested again
    assert bpl(base, "abortArchivingPV", params={"pv": "WF:AI2"}).json()["status"] == "ok"


@pytest.mark.slow
def test_never_connecting_request_is_listed_and_abortable(shared: tuple[Server, Path]) -> None:
    base, _ = shared
    # WF:AI2 (whose policy fails) in the same request: once its request is decided, the
    # workflow has searched, measured over the whole window and judged what it asked with it
    bpl(base, "archivePV", params={"pv": "NEVER:THERE,WF:AI2"})
    wait_status(base, ["WF:AI2"], "Not being archived")
    assert bpl(base, "abortArchivingPV", params={"pv": "WF:AI2"}).json()["status"] == "ok"
    assert statuses(base, ["NEVER:THERE"])["NEVER:THERE"] == "Initial sampling"
    rows = bpl(base, "getNeverConnectedPVs").json()
    assert [r["pvName"] for r in rows] == ["NEVER:THERE"]
    assert rows[0]["currentState"] == "METAINFO_REQUESTED"
    r = bpl(base, "abortArchivingPV", params={"pv": "NEVER:THERE"}).json()
    assert r == {"status": "ok", "desc": "Aborted request for archiving PV NEVER:THERE"}
    assert statuses(base, ["NEVER:THERE"])["NEVER:THERE"] == "Not being archived"
    assert bpl(base, "getNeverConnectedPVs").json() == []
    assert bpl(base, "abortArchivingPV", params={"pv": "NEVER:THERE"}).json()["status"] == "no"


@pytest.mark.slow
def test_bad_input_is_a_clear_4xx(shared: tuple[Server, Path]) -> None:
    base, _ = shared
    cases = [
        (bpl(base, "archivePV", params={"pv": "bad name"}), 400, "Invalid PV name"),
        (
            bpl(base, "archivePV", params={"pv": "A:B", "samplingperiod": "fast"}),
            400,
            "not a number",
        ),
        (bpl(base, "archivePV", params={"pv": "A:B", "bogus": "1"}), 400, "Unknown parameter"),
        (bpl(base, "archivePV", params={"pv": "A:*"}), 400, "globs"),
        (bpl(base, "archivePV"), 400, "No PV names"),
        (
            bpl(
                base,
                "archivePV",
                "POST",
                content=b"[{",
                headers={"content-type": "application/json"},
            ),
            400,
            "JSON",
        ),
        (bpl(base, "archivePV", "POST", json=[{"pv": "A:B", "x": 1}]), 400, "unknown key"),
        (
            bpl(
                base,
                "archivePV",
                "POST",
                content=b"A" * 200_000,
                headers={"content-type": "text/plain"},
            ),
            413,
            "larger",
        ),
        (bpl(base, "getPVTypeInfo", params={"pv": "NOT:ARCHIVED"}), 404, "typeinfo"),
        (bpl(base, "getPVTypeInfo"), 400, "Missing parameter pv"),
        (bpl(base, "getPVDetails", params={"pv": "NOT:ARCHIVED"}), 404, "not being archived"),
        (bpl(base, "deletePV", params={"pv": "NOT:ARCHIVED"}), 404, "not being archived"),
        (
            bpl(base, "deletePV", params={"pv": "WF:AI1", "deleteData": "maybe"}),
            400,
            "true or false",
        ),
        (bpl(base, "getAllPVs", params={"limit": "ten"}), 400, "integer"),
        (bpl(base, "getAllPVs", params={"regex": "(("}), 400, "regex"),
        (bpl(base, "noSuchAction"), 404, "not a valid API method"),
        (
            bpl(
                base,
                "changeArchivalParameters",
                params={"pv": "NOT:ARCHIVED", "samplingperiod": "1"},
            ),
            404,
            "not being archived",
        ),
        (
            bpl(
                base,
                "putPVTypeInfo",
                "POST",
                params={"pv": "N:EW", "createnew": "true"},
                content=b"{}",
            ),
            400,
            "pvName",
        ),
        (
            bpl(base, "addAlias", params={"pv": "NOT:ARCHIVED", "aliasname": "X:Y"}),
            404,
            "not being archived",
        ),
    ]
    for r, status, text in cases:
        assert r.status_code == status, (r.request.url, r.text)
        body = r.json()
        assert body["status"] == "error" and text in body["validation"], (r.request.url, body)
    assert bpl(base, "getPVStatus", params={"pv": "NOT:ARCHIVED"}).json() == [
        {"pvName": "NOT:ARCHIVED", "status": "Not being archived"}
    ]


@pytest.mark.slow
def test_put_typeinfo_createnew_and_override(shared: tuple[Server, Path]) -> None:
    base, _ = shared
    for bad, msg in [
        ({"pvName": "WF:AO", "samplingMethod": "OFTEN"}, "samplingMethod"),
        ({"pvName": "WF:AO", "samplingPeriod": "0"}, "positive"),
        ({"pvName": "WF:AO", "DBRType": "DBR_NOPE"}, "DBRType"),
        ({"pvName": "WF:AO", "paused": "true", "extraFields": []}, "extraFields"),
    ]:
        params = {"pv": "WF:AO", "createnew": "true"}
        r = bpl(base, "putPVTypeInfo", "POST", params=params, json=bad)
        assert r.status_code == 400 and msg in r.json()["validation"], r.text
    ti = {
        "pvName": "WF:AO",
        "DBRType": "DBR_SCALAR_DOUBLE",
        "samplingPeriod": "5.0",
        "paused": "true",
    }
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": "WF:AO"}, json=ti)
    assert r.status_code == 400 and "createnew" in r.json()["validation"]
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": "WF:AO", "createnew": "true"}, json=ti)
    assert r.status_code == 200 and r.json()["samplingPeriod"] == "5.0"
    assert statuses(base, ["WF:AO"])["WF:AO"] == "Paused"
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": "WF:AO", "createnew": "true"}, json=ti)
    assert r.status_code == 400 and "override" in r.json()["validation"]
    ti["paused"] = "false"
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": "WF:AO", "override": "true"}, json=ti)
    assert r.status_code == 200
    wait_status(base, ["WF:AO"], "Being archived")


@pytest.mark.slow
def test_concurrent_archive_and_delete_never_corrupt(shared: tuple[Server, Path]) -> None:
    """Archive, pause and delete the same PV from many clients at once: every answer is a
    200 or a 4xx with a message, and the registry stays consistent."""
    import concurrent.futures as cf

    base, root = shared
    bpl(base, "archivePV", params={"pv": "WF:CNT"})
    wait_status(base, ["WF:CNT"], "Being archived")

    def hammer(i: int) -> httpx.Response:
        op = i % 3
        if op == 0:
            return bpl(base, "archivePV", params={"pv": "WF:CNT"})
        if op == 1:
            return bpl(base, "pauseArchivingPV", params={"pv": "WF:CNT"})
        return bpl(base, "deletePV", params={"pv": "WF:CNT", "deleteData": "true"})

    with cf.ThreadPoolExecutor(8) as ex:
        results = list(ex.map(hammer, range(60)))
    for r in results:
        assert r.status_code in (200, 400, 404, 409), r.text
        r.json()  # always JSON
    status = statuses(base, ["WF:CNT"])["WF:CNT"]
    assert status in ALL_STATUSES
    db = sqlite3.connect(root / "registry.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    names = {n for (n,) in db.execute("SELECT pvName FROM PVTypeInfo")}
    reqs = {n for (n,) in db.execute("SELECT pvName FROM ArchivePVRequests")}
    db.close()
    assert not names & reqs  # a PV is either archived or requested, never both
    # and it can be brought back to a clean archived state
    bpl(base, "archivePV", params={"pv": "WF:CNT"})
    bpl(base, "resumeArchivingPV", params={"pv": "WF:CNT"})
    wait_status(base, ["WF:CNT"], "Being archived")


@pytest.mark.slow
def test_state_changes_can_require_a_token(tmp_path: Path, ioc: IOC) -> None:
    env = ca_env(ioc, PVARCHIVER_MGMT_TOKEN="s3cret")
    with running_server(tmp_path / "storage", env) as base:
        r = bpl(base, "archivePV", params={"pv": "WF:AI1"})
        assert r.status_code == 403 and "Bearer" in r.json()["validation"]
        assert bpl(base, "getPVStatus", params={"pv": "WF:AI1"}).status_code == 200
        r = bpl(
            base, "archivePV", params={"pv": "WF:AI1"}, headers={"Authorization": "Bearer s3cret"}
        )
        assert r.status_code == 200
    env = ca_env(ioc, PVARCHIVER_MGMT_ALLOW_HOSTS="10.1.2.0/24")
    with running_server(tmp_path / "storage2", env) as base:
        r = bpl(base, "pauseArchivingPV", params={"pv": "WF:AI1"})
        assert r.status_code == 403 and "ALLOW_HOSTS" in r.json()["validation"]


@pytest.mark.slow
def test_mgmt_root_redirects_to_the_ui(shared: tuple[Server, Path]) -> None:
    pytest.importorskip("pvarchiver.web.ui_routes")
    base, _ = shared
    for path in ("/mgmt", "/mgmt/", "/mgmt/ui/"):
        r = httpx.get(base + path, follow_redirects=False)
        assert r.status_code == 302 and r.headers["location"].endswith("/mgmt/ui/index.html")
