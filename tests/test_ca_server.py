"""Our CA server: DBR encoding (pure), then real clients (libca tools, our CAClient)."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import numpy as np
import pytest

from pvarchiver.ca import CAClient, CAConfig, CAError, dbr
from pvarchiver.ca import protocol as P
from pvarchiver.ca.dbr_encode import PVState, default_meta, encode
from pvarchiver.ca.server import CAServer, DictProvider, ServedPV, ServerConfig
from pvarchiver.ca.server_pv import event_parts

from .aio import run
from .ca_tools import Monitor, client_env, run_tool
from .helpers.wait import until
from .ioc import free_port

META = default_meta(units="mm", precision=3, limits=[10, -10, 9, 8, -8, -9, 11, -11])


# ---------------------------------------------------------------- pure encoding


_VALUE = {dbr.STRING: "12.5", dbr.ENUM: 1}
# what each target type should read back, per source type (IOC-like conversions)
_AS_STRING = {dbr.STRING: "12.5", dbr.ENUM: "one", dbr.FLOAT: "7.00", dbr.DOUBLE: "7.00"}


@pytest.mark.parametrize("native", range(7))
def test_encode_every_family_decodes_back(native: int) -> None:
    meta = default_meta(
        units="mm",
        precision=2,
        limits=[10, -10, 9, 8, -8, -9, 11, -11],
        enum_strings=("zero", "one", "two"),
    )
    value = _VALUE.get(native, 7)
    state = PVState.from_value(native, value, status=3, severity=1, timestamp=1e9 + 0.25, meta=meta)
    for dbr_type in range(35):
        payload = encode(state, dbr_type, 1)
        assert len(payload) == dbr.data_size(dbr_type, 1), dbr_type
        rd = dbr.decode(dbr_type, payload, 1)
        family, target = divmod(dbr_type, 7)
        if target == dbr.STRING:
            assert rd.value == _AS_STRING.get(native, "7"), (native, dbr_type)
        elif native == dbr.STRING:  # "12.5" parsed, then cast (truncated for integers)
            assert rd.value == (12.5 if target in (dbr.FLOAT, dbr.DOUBLE) else 12)
        else:
            assert rd.value == (1 if native == dbr.ENUM else 7), (native, dbr_type)
        if family >= 1:
            assert (rd.status, rd.severity) == (3, 1)
        if family == 2:
            assert rd.secs == 1_000_000_000 and rd.nanos == 250_000_000
        if family == 4 and target in (dbr.SHORT, dbr.LONG, dbr.FLOAT, dbr.DOUBLE):
            assert rd.units == "mm" and rd.upper_ctrl_limit == 11 and rd.lower_alarm_limit == -9
        if family == 4 and target == dbr.CHAR:  # unsigned: negative limits saturate at 0
            assert rd.upper_ctrl_limit == 11 and rd.lower_alarm_limit == 0
        if family == 4 and target == dbr.ENUM:
            assert rd.enum_strings == ["zero", "one", "two"]


def test_same_type_forwards_the_stored_payload() -> None:
    state = PVState.from_value(dbr.DOUBLE, [1.0, 2.0, 3.0])
    assert encode(state, dbr.time_type(dbr.DOUBLE), 3) is state.time_payload
    longer = encode(state, dbr.time_type(dbr.DOUBLE), 5)
    assert dbr.decode(20, longer, 5).value.tolist() == [1, 2, 3, 0, 0]  # zero-filled, like rsrv


def test_large_event_uses_extended_header() -> None:
    payload = bytes(8 * 100_000)
    prefix, rest = event_parts(payload, dbr.DOUBLE, 100_000)
    msg = prefix + struct.pack(">I", 7) + rest
    (m,) = list(P.iter_messages(msg))
    assert (m.cmd, m.data_count, m.p2, len(m.payload)) == (P.EVENT_ADD, 100_000, 7, 800_000)


# ---------------------------------------------------------------- running server


def make_provider() -> tuple[DictProvider, dict[str, ServedPV]]:
    prov = DictProvider()
    pvs = {
        "S:D": prov.add(ServedPV("S:D", PVState.from_value(dbr.DOUBLE, 3.25, meta=META))),
        "S:E": prov.add(
            ServedPV(
                "S:E",
                PVState.from_value(dbr.ENUM, 1, meta=default_meta(enum_strings=("Off", "On"))),
            )
        ),
        "S:W": prov.add(ServedPV("S:W", PVState.from_value(dbr.DOUBLE, np.arange(10.0)))),
        "S:RO": prov.add(ServedPV("S:RO", PVState.from_value(dbr.LONG, 7), writable=False)),
        "S:BIG": prov.add(ServedPV("S:BIG", PVState.from_value(dbr.DOUBLE, np.arange(100_000.0)))),
    }
    return prov, pvs


def server_config(**kw: Any) -> ServerConfig:
    return ServerConfig(interfaces=["127.0.0.1"], port=free_port(), beacon_addrs=[], **kw)


def our_client(port: int, **kw: Any) -> CAClient:
    cfg = CAConfig(
        addr_list=[("127.0.0.1", port)],
        auto_addr_list=False,
        server_port=port,
        repeater_port=free_port(),
        **kw,
    )
    return CAClient(cfg)


def test_libca_tools_read_put_monitor() -> None:
    async def main() -> None:
        prov, pvs = make_provider()
        async with CAServer(prov, server_config()) as srv:
            env = client_env(srv.port)
            rc, out, _ = await run_tool("caget", "-w", "5", "S:D", "S:E", "S:W", env=env)
            assert rc == 0
            assert out.split() == [
                "S:D",
                "3.25",
                "S:E",
                "On",
                "S:W",
                "10",
                *[str(i) for i in range(10)],
            ]
            rc, out, _ = await run_tool("caget", "-w", "5", "-d", "DBR_CTRL_DOUBLE", "S:D", env=env)
            assert "Units:            mm" in out and "Hi ctrl limit:    11" in out
            rc, out, _ = await run_tool("caput", "-c", "-w", "5", "S:D", "5.5", env=env)
            assert "New : S:D                            5.5" in out
            assert pvs["S:D"].state is not None and pvs["S:D"].state.value() == 5.5
            rc, out, _ = await run_tool("caput", "-w", "5", "S:E", "Off", env=env)
            assert pvs["S:E"].state is not None and pvs["S:E"].state.value() == 0
            rc, out, err = await run_tool("caput", "-c", "-w", "5", "S:RO", "5", env=env)
            assert "denied" in (out + err).lower() and pvs["S:RO"].state.value() == 7
            async with Monitor("S:D", env=env) as mon:
                await until(lambda: len(mon.lines) >= 1)
                d = pvs["S:D"]
                d.update(PVState.from_value(dbr.DOUBLE, 42.0, meta=META))
                await until(lambda: len(mon.lines) >= 2)
            assert mon.lines[-1].endswith(" 42")

    run(main())


def test_access_rights_change_is_pushed() -> None:
    async def main() -> None:
        prov, pvs = make_provider()
        async with CAServer(prov, server_config()) as srv, our_client(srv.port) as ca:
            ch = ca.create_channel("S:D")
            await ca.wait_connected(ch, 10)
            assert ch.access == 3
            await ca.put(ch, 1.5)
            pvs["S:D"].writable = False
            srv.refresh_access()
            await until(lambda: ch.access == 1)
            with pytest.raises(CAError):
                await ca.put(ch, 2.5)
            assert pvs["S:D"].state.value() == 1.5

    run(main())


def test_large_arrays_clipped_or_whole() -> None:
    async def main() -> None:
        prov, _ = make_provider()
        # default 16384-byte limit: announced count clipped so every DBR fits; no crash
        async with CAServer(prov, server_config()) as srv, our_client(srv.port) as ca:
            ch = ca.create_channel("S:BIG")
            await ca.wait_connected(ch, 10)
            assert ch.count == (16384 - 80) // 8
            rd = await ca.get(ch)
            assert rd.value[:3].tolist() == [0, 1, 2] and len(rd.value) == ch.count
            # asking for more than the channel has (over-count) is clipped, not an error
            rd = await ca.get(ch, dbr.DOUBLE, count=10**6)
            assert len(rd.value) <= ch.count
        # with a 1 MB limit on both sides the whole array travels (extended headers)
        big = server_config(max_array_bytes=1_000_000)
        async with (
            CAServer(prov, big) as srv,
            our_client(srv.port, max_array_bytes=1_000_000) as ca,
        ):
            ch = ca.create_channel("S:BIG")
            await ca.wait_connected(ch, 10)
            assert ch.count == 100_000
            got: list[Any] = []
            ca.subscribe(ch, lambda *a: got.append(a[-1]))
            await until(lambda: got)
            assert got[0][-1] == 99_999.0
            env = client_env(srv.port, EPICS_CA_MAX_ARRAY_BYTES="1000000")
            rc, out, _ = await run_tool("caget", "-w", "5", "-#", "100000", "S:BIG", env=env)
            assert rc == 0 and out.split()[1] == "100000" and out.split()[-1] == "99999"

    run(main())


async def _raw_circuit(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(P.version() + P.client_name("raw") + P.host_name("rawhost"))
    return reader, writer


async def _read_messages(
    reader: asyncio.StreamReader, until_cmd: int, want: int
) -> list[P.Message]:
    buf = b""
    out: list[P.Message] = []
    while sum(1 for m in out if m.cmd == until_cmd) < want:
        buf += await asyncio.wait_for(reader.read(65536), 10)
        msgs = list(P.iter_messages(buf))
        used = sum(16 + len(m.payload) + (8 if len(m.payload) >= 0xFFFF else 0) for m in msgs)
        buf = buf[used:]
        out.extend(msgs)
    return out


def test_events_off_keeps_only_newest_per_subscription() -> None:
    async def main() -> None:
        prov, pvs = make_provider()
        async with CAServer(prov, server_config()) as srv:
            reader, writer = await _raw_circuit(srv.port)
            writer.write(P.create_chan("S:D", 1))
            msgs = await _read_messages(reader, P.CREATE_CHAN, 1)
            sid = next(m.p2 for m in msgs if m.cmd == P.CREATE_CHAN)
            writer.write(P.event_add(dbr.time_type(dbr.DOUBLE), 1, sid, 9))
            await _read_messages(reader, P.EVENT_ADD, 1)  # initial update
            writer.write(P.events_off())
            await writer.drain()
            await until(lambda: srv.circuits and next(iter(srv.circuits))._events_off)
            for i in range(100):
                pvs["S:D"].update(PVState.from_value(dbr.DOUBLE, float(i), meta=META))
            writer.write(P.events_on())
            msgs = await _read_messages(reader, P.EVENT_ADD, 1)
            values = [dbr.decode(20, m.payload, 1).value for m in msgs if m.cmd == P.EVENT_ADD]
            assert values == [99.0]
            assert srv.dropped == 99
            writer.close()

    run(main())


def test_stalled_and_vanishing_clients_do_not_hurt_others() -> None:
    """A client that never reads, then resets mid-flood: the others get every last value."""

    async def main() -> None:
        prov = DictProvider()
        pvs = [
            prov.add(ServedPV(f"F:{i}", PVState.from_value(dbr.DOUBLE, np.zeros(500))))
            for i in range(40)
        ]
        async with CAServer(prov, server_config()) as srv, our_client(srv.port) as ca:
            reader, writer = await _raw_circuit(srv.port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for i in range(40):
                writer.write(P.create_chan(f"F:{i}", i + 1))
            msgs = await _read_messages(reader, P.CREATE_CHAN, 40)
            for m in msgs:
                if m.cmd == P.CREATE_CHAN:
                    writer.write(P.event_add(dbr.time_type(dbr.DOUBLE), 500, m.p2, m.p1))
            await writer.drain()
            last: dict[str, float] = {}
            chans = [ca.create_channel(f"F:{i}") for i in range(40)]
            for ch in chans:
                await ca.wait_connected(ch, 10)
                ca.subscribe(
                    ch, lambda s, n, sev, st, v, name=ch.name: last.__setitem__(name, v[0])
                )
            await until(lambda: len(last) == 40)
            for k in range(1, 301):
                for pv in pvs:
                    pv.update(PVState.from_value(dbr.DOUBLE, np.full(500, float(k))))
                if k == 150:  # the stalled client vanishes with a reset, mid-flood
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                await asyncio.sleep(0)
            await until(lambda: all(v == 300.0 for v in last.values()), 30)
            await until(lambda: len(srv.circuits) == 1)

    run(main())


def test_udp_search_not_found_ignore_list_and_name_server() -> None:
    async def main() -> None:
        prov, _ = make_provider()
        cfg = server_config()
        async with CAServer(prov, cfg) as srv:
            loop = asyncio.get_running_loop()
            got: asyncio.Queue[bytes] = asyncio.Queue()

            class Proto(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    got.put_nowait(data)

            tr, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
            req = P.version() + P.search("S:D", 5) + P.search("NOPE", 6, reply=P.DO_REPLY)
            tr.sendto(req, ("127.0.0.1", cfg.port))
            msgs = list(P.iter_messages(await asyncio.wait_for(got.get(), 5)))
            found = {m.cmd: m for m in msgs}
            assert found[P.SEARCH].p2 == 5 and found[P.SEARCH].data_type == srv.tcp_port
            assert found[P.SEARCH].p1 == 0xFFFFFFFF  # "use the datagram's source": NAT-friendly
            assert found[P.NOT_FOUND].p2 == 6
            srv.config.ignore_addrs.add("127.0.0.1")
            tr.sendto(P.version() + P.search("S:D", 7), ("127.0.0.1", cfg.port))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(got.get(), 0.5)
            tr.close()
            # EPICS_CA_NAME_SERVERS: search over TCP, no UDP at all
            cfg2 = CAConfig(
                addr_list=[],
                auto_addr_list=False,
                repeater_port=free_port(),
                name_servers=[("127.0.0.1", srv.port)],
            )
            async with CAClient(cfg2) as ca:
                ch = ca.create_channel("S:E")
                await ca.wait_connected(ch, 10)
                assert (await ca.get(ch)).value == 1

    run(main())


def test_beacons_sent_and_restarted() -> None:
    async def main() -> None:
        prov, _ = make_provider()
        loop = asyncio.get_running_loop()
        beacons: list[P.Message] = []

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                beacons.extend(m for m in P.iter_messages(data) if m.cmd == P.RSRV_IS_UP)

        tr, _ = await loop.create_datagram_endpoint(Proto, local_addr=("127.0.0.1", 0))
        port = tr.get_extra_info("sockname")[1]
        cfg = server_config()
        cfg.beacon_addrs = [("127.0.0.1", port)]
        cfg.beacon_period = 60.0
        async with CAServer(prov, cfg) as srv:
            await until(lambda: len(beacons) >= 5)
            assert beacons[0].data_count == srv.tcp_port
            assert [b.p1 for b in beacons[:5]] == [0, 1, 2, 3, 4]
            await asyncio.sleep(3.0)  # ramp has slowed down past 1 s
            n = len(beacons)
            srv.beacon_anomaly()
            await until(lambda: len(beacons) >= n + 3, 2.0)
        tr.close()

    run(main())


def test_server_config_from_env() -> None:
    cfg = ServerConfig.from_env(
        {
            "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_SERVER_PORT": "6000",
            "EPICS_CAS_SERVER_PORT": "6100",
            "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1 127.0.0.2:7002",
            "EPICS_CA_REPEATER_PORT": "7001",
            "EPICS_CAS_IGNORE_ADDR_LIST": "10.1.2.3",
            "EPICS_CA_MAX_ARRAY_BYTES": "1000",  # ca-gateway: never below 16384
        }
    )
    assert cfg.interfaces == ["127.0.0.1"] and cfg.port == 6100
    assert cfg.beacon_addrs == [("127.0.0.1", 7001), ("127.0.0.2", 7002)]
    assert cfg.ignore_addrs == {"10.1.2.3"} and cfg.max_array_bytes == 16384
    # no beacon list: rsrv falls back to the CA address list (hosts only, beacon port)
    cfg = ServerConfig.from_env(
        {"EPICS_CA_ADDR_LIST": "127.0.0.1:7000", "EPICS_CA_AUTO_ADDR_LIST": "NO"}
    )
    assert cfg.beacon_addrs == [("127.0.0.1", 5065)] and cfg.port == 5064
    assert ("255.255.255.255", 5065) in ServerConfig.from_env({}).beacon_addrs
