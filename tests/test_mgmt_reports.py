"""Reports, metrics, export/import and consolidation of the management BPL, end to end.

Two real softIocs and a real ``pvarchiver serve`` process. IOC 1 serves a fast (10 Hz), a
slow (1 Hz), a quiet (passive, processed once) PV, and one never processed, whose 1990
timestamp the engine drops; so the rate, silence and dropped-events reports have a known order;
IOC 2 serves one PV and is restarted with that PV as a different record type, which gives it
one lost connection and a type-change drop. The tests of this module share the server and
run in file order (each one's docstring says what it relies on).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from pvarchiver.mgmt import reports as rp
from pvarchiver.mgmt.prometheus import Family, etl_families, render
from pvarchiver.mgmt.storage_usage import UsageCache
from pvarchiver.storage.schedule import ETLScheduler
from pvarchiver.storage.store import PlainPBStore, open_store
from pvarchiver.storage.url import default_store_urls, parse_store_url

from .helpers.wait import wait_for
from .http_server import Server, running_server
from .ioc import IOC

FAST, SLOW, QUIET, OLD, TC = "RP:FAST", "RP:SLOW", "RP:QUIET", "RP:OLD", "RP2:TC"
DB1 = f"""
record(calc, "{FAST}") {{ field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "{FAST}") }}
record(calc, "{SLOW}") {{ field(SCAN, "1 second") field(CALC, "A+1") field(INPA, "{SLOW}") }}
record(ao, "{QUIET}") {{ field(VAL, "3") field(PINI, "YES") }}
record(ao, "{OLD}") {{ field(VAL, "4") }}
"""
DB2_AI = (
    f'record(calc, "{TC}") {{ field(SCAN, ".5 second") field(CALC, "A+1") field(INPA, "{TC}") }}\n'
)
DB2_STRING = f'record(stringin, "{TC}") {{ field(VAL, "now a string") field(SCAN, "1 second") }}\n'
ALL = [FAST, SLOW, QUIET, OLD, TC]


def bpl(base: str, action: str, method: str = "GET", **kw: object) -> httpx.Response:
    return httpx.request(method, f"{base}/mgmt/bpl/{action}", timeout=60, **kw)  # type: ignore[arg-type]


def ok(base: str, action: str, **params: str) -> list[dict[str, str]]:
    r = bpl(base, action, params=params)
    assert r.status_code == 200, (action, r.status_code, r.text)
    rows = r.json()
    assert isinstance(rows, list), rows
    for row in rows:  # the AA's json-simple rows: every value a string
        assert all(isinstance(v, str) for v in row.values()), (action, row)
    return rows


def num(text: str) -> float:
    return float(text.replace(",", ""))


def statuses(base: str, names: list[str]) -> dict[str, str]:
    r = bpl(base, "getPVStatus", "POST", json=names)
    assert r.status_code == 200, r.text
    return {row["pvName"]: row["status"] for row in r.json()}


def wait_status(base: str, names: list[str], want: str, timeout: float = 40) -> None:
    assert wait_for(lambda: set(statuses(base, names).values()) == {want}, timeout, 0.2), statuses(
        base, names
    )


def pb_files(store: PlainPBStore, pv: str) -> list[Path]:
    """The files of ``pv`` in ``store``: those under its key (``RP/FAST:`` for RP:FAST, spelled
    as the store spells it)."""
    key = store.naming.match_key(store.key(pv))
    return [
        p
        for p in store.root.rglob("*.pb")
        if store.naming.match_key(p.relative_to(store.root).as_posix()).startswith(key)
    ]


def sample_count(base: str, pv: str) -> int:
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return sum(len(block["data"]) for block in r.json())


@pytest.fixture(scope="module")
def site_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reports")


@pytest.fixture(scope="module")
def site_stores(site_tmp: Path) -> dict[str, PlainPBStore]:
    """The server's STS, MTS and LTS by name, opened (probed) as serve opens them, before it
    starts: the file names a test expects come from their naming (the AA's on an ordinary
    folder, portable ones where Windows' rules apply)."""
    stores = (open_store(parse_store_url(u)) for u in default_store_urls(site_tmp / "storage"))
    return {s.name: s for s in stores}


@pytest.fixture(scope="module")
def site(
    site_tmp: Path, site_stores: dict[str, PlainPBStore]
) -> Iterator[tuple[Server, Path, IOC]]:
    tmp = site_tmp
    with IOC(DB1, tmp / "ioc1") as ioc1, IOC(DB2_AI, tmp / "ioc2") as ioc2:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc1.port} 127.0.0.1:{ioc2.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(ioc1.port),
            "EPICS_CA_REPEATER_PORT": str(ioc1.repeater_port),
            "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "1",
            "PVARCHIVER_STORAGE_SCAN_SECONDS": "0",  # every call sees the files as they are
        }
        with running_server(tmp / "storage", env) as base:
            r = bpl(base, "archivePV", "POST", json=[{"pv": n} for n in ALL])
            assert r.status_code == 200, r.text
            wait_status(base, ALL, "Being archived")
            yield base, tmp / "storage", ioc2


