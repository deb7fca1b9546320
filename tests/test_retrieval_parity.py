"""Retrieval parity with the AA, over real HTTP against a real ``pvarchiver serve``: every
action of the AA's retrieval BPL, the jplot/flx/svg formats, ``.mat`` for several PVs,
``usereduced`` and ``fetchLatestMetadata`` (the last with a real IOC)."""

from __future__ import annotations

import io
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import default_store_urls, open_store, parse_store_url
from pvarchiver.storage.batch import append_samples
from pvarchiver.web.retrieval_request import TWO_WEEKS, reduced_default, spans

from .helpers.mgmt import bpl, ca_env, wait_status
from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC

D = PayloadType.SCALAR_DOUBLE
NOW = int(time.time())
OLD = NOW - 20 * 86400  # two hours of 1 Hz data three weeks ago: usereduced sparsifies it
RECENT = NOW - 3600  # ten minutes of 1 Hz data an hour ago: usereduced keeps it raw
DBL, WF, STR, COUNTED, TYPED = "PAR:DBL", "PAR:WF", "PAR:STR", "PAR:COUNTED", "PAR:TYPED"
CONFIG = b'{"viewer": {"pvs": ["PAR:DBL"]}, "note": "served as it is"}\n'

#: every action the AA's retrieval BPLServlet (and its BasicDispatcher) answers
AA_RETRIEVAL_ACTIONS = [
    "getApplianceMetrics",
    "getApplianceMetricsForAppliance",
    "getInstanceMetricsForAppliance",
    "getPVDetails",
    "searchForPVsRegex",
    "getMatchingPVs",
    "getProcessMetrics",
    "getVersion",
    "getClientConfig",
    "getMetadata",
    "areWeArchivingPV",
    "resetFailoverCachesForThisAppliance",
    "filterArchivedPVs",
    "ping",
    "postStartup",
    "startupState",
]


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + ".000Z"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    top = tmp_path_factory.mktemp("parity")
    root = top / "storage"
    sts, _mts, lts = (open_store(parse_store_url(u)) for u in default_store_urls(root))
    old = [Sample(OLD + i, 0, float(i)) for i in range(2 * 3600)]
    recent = [Sample(RECENT + i, 0, 1000.0 + i) for i in range(600)]
    append_samples(lts, DBL, D, old)
    append_samples(sts, DBL, D, recent)
    append_samples(sts, COUNTED, D, [Sample(RECENT + i, 0, float(i)) for i in range(10)])
    waves = [Sample(RECENT + i, 0, [float(i), float(i) + 0.5, -1.0]) for i in range(5)]
    append_samples(sts, WF, PayloadType.WAVEFORM_DOUBLE, waves)
    strings = [Sample(RECENT, 0, "a <b> & c"), Sample(RECENT + 1, 0, "d")]
    append_samples(sts, STR, PayloadType.SCALAR_STRING, strings)
    docs = top / "clientconfig"
    (docs / "sub").mkdir(parents=True)
    (docs / "sub" / "viewer.json").write_bytes(CONFIG)
    (top / "secret.json").write_text("{}")
    props = top / "archappl.properties"
    props.write_text(
        "org.epics.archiverappliance.retrieval.bpl.GetClientConfiguration.DocumentRoot="
        + docs.as_posix()
        + "\n"
    )
    with running_server(root, {"ARCHAPPL_PROPERTIES_FILENAME": str(props)}) as url:
        # a typeinfo (units, precision, an archive field) for PAR:TYPED and PAR:DBL, paused
        # so the engine leaves them alone, and an alias
        for pv in (DBL, TYPED):
            info = {
                "pvName": pv,
                "DBRType": "DBR_SCALAR_DOUBLE",
                "units": "mm",
                "precision": "3.0",
                "paused": "true",
                "archiveFields": ["HIHI"],
            }
            r = bpl(url, "putPVTypeInfo", "POST", params={"pv": pv, "createnew": "true"}, json=info)
            assert r.status_code == 200, r.text
        r = bpl(url, "addAlias", params={"pv": TYPED, "aliasname": "PAR:TYPED_ALIAS"})
        assert r.status_code == 200, r.text
        yield url


