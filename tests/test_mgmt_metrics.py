"""The AA's remaining reports and metrics calls, end to end: a real softIoc and a real
``pvarchiver serve`` process (``web/mgmt_metrics_actions.py``), plus the Java number and
duration formats and the process sampler on their own.

The IOC serves a waveform, a counting scalar, and two records never processed, whose 1990
timestamps the engine drops (so they have more dropped events than archived ones: the
"slow changing PVs with dropped events"). The server tests share one server and run in
file order; each docstring says what it relies on.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from pvarchiver.mgmt.metrics_reports import aa_uptime, java_double, java_duration
from pvarchiver.mgmt.process_metrics import ProcessMetrics
from pvarchiver.storage.url import expand_macros, parse_store_url

from .helpers.mgmt import bpl, ca_env, wait_status
from .helpers.wait import wait_for
from .http_server import Server, running_server
from .ioc import IOC

WF, CNT, OLD1, OLD2, NEVER = "MX:WF", "MX:CNT", "MX:OLD1", "MX:OLD2", "MX:NOSUCH"
NELM = 16
DB = f"""
record(waveform, "{WF}") {{ field(NELM, "{NELM}") field(FTVL, "DOUBLE") field(PINI, "YES") }}
record(calc, "{CNT}") {{ field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "{CNT}") }}
record(ao, "{OLD1}") {{ field(VAL, "1") }}
record(ao, "{OLD2}") {{ field(VAL, "2") }}
"""
ARCHIVED = [WF, CNT, OLD1, OLD2]
FOLDER_VARS = (
    "ARCHAPPL_SHORT_TERM_FOLDER",
    "ARCHAPPL_MEDIUM_TERM_FOLDER",
    "ARCHAPPL_LONG_TERM_FOLDER",
)
WINDOW = 3.0  # initial sampling: long enough to see the PVs in getMetaGets


def ok(base: str, action: str, **params: str) -> object:
    r = bpl(base, action, params=params)
    assert r.status_code == 200, (action, r.status_code, r.text)
    return r.json()


def rows_of(base: str, action: str, **params: str) -> list[dict[str, str]]:
    rows = ok(base, action, **params)
    assert isinstance(rows, list), rows
    for row in rows:  # json-simple maps: every value a string
        assert all(isinstance(v, str) for v in row.values()), (action, row)
    return rows


# ---------------------------------------------------------------------- without a server
def test_java_double() -> None:
    cases = {
        5.0: "5.0",
        0.25: "0.25",
        1.0: "1.0",
        0.001: "0.001",
        1e7: "1.0E7",
        12345678.9: "1.23456789E7",
        1.5e-4: "1.5E-4",
        -2.5e-5: "-2.5E-5",
        0.0: "0.0",
        float("nan"): "NaN",
    }
    for x, want in cases.items():
        assert java_double(x) == want, x


def test_java_duration_and_aa_uptime() -> None:
    assert java_duration(0) == "PT0S"
    assert java_duration(1.5) == "PT1.5S"
    assert java_duration(60) == "PT1M"
    assert java_duration(3600) == "PT1H"
    assert java_duration(49 * 3600 + 3 * 60 + 2.512) == "PT49H3M2.512S"
    # the AA's InstanceReport: substring(2), a space after each unit but the last, lower case
    assert aa_uptime("PT49H3M2.512S") == "49h 3m 2.512s"
    assert aa_uptime("PT1M") == "1m"


def test_process_samples_ring_and_thread() -> None:
    pm = ProcessMetrics(max_samples=3)
    for _ in range(5):
        pm.sample()
    got = pm.samples()
    assert len(got) == 3
    s = got[-1]
    assert s.python_threads >= 1
    if sys.platform.startswith("linux"):
        assert s.rss_bytes and s.physical_bytes and 0 < s.memory_percent < 100  # type: ignore[operator]
        assert s.os_threads and s.open_files
        assert s.physical_bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    t0 = time.process_time()
    while time.process_time() - t0 < 0.05:  # burn CPU: the next sample must show it
        pass
    assert (pm.sample().cpu_percent or 0) > 0
    # the sampler thread: a sample at once, more at its interval, stops when told
    pm2 = ProcessMetrics()
    pm2.start(interval=0.05)
    pm2.start(interval=0.05)  # a second start does nothing
    assert wait_for(lambda: len(pm2.samples()) >= 3, 10)
    assert pm2.running
    pm2.stop()
    assert not pm2.running


# ---------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("metrics")
    ioc = IOC(DB, tmp)
    ioc.start()
    try:
        env = ca_env(ioc, window=WINDOW, PVARCHIVER_SECONDS_TO_BUFFER="1")
        with running_server(tmp / "storage", env) as base:
            yield base
    finally:
        ioc.kill()


def test_meta_gets_during_initial_sampling(server: Server) -> None:
    """While the PVs are measured, getMetaGets lists them with the AA's keys; a PV that never
    connects stays unscheduled. Afterwards the measured ones are gone from it."""
    r = bpl(server, "archivePV", "POST", json=[{"pv": n} for n in [*ARCHIVED, NEVER]])
    assert r.status_code == 200, r.text
    seen: dict[str, dict[str, str]] = {}

    def scheduled() -> bool:
        for row in rows_of(server, "getMetaGets"):
            seen[row["pvName"]] = row
        return all(seen.get(n, {}).get("isScheduled") == "true" for n in ARCHIVED)

    assert wait_for(scheduled, 30, 0.1), seen
    row = seen[CNT]
    assert row["appliance"] == "appliance0" and row["usePVAccess"] == "false"
    assert re.fullmatch(
        r"[A-Z][a-z]{2}/\d\d/\d{4} \d\d:\d\d:\d\d [+-]\d\d:\d\d", row["scheduleStart"]
    )
    assert 0 <= int(row["timerRemaining"]) <= math.ceil(WINDOW) and row["timerDone"] == "false"
    assert int(row["eventsSoFar"]) >= 0 and int(row["storageSoFar"]) >= 0
    assert row["mainMeta"].startswith("<ul><li>") and row["mainMeta"].endswith("</li></ul>")
    low = {d["name"]: d["value"] for d in json.loads(row["lowLevel"])}
    assert low["Connected"] == "Yes" and low["Element count"] == "1"
    never = seen[NEVER]
    assert never["isScheduled"] == "false" and never["scheduleStart"] == "Never"
    assert "timerRemaining" not in never
    wait_status(server, ARCHIVED, "Being archived", timeout=60)
    names = {r["pvName"] for r in rows_of(server, "getMetaGets")}
    assert names == {NEVER}


def test_archived_waveforms(server: Server) -> None:
    """Only the waveform, with its sampling, element count and type (after its first
    event, so the engine knows its type)."""
    rows = rows_of(server, "getArchivedWaveforms")
    assert rows == [
        {
            "pvName": WF,
            "samplingmethod": "MONITOR",
            "samplingperiod": java_double(
                float(ok(server, "getPVTypeInfo", pv=WF)["samplingPeriod"])  # type: ignore[index]
            ),
            "elementCount": str(NELM),
            "dbrtype": "DBR_WAVEFORM_DOUBLE",
        }
    ]


def test_slow_changing_with_dropped_events(server: Server) -> None:
    """The two never-processed records dropped their one 1990 event and archived none: most
    drops first, ties by name; limit cuts; a bad limit is a 400; a paused PV is left out."""
    want = [
        {"pvName": OLD1, "eventsDropped": "1", "totalEvents": "0"},
        {"pvName": OLD2, "eventsDropped": "1", "totalEvents": "0"},
    ]
    assert wait_for(
        lambda: rows_of(server, "getSlowChangingPVsWithDroppedEvents") == want, 20, 0.2
    ), rows_of(server, "getSlowChangingPVsWithDroppedEvents")
    assert rows_of(server, "getSlowChangingPVsWithDroppedEvents", limit="1") == want[:1]
    assert rows_of(server, "getSlowChangingPVsWithDroppedEvents", limit="0") == []
    for bad in ("abc", "1.5", "-2"):
        r = bpl(server, "getSlowChangingPVsWithDroppedEvents", params={"limit": bad})
        assert r.status_code == 400 and "limit" in r.json()["validation"], r.text
    r = bpl(server, "pauseArchivingPV", params={"pv": OLD2})
    assert r.status_code == 200, r.text
    wait_status(server, [OLD2], "Paused")
    assert rows_of(server, "getSlowChangingPVsWithDroppedEvents") == want[:1]


def _typeinfos(base: str) -> dict[str, dict[str, object]]:
    return {n: ok(base, "getPVTypeInfo", pv=n) for n in ARCHIVED}  # type: ignore[misc]


def _epoch(aa_time: object) -> int:
    return int(datetime.fromisoformat(str(aa_time).replace("Z", "+00:00")).timestamp())


def test_creation_and_time_span(server: Server) -> None:
    """Creation times are the typeinfos'; paused as the registry says (OLD2 was paused
    above); lastEvent is there for PVs the engine holds (-1 for those with no event kept),
    and the regex matches whole names."""
    infos = _typeinfos(server)
    rows = rows_of(server, "getCreationReportForAppliance")
    assert [r["pvName"] for r in rows] == sorted(ARCHIVED)
    for r in rows:
        assert r["creationTS"] == str(_epoch(infos[r["pvName"]]["creationTime"]))
        assert r["paused"] == ("true" if r["pvName"] == OLD2 else "false")
    only = rows_of(server, "getCreationReportForAppliance", regex="MX:OLD.")
    assert [r["pvName"] for r in only] == [OLD1, OLD2]
    assert rows_of(server, "getCreationReportForAppliance", regex="OLD") == []  # whole name

    assert wait_for(
        lambda: int(ok(server, "getTimeSpanReport")[CNT].get("lastEvent", "-1")) > 0,  # type: ignore[index]
        20,
        0.2,
    )
    span = ok(server, "getTimeSpanReport")
    assert isinstance(span, dict) and list(span) == sorted(ARCHIVED)
    by_name = {r["pvName"]: r for r in rows}
    now = time.time()
    for name, row in span.items():
        assert {k: row[k] for k in ("pvName", "creationTS", "paused")} == by_name[name]
    assert now - 60 < int(span[CNT]["lastEvent"]) <= now + 1
    assert span[OLD1]["lastEvent"] == "-1"  # its only event was dropped
    assert "lastEvent" not in span[OLD2]  # paused: not in the engine
    part = ok(server, "getTimeSpanReport", regex="MX:(CNT|WF)")
    assert list(part) == [CNT, WF]  # type: ignore[arg-type]
    r = bpl(server, "getTimeSpanReport", params={"regex": "MX:("})
    assert r.status_code == 400 and "regex" in r.json()["validation"].lower(), r.text


def test_aggregated_appliance_info(server: Server) -> None:
    """Totals of the typeinfos as they are, and each store's rate x partition seconds."""
    infos = _typeinfos(server)
    got = ok(server, "getAggregatedApplianceInfo")
    assert isinstance(got, dict)
    assert got["totalPVCount"] == f"{len(ARCHIVED)}.0"
    rate = sum(float(i["computedStorageRate"]) for i in infos.values())  # type: ignore[arg-type]
    events = sum(float(i["computedEventRate"]) for i in infos.values())  # type: ignore[arg-type]
    assert float(got["totalStorageRate"]) == pytest.approx(rate, rel=1e-5)
    assert float(got["totalEventRate"]) == pytest.approx(events, rel=1e-5)
    assert rate > 0
    impact: dict[str, float] = {}
    for i in infos.values():
        for url in i["dataStores"]:  # type: ignore[attr-defined]
            cfg = parse_store_url(expand_macros(url, {k: "/x" for k in FOLDER_VARS}))
            impact[cfg.name] = impact.get(cfg.name, 0) + cfg.granularity.approx_seconds * float(
                i["computedStorageRate"]  # type: ignore[arg-type]
            )
    assert set(got["totalStorageImpact"]) == set(impact) == {"STS", "MTS", "LTS"}
    for name, value in impact.items():
        # each PV's share truncated to whole bytes (as the AA's long sum), and the typeinfo
        # JSON gives the rates as float32 while the server sums them unrounded
        slack = len(ARCHIVED) + 1e-6 * value
        assert abs(int(got["totalStorageImpact"][name]) - value) <= slack, name


