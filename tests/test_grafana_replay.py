"""The Grafana archiverappliance datasource's requests, replayed as it sends them, against a
real ``pvarchiver serve``, checking what the plugin reads of each answer.

The requests are built the way sasaki77/archiverappliance-datasource builds them (read at
975347d):

* frontend (``src/aaclient.ts``, ``useBackend=false``): ``{url}/bpl/getVersion`` (test
  connection, status 200), ``{url}/bpl/getMatchingPVs?limit=N&regex=<encodeURIComponent>``
  and ``{url}/data/getData.qw?pv=<encodeURIComponent(op_N(PV))>&from=<toISOString>&to=...``
  (the times not encoded; ``last``: from = to). It reads ``meta.name`` (the series name),
  ``meta.waveform``, ``data[].millis`` and ``data[].val`` (``src/responseParse.ts``).
* backend (``pkg/archiverappliance/aaclient.go``): ``{url}/data/getData.raw`` with Go's
  ``url.Values.Encode()`` (keys sorted: ``donotchunk=&from=&pv=&to=``) and times in the
  layout ``2006-01-02T15:04:05.000-07:00`` (``+00:00``, never ``Z``); it reads each chunk's
  ``PayloadInfo`` (type, year) and the samples (``pbparse.go``).

The answer's name is the PV's, never the operator's: the plugin labels series with
``meta.name``, and the AA answers ``mean_3(X)`` as ``X`` (DataRetrievalServlet).
"""

from __future__ import annotations

import calendar
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, urlencode

import httpx
import pytest

from pvarchiver.pb import PayloadType, Sample, decode_header, decode_line, unescape
from pvarchiver.storage import default_store_urls, open_store, parse_store_url
from pvarchiver.storage.batch import append_samples

from .helpers.mgmt import bpl
from .http_server import running_server

T0 = calendar.timegm((2025, 3, 1, 0, 0, 0))
D = PayloadType.SCALAR_DOUBLE
BPM, WF, ENUM, STR = "SR:C01:BPM:X", "SR:C01:BPM:WF", "SR:C01:MODE", "SR:C01:NAME"
ALIAS = "SR:C01:BPM:X_ALIAS"
N = 60  # one minute of 1 Hz data