def rbpl(base: str, action: str, method: str = "GET", **kw: Any) -> httpx.Response:
    return httpx.request(method, f"{base}/retrieval/bpl/{action}", timeout=30, **kw)


def data(base: str, what: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}/retrieval/data/{what}", params=params, timeout=60)


def json_samples(base: str, pv: str, start: float, end: float, **extra: Any) -> list[dict]:
    r = data(base, "getData.json", pv=pv, **{"from": iso(start), "to": iso(end)}, **extra)
    assert r.status_code == 200, r.text
    return r.json()[0]["data"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ the BPL


def test_every_aa_retrieval_action_answers(base: str) -> None:
    for name in AA_RETRIEVAL_ACTIONS:
        method = "POST" if name == "filterArchivedPVs" else "GET"
        r = rbpl(base, name, method, params={"pv": DBL}, json=[DBL])
        assert "is not a valid API method" not in r.text, name
        assert r.status_code < 500, (name, r.status_code, r.text)
    r = rbpl(base, "noSuchAction")
    assert r.status_code == 400 and r.text == '"noSuchAction" is not a valid API method.\n'


def test_retrieval_metrics_count_requests_per_pv(base: str) -> None:
    for _ in range(3):
        json_samples(base, COUNTED, RECENT, RECENT + 60)
    data(base, "getData.csv", pv=f"ca://{COUNTED}.VAL", **{"from": iso(RECENT)})
    rows = rbpl(base, "getPVDetails", params={"pv": COUNTED}).json()
    assert [r["name"] for r in rows] == [
        "Number of Retrieval Requests",
        "Time of last Retrieval Request",
        "Number of unique users",
    ]
    assert {r["source"] for r in rows} == {"retrieval"}
    values = [r["value"] for r in rows]
    assert values[0] == "4" and values[2] == "1" and values[1] != "Never"
    unread = rbpl(base, "getPVDetails", params={"pv": "PAR:NEVER:READ"}).json()
    assert [r["value"] for r in unread] == ["0", "Never", "0"]
    r = rbpl(base, "getPVDetails")
    assert r.status_code == 400 and "PV name is null" in r.text

    summary = rbpl(base, "getApplianceMetrics").json()
    assert set(summary) == {
        "Number of Retrieval Requests",
        "Time of last Retrieval Request",
        "Number of unique users",
    }
    assert int(summary["Number of Retrieval Requests"]) >= 4
    assert all(isinstance(v, str) for v in summary.values())
    for action in ("getApplianceMetricsForAppliance", "getInstanceMetricsForAppliance"):
        detail = rbpl(base, action, params={"appliance": "appliance0"}).json()
        assert {d["name"]: d["value"] for d in detail} == summary


def test_process_metrics(base: str) -> None:
    body = rbpl(base, "getProcessMetrics").json()
    assert set(body) == {"RETRIEVAL_uptime", "RETRIEVAL_start", "RETRIEVAL_metrics"}
    assert isinstance(body["RETRIEVAL_uptime"], int) and body["RETRIEVAL_uptime"] >= 0
    assert body["RETRIEVAL_start"] != "Never"
    sample = body["RETRIEVAL_metrics"][0]
    assert {"timeInEpochSeconds", "systemLoadAverage", "heapUsedPercent"} <= set(sample)
    assert all(isinstance(v, str) for v in sample.values())  # the AA's bean: all strings
    assert abs(int(sample["timeInEpochSeconds"]) - time.time()) < 3600
    assert float(sample["heapUsedPercent"]) != 0.0


def test_filter_archived_pvs(base: str) -> None:
    asked = [
        TYPED,
        "PAR:TYPED_ALIAS",
        f"{TYPED}.HIHI",
        f"{TYPED}.VAL",
        f"ca://{TYPED}",
        f"{TYPED}.LOLO",
        "PAR:NOT:ARCHIVED",
        STR,  # data but no typeinfo: not archived
    ]
    want = asked[:5]
    r = rbpl(base, "filterArchivedPVs", "POST", json=asked)
    assert r.status_code == 200 and r.json() == want
    r = rbpl(
        base,
        "filterArchivedPVs",
        "POST",
        content="\n".join(asked).encode(),
        headers={"content-type": "text/plain"},
    )
    assert r.json() == want
    r = rbpl(base, "filterArchivedPVs", "POST", data={"pv": ",".join(asked)})
    assert r.json() == want
    r = rbpl(base, "filterArchivedPVs", "POST", json=[])
    assert r.json() == []
    bad = rbpl(
        base,
        "filterArchivedPVs",
        "POST",
        content=b"[1,",
        headers={"content-type": "application/json"},
    )
    assert bad.status_code == 400 and "not valid JSON" in bad.text


def test_client_config(base: str) -> None:
    r = rbpl(base, "getClientConfig", params={"configFile": "sub/viewer.json"})
    assert r.status_code == 200 and r.content == CONFIG
    assert r.headers["content-type"].startswith("application/json")
    for name, why in (
        ("", "has not been specified"),
        ("../secret.json", "has not been specified"),
        ("sub/missing.json", "does not exist"),
        ("sub/\x00.json", "not a valid file name"),
        (str(Path(base).anchor or "/") + "etc/passwd", "not inside the document root"),
    ):
        r = rbpl(base, "getClientConfig", params={"configFile": name})
        assert r.status_code == 404 and why in r.text, (name, r.text)


def test_failover_ping_and_startup(base: str) -> None:
    r = rbpl(base, "resetFailoverCachesForThisAppliance")
    assert r.json() == [{"appliance": "appliance0", "status": "ok"}]
    assert rbpl(base, "ping").text == "pong\n"
    assert rbpl(base, "startupState").json() == {"status": "STARTUP_COMPLETE"}
    assert rbpl(base, "postStartup").text == "Done\n"


# ------------------------------------------------------------------------------ formats


def test_jplot_single_and_many(base: str) -> None:
    rng = {"from": iso(RECENT + 10), "to": iso(RECENT + 12)}
    r = data(base, "getData.jplot", pv=DBL, **rng)
    assert r.headers["content-type"].startswith("application/json")
    ms = RECENT * 1000
    if time.localtime(RECENT).tm_gmtoff == 0:  # the server's zone: epoch ms when UTC
        assert r.text == (
            '[ \n{ "label": "PAR:DBL", "data": [ \n'
            f"[{ms + 10000}, 1010.0],\n[{ms + 11000}, 1011.0],\n[{ms + 12000}, 1012.0] ] }} \n ]\n"
        )
    r = httpx.post(
        f"{base}/retrieval/data/getDataForPVs.jplot",
        params=rng,
        json=[DBL, WF, STR],
        timeout=30,
    )
    series = r.json()
    assert [s["label"] for s in series] == [DBL, WF, STR]
    assert [v for _, v in series[0]["data"]] == [1010.0, 1011.0, 1012.0]
    # no samples in the range: each starts with its last sample before `from`, as in json
    assert series[1]["data"] == [[ms + 4000, [4.0, 4.5, -1.0]]]
    assert series[2]["data"] == [[ms + 1000, "d"]]
    r = data(base, "getData.jplot", pv=WF, **{"from": iso(RECENT), "to": iso(RECENT + 1)})
    assert [v for _, v in r.json()[0]["data"]] == [[0.0, 0.5, -1.0], [1.0, 1.5, -1.0]]
    r = data(base, "getData.jplot", pv=STR, **{"from": iso(RECENT), "to": iso(RECENT + 1)})
    assert [v for _, v in r.json()[0]["data"]] == ["a <b> & c", "d"]


def test_flx(base: str) -> None:
    r = data(base, "getData.flx", pv=STR, **{"from": iso(RECENT), "to": iso(RECENT + 1)})
    assert r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)
    got = [(int(e.findtext("time") or 0), e.findtext("value")) for e in root]
    assert got == [(RECENT * 1000, "a <b> & c"), ((RECENT + 1) * 1000, "d")]
    r = data(base, "getData.flx", pv=DBL, **{"from": iso(RECENT + 5), "to": iso(RECENT + 6)})
    assert r.text == (
        f"<data>\n<result><time>{(RECENT + 5) * 1000}</time><value>1005.0</value></result>"
        f"<result><time>{(RECENT + 6) * 1000}</time><value>1006.0</value></result></data>\n"
    )


