"""The PV registry on PostgreSQL (issue 18 items 2 and 7), with a real private PostgreSQL
(tests/helpers/postgres.py: the distribution's initdb/pg_ctl, unprivileged, a free port):

* the registry's public API behaves the same on SQLite and PostgreSQL (one contract, both);
* two registries on one database ("two appliances") see each other's changes through
  LISTEN/NOTIFY, the subscribers hear of them, named flags follow;
* PostgreSQL lost: writes refused with the reason, reads from the cache, reconnection by
  itself and a reload of what changed meanwhile;
* ``pvarchiver serve --registry postgresql://...`` end to end, PostgreSQL stopped under a
  serving appliance that archives a real IOC's PV, unreachable at start;
* ``pvarchiver registry migrate``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pvarchiver.mgmt.named_flags import NamedFlags
from pvarchiver.mgmt.registry import (
    Registry,
    RegistryChange,
    RegistryUnavailable,
    open_registry,
)
from pvarchiver.mgmt.registry_backend import sqlite_url
from pvarchiver.mgmt.typeinfo import PVTypeInfo
from pvarchiver.mgmt.workflow import ArchiveRequest

from .helpers.fixtures import ioc_fixture
from .helpers.mgmt import bpl, ca_env, wait_status
from .helpers.net import free_port
from .helpers.postgres import PostgresServer, missing_reason, postgres_server
from .helpers.wait import wait_for
from .http_server import SRC, running_server
from .requirements import require

DB = """
record(calc, "PG:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "PG:CNT") }
"""
ioc = ioc_fixture(DB, scope="module", dirname="pg-ioc")


def _require_postgres() -> None:
    reason = missing_reason()
    require(reason is None, reason or "")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    """One private server for the module's tests; each test takes a fresh database."""
    _require_postgres()
    with postgres_server() as server:
        yield server


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A server of the test's own, for tests that stop it."""
    _require_postgres()
    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "registry.sqlite")
    server: PostgresServer = request.getfixturevalue("pg")
    return server.new_database()


# ---------------------------------------------------------------------- the API, both backends
def test_registry_contract(registry_url: str) -> None:
    reg = open_registry(registry_url)
    heard: list[RegistryChange] = []
    reg.subscribe(heard.append)
    with reg.batch() as b:
        for i in range(300):
            b.put_typeinfo(PVTypeInfo(f"PV:{i:03d}"))
        b.add_alias("AL:1", "PV:001")
        b.put_request("REQ:1", ArchiveRequest("REQ:1").to_params())
        b.put_external_server("srv", "http://x?mergeDuringRetrieval=true")
        b.put_named_flag("SKIP_MTS_FOR_ETL", True)
    assert reg.names() == [f"PV:{i:03d}" for i in range(300)]
    assert reg.real_name("AL:1") == "PV:001" and reg.real_name("PV:002") == "PV:002"
    assert reg.has_request("REQ:1") and reg.requests()["REQ:1"]["pvName"] == "REQ:1"
    assert reg.external_servers() == {"srv": "http://x?mergeDuringRetrieval=true"}
    assert reg.named_flags() == {"SKIP_MTS_FOR_ETL": True}
    tables = {c.table for c in heard}
    assert tables == {
        "PVTypeInfo",
        "PVAliases",
        "ArchivePVRequests",
        "ExternalDataServers",
        "NamedFlags",
    }
    assert all(c.local for c in heard)
    # a copy, changed and put back; the cached view is the stored one
    info = reg.typeinfo("PV:005")
    assert info is not None
    info.paused = True
    reg.put_typeinfo(info)
    view = reg.typeinfo_view("PV:005")
    assert view is not None and view.paused
    # all or nothing
    with pytest.raises(RuntimeError), reg.batch() as b:
        b.put_typeinfo(PVTypeInfo("NEVER"))
        raise RuntimeError("boom")
    assert not reg.has_typeinfo("NEVER")
    # a put then a delete of one key in one batch ends deleted
    with reg.batch() as b:
        b.put_typeinfo(PVTypeInfo("GONE"))
        b.delete_typeinfo("GONE")
        b.delete_typeinfo("PV:299")
    reg.delete_requests(["REQ:1"])
    reg.remove_alias("AL:1")
    reg.remove_external_server("srv")
    reg.put_named_flag("SKIP_MTS_FOR_ETL", False)
    counts = reg.counts()
    reg.close()
    # everything reads back after a reopen
    again = open_registry(registry_url)
    try:
        assert again.counts() == counts
        assert len(again.names()) == 299 and not again.has_typeinfo("GONE")
        ti = again.typeinfo_view("PV:005")
        assert ti is not None and ti.paused
        assert again.aliases() == {} and again.requests() == {}
        assert again.named_flags() == {"SKIP_MTS_FOR_ETL": False}
        assert json.loads(again.raw_rows("PVTypeInfo")["PV:001"])["pvName"] == "PV:001"
        # a row that is not a typeinfo is kept and skipped, on either backend
        again.backend.apply([("PVTypeInfo", "BAD:1", "{oops")])
    finally:
        again.close()
    third = open_registry(registry_url)
    try:
        assert not third.has_typeinfo("BAD:1") and third.raw_rows("PVTypeInfo")["BAD:1"] == "{oops"
        assert third.state().connected
    finally:
        third.close()