# ---------------------------------------------------------------------- pure parts
def test_fmt_number_is_the_aa_decimal_format() -> None:
    assert rp.fmt_number(1234567.891) == "1,234,567.89"
    assert rp.fmt_number(2.5) == "2.5"
    assert rp.fmt_number(3.0) == "3"
    assert rp.fmt_number(0.0) == "0"
    assert rp.fmt_number(0.001) == "0"


def test_render_escapes_and_declares_every_family() -> None:
    f = Family("pvarchiver_x", "gauge", 'a "help"\nline').add(1.5, {"l": 'q"\\\n'})
    text = render([f, Family("pvarchiver_y_total", "counter", "n").add(3)])
    assert text.splitlines() == [
        '# HELP pvarchiver_x a "help"\\nline',
        "# TYPE pvarchiver_x gauge",
        'pvarchiver_x{l="q\\"\\\\\\n"} 1.5',
        "# HELP pvarchiver_y_total n",
        "# TYPE pvarchiver_y_total counter",
        "pvarchiver_y_total 3",
    ]
    parsed = parse_exposition(text)
    assert parsed[("pvarchiver_x", (("l", 'q"\\\n'),))] == 1.5


def test_etl_timings_from_a_real_scheduler(tmp_path: Path) -> None:
    stores = [open_store(parse_store_url(u)) for u in default_store_urls(tmp_path)]
    sched = ETLScheduler(stores, 0.0)
    sched.run_due(time.time())
    fams = {f.name: f for f in etl_families(sched.stages, [])}
    last = fams["pvarchiver_etl_last_run_seconds"]
    assert {tuple(sorted(lab.items())) for _, lab, _ in last.samples} == {
        (("dest", "MTS"), ("source", "STS")),
        (("dest", "LTS"), ("source", "MTS")),
    }
    assert all(v >= 0 for _, _, v in last.samples)
    parse_exposition(render(fams.values()))


def test_usage_cache_reuses_a_scan_until_invalidated(tmp_path: Path) -> None:
    stores = [open_store(parse_store_url(u)) for u in default_store_urls(tmp_path)]

    async def run() -> None:
        cache = UsageCache(stores, lambda: ["A:B"], ttl=3600)
        first = await cache.get()
        assert await cache.get() is first
        cache.invalidate()
        again = await cache.get()
        assert again is not first and [s.name for s in again.stores] == ["STS", "MTS", "LTS"]

    asyncio.run(run())