def test_svg(base: str) -> None:
    r = data(base, "getData.svg", pv=DBL, **{"from": iso(RECENT + 5), "to": iso(RECENT + 8)})
    assert r.headers["content-type"].startswith("image/svg+xml")
    svg = ET.fromstring(r.content)
    assert svg.get("viewBox") == f"{RECENT + 5} -1.0 3 4.0"
    path = svg.find("{http://www.w3.org/2000/svg}path")
    assert path is not None
    d = (path.get("d") or "").split("L")
    assert d[0].strip() == f"m {RECENT + 5} -1.0"
    assert [p.split() for p in d[1:]] == [[str(RECENT + i), f"{1000 + i}.0"] for i in (5, 6, 7, 8)]
    r = data(base, "getData.svg", pv=STR, **{"from": iso(RECENT)})
    assert r.status_code == 400 and "numeric scalar" in r.text


def test_multi_pv_formats_refused_with_the_list(base: str) -> None:
    for ext in ("csv", "txt", "svg", "flx"):
        r = data(base, f"getDataForPVs.{ext}", pv=[DBL, WF])
        assert r.status_code == 400, ext
        assert r.text.startswith(f"Mime type {ext} is not supported for getDataForPVs")
        assert '"jplot"' in r.text and '"mat"' in r.text
    r = data(base, "getData.pdf", pv=DBL)
    assert r.status_code == 400 and "jplot" in r.text and "svg" in r.text


