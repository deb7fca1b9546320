"""The PVWS websocket: the protocol without sockets (messages, encodings, throttling,
coalescing, limits), then ``/pvws/pv`` of a real ``pvarchiver serve`` with a real IOC and a
Python websocket client (archived PVs from the engine, others on demand, writes, bad input,
a client that never reads)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from pvarchiver.pb import PayloadType
from pvarchiver.pvws.session import Limits, Session
from pvarchiver.pvws.values import Meta, Sent, Update, encode, meta_for
from pvarchiver.settings import PVWSSettings, load_settings

from .helpers.fixtures import ioc_fixture
from .helpers.mgmt import bpl, ca_env, wait_status
from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC

websockets = pytest.importorskip("websockets")
from websockets.asyncio.client import connect  # noqa: E402

DBL = Meta("VDouble", units="mm", precision=3, display=(0.0, 10.0), alarm=(-1.0, 11.0))


def msgs(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(t) for t in texts]


# ------------------------------------------------------------------------------ values


def test_first_update_has_metadata_later_ones_only_what_changed() -> None:
    sent = Sent()
    first = json.loads(encode("X", DBL, Update(10, 5, 0, 1.5), sent, True, 0.0))
    assert first == {
        "type": "update",
        "pv": "X",
        "vtype": "VDouble",
        "units": "mm",
        "description": "",
        "precision": 3,
        "min": 0.0,
        "max": 10.0,
        "alarm_low": -1.0,
        "alarm_high": 11.0,
        "severity": "NONE",
        "value": 1.5,
        "readonly": True,
        "seconds": 10,
        "nanos": 5,
    }
    later = json.loads(encode("X", DBL, Update(11, 0, 0, 2.0), sent, True, 0.0))
    assert later == {"type": "update", "pv": "X", "value": 2.0, "seconds": 11, "nanos": 0}
    alarm = json.loads(encode("X", DBL, Update(12, 0, 2, math.inf), sent, True, 0.0))
    assert alarm["severity"] == "MAJOR" and alarm["value"] == "NaN"
    back = json.loads(encode("X", DBL, Update(13, 0, 0, 1.0), sent, False, 0.0))
    assert back["severity"] == "NONE" and back["readonly"] is False


def test_enum_string_and_integer_values() -> None:
    enum = Meta("VEnum", labels=("Off", "On"))
    sent = Sent()
    m = json.loads(encode("E", enum, Update(1, 0, 0, 1), sent, True, 0.0))
    assert (m["vtype"], m["labels"], m["value"], m["text"]) == ("VEnum", ["Off", "On"], 1, "On")
    m = json.loads(encode("E", enum, Update(2, 0, 1, 0), sent, True, 0.0))
    assert (m["severity"], m["value"], m["text"]) == ("MINOR", 0, "Off")
    s = json.loads(encode("S", Meta("VString"), Update(1, 0, 0, "héllo"), Sent(), True, 0.0))
    assert s["text"] == "héllo" and s["vtype"] == "VString" and "units" not in s
    i = json.loads(encode("I", Meta("VInt"), Update(1, 0, 0, 7), Sent(), True, 0.0))
    assert i["value"] == 7 and isinstance(i["value"], int)


@pytest.mark.parametrize(
    ("ptype", "field", "dtype"),
    [
        (PayloadType.WAVEFORM_DOUBLE, "b64dbl", "<f8"),
        (PayloadType.WAVEFORM_FLOAT, "b64flt", "<f4"),
        (PayloadType.WAVEFORM_SHORT, "b64srt", "<i2"),
        (PayloadType.WAVEFORM_INT, "b64int", "<i4"),
        (PayloadType.WAVEFORM_BYTE, "b64byt", "u1"),
    ],
)
def test_arrays_in_pvws_base64(ptype: PayloadType, field: str, dtype: str) -> None:
    meta = meta_for(ptype)
    values = np.array([1, 2, 3, 200], dtype=dtype)
    sent = Sent()
    m = json.loads(encode("W", meta, Update(1, 0, 0, values), sent, True, 0.0))
    assert np.frombuffer(base64.b64decode(m[field]), dtype=dtype).tolist() == values.tolist()
    assert m["vtype"] == meta.vtype and m["severity"] == "NONE"
    # as PVWS: an array's severity change after the first update is never sent
    m = json.loads(encode("W", meta, Update(2, 0, 2, values), sent, True, 0.0))
    assert "severity" not in m


def test_disconnect_is_nan_with_invalid_and_no_value_yet_is_readonly_only() -> None:
    sent = Sent()
    encode("X", DBL, Update(1, 0, 0, 1.0), sent, True, 0.0)
    lost = json.loads(encode("X", DBL, Update.lost(100.25), sent, True, 0.0))
    assert lost == {
        "type": "update",
        "pv": "X",
        "severity": "INVALID",
        "value": "NaN",
        "seconds": 100,
        "nanos": 250000000,
    }
    nothing = json.loads(encode("U", Meta("VString"), None, Sent(), True, 5.5))
    assert nothing == {
        "type": "update",
        "pv": "U",
        "readonly": True,
        "seconds": 5,
        "nanos": 500000000,
    }


# ------------------------------------------------------------------------------ session


def subscribed(limits: Limits | None = None, *names: str) -> Session:
    s = Session(limits or Limits())
    r = s.on_text(json.dumps({"type": "subscribe", "pvs": list(names or ["X"])}))
    for n in r.subscribe:
        s.set_meta(n, DBL, True)
    return s


def test_client_messages() -> None:
    s = Session(Limits())
    r = s.on_text('{"type":"subscribe","pvs":["A","B","A"]}')
    assert r.subscribe == ["A", "B"] and r.send == []
    assert s.on_text('{"type":"monitor","pvs":["A","C"]}').subscribe == ["C"]
    assert msgs(s.on_text('{"type":"list"}').send) == [{"type": "list", "pvs": ["A", "B", "C"]}]
    assert s.on_text('{"type":"clear","pvs":["B","nope"]}').clear == ["B"]
    assert s.on_text('{"type":"echo","x":1}').send == ['{"type":"echo","x":1}']
    assert s.on_text('{"type":"ping"}').ping


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "Cannot parse"),
        ("[1,2]", "JSON object"),
        ('{"pvs":["A"]}', "Unknown message type"),
        ('{"type":"subscribe"}', "needs 'pvs'"),
        ('{"type":"subscribe","pvs":"A"}', "needs 'pvs'"),
        ('{"type":"clear","pvs":[1]}', "needs 'pvs'"),
        ('{"type":"write","pv":"A"}', "needs 'pv' and 'value'"),
        ('{"type":"write","pv":"Z","value":1}', "Cannot write unknown PV Z"),
        ('{"type":"write","pv":"A","value":1}', "PV_WRITE_SUPPORT is disabled"),
    ],
)
def test_bad_messages_get_an_error_and_change_nothing(text: str, says: str) -> None:
    s = Session(Limits())
    s.on_text('{"type":"subscribe","pvs":["A"]}')
    r = s.on_text(text)
    [err] = msgs(r.send)
    assert err["type"] == "error" and says in err["message"]
    assert list(s.pvs) == ["A"] and r.write is None and r.subscribe == []


def test_write_when_allowed() -> None:
    s = Session(Limits(may_write=True))
    s.on_text('{"type":"subscribe","pvs":["A"]}')
    assert s.on_text('{"type":"write","pv":"A","value":3.5}').write == ("A", 3.5)
    assert s.on_text('{"type":"write","pv":"A","value":"On"}').write == ("A", "On")


def test_subscription_limit_is_a_clear_error() -> None:
    s = Session(Limits(max_subscriptions=1000))
    r = s.on_text(json.dumps({"type": "subscribe", "pvs": [f"P{i}" for i in range(5000)]}))
    assert len(r.subscribe) == 1000 and len(s.pvs) == 1000
    [err] = msgs(r.send)
    assert "limit of 1000" in err["message"] and "4000 PVs not subscribed" in err["message"]


def test_throttle_sends_the_first_at_once_then_the_latest_per_period() -> None:
    s = subscribed(Limits(throttle=1.0), "X")
    assert [m["readonly"] for m in msgs(s.take(0.0))] == [True]  # access state, no value yet
    s.on_update("X", Update(100, 0, 0, 0.0), 10.0)
    [first] = msgs(s.take(10.0))
    assert first["value"] == 0.0 and first["vtype"] == "VDouble"
    for i in range(1, 5):
        s.on_update("X", Update(100 + i, 0, 0, float(i)), 10.0 + i * 0.1)
    assert s.take(10.5) == [] and s.next_due() == pytest.approx(11.0)
    [latest] = msgs(s.take(11.0))
    assert latest["value"] == 4.0 and "vtype" not in latest
    assert s.take(20.0) == []


def test_a_throttled_value_wakes_the_writer_for_its_timer() -> None:
    """The writer sleeps until ``next_due`` (forever when it is None): a value held back by
    the throttle must wake it so that it sleeps until the new timer, not forever."""
    s = subscribed(Limits(throttle=1.0), "X", "Y")
    woken: list[float | None] = []
    s.wake = lambda: woken.append(s.next_due())
    s.take(0.0)
    s.on_update("X", Update(1, 0, 0, 1.0), 10.0)
    s.take(10.0)
    woken.clear()
    s.on_update("X", Update(2, 0, 0, 2.0), 10.2)
    assert woken == [pytest.approx(11.0)]
    s.on_update("Y", Update(2, 0, 0, 2.0), 10.3)  # ready at once: one wake
    s.on_update("X", Update(3, 0, 0, 3.0), 10.4)  # already queued: nothing to do
    assert len(woken) == 2
    assert [m["value"] for m in msgs(s.take(10.3))] == [2.0]
    assert [m["value"] for m in msgs(s.take(11.0))] == [3.0]


def test_throttle_off_sends_every_update_and_a_slow_reader_gets_the_latest() -> None:
    s = subscribed(Limits(throttle=0.0), "X", "Y")
    s.take(0.0)
    s.on_update("X", Update(1, 0, 0, 1.0), 1.0)
    assert [m["value"] for m in msgs(s.take(1.0))] == [1.0]
    s.on_update("X", Update(2, 0, 0, 2.0), 2.0)
    assert [m["value"] for m in msgs(s.take(2.0))] == [2.0]
    # nothing taken while 10,000 updates arrive: one value per PV is kept, not 10,000
    for i in range(10_000):
        s.on_update("X" if i % 2 else "Y", Update(10 + i, 0, 0, float(i)), 3.0)
    assert s.queued() == 2
    assert {m["pv"]: m["value"] for m in msgs(s.take(3.0))} == {"X": 9999.0, "Y": 9998.0}


def test_arrays_throttle_on_their_own_period() -> None:
    s = Session(Limits(throttle=1.0, array_throttle=10.0))
    s.on_text('{"type":"subscribe","pvs":["W"]}')
    s.set_meta("W", meta_for(PayloadType.WAVEFORM_DOUBLE), True)
    s.on_update("W", Update(1, 0, 0, np.zeros(3)), 0.0)
    assert len(s.take(0.0)) == 1
    s.on_update("W", Update(2, 0, 0, np.ones(3)), 1.0)
    assert s.take(5.0) == [] and len(s.take(10.0)) == 1


def test_shared_encoding_is_per_socket_correct() -> None:
    """An update encoded once for every socket still has each socket's own pv name and
    first-message metadata."""
    a, b = subscribed(Limits(throttle=0), "X"), Session(Limits(throttle=0))
    a.take(0.0)
    upd0 = Update(1, 0, 0, 1.0)
    a.on_update("X", upd0, 0.0)
    a.take(0.0)
    b.on_text('{"type":"subscribe","pvs":["ca://X"]}')
    b.set_meta("ca://X", DBL, True)
    upd = Update(2, 0, 0, 2.0)
    a.on_update("X", upd, 1.0)
    b.on_update("ca://X", upd, 1.0)
    [ma], [mb] = msgs(a.take(1.0)), msgs(b.take(1.0))
    assert ma == {"type": "update", "pv": "X", "value": 2.0, "seconds": 2, "nanos": 0}
    assert mb["pv"] == "ca://X" and mb["units"] == "mm" and mb["readonly"] is True


def test_settings_default_as_pvws_and_configurable(tmp_path: Path) -> None:
    assert load_settings({}, storage=str(tmp_path)).pvws == PVWSSettings()
    env = {
        "PVARCHIVER_PVWS_THROTTLE_MS": "0",
        "PVARCHIVER_PVWS_ARRAY_THROTTLE_MS": "-5",
        "PVARCHIVER_PVWS_WRITE": "true",
        "PVARCHIVER_PVWS_MAX_UNARCHIVED": "3",
    }
    got = load_settings(env, storage=str(tmp_path)).pvws
    assert (got.throttle_ms, got.array_throttle_ms, got.write, got.max_unarchived) == (
        0.0,
        10000.0,
        True,
        3,
    )


# ------------------------------------------------------------------------------ real server

DB = """
record(calc, "WS:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "WS:CNT")
  field(EGU, "counts") field(PREC, "2") field(HOPR, "1000") field(LOPR, "0") }