# ---------------------------------------------------------------------- a tiny parser
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def parse_exposition(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text format 0.0.4, strictly: every sample belongs to a family declared
    with HELP and TYPE before it (summary samples by their _sum/_count suffix)."""
    helps: set[str] = set()
    types: dict[str, str] = {}
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helps.add(line.split(" ")[2])
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "summary", "histogram", "untyped"), line
            assert name in helps, f"TYPE before HELP: {line}"
            types[name] = kind
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, _, labels, value = m.groups()
        family = name
        if name not in types:
            family = re.sub(r"_(sum|count|bucket)$", "", name)
        assert family in types, f"sample of an undeclared family: {line}"
        pairs: list[tuple[str, str]] = []
        if labels:
            rest = labels
            while rest:
                lm = _LABEL.match(rest)
                assert lm, f"bad labels in {line!r}"
                pairs.append((lm.group(1), _unescape(lm.group(2))))
                rest = rest[lm.end() :]
        out[(name, tuple(sorted(pairs)))] = float(value)
    return out


# ---------------------------------------------------------------------- reports, live
@pytest.mark.slow
def test_rate_and_registry_reports(site: tuple[Server, Path, IOC]) -> None:
    base, _root, _ = site
    time.sleep(3)  # a few seconds of events, so that 10 Hz and 1 Hz rates separate
    rows = ok(base, "getEventRateReport")
    assert {r["pvName"] for r in rows} == set(ALL)
    assert all(set(r) == {"pvName", "eventRate"} for r in rows)
    rates = [num(r["eventRate"]) for r in rows]
    assert rates == sorted(rates, reverse=True) and rows[0]["pvName"] == FAST
    by = {r["pvName"]: num(r["eventRate"]) for r in rows}
    assert by[FAST] > 3 * by[SLOW] > 0
    assert [r["pvName"] for r in ok(base, "getEventRateReport", limit="1")] == [FAST]
    assert ok(base, "getEventRateReport", limit="0") == []

    rows = ok(base, "getStorageRateReport", limit="200")
    assert set(rows[0]) == {
        "pvName",
        "storageRate_KBperHour",
        "storageRate_MBperDay",
        "storageRate_GBperYear",
    }
    kb = [num(r["storageRate_KBperHour"]) for r in rows]
    assert kb == sorted(kb, reverse=True) and rows[0]["pvName"] == FAST and kb[0] > 0

    rows = ok(base, "getRecentlyAddedPVs", limit="100")
    assert {r["pvName"] for r in rows} == set(ALL)
    assert all(set(r) == {"pvName", "instance", "creationTime"} for r in rows)
    created = [
        datetime.fromisoformat(
            bpl(base, "getPVTypeInfo", params={"pv": r["pvName"]}).json()["creationTime"][:-1]
        )
        for r in rows
    ]
    assert created == sorted(created, reverse=True)
    assert len(ok(base, "getRecentlyAddedPVs", limit="2")) == 2

    # touch QUIET's typeinfo: it becomes the most recently modified PV
    time.sleep(0.01)
    assert (
        bpl(base, "changeArchivalParameters", params={"pv": QUIET, "samplingperiod": "2"}).json()[
            "status"
        ]
        == "ok"
    )
    rows = ok(base, "getRecentlyModifiedPVs")
    assert rows[0]["pvName"] == QUIET and set(rows[0]) == {"pvName", "instance", "modificationTime"}


@pytest.mark.slow
def test_connection_silence_and_type_change_reports(site: tuple[Server, Path, IOC]) -> None:
    """QUIET (passive) sent one event at connect; the others keep sending; OLD's only
    event had a timestamp before 1991, so it never had an event that counted."""
    base, _root, ioc2 = site
    wait_for(lambda: ok(base, "getSilentPVsReport")[1]["pvName"] == QUIET, 10, 0.5)
    rows = ok(base, "getSilentPVsReport")
    assert [r["pvName"] for r in rows[:2]] == [OLD, QUIET]
    assert set(rows[0]) == {"pvName", "instance", "lastKnownEvent"}
    assert rows[0]["lastKnownEvent"] == "Never" and rows[1]["lastKnownEvent"] != "Never"
    rows = ok(base, "getPVsByDroppedEventsTimestamp", limit="100")
    assert [r["pvName"] for r in rows] == [OLD]
    assert rows[0]["dropped (timestamp before 1991)"] == rows[0]["eventsDropped"] == "1"

    # IOC 2 comes back with TC as a string record: one lost connection and a type change
    ioc2.kill()
    ioc2.db_path.write_text(DB2_STRING)
    ioc2.start()

    def changed() -> bool:
        r = ok(base, "getPVsByDroppedEventsTypeChange")
        return bool(r) and r[0]["pvName"] == TC

    assert wait_for(changed, 60, 0.5), ok(base, "getPVsByDroppedEventsTypeChange")
    row = ok(base, "getPVsByDroppedEventsTypeChange")[0]
    assert (
        int(row["eventsDropped"]) >= 1 and row["dropped (PV changed type)"] == row["eventsDropped"]
    )
    rows = ok(base, "getLostConnectionsReport")
    assert rows[0]["pvName"] == TC and int(rows[0]["lostConnections"]) >= 1
    assert rows[0]["currentlyConnected"] in ("Yes", "No")
    assert set(rows[0]) == {"pvName", "instance", "lostConnections", "currentlyConnected"}
    counts = [int(r["lostConnections"]) for r in rows]
    assert counts == sorted(counts, reverse=True)
    # no buffer overflow here; the report answers an empty list
    assert ok(base, "getPVsByDroppedEventsBuffer", limit="100") == []


@pytest.mark.slow
def test_bad_report_input_is_a_4xx(site: tuple[Server, Path, IOC]) -> None:
    base, _root, _ = site
    for action in ("getEventRateReport", "getPVsByStorageConsumed", "getSilentPVsReport"):
        for params in ({"limit": "ten"}, {"limit": "-5"}, {"bogus": "1"}):
            r = bpl(base, action, params=params)
            assert r.status_code == 400, (action, params, r.text)
            assert r.json()["status"] == "error" and r.json()["validation"]
    r = bpl(base, "getApplianceMetricsForAppliance", params={"appliance": "elsewhere"})
    assert r.status_code == 404 and "elsewhere" in r.json()["validation"]


@pytest.mark.slow
def test_storage_and_appliance_metrics(
    site: tuple[Server, Path, IOC], site_stores: dict[str, PlainPBStore]
) -> None:
    base, _root, _ = site
    sts_store = site_stores["STS"]
    assert wait_for(lambda: pb_files(sts_store, FAST), 40, 0.5)  # the engine writes every 10 s
    # measured first: files only grow (or move on to the next store), so the report,
    # which sums every store, can only show more
    files = pb_files(sts_store, FAST)
    on_disk = sum(p.stat().st_size for p in files)
    if not sts_store.naming.portable:  # an ordinary folder: the AA's own names, byte for byte
        names = [p.relative_to(sts_store.root).as_posix() for p in files]
        assert all(re.fullmatch(r"RP/FAST:\d{4}(_\d\d){3}\.pb", n) for n in names), names
    rows = ok(base, "getPVsByStorageConsumed", limit="100")
    assert rows and set(rows[0]) == {"pvName", "instance", "storageConsumed", "storageConsumedInMB"}
    sizes = [int(r["storageConsumed"]) for r in rows]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 0
    fast = next(r for r in rows if r["pvName"] == FAST)
    assert int(fast["storageConsumed"]) >= on_disk > 0
    assert len(ok(base, "getPVsByStorageConsumed", limit="1")) == 1

    stores = ok(base, "getStorageMetrics")
    assert [s["name"] for s in stores] == ["STS", "MTS", "LTS"]
    sts = stores[0]
    assert num(sts["total_space"]) > 0 and 0 <= num(sts["available_space_percent"]) <= 100
    assert int(sts["pvarchiver_space_used_bytes"]) > 0 and int(sts["pvCount"]) >= 1

    (app,) = ok(base, "getApplianceMetrics")
    for key in (
        "instance",
        "status",
        "pvCount",
        "connectedPVCount",
        "disconnectedPVCount",
        "eventRate",
        "dataRate",
        "secondsConsumedByWritter",
        "capacityUtilized",
        "MGMT_uptime",
    ):
        assert key in app, key
    assert app["instance"] == "appliance0" and app["pvCount"] == str(len(ALL))
    assert int(app["connectedPVCount"]) + int(app["disconnectedPVCount"]) + int(
        app["pausedPVCount"]
    ) == len(ALL)
    assert num(app["eventRate"]) > 0 and num(app["secondsConsumedByWritter"]) >= 0
    details = {d["name"]: d["value"] for d in ok(base, "getApplianceMetricsForAppliance")}
    assert details["Total PV count"] == str(len(ALL)) and int(details["Write cycles"]) >= 1


@pytest.mark.slow
def test_metrics_endpoint_parses(site: tuple[Server, Path, IOC]) -> None:
    """Runs after the type-change test (one type-change drop) and the first STS write."""
    base, _root, _ = site
    r = httpx.get(f"{base}/metrics", timeout=60)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = parse_exposition(r.text)
    assert all(name.startswith("pvarchiver_") for name, _ in m)
    assert m[("pvarchiver_pvs", (("state", "total"),))] == len(ALL)
    states = ("connected", "disconnected", "paused")
    assert sum(m[("pvarchiver_pvs", (("state", s),))] for s in states) == len(ALL)
    assert m[("pvarchiver_events_received_total", ())] > 0
    assert m[("pvarchiver_events_stored_total", ())] > 0
    assert m[("pvarchiver_events_per_second", ())] > 0
    assert m[("pvarchiver_events_dropped_total", (("reason", "PV changed type"),))] >= 1
    assert (
        m[("pvarchiver_events_dropped_total", (("reason", "engine buffer memory bound reached"),))]
        == 0
    )
    assert m[("pvarchiver_store_used_bytes", (("store", "STS"),))] > 0
    assert m[("pvarchiver_store_total_bytes", (("store", "LTS"),))] > 0
    assert m[("pvarchiver_write_cycle_seconds_count", ())] >= 1
    assert not math.isnan(m[("pvarchiver_write_cycle_seconds_sum", ())])
    assert ("pvarchiver_consolidation_seconds_count", ()) in m
    # the server's own ETL scheduler: when each stage runs next, STS->MTS and MTS->LTS
    nxt = {k[1] for k in m if k[0] == "pvarchiver_etl_next_run_timestamp_seconds"}
    assert nxt == {(("dest", "MTS"), ("source", "STS")), (("dest", "LTS"), ("source", "MTS"))}


# ---------------------------------------------------------------------- consolidation
@pytest.mark.slow
def test_consolidate_paused_pv_into_lts(
    site: tuple[Server, Path, IOC], site_stores: dict[str, PlainPBStore]
) -> None:
    base, _root, _ = site
    r = bpl(base, "consolidateDataForPV", params={"pv": SLOW, "storage": "LTS"})
    assert r.status_code == 400, r.text
    assert r.json()["validation"] == f"Cannot consolidate unless PV {SLOW} is paused."  # the AA's
    assert bpl(base, "pauseArchivingPV", params={"pv": SLOW}).json()["status"] == "ok"
    r = bpl(base, "consolidateDataForPV", params={"pv": SLOW, "storage": "XTS"})
    assert r.status_code == 400
    assert r.json()["validation"].startswith(f"Cannot find storage with name XTS for pv {SLOW}")
    r = bpl(base, "consolidateDataForPV", params={"pv": SLOW})
    assert r.status_code == 400 and "storage" in r.json()["validation"]
    r = bpl(base, "consolidateDataForPV", params={"pv": "RP:NOPE", "storage": "LTS"})
    assert r.status_code == 404
    r = bpl(base, "consolidateDataForPV", params={"pv": SLOW, "storage": "LTS", "date": "x"})
    assert r.status_code == 400

    before = sample_count(base, SLOW)  # on disk plus what the engine still buffers
    assert before > 0
    r = bpl(base, "consolidateDataForPV", params={"pv": SLOW, "storage": "LTS"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and int(body["filesMoved"]) >= 1
    assert pb_files(site_stores["STS"], SLOW) == [] and pb_files(site_stores["MTS"], SLOW) == []
    assert pb_files(site_stores["LTS"], SLOW)
    assert sample_count(base, SLOW) == before  # nothing lost, nothing doubled
    # again: nothing left to move, still fine
    r = bpl(base, "consolidateDataForPV", params={"pv": SLOW, "storage": "LTS"})
    assert r.status_code == 200 and r.json()["filesMoved"] == "0"
    m = parse_exposition(httpx.get(f"{base}/metrics", timeout=60).text)
    assert m[("pvarchiver_consolidation_seconds_count", ())] >= 2


# ---------------------------------------------------------------------- export / import
@pytest.mark.slow
def test_export_delete_import_round_trip(
    site: tuple[Server, Path, IOC], site_stores: dict[str, PlainPBStore]
) -> None:
    base, _root, _ = site
    sts_store = site_stores["STS"]
    r = bpl(base, "exportConfig")
    assert r.status_code == 200
    exported = r.json()
    assert [e["pvName"] for e in exported] == sorted(ALL)
    assert all(
        isinstance(v, str) for e in exported for v in e.values() if not isinstance(v, list | dict)
    )
    fast = next(e for e in exported if e["pvName"] == FAST)
    assert fast["paused"] == "false" and fast["samplingMethod"] == "MONITOR"

    assert bpl(base, "pauseArchivingPV", params={"pv": FAST}).json()["status"] == "ok"
    r = bpl(base, "deletePV", params={"pv": FAST, "deleteData": "true"})
    assert r.status_code == 200, r.text
    assert statuses(base, [FAST]) == {FAST: "Not being archived"}
    assert not pb_files(sts_store, FAST)

    # all or nothing: one bad entry refuses the whole body, the good one is not imported
    bad = [fast, {**fast, "pvName": "RP:OTHER", "samplingMethod": "SOMETIMES"}]
    r = bpl(base, "importConfig", "POST", json=bad)
    assert r.status_code == 400 and "SOMETIMES" in r.json()["validation"]
    assert statuses(base, [FAST]) == {FAST: "Not being archived"}
    for body in (b"{not json", b'[{"DBRType": "DBR_SCALAR_DOUBLE"}]', b'"a string"'):
        r = bpl(base, "importConfig", "POST", content=body)
        assert r.status_code == 400, (body, r.text)
    assert bpl(base, "importConfig").status_code == 405
    assert bpl(base, "importConfig", "POST", json=[fast, fast]).status_code == 400

    r = bpl(base, "importConfig", "POST", json=exported)
    assert r.status_code == 200, r.text
    result = {row["pvName"]: row["status"] for row in r.json()}
    assert result == {n: "Imported" if n == FAST else "Skipped" for n in ALL}
    assert bpl(base, "getPVTypeInfo", params={"pv": FAST}).json() == fast  # lossless
    wait_status(base, [FAST], "Being archived")
    assert wait_for(lambda: pb_files(sts_store, FAST), 40, 0.5)  # archived again, for real
    assert sample_count(base, FAST) > 0