# ------------------------------------------------------------------------------ .mat


def test_mat_writes_every_pv(base: str) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    rng = {"from": iso(RECENT), "to": iso(RECENT + 4)}
    r = data(base, "getDataForPVs.mat", pv=[DBL, WF, "PAR:NO:DATA:HERE"], **rng)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/matlab")
    m = scipy_io.loadmat(io.BytesIO(r.content))
    assert m["header"].shape == (1, 2) and m["data"].shape == (1, 2)  # the unknown PV left out
    heads = [m["header"][0, i] for i in range(2)]
    assert [h["pvName"][0] for h in heads] == [DBL, WF]
    assert [str(h["source"][0]) for h in heads] == ["Archiver appliance"] * 2
    assert str(heads[1]["from"][0]) == iso(RECENT)
    dbl, wf = (m["data"][0, i] for i in range(2))
    assert dbl["values"].ravel().tolist() == [1000.0 + i for i in range(5)]
    assert dbl["epochSeconds"].ravel().tolist() == [RECENT + i for i in range(5)]
    assert wf["values"].tolist() == [[float(i), i + 0.5, -1.0] for i in range(5)]
    assert wf["nanos"].ravel().tolist() == [0] * 5
    # one PV: the AA's own layout, 1x1 structs
    one = scipy_io.loadmat(io.BytesIO(data(base, "getData.mat", pv=WF, **rng).content))
    assert one["header"].shape == (1, 1) and one["data"][0, 0]["values"].shape == (5, 3)


# ------------------------------------------------------------------------------ usereduced