def test_instance_and_mgmt_metrics(server: Server) -> None:
    rows = rows_of(server, "getInstanceMetrics")
    assert len(rows) == 1
    row = rows[0]
    assert row["instance"] == "appliance0" and row["status"] == "Working"
    assert row["pvCount"] == str(len(ARCHIVED))
    assert "capacityUtilized" not in row
    assert re.fullmatch(r"(\d+h )?(\d+m )?\d+(\.\d+)?s", row["MGMT_uptime"]), row
    # the engine wrote (1 s write period): the writer's seconds per cycle are reported
    assert wait_for(lambda: "secondsConsumedByWriter" in rows_of(server, "getInstanceMetrics")[0])
    assert float(rows_of(server, "getInstanceMetrics")[0]["secondsConsumedByWriter"]) > 0

    details = rows_of(server, "getInstanceMetricsForAppliance", appliance="appliance0")
    assert details[0] == {"name": "Appliance Identity", "value": "appliance0", "source": "mgmt"}
    names = {d["name"]: d["value"] for d in details}
    assert names["Total PV count"] == str(len(ARCHIVED))
    assert names["PVs pending computation of meta info"] == "1"  # MX:NOSUCH
    assert "Process uptime" in names and "Python threads" in names
    if sys.platform.startswith("linux"):
        assert float(names["Process resident memory (MB)"]) > 5
    r = bpl(server, "getInstanceMetricsForAppliance", params={"appliance": "other"})
    assert r.status_code == 404 and "other" in r.json()["validation"]

    up = ok(server, "getMgmtMetricsForAppliance")
    assert isinstance(up, dict) and list(up) == ["uptime"]
    assert re.fullmatch(r"PT(\d+H)?(\d+M)?(\d+(\.\d+)?S)?", up["uptime"]), up
    assert bpl(server, "getMgmtMetricsForAppliance", params={"appliance": "x"}).status_code == 404