# ---------------------------------------------------------------------- two appliances
def test_two_registries_see_each_others_changes(pg: PostgresServer) -> None:
    url = pg.new_database()
    a, b = open_registry(url), open_registry(url)
    try:
        heard: list[RegistryChange] = []
        b.subscribe(heard.append)
        flags_b = NamedFlags(b)
        t0 = time.monotonic()
        a.put_typeinfo(PVTypeInfo("TWO:1"))
        assert wait_for(lambda: b.has_typeinfo("TWO:1"), 5, 0.005)
        latency = time.monotonic() - t0
        assert heard and heard[-1] == RegistryChange("PVTypeInfo", frozenset({"TWO:1"}), False)
        a.add_alias("TWO:AL", "TWO:1")
        a.put_requests([("TWO:REQ", ArchiveRequest("TWO:REQ").to_params())])
        NamedFlags(a).set("SKIP_LTS_FOR_RETRIEVAL", True)
        assert wait_for(lambda: flags_b.get("SKIP_LTS_FOR_RETRIEVAL"), 5, 0.005)
        assert b.real_name("TWO:AL") == "TWO:1" and b.has_request("TWO:REQ")
        # deletions travel too, and a batch too big for one notification reloads the table
        a.delete_typeinfo("TWO:1")
        a.put_typeinfos(PVTypeInfo(f"BIG:{'x' * 60}:{i:04d}") for i in range(500))
        assert wait_for(lambda: len(b.names()) == 500, 10, 0.01), len(b.names())
        assert not b.has_typeinfo("TWO:1")
        # b's own changes reach a, and b hears them as local
        b.put_external_server("peer", "http://peer")
        assert wait_for(lambda: a.external_servers() == {"peer": "http://peer"}, 5, 0.005)
        assert heard[-1].local and heard[-1].table == "ExternalDataServers"
        assert b.state().remote_changes >= 503
        print(f"change seen by the other registry after {latency * 1000:.1f} ms")
    finally:
        a.close()
        b.close()


def test_postgres_lost_and_back(own_pg: PostgresServer) -> None:
    url = own_pg.new_database()
    a, b = open_registry(url), open_registry(url)
    try:
        a.put_typeinfo(PVTypeInfo("LOST:1"))
        assert wait_for(lambda: b.has_typeinfo("LOST:1"), 5, 0.01)
        own_pg.stop()
        assert wait_for(lambda: not a.state().connected, 10, 0.05)
        with pytest.raises(RegistryUnavailable, match="unreachable"):
            a.put_typeinfo(PVTypeInfo("LOST:2"))
        # the batch is refused before its block runs
        ran = []
        with pytest.raises(RegistryUnavailable), a.batch():
            ran.append(1)
        assert ran == [] and a.state().refused >= 2
        assert a.names() == ["LOST:1"]  # reads answer from the cache
        own_pg.start()
        assert wait_for(lambda: a.state().connected and b.state().connected, 20, 0.05)
        assert a.state().reconnects == 1
        a.put_typeinfo(PVTypeInfo("LOST:2"))
        assert wait_for(lambda: b.has_typeinfo("LOST:2"), 5, 0.01)
        # a change b could not hear (b's listener down) is found by the reload after reconnect
        b.close()
        a.delete_typeinfo("LOST:1")
        c = open_registry(url)
        assert c.names() == ["LOST:2"]
        c.close()
    finally:
        a.close()


def test_a_change_missed_while_disconnected_is_reloaded(own_pg: PostgresServer) -> None:
    url = own_pg.new_database()
    a = open_registry(url)
    heard: list[RegistryChange] = []
    a.subscribe(heard.append)
    try:
        a.put_typeinfos([PVTypeInfo("M:1"), PVTypeInfo("M:2")])
        own_pg.stop()
        assert wait_for(lambda: not a.state().connected, 10, 0.05)
        own_pg.start()
        # another appliance changes rows before a's listener is back
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM PVTypeInfo WHERE pvName = 'M:1'")
            conn.execute("INSERT INTO NamedFlags (flagName, flagValue) VALUES ('F', 'true')")
        assert wait_for(lambda: a.names() == ["M:2"] and a.named_flags() == {"F": True}, 20, 0.05)
        remote = [c for c in heard if not c.local]
        assert {c.table for c in remote} == {"PVTypeInfo", "NamedFlags"}
    finally:
        a.close()