def test_usereduced_sparsifies_data_older_than_two_weeks(base: str) -> None:
    start, end = OLD - 3600, NOW
    raw = json_samples(base, DBL, start, end)
    assert len(raw) == 7200 + 600
    reduced = json_samples(base, DBL, start, end, usereduced="true")
    old_part = [s for s in reduced if s["secs"] < NOW - TWO_WEEKS]
    recent_part = [s for s in reduced if s["secs"] >= NOW - TWO_WEEKS]
    # before the cut: the first sample of each 900 s bin, as pp=firstSample gives it, then
    # the raw part's own "last sample before its start" (later than the last bin's first)
    first = json_samples(base, DBL, start, OLD + 7200, pp="firstSample")
    assert len(first) == len({s["secs"] // 900 for s in raw[:7200]})
    assert old_part == [*first, raw[7199]]
    assert recent_part == raw[7200:]  # after it: raw
    assert json_samples(base, DBL, start, end, usereduced="TRUE") == reduced  # parseBoolean
    assert json_samples(base, DBL, start, end, usereduced="yes") == raw
    # a post-processor named in the request wins over usereduced
    mean = json_samples(base, DBL, start, end, pp="mean_3600")
    assert json_samples(base, DBL, start, end, pp="mean_3600", usereduced="true") == mean
    r = data(
        base,
        "getData.json",
        pv=f"mean_3600({DBL})",
        usereduced="true",
        **{"from": iso(start), "to": iso(end)},
    )
    assert r.json()[0]["data"] == mean
    # several PVs: each reduced
    r = data(
        base,
        "getDataForPVs.json",
        pv=[DBL, COUNTED],
        usereduced="true",
        **{"from": iso(start), "to": iso(end)},
    )
    assert r.json()[0]["data"] == reduced


def test_reduced_default_classes() -> None:
    """The site's DefaultUseReducedPostProcessor (a Java class name) picks the pieces."""
    pkg = "org.epics.archiverappliance.retrieval.postprocessors."
    start, end = (NOW - 30 * 86400, 0), (NOW, 0)
    assert spans(start, end, None, True, pkg + "FirstSamplePP") == [(start, end, "firstSample")]
    assert spans(start, end, None, True, pkg + "DefaultRawPostProcessor") == [(start, end, None)]
    cut = (NOW - TWO_WEEKS, 0)
    assert spans(start, end, None, True, pkg + "TwoWeekRaw", now=NOW) == [
        (start, cut, "firstSample"),
        (cut, end, None),
    ]
    assert spans(start, end, "mean", True, pkg + "TwoWeekRaw") == [(start, end, "mean")]
    assert spans(start, end, None, False, pkg + "TwoWeekRaw") == [(start, end, None)]
    assert reduced_default("com.example.Unknown") == ""


# ------------------------------------------------------------------------------ metadata


def test_meta_from_typeinfo_without_fetch_latest(base: str) -> None:
    rng = {"from": iso(RECENT), "to": iso(RECENT + 1)}
    r = data(base, "getData.json", pv=DBL, **rng)
    assert r.json()[0]["meta"] == {"name": DBL, "EGU": "mm", "PREC": "3"}
    r = data(base, "getData.json", pv=WF, **rng)  # no typeinfo, no engine: PREC only
    assert r.json()[0]["meta"] == {"name": WF, "PREC": "0"}


IOC_DB = """
record(ai, "PAR:IOC:AI") {
    field(SCAN, ".1 second") field(INP, "PAR:IOC:CNT") field(EGU, "V") field(PREC, "2")
    field(HOPR, "100") field(LOPR, "-100") field(HIHI, "90") field(DESC, "parity")
}
record(calc, "PAR:IOC:CNT") {
    field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "PAR:IOC:CNT")
}
"""


def test_fetch_latest_metadata_adds_the_engine_fields(tmp_path: Path) -> None:
    pv = "PAR:IOC:AI"
    with (
        IOC(IOC_DB, tmp_path / "ioc") as ioc,
        running_server(tmp_path / "storage", ca_env(ioc)) as url,
    ):
        assert bpl(url, "archivePV", params={"pv": pv}).status_code == 200
        wait_status(url, [pv], "Being archived", timeout=60)

        def meta(**extra: str) -> dict[str, str]:
            r = data(url, "getData.json", pv=pv, **extra)
            assert r.status_code == 200, r.text
            return r.json()[0]["meta"]  # type: ignore[no-any-return]

        assert wait_for(lambda: "HOPR" in meta(fetchLatestMetadata="true"), 30, 0.2)
        latest = meta(fetchLatestMetadata="true")
        assert latest["EGU"] == "V" and latest["PREC"] == "2"
        assert float(latest["HOPR"]) == 100.0 and float(latest["LOPR"]) == -100.0
        plain = meta()
        assert plain == {"name": pv, "EGU": "V", "PREC": "2"}
        assert meta(fetchLatestMetadata="TRUE") == plain  # the AA compares exactly
        r = httpx.get(
            f"{url}/retrieval/data/getDataForPVs.json",
            params={"pv": pv, "fetchLatestMetadata": "true"},
            timeout=30,
        )
        assert "HOPR" in json.loads(r.text)[0]["meta"]