record(ao, "WS:AO") { field(EGU, "V") field(PREC, "3") field(DRVH, "100") field(DRVL, "-100")
  field(HIGH, "50") field(HSV, "MINOR") field(HOPR, "100") field(LOPR, "-100") }
record(mbbo, "WS:MODE") { field(ZRST, "Off") field(ONST, "On") field(TWST, "Auto") }
record(waveform, "WS:WF") { field(FTVL, "DOUBLE") field(NELM, "4") }
record(stringin, "WS:STR") { field(VAL, "hello") }
record(ai, "WS:FREE") { field(SCAN, ".1 second") field(INP, "WS:CNT") field(EGU, "free") }
"""

ioc = ioc_fixture(DB, scope="module", dirname="pvws-ioc")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ioc: IOC) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pvws") / "storage"
    env = ca_env(
        ioc,
        PVARCHIVER_PVWS_THROTTLE_MS="0",
        PVARCHIVER_PVWS_WRITE="true",
        PVARCHIVER_PVWS_MAX_UNARCHIVED="3",
        PVARCHIVER_PVWS_MAX_SUBSCRIPTIONS="2000",
        PVARCHIVER_PVWS_STALL_SECONDS="2",
    )
    with running_server(root, env) as base:
        names = ["WS:CNT", "WS:AO", "WS:MODE", "WS:WF"]
        r = bpl(base, "archivePV", "POST", json=[{"pv": n} for n in names])
        assert r.status_code == 200, r.text
        wait_status(base, names, "Being archived")
        yield base


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/pvws/pv"


class Client:
    """A PVWS client as pvws.js: merges each update into a cache per PV."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.cache: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []

    async def send(self, **msg: Any) -> None:
        await self.ws.send(json.dumps(msg))

    async def until(self, pred: Any, timeout: float = 15.0) -> dict[str, Any]:
        try:
            return await self._until(pred, timeout)
        except TimeoutError:
            raise AssertionError(f"no such message; got {self.log[-20:]} {self.cache}") from None

    async def has(self, pv: str, key: str) -> dict[str, Any]:
        """The cached state of ``pv`` once it has ``key`` (maybe from an earlier message)."""
        if key not in self.cache.get(pv, {}):
            await self.until(lambda m: key in self.cache.get(pv, {}))
        return self.cache[pv]

    async def _until(self, pred: Any, timeout: float) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                m = json.loads(await self.ws.recv())
                self.log.append(m)
                if m.get("type") == "update":
                    self.cache.setdefault(m["pv"], {"pv": m["pv"], "readonly": True}).update(m)
                if pred(m):
                    return m


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_archived_pvs_from_the_engine(server: str) -> None:
    async def go() -> None:
        async with connect(ws_url(server)) as ws:
            c = Client(ws)
            await c.send(type="subscribe", pvs=["WS:CNT", "WS:MODE", "ca://WS:WF"])
            first = await c.until(lambda m: m.get("pv") == "WS:CNT" and "value" in m)
            assert first["vtype"] == "VDouble" and first["units"] == "counts"
            assert first["precision"] == 2 and first["max"] == 1000.0
            assert first["severity"] == "NONE" and isinstance(first["seconds"], int)
            n0 = first["value"]
            # throttling off: consecutive counts from the engine's monitor, metadata once
            later = await c.until(lambda m: m.get("pv") == "WS:CNT" and m["value"] >= n0 + 5)
            assert "units" not in later and "vtype" not in later
            mode = await c.has("WS:MODE", "text")
            assert mode["labels"] == ["Off", "On", "Auto"] and mode["text"] == "Off"
            wf = await c.has("ca://WS:WF", "b64dbl")
            assert wf["vtype"] == "VDoubleArray"
            assert np.frombuffer(base64.b64decode(wf["b64dbl"]), "<f8").shape == (4,)
            await c.send(type="list")
            lst = await c.until(lambda m: m["type"] == "list")
            assert lst["pvs"] == ["WS:CNT", "WS:MODE", "ca://WS:WF"]
            # the engine's PV is watched, not connected again: no channel of the hub's own
            pool = httpx.get(server + "/pvws/pool", timeout=10).json()
            assert {"refs": 1, "pv": "WS:CNT"} in pool

    run(go())
    # the archive still gets every count: the websocket took nothing from it
    r = httpx.get(server + "/retrieval/data/getData.json", params={"pv": "WS:CNT"}, timeout=30)
    vals = [d["val"] for d in r.json()[0]["data"]]
    assert vals == list(np.arange(vals[0], vals[0] + len(vals)))