def js_iso(t: datetime) -> str:
    """JavaScript's ``Date.toISOString()``: milliseconds and ``Z``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def go_time(t: datetime) -> str:
    """Go's ``Format("2006-01-02T15:04:05.000-07:00")``: a numeric offset, ``+00:00`` in UTC."""
    s = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"
    off = t.utcoffset() or timedelta(0)
    minutes = int(off.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{s}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def at(secs: float, tz: timezone = UTC) -> datetime:
    return datetime.fromtimestamp(secs, tz)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("grafana") / "storage"
    sts, _mts, _lts = (open_store(parse_store_url(u)) for u in default_store_urls(root))
    append_samples(sts, BPM, D, [Sample(T0 + i, 0, float(i)) for i in range(N)])
    waves = [Sample(T0 + i, 0, [float(i), float(i) + 0.5]) for i in range(5)]
    append_samples(sts, WF, PayloadType.WAVEFORM_DOUBLE, waves)
    append_samples(
        sts, ENUM, PayloadType.SCALAR_ENUM, [Sample(T0 + i, 0, i % 3) for i in range(10)]
    )
    append_samples(
        sts, STR, PayloadType.SCALAR_STRING, [Sample(T0, 0, "a"), Sample(T0 + 1, 0, "b")]
    )
    with running_server(root) as base:
        # the alias needs a typeinfo: a paused one, so the engine leaves the PV alone
        info = {"pvName": BPM, "DBRType": "DBR_SCALAR_DOUBLE", "units": "mm", "paused": "true"}
        r = bpl(base, "putPVTypeInfo", "POST", params={"pv": BPM, "createnew": "true"}, json=info)
        assert r.status_code == 200, r.text
        r = bpl(base, "addAlias", params={"pv": BPM, "aliasname": ALIAS})
        assert r.status_code == 200, r.text
        yield base + "/retrieval"


# ----------------------------------------------------------------------------- frontend


def frontend_url(url: str, pv: str, operator: str, interval: str, t0: float, t1: float) -> str:
    """``AAclient.buildUrl`` of src/aaclient.ts, character for character."""
    if operator in ("raw", "last") or interval == "":
        target = pv
    elif operator in ("", None):
        target = f"mean_{interval}({pv})"
    else:
        target = f"{operator}_{interval}({pv})"
    start = js_iso(at(t1)) if operator == "last" else js_iso(at(t0))
    # encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) alone
    pv_enc = quote(target, safe="-_.!~*'()")
    return f"{url}/data/getData.qw?pv={pv_enc}&from={start}&to={js_iso(at(t1))}"


def frontend_get(u: str) -> list[dict]:
    r = httpx.get(u, headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200, (u, r.status_code, r.text)
    return r.json()  # type: ignore[no-any-return]


def test_test_connection_and_autocomplete(url: str) -> None:
    r = httpx.get(f"{url}/bpl/getVersion", timeout=30)
    assert r.status_code == 200
    regex = quote("SR:C01:BPM.*", safe="-_.!~*'()")
    r = httpx.get(f"{url}/bpl/getMatchingPVs?limit=100&regex={regex}", timeout=30)
    assert r.status_code == 200
    names = r.json()
    assert isinstance(names, list) and BPM in names and WF in names and ENUM not in names


def test_frontend_raw_series(url: str) -> None:
    [series] = frontend_get(frontend_url(url, BPM, "raw", "1", T0, T0 + N))
    assert series["meta"]["name"] == BPM and series["meta"]["waveform"] is False
    millis = [d["millis"] for d in series["data"]]
    assert millis == [(T0 + i) * 1000 for i in range(N)]
    assert [d["val"] for d in series["data"]] == [float(i) for i in range(N)]


@pytest.mark.parametrize("operator", ["mean", "max", "firstSample", "lastSample", "count"])
def test_frontend_binned_series_is_named_after_the_pv(url: str, operator: str) -> None:
    [series] = frontend_get(frontend_url(url, BPM, operator, "3", T0, T0 + N))
    assert series["meta"]["name"] == BPM
    assert series["meta"]["waveform"] is False
    # 3 s bins: the 20 full bins of the minute, each stamped inside its bin
    got = {(d["millis"] // 1000 - T0) // 3 * 3: d["val"] for d in series["data"]}
    expected = {
        "mean": lambda b: b + 1.0,
        "max": lambda b: b + 2.0,
        "firstSample": lambda b: float(b),
        "lastSample": lambda b: b + 2.0,
        "count": lambda b: 3.0,
    }[operator]
    for b in range(0, N, 3):
        assert got.get(b) == expected(b), (operator, b, sorted(got.items())[:5])


def test_frontend_default_operator_and_alias(url: str) -> None:
    # an empty operator is mean_<interval> (kept for old dashboards)
    [series] = frontend_get(frontend_url(url, BPM, "", "3", T0, T0 + N))
    assert series["meta"]["name"] == BPM and series["data"][1]["val"] == 4.0
    # an alias is answered under the alias (the name the panel asked for), as the AA
    [series] = frontend_get(frontend_url(url, ALIAS, "mean", "3", T0, T0 + N))
    assert series["meta"]["name"] == ALIAS and series["data"][0]["val"] == 1.0


def test_frontend_last_and_waveform_and_enum(url: str) -> None:
    [last] = frontend_get(frontend_url(url, BPM, "last", "3", T0, T0 + 30.5))
    assert last["meta"]["name"] == BPM
    assert [(d["millis"], d["val"]) for d in last["data"]] == [((T0 + 30) * 1000, 30.0)]
    [wf] = frontend_get(frontend_url(url, WF, "raw", "", T0, T0 + 10))
    assert wf["meta"]["name"] == WF and wf["meta"]["waveform"] is True
    assert [d["val"] for d in wf["data"]] == [[float(i), i + 0.5] for i in range(5)]
    [en] = frontend_get(frontend_url(url, ENUM, "raw", "", T0, T0 + 10))
    assert en["meta"]["waveform"] is False and [d["val"] for d in en["data"]][:4] == [0, 1, 2, 0]


# ----------------------------------------------------------------------------- backend


def backend_url(url: str, target: str, t0: datetime, t1: datetime, last: bool = False) -> str:
    """``buildQueryUrl`` of pkg/archiverappliance/aaclient.go (url.Values.Encode sorts keys
    and encodes with QueryEscape: space as ``+``)."""
    query = {
        "donotchunk": "",
        "from": go_time(t1 if last else t0),
        "pv": target,
        "to": go_time(t1),
    }
    return f"{url}/data/getData.raw?{urlencode(sorted(query.items()))}"


def parse_pb(body: bytes) -> list[tuple[object, list[Sample]]]:
    """Chunks as ``archiverPBSingleQueryParser`` walks them: LF-separated lines, an empty line
    ends a chunk, the first line of a chunk is its PayloadInfo."""
    chunks: list[tuple[object, list[Sample]]] = []
    in_chunk = False
    for line in body.split(b"\n")[:-1]:
        if not line:
            in_chunk = False
            continue
        if not in_chunk:
            chunks.append((decode_header(unescape(line)), []))
            in_chunk = True
            continue
        info = chunks[-1][0]
        chunks[-1][1].append(decode_line(info.type, info.year, line))  # type: ignore[attr-defined]
    return chunks


def backend_get(u: str) -> list[tuple[object, list[Sample]]]:
    r = httpx.get(u, timeout=30)
    assert r.status_code == 200, (u, r.status_code, r.text)
    assert "%2B" in u and "Z&" not in u  # a numeric offset went out (``+`` encoded), not Z
    return parse_pb(r.content)


def test_backend_raw_with_offset_times(url: str) -> None:
    chunks = backend_get(backend_url(url, BPM, at(T0), at(T0 + N)))
    assert len(chunks) == 1
    info, samples = chunks[0]
    assert info.type is D and info.year == 2025 and info.pvname == BPM  # type: ignore[attr-defined]
    assert [(s.secs, s.val) for s in samples] == [(T0 + i, float(i)) for i in range(N)]
    # another offset: the same instant
    tokyo = timezone(timedelta(hours=9))
    again = backend_get(backend_url(url, BPM, at(T0, tokyo), at(T0 + N, tokyo)))
    assert [s.secs for s in again[0][1]] == [s.secs for s in samples]


def test_backend_binned_and_last(url: str) -> None:
    target = f"mean_3({BPM})"
    [(info, samples)] = backend_get(backend_url(url, target, at(T0), at(T0 + N)))
    assert info.pvname == BPM and info.type is D  # type: ignore[attr-defined]
    assert [s.val for s in samples][:3] == [1.0, 4.0, 7.0]
    [(_, last)] = backend_get(backend_url(url, BPM, at(T0), at(T0 + 30.5), last=True))
    assert [(s.secs, s.val) for s in last] == [(T0 + 30, 30.0)]
    [(winfo, waves)] = backend_get(backend_url(url, WF, at(T0), at(T0 + 10)))
    assert winfo.type is PayloadType.WAVEFORM_DOUBLE and list(waves[0].val) == [0.0, 0.5]  # type: ignore[attr-defined]


def test_backend_empty_range_is_an_empty_body_or_a_header(url: str) -> None:
    # the Go parser answers errEmptyResponse for an empty body (fixed in plugin 2.0.2)
    r = httpx.get(backend_url(url, BPM, at(T0 - 7200), at(T0 - 3600)), timeout=30)
    assert r.status_code == 200
    assert all(not samples for _info, samples in parse_pb(r.content))


# ----------------------------------------------------------------------------- every format


def _range() -> dict[str, str]:
    return {"from": js_iso(at(T0)), "to": js_iso(at(T0 + N))}


@pytest.mark.parametrize("spec", ["mean_3({pv})", "mean({pv},3)", "{pv}|pp"])
def test_operator_name_is_the_pv_in_every_format(url: str, spec: str) -> None:
    extra = {}
    if spec.endswith("|pp"):
        pv_param = spec.split("|")[0].format(pv=BPM)
        extra = {"pp": "mean_3"}
    else:
        pv_param = spec.format(pv=BPM)
    params = {"pv": pv_param, **_range(), **extra}

    def get(fmt: str) -> httpx.Response:
        r = httpx.get(f"{url}/data/getData.{fmt}", params=params, timeout=30)
        assert r.status_code == 200, (fmt, r.text)
        return r

    assert get("json").json()[0]["meta"]["name"] == BPM
    assert get("qw").json()[0]["meta"]["name"] == BPM
    assert get("txt").text.startswith(f"Beginning data for {BPM}\n")
    assert get("jplot").json()[0]["label"] == BPM
    csv = get("csv").text.splitlines()
    assert csv[0].split(",")[1] == "1.0"  # the mean of the first bin: it was binned
    [(info, samples)] = parse_pb(get("raw").content)
    assert info.pvname == BPM and samples[1].val == 4.0  # type: ignore[attr-defined]
    scipy_io = pytest.importorskip("scipy.io")
    m = scipy_io.loadmat(io.BytesIO(get("mat").content))
    assert str(m["header"]["pvName"][0, 0][0]) == BPM


def test_get_data_for_pvs_names_each_pv(url: str) -> None:
    rng = _range()
    names = [f"mean_3({BPM})", f"max_3({ALIAS})", WF]
    for fmt in ("json", "qw"):
        r = httpx.post(f"{url}/data/getDataForPVs.{fmt}", params=rng, json=names, timeout=30)
        assert r.status_code == 200, r.text
        assert [s["meta"]["name"] for s in r.json()] == [BPM, ALIAS, WF]
    r = httpx.get(
        f"{url}/data/getDataForPVs.raw", params=[("pv", n) for n in names] + list(rng.items())
    )
    assert r.status_code == 200
    assert [info.pvname for info, _ in parse_pb(r.content)] == [BPM, BPM, WF]  # type: ignore[attr-defined]


def test_prefix_and_val_as_the_aa(url: str) -> None:
    """json prints the AA's pvName (prefix and .VAL gone); qw the name as it was sent."""
    rng = _range()
    r = httpx.get(f"{url}/data/getData.json", params={"pv": f"mean_3(ca://{BPM}.VAL)", **rng})
    assert r.status_code == 200 and r.json()[0]["meta"]["name"] == BPM
    r = httpx.get(f"{url}/data/getData.qw", params={"pv": f"mean_3({BPM}.VAL)", **rng})
    assert r.status_code == 200 and r.json()[0]["meta"]["name"] == f"{BPM}.VAL"


def test_unknown_operator_is_a_clear_400(url: str) -> None:
    r = httpx.get(f"{url}/data/getData.qw", params={"pv": f"nosuch_3({BPM})", **_range()})
    assert r.status_code == 400 and "nosuch" in r.text


# ----------------------------------------------------------------------------- set-up


def provisioned(host: str, port: str) -> dict:
    """deploy/grafana's datasource with Grafana's ``${VAR}`` expansion done."""
    import re
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[1] / "deploy/grafana/provisioning/datasources"
    text = (path / "pvarchiver.yaml").read_text()
    text = re.sub(
        r"\$\{(\w+)\}", lambda m: {"PVARCHIVER_HOST": host, "PVARCHIVER_PORT": port}[m[1]], text
    )
    [ds] = yaml.safe_load(text)["datasources"]
    return ds  # type: ignore[no-any-return]


def test_provisioned_datasource_reaches_this_server(url: str) -> None:
    """The provisioning file's URLs, pointed at a real server, answer what the plugin asks:
    the test-connection call and a Live subscription, sent as data_proxy.go formats it."""
    import asyncio
    import json

    websockets = pytest.importorskip("websockets")
    host, port = url.removeprefix("http://").removesuffix("/retrieval").split(":")
    ds = provisioned(host, port)
    assert ds["type"] == "sasaki77-archiverappliance-datasource"
    assert ds["url"] == url and ds["jsonData"]["useBackend"] is True
    assert httpx.get(ds["url"] + "/bpl/getVersion", timeout=30).status_code == 200

    async def live() -> dict:
        async with websockets.connect(ds["jsonData"]["liveUpdateURI"]) as ws:
            # data_proxy.go's fmt.Sprintf(`{ "type": "subscribe", "pvs": [ "%s" ] }`, pv)
            await ws.send('{ "type": "subscribe", "pvs": [ "' + BPM + '" ] }')
            async with asyncio.timeout(15):
                return json.loads(await ws.recv())  # type: ignore[no-any-return]

    first = asyncio.run(live())
    # the plugin decodes value/seconds/nanos; a PV with no IOC has only the access state
    assert first["type"] == "update" and first["pv"] == BPM
    assert isinstance(first["seconds"], int) and isinstance(first["nanos"], int)


def test_compose_profile_starts_grafana_beside_the_archiver() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    doc = yaml.safe_load((root / "compose.yaml").read_text())
    g = doc["services"]["grafana"]
    assert g["profiles"] == ["grafana"] and g["depends_on"] == ["archiver"]
    assert "grafana/grafana" in g["image"]
    src, dest = g["volumes"][0].split(":")[:2]
    assert (root / src / "datasources" / "pvarchiver.yaml").is_file()
    assert dest == "/etc/grafana/provisioning"
    env = g["environment"]
    assert env["PVARCHIVER_HOST"] == "archiver" and env["PVARCHIVER_PORT"] == "17665"
    assert "sasaki77-archiverappliance-datasource" in env["GF_PLUGINS_PREINSTALL"]
