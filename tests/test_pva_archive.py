"""Archiving ``pva://`` PVs end to end: a real ``pvarchiver serve``, a pvxs QSRV IOC and a
p4p server publishing NT types and a custom structure, all on 127.0.0.1.

What is checked: archivePV of ``pva://`` names reaches "Being archived" through the PVA
initial sampling; each NT type gets the AA's DBR type (unsigned kept as signed, NTEnum's
index, long/boolean/custom structures as DBR_V4_GENERIC_BYTES); posted values come back
in JSON and raw, and the raw bytes of a generic sample decode (with our codec, checked
against p4p's own value) to the whole structure; metadata fields under V3 names; a QSRV
restart gives a reconnect with its cnx fields; a server whose stream turns malformed has
its channel closed and retried, its status says why, and the other PVs keep archiving.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from pvarchiver.pva.codec import Reader, decode_type
from pvarchiver.pva.data import Layout, Value, ValueDecoder
from pvarchiver.pva.protocol import build_message
from pvarchiver.storage.merge import parse_raw

from .helpers.mgmt import bpl, statuses, wait_status
from .helpers.net import free_port
from .helpers.wait import wait_for
from .http_server import running_server
from .pva_peers import p4p_client_conf, p4p_server, qsrv_ioc

QSRV_DB = """
record(calc, "QS:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "QS:CNT") }
record(ai, "QS:AI") { field(EGU, "mm") field(HOPR, "50") field(LOPR, "-5") field(HIHI, "40")
                      field(HHSV, "MAJOR") field(PREC, "3") field(VAL, "1.5") field(PINI, "YES") }
"""

#: the time posted by the p4p server (recent: the engine drops samples 30 min old, as the AA)
T0 = int(time.time())


@functools.cache
def _custom_type() -> Any:
    from p4p import Type

    return Type(
        [
            ("a", "i"),
            ("inner", ("S", "my:inner", [("x", "d"), ("tags", "as")])),
            (
                "timeStamp",
                (
                    "S",
                    "time_t",
                    [("secondsPastEpoch", "l"), ("nanoseconds", "i"), ("userTag", "i")],
                ),
            ),
            ("alarm", ("S", "alarm_t", [("severity", "i"), ("status", "i"), ("message", "s")])),
        ],
        id="my:t",
    )


def _p4p_pvs() -> dict[str, Any]:
    from p4p.nt import NTEnum, NTScalar
    from p4p.server.thread import SharedPV

    custom = _custom_type()
    return {
        "PT:D": SharedPV(
            nt=NTScalar("d", display=True, control=True, valueAlarm=True), initial=2.5
        ),
        "PT:UI": SharedPV(nt=NTScalar("I"), initial=1),
        "PT:AI": SharedPV(nt=NTScalar("ai"), initial=[1, 2, 3]),
        "PT:S": SharedPV(nt=NTScalar("s"), initial="x"),
        "PT:E": SharedPV(nt=NTEnum(), initial={"index": 1, "choices": ["a", "b", "c"]}),
        "PT:L": SharedPV(nt=NTScalar("l"), initial=1),
        "PT:B": SharedPV(nt=NTScalar("?"), initial=False),
        "PT:C": SharedPV(
            initial=custom(
                {
                    "a": 1,
                    "inner": {"x": 0.5, "tags": ["p"]},
                    "timeStamp": {"secondsPastEpoch": T0 - 10, "nanoseconds": 0, "userTag": 0},
                }
            )
        ),
    }


EXPECTED_TYPES = {
    "PT:D": "DBR_SCALAR_DOUBLE",
    "PT:UI": "DBR_SCALAR_INT",
    "PT:AI": "DBR_WAVEFORM_INT",
    "PT:S": "DBR_SCALAR_STRING",
    "PT:E": "DBR_SCALAR_ENUM",
    "PT:L": "DBR_V4_GENERIC_BYTES",
    "PT:B": "DBR_V4_GENERIC_BYTES",
    "PT:C": "DBR_V4_GENERIC_BYTES",
    "QS:CNT": "DBR_SCALAR_DOUBLE",
    "QS:AI": "DBR_SCALAR_DOUBLE",
}


def _post(pvs: dict[str, Any]) -> None:
    """One new value per p4p PV, at T0 + 0.5 (userTag 7 on the custom structure)."""
    ts = T0 + 0.5
    pvs["PT:D"].post(7.25, timestamp=ts)
    pvs["PT:UI"].post(4294967295, timestamp=ts)
    pvs["PT:AI"].post([-1, 0, 2**31 - 1], timestamp=ts)
    pvs["PT:S"].post("héllo", timestamp=ts)
    pvs["PT:E"].post({"index": 2, "choices": ["a", "b", "c"]}, timestamp=ts)
    pvs["PT:L"].post(2**40, timestamp=ts)
    pvs["PT:B"].post(True, timestamp=ts)
    custom = _custom_type()
    pvs["PT:C"].post(
        custom(
            {
                "a": 42,
                "inner": {"x": 1.25, "tags": ["p", "q"]},
                "timeStamp": {"secondsPastEpoch": T0, "nanoseconds": 500_000_000, "userTag": 7},
                "alarm": {"severity": 1, "status": 2, "message": "hi"},
            }
        )
    )


def _json(base: str, pv: str, start: float, end: float) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": _iso(start), "to": _iso(end)},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    return body[0]["data"] if body else []


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def _decode_generic(raw: bytes) -> dict[str, Any]:
    """The stored bytes decoded independently of the writer: a fresh type registry, the
    type then the whole value, big-endian (the AA's ``PBV4GenericBytes`` layout)."""
    r = Reader(raw, ">")
    top = decode_type(r, {})
    assert top is not None
    layout = Layout(top)
    flat, end = ValueDecoder(layout, ">", {}).decode_full(raw, r.off)
    assert end == len(raw), "trailing bytes after the value"
    return Value(layout, flat).todict()


class CorruptingProxy:
    """Answers PVA searches for ``BAD:*`` names with its own TCP port and relays TCP to a
    real server; once :attr:`corrupt` is set, what the server sends is replaced by bytes
    that are no PVA (a server whose stream turned malformed)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.bport = free_port()
        self.corrupt = False
        self.accepted = 0
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CorruptingProxy:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self.tcp = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.sport = self.tcp.sockets[0].getsockname()[1]
        proxy = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                body = data[8:]
                if data[3] != 3 or len(body) < 33:
                    return
                n = int.from_bytes(body[31:33], "big" if data[2] & 0x80 else "little")
                pos, cids = 33, []
                for _ in range(n):
                    cid = body[pos : pos + 4]
                    ln = body[pos + 4]
                    name = body[pos + 5 : pos + 5 + ln].decode()
                    pos += 5 + ln
                    if name.startswith("BAD:"):
                        cids.append(cid)
                if not cids:
                    return
                reply = (
                    b"G" * 12
                    + body[:4]
                    + bytes(16)  # no address: the client uses the reply's source
                    + proxy.sport.to_bytes(2, "big")
                    + b"\x03tcp\x01"
                    + len(cids).to_bytes(2, "big")
                    + b"".join(cids)
                )
                self.t.sendto(build_message(4, reply, ">", server=True), addr)

        await self.loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", self.bport))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, down: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    if down and self.corrupt:
                        data = b"\xca\x02\x40\x01" + b"\xff" * 4 + b"not pva" * 8
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_w, False), pump(up_r, writer, True))


@pytest.fixture(scope="module")
def peers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    pvs = _p4p_pvs()
    from p4p.nt import NTScalar
    from p4p.server.thread import SharedPV

    bad = {"BAD:X": SharedPV(nt=NTScalar("d"), initial=1.0)}
    work = tmp_path_factory.mktemp("pva")
    with (
        qsrv_ioc(QSRV_DB, work / "ioc") as ioc,
        p4p_server(pvs) as (_, bport),
        p4p_server(bad) as (bad_sport, _),
        CorruptingProxy(bad_sport) as proxy,
    ):
        env = {
            "EPICS_PVA_ADDR_LIST": " ".join(
                f"127.0.0.1:{p}" for p in (ioc.bport, bport, proxy.bport)
            ),
            "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_CONN_TMO": "5",
            "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "1",
            "PVARCHIVER_SECONDS_TO_BUFFER": "1",
        }
        with running_server(work / "storage", env) as base:
            names = [*EXPECTED_TYPES, "BAD:X"]
            rows = bpl(base, "archivePV", "POST", json=[{"pv": f"pva://{n}"} for n in names])
            assert rows.status_code == 200, rows.text
            wait_status(base, names, "Being archived", 60)
            yield {
                "base": base,
                "pvs": pvs,
                "bad": bad,
                "ioc": ioc,
                "proxy": proxy,
                "bport": bport,
            }


def test_types_and_pvaccess_flag(peers: dict[str, Any]) -> None:
    base = peers["base"]
    for name, dbr in EXPECTED_TYPES.items():
        ti = bpl(base, "getPVTypeInfo", params={"pv": name}).json()
        assert (ti["DBRType"], ti["usePVAccess"]) == (dbr, "true"), name
    details = {
        d["name"]: d["value"] for d in bpl(base, "getPVDetails", params={"pv": "PT:D"}).json()
    }
    assert details["Are we using PVAccess?"] == "Yes"
    ai = bpl(base, "getPVTypeInfo", params={"pv": "QS:AI"}).json()
    assert (ai["units"], float(ai["upperDisplayLimit"]), float(ai["precision"])) == (
        "mm",
        50.0,
        3.0,
    )
    # a name typed again without the prefix is the same PV
    rows = bpl(base, "archivePV", params={"pv": "PT:D"}).json()
    assert rows[0]["status"] == "Already submitted"


def test_values_in_json_and_raw(peers: dict[str, Any]) -> None:
    base, pvs = peers["base"], peers["pvs"]
    _post(pvs)

    def last(pv: str) -> dict[str, Any] | None:
        data = _json(base, pv, T0 - 1, T0 + 1)
        return data[-1] if data else None

    def arrived(pv: str) -> bool:
        d = last(pv)
        return d is not None and d["secs"] == T0

    assert wait_for(lambda: all(arrived(pv) for pv in pvs), 30, 0.2), [
        pv for pv in pvs if not arrived(pv)
    ]
    assert last("PT:D")["val"] == 7.25
    assert last("PT:UI")["val"] == -1  # uint kept as signed 32-bit, as the AA
    assert last("PT:AI")["val"] == [-1, 0, 2**31 - 1]
    assert last("PT:S")["val"] == "héllo"
    assert last("PT:E")["val"] == 2  # NTEnum: the index
    assert last("PT:D")["secs"] == T0 and last("PT:D")["nanos"] == 500_000_000

    r = httpx.get(
        f"{base}/retrieval/data/getData.raw",
        params={"pv": "PT:C", "from": _iso(T0 - 1), "to": _iso(T0 + 1)},
        timeout=30,
    )
    assert r.status_code == 200
    samples = [(h, s) for h, s in parse_raw([r.content])]
    header, s = samples[-1]
    assert header.type.name == "V4_GENERIC_BYTES" and header.pvname == "PT:C"
    assert (s.secs, s.nanos, s.severity, s.status, s.user_tag) == (T0, 500_000_000, 1, 2, 7)
    raw = bytes(s.val)
    assert raw[0] == 0x80 and raw[1:6] == b"\x04my:t"  # the full type, no server cache ids
    from p4p.client.thread import Context

    ctx = Context("pva", conf=p4p_client_conf(peers["bport"]), useenv=False, nt=False)
    try:
        theirs = ctx.get("PT:C").todict()
        long_value = ctx.get("PT:L").todict()
    finally:
        ctx.close()
    assert _decode_generic(raw) == theirs
    # long is stored whole as generic bytes (the AA has no 64-bit DBR type)
    r = httpx.get(
        f"{base}/retrieval/data/getData.raw",
        params={"pv": "PT:L", "from": _iso(T0 - 1), "to": _iso(T0 + 1)},
        timeout=30,
    )
    _, s = list(parse_raw([r.content]))[-1]
    assert _decode_generic(bytes(s.val))["value"] == long_value["value"] == 2**40


def test_metadata_fields_under_v3_names(peers: dict[str, Any]) -> None:
    base = peers["base"]
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={
            "pv": "QS:AI",
            "from": _iso(time.time() - 3600),
            "to": _iso(time.time() + 10),
            "fetchLatestMetadata": "true",
        },
        timeout=30,
    )
    meta = r.json()[0]["meta"]
    assert meta["EGU"] == "mm" and meta["HOPR"] == "50.0" and meta["HIHI"] == "40.0"
    assert meta["PREC"] == "3"  # display.precision (the AA: control.minStep, see docs/pva.md)
    assert "display.units" not in meta and meta["display.form.index"] == "0"


def test_reconnect_after_qsrv_restart(peers: dict[str, Any]) -> None:
    base, ioc = peers["base"], peers["ioc"]
    ioc.kill()

    def lost() -> bool:
        rows = bpl(base, "getPVStatus", params={"pv": "QS:CNT"}).json()
        return rows[0].get("connectionState") == "false" or "statusMessage" in rows[0]

    assert wait_for(lost, 30, 0.2), bpl(base, "getPVStatus", params={"pv": "QS:CNT"}).json()
    restarted = time.time()
    ioc.start()

    def fields_after_restart() -> dict[str, str] | None:
        for d in _json(base, "QS:CNT", restarted - 5, time.time() + 5):
            f = d.get("fields") or {}
            if "cnxregainedepsecs" in f and "startup" not in f:
                return f
        return None

    assert wait_for(lambda: fields_after_restart() is not None, 60, 0.5)
    f = fields_after_restart()
    assert f is not None and int(f["cnxlostepsecs"]) > 0
    assert statuses(base, ["QS:CNT"])["QS:CNT"] == "Being archived"


def test_malformed_server_is_dropped_and_retried(peers: dict[str, Any]) -> None:
    base, proxy, bad = peers["base"], peers["proxy"], peers["bad"]
    before = proxy.accepted
    proxy.corrupt = True
    bad["BAD:X"].post(2.0)

    def why() -> str:
        return bpl(base, "getPVStatus", params={"pv": "BAD:X"}).json()[0].get("statusMessage", "")

    assert wait_for(lambda: "malformed message" in why() and proxy.accepted > before + 1, 60, 0.2)
    # the other PVs are unaffected: the QSRV counter keeps archiving meanwhile
    n0 = len(_json(base, "QS:CNT", time.time() - 30, time.time() + 5))
    assert wait_for(
        lambda: len(_json(base, "QS:CNT", time.time() - 30, time.time() + 5)) > n0 + 5, 30, 0.2
    )
    proxy.corrupt = False
    stamp = time.time()
    bad["BAD:X"].post(3.0, timestamp=stamp + 1)
    assert wait_for(
        lambda: (
            why() == ""
            and any(d["val"] == 3.0 for d in _json(base, "BAD:X", stamp - 5, stamp + 60))
        ),
        60,
        0.5,
    )