def test_write_enum_by_label_and_number(server: str) -> None:
    async def go() -> None:
        async with connect(ws_url(server)) as ws:
            c = Client(ws)
            await c.send(type="subscribe", pvs=["WS:MODE", "WS:AO"])
            await c.has("WS:AO", "value")
            await c.has("WS:MODE", "value")
            assert c.cache["WS:AO"]["readonly"] is False  # loopback may write (no allow-list)
            await c.send(type="write", pv="WS:MODE", value="Auto")
            m = await c.until(lambda m: m.get("pv") == "WS:MODE" and m.get("value") == 2)
            assert m["text"] == "Auto"
            await c.send(type="write", pv="WS:AO", value=60)
            m = await c.until(lambda m: m.get("pv") == "WS:AO" and m.get("value") == 60.0)
            assert m["severity"] == "MINOR"  # HIGH=50 with HSV MINOR
            await c.send(type="write", pv="WS:AO", value="not a number")
            err = await c.until(lambda m: m["type"] == "error")
            assert "not a number" in err["message"]
            await c.send(type="write", pv="WS:NOPE", value=1)
            err = await c.until(lambda m: m["type"] == "error")
            assert err["message"] == "Cannot write unknown PV WS:NOPE"

    run(go())


def test_unarchived_on_demand_unknown_and_the_limit(server: str) -> None:
    async def go() -> None:
        async with connect(ws_url(server)) as ws:
            c = Client(ws)
            await c.send(type="subscribe", pvs=["WS:FREE", "WS:STR", "NO:SUCH:PV"])
            free = await c.has("WS:FREE", "value")
            assert free["units"] == "free" and free["vtype"] == "VDouble"
            s = await c.has("WS:STR", "text")
            assert s["text"] == "hello"
            await c.has("NO:SUCH:PV", "readonly")
            # an unknown PV: the access state and no value, as PVWS
            assert c.cache["NO:SUCH:PV"].keys() == {"type", "pv", "readonly", "seconds", "nanos"}
            # three own channels are the limit (PVARCHIVER_PVWS_MAX_UNARCHIVED=3)
            await c.send(type="subscribe", pvs=["NO:SUCH:PV2"])
            err = await c.until(lambda m: m["type"] == "error")
            assert "Limit of 3 PVs that are not archived" in err["message"]
            # the socket stays usable after bad input
            await c.send(type="bogus")
            await c.until(lambda m: m["type"] == "error" and "Unknown" in m["message"])
            await ws.send("{{{")
            await c.until(lambda m: m["type"] == "error" and "parse" in m["message"])
            await c.send(type="clear", pvs=["WS:FREE"])
            await c.send(type="echo", hello=1)
            assert (await c.until(lambda m: m["type"] == "echo"))["hello"] == 1
        # closed: the on-demand channels are gone with the socket
        assert wait_for(lambda: httpx.get(server + "/pvws/pool", timeout=10).json() == [], 10)

    run(go())