def test_sqlite_path_still_opens_a_registry(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.sqlite")
    reg.put_typeinfo(PVTypeInfo("S:1"))
    assert reg.state().backend == "sqlite" and reg.state().connected
    reg.close()
    assert open_registry(sqlite_url(tmp_path / "r.sqlite")).names() == ["S:1"]


# ---------------------------------------------------------------------- pvarchiver serve
def _put(base: str, pv: str, paused: bool = True) -> httpx.Response:
    ti = {"pvName": pv, "DBRType": "DBR_SCALAR_DOUBLE", "samplingPeriod": "1.0"}
    ti["paused"] = "true" if paused else "false"
    return bpl(base, "putPVTypeInfo", "POST", params={"pv": pv, "createnew": "true"}, json=ti)


def test_serve_with_a_postgres_registry(pg: PostgresServer, tmp_path: Path) -> None:
    url = pg.new_database()
    env = {"PVARCHIVER_REGISTRY": url}
    with running_server(tmp_path / "a", env) as a:
        assert _put(a, "SRV:1").status_code == 200
        assert bpl(a, "setNamedFlag", params={"name": "F1", "value": "true"}).status_code == 200
        health = bpl(a, "getApplianceHealth").json()
        assert health["registry"]["backend"] == "postgresql"
        assert health["registry"]["connected"] == "true"
        # a second appliance on the same registry (its own storage, the command-line option)
        with running_server(tmp_path / "b", args=["--registry", url]) as b:
            assert bpl(b, "getPVTypeInfo", params={"pv": "SRV:1"}).json()["pvName"] == "SRV:1"
            assert _put(b, "SRV:2").status_code == 200
            got = wait_for(
                lambda: bpl(a, "getPVTypeInfo", params={"pv": "SRV:2"}).status_code == 200, 5
            )
            assert got, "appliance a never saw SRV:2"
            assert bpl(b, "getNamedFlag", params={"name": "F1"}).json() == {"F1": True}
            bpl(b, "setNamedFlag", params={"name": "F1", "value": "false"})
            assert wait_for(
                lambda: bpl(a, "getNamedFlag", params={"name": "F1"}).json() == {"F1": False}, 5
            )
    assert not (tmp_path / "a" / "registry.sqlite").exists()
    # restarted: still there
    with running_server(tmp_path / "a", env) as a:
        assert sorted(bpl(a, "getAllPVs").json()) == ["SRV:1", "SRV:2"]
        metrics = httpx.get(a + "/metrics", timeout=30).text
        assert 'pvarchiver_registry_connected{backend="postgresql"} 1' in metrics


def test_serve_refuses_an_unreachable_postgres_at_start(tmp_path: Path) -> None:
    _require_postgres()
    port = free_port()  # nothing listens there
    res = subprocess.run(
        [
            *(sys.executable, "-m", "pvarchiver", "serve", "--storage", str(tmp_path / "s")),
            *("--host", "127.0.0.1", "--port", str(free_port())),
            *("--registry", f"postgresql://someone:secret@127.0.0.1:{port}/db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("pvarchiver serve: the PV registry's PostgreSQL"), last
    assert "unreachable" in last and "secret" not in res.stderr and "someone:***" in last
    bad = subprocess.run(
        [
            *(sys.executable, "-m", "pvarchiver", "serve", "--storage", str(tmp_path / "s")),
            *("--registry", "mysql://x/y", "--check"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )
    assert bad.returncode == 2 and "postgresql://user@host:port/database" in bad.stderr


def _samples(base: str, pv: str) -> list[float]:
    r = httpx.get(
        base + "/retrieval/data/getData.json",
        params={"pv": pv, "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        timeout=30,
    )
    if r.status_code != 200 or not r.json():
        return []
    return [s["secs"] + s["nanos"] / 1e9 for s in r.json()[0]["data"]]


def test_postgres_stopped_while_serving(own_pg: PostgresServer, ioc, tmp_path: Path) -> None:
    url = own_pg.new_database()
    env = {**ca_env(ioc), "PVARCHIVER_REGISTRY": url, "PVARCHIVER_SECONDS_TO_BUFFER": "1"}
    with running_server(tmp_path / "s", env) as base:
        assert bpl(base, "archivePV", params={"pv": "PG:CNT"}).status_code == 200
        wait_status(base, ["PG:CNT"], "Being archived")
        assert wait_for(lambda: len(_samples(base, "PG:CNT")) > 5, 30, 0.2)
        own_pg.stop()
        stopped = time.time()

        def lost() -> bool:
            reg = bpl(base, "getApplianceHealth").json().get("registry", {})
            return reg.get("connected") == "false"

        assert wait_for(lost, 20, 0.1)
        health = bpl(base, "getApplianceHealth")
        assert health.status_code == 200 and health.json()["status"] == "warning"
        assert any("registry" in w and "unreachable" in w for w in health.json()["warnings"])
        metrics = httpx.get(base + "/metrics", timeout=30).text
        assert 'pvarchiver_registry_connected{backend="postgresql"} 0' in metrics
        # every change is refused with the reason, never a 500
        for r in (
            bpl(base, "setNamedFlag", params={"name": "F", "value": "true"}),
            bpl(base, "archivePV", params={"pv": "PG:OTHER"}),
            _put(base, "PG:NEW"),
            bpl(base, "pauseArchivingPV", params={"pv": "PG:CNT"}),
        ):
            assert r.status_code == 503, (r.request.url, r.status_code, r.text)
            assert "unreachable" in r.json()["validation"], r.text
        # reads still answer, and the PV is still archived
        assert bpl(base, "getPVStatus", params={"pv": "PG:CNT"}).json()[0]["status"] == (
            "Being archived"
        )
        assert wait_for(lambda: max(_samples(base, "PG:CNT")) > stopped + 2, 30, 0.2)
        own_pg.start()

        def back() -> bool:
            reg = bpl(base, "getApplianceHealth").json().get("registry", {})
            return reg.get("connected") == "true"

        assert wait_for(back, 30, 0.1)
        r = bpl(base, "setNamedFlag", params={"name": "F", "value": "true"})
        assert r.status_code == 200, r.text
        assert bpl(base, "pauseArchivingPV", params={"pv": "PG:CNT"}).status_code == 200
        assert bpl(base, "getApplianceHealth").json()["status"] == "ok"


# ---------------------------------------------------------------------- registry migrate
def _migrate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pvarchiver", "registry", "migrate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def test_migrate_sqlite_into_postgres(pg: PostgresServer, tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    src = Registry(path)
    with src.batch() as b:
        for i in range(2500):
            b.put_typeinfo(PVTypeInfo(f"MIG:{i:04d}"))
        b.add_alias("MIG:AL", "MIG:0001")
        b.put_request("MIG:REQ", ArchiveRequest("MIG:REQ").to_params())
        b.put_external_server("srv", "http://x")
        b.put_named_flag("F", True)
    want = {t: src.raw_rows(t) for t in src.counts()}
    src.close()
    url = pg.new_database()
    first = _migrate("--from", sqlite_url(path), "--to", url)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "verified" in first.stdout and "2500" in first.stdout
    dest = open_registry(url)
    try:
        assert {t: dest.raw_rows(t) for t in want} == want
    finally:
        dest.close()
    # again: nothing to copy, still verified (a plain file path works too)
    again = _migrate("--from", str(path), "--to", url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "verified" in again.stdout
    # a row changed in PostgreSQL since is a conflict, kept unless --overwrite
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE PVAliases SET realName = 'MIG:0002' WHERE pvName = 'MIG:AL'")
    kept = _migrate("--from", sqlite_url(path), "--to", url)
    assert kept.returncode == 1 and "conflict kept: PVAliases MIG:AL" in kept.stdout
    over = _migrate("--from", sqlite_url(path), "--to", url, "--overwrite")
    assert over.returncode == 0, over.stdout + over.stderr
    dest = open_registry(url)
    assert dest.real_name("MIG:AL") == "MIG:0001"
    dest.close()


def test_migrate_bad_input(tmp_path: Path) -> None:
    _require_postgres()
    missing = _migrate("--from", str(tmp_path / "none.sqlite"), "--to", "postgresql://a@h/db")
    assert missing.returncode == 2 and "no such registry file" in missing.stderr
    Registry(tmp_path / "r.sqlite").close()
    bad = _migrate("--from", str(tmp_path / "r.sqlite"), "--to", "mysql://x/y")
    assert bad.returncode == 2 and "postgresql://user@host:port/database" in bad.stderr
    down = _migrate(
        "--from", str(tmp_path / "r.sqlite"), "--to", f"postgresql://a@127.0.0.1:{free_port()}/db"
    )
    assert down.returncode == 2 and "unreachable" in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1, down.stderr