def test_process_metrics(server: Server) -> None:
    got = ok(server, "getProcessMetrics")
    assert isinstance(got, dict)
    for app in ("MGMT", "ENGINE", "ETL", "RETRIEVAL"):
        assert isinstance(got[f"{app}_uptime"], int) and got[f"{app}_uptime"] >= 0
        assert isinstance(got[f"{app}_start"], str)
        mets = got[f"{app}_metrics"]
        assert mets, app  # a sample is taken when the server starts
        assert mets == got["MGMT_metrics"]  # one process: the same figures
    sample = got["MGMT_metrics"][-1]
    assert all(isinstance(v, str) for v in sample.values())
    assert abs(int(sample["timeInEpochSeconds"]) - time.time()) < 24 * 3600
    float(sample["systemLoadAverage"])
    if sys.platform.startswith("linux"):
        # the server's own figures: its RAM is this machine's, its RSS a real share of it
        phys = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        assert sample["physicalMemoryBytes"] == str(phys)
        rss = int(sample["rssBytes"])
        assert 5 * 2**20 < rss < phys
        assert float(sample["heapUsedPercent"]) == pytest.approx(rss * 100 / phys, rel=1e-9)
        assert int(sample["osThreads"]) >= 2 and int(sample["openFiles"]) >= 3

    chart = ok(server, "getProcessMetricsDataForAppliance", appliance="appliance0")
    assert isinstance(chart, list)
    labels = [c["label"] for c in chart]
    assert labels[0] == "system_load (%)"
    if sys.platform.startswith("linux"):
        assert labels[1:] == ["engine_heap (%)", "etl_heap (%)", "retrieval_heap (%)"]
    for series in chart:
        for ms, y in series["data"]:
            assert isinstance(ms, int) and isinstance(y, float)
    for params in ({}, {"appliance": "elsewhere"}):
        r = bpl(server, "getProcessMetricsDataForAppliance", params=params)
        assert r.status_code == 404 and r.json()["validation"], r.text


def test_unknown_parameters_are_refused(server: Server) -> None:
    for action in ("getArchivedWaveforms", "getMetaGets", "getProcessMetrics"):
        r = bpl(server, action, params={"bogus": "1"})
        assert r.status_code == 400 and "bogus" in r.json()["validation"], (action, r.text)