def test_thousands_of_subscriptions_hit_the_limit(server: str) -> None:
    async def go() -> None:
        async with connect(ws_url(server)) as ws:
            c = Client(ws)
            await c.send(type="subscribe", pvs=[f"WS:CNT{i}" for i in range(5000)])
            err = await c.until(lambda m: m["type"] == "error" and "Subscription" in m["message"])
            assert "limit of 2000" in err["message"]

    run(go())


def test_a_client_that_never_reads_is_dropped_without_affecting_others(server: str) -> None:
    """A raw client completes the handshake, subscribes and never reads: its socket buffers
    fill, the server's send blocks, and after PVARCHIVER_PVWS_STALL_SECONDS it is closed,
    while a reading client keeps getting updates."""
    host, port = server.removeprefix("http://").split(":")
    raw = socket.create_connection((host, int(port)))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(b"0123456789abcdef").decode()
    raw.sendall(
        (
            f"GET /pvws/pv HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    assert b"101" in raw.recv(1024).split(b"\r\n")[0]
    payload = json.dumps({"type": "subscribe", "pvs": ["WS:CNT", "WS:WF", "WS:AO"]}).encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    raw.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)

    def stalled_there() -> bool:
        rows = httpx.get(server + "/pvws/summary", timeout=10).json()["sockets"]
        return any(r["pvs"] == 3 for r in rows)

    assert wait_for(stalled_there, 15, 0.1)  # it subscribed and is being sent updates
    # big echoes fill the socket buffers fast (the server closes it while they go out)
    big = json.dumps({"type": "echo", "pad": "x" * 60000}).encode()
    masked_big = bytes(b ^ mask[i % 4] for i, b in enumerate(big))
    frame = struct.pack("!BBQ", 0x81, 0x80 | 127, len(big)) + mask + masked_big
    try:
        for _ in range(40):
            raw.sendall(frame)
    except OSError:
        pass  # already dropped

    def stalled_gone() -> bool:
        rows = httpx.get(server + "/pvws/summary", timeout=10).json()["sockets"]
        return all(r["pvs"] != 3 for r in rows)

    async def reader() -> None:
        async with connect(ws_url(server)) as ws:
            c = Client(ws)
            await c.send(type="subscribe", pvs=["WS:CNT"])
            m0 = await c.until(lambda m: "value" in m)
            assert await asyncio.to_thread(wait_for, stalled_gone, 30, 0.2)
            # the reader was never held up: it still gets fresh counts
            await c.until(lambda m: m.get("value", 0) > m0["value"] + 3)

    try:
        run(reader())
    finally:
        raw.close()
