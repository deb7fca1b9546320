"""The gateway between a real softIoc and real clients (libca tools and our CAClient).

IOC (epicscorelibs RSRV) <- our CAClient <- Gateway -> our CAServer <- caget/camonitor/caput.
Every wait is on a condition with a generous timeout; nothing asserts speed.
"""

from __future__ import annotations

import asyncio
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from pvarchiver.ca import CAClient, CAError, dbr
from pvarchiver.ca import protocol as P
from pvarchiver.ca.server import ServerConfig
from pvarchiver.gateway.core import Gateway, GatewaySettings

from .aio import run
from .ca_tools import Monitor, client_env, run_tool
from .helpers.fixtures import ioc_fixture
from .helpers.gateway import GATEWAY_DB, direct_put, downstream, gateway, upstream_caught_up
from .helpers.net import free_port
from .helpers.wait import until
from .ioc import IOC

DB = GATEWAY_DB


ioc = ioc_fixture(DB, scope="module", dirname="gwioc", max_array_bytes=1_000_000)


def test_read_monitor_put_with_libca_tools(ioc: IOC) -> None:
    async def main() -> None:
        async with gateway(ioc) as gw:
            env = client_env(gw.server.port)
            _rc, out, _ = await run_tool("caget", "-w", "5", "G:AI", "G:MB", env=env)
            assert out.split() == ["G:AI", "3.5", "G:MB", "one"]
            _rc, out, _ = await run_tool(
                "caget", "-w", "5", "-d", "DBR_CTRL_DOUBLE", "G:AI", env=env
            )
            assert "Units:            mm" in out and "Hi alarm limit:   9" in out
            assert "Precision:        3" in out
            _rc, out, _ = await run_tool("caput", "-c", "-w", "5", "G:AO", "12.5", env=env)
            assert "New : G:AO                           12.5" in out
            for value in ("7.25", "8.5", "9.75"):  # a plain put (no callback), read back at once
                _rc, out, _ = await run_tool("caput", "-w", "5", "G:AO", value, env=env)
                assert out.split("New :")[1].split() == ["G:AO", value], out
            async with Monitor("G:CNT", env=env) as mon:
                await until(lambda: len(mon.lines) >= 5)
            counts = [float(line.split()[-1]) for line in mon.lines[:5]]
            assert counts == sorted(counts) and len(set(counts)) == 5
            assert gw.pvs["G:CNT"].channel.server[1] == ioc.port  # upstream is the IOC

    run(main())


def test_one_upstream_subscription_fanned_out(ioc: IOC) -> None:
    async def main() -> None:
        async with gateway(ioc) as gw:
            clients = [downstream(gw) for _ in range(3)]
            got: list[list[float]] = [[] for _ in clients]
            for ca, sink in zip(clients, got, strict=True):
                await ca.start()
                ch = ca.create_channel("G:CNT")
                await ca.wait_connected(ch, 10)
                ca.subscribe(ch, lambda s, n, sev, st, v, sink=sink: sink.append(v))
            await until(lambda: all(len(g) >= 5 for g in got))
            pv = gw.pvs["G:CNT"]
            assert len(pv.channel.subscriptions) == 2  # value + property subscription upstream
            assert pv.downstream == 3 and len(pv.subscribers) == 3
            for ca in clients:
                await ca.close()
            await until(lambda: pv.downstream == 0)
            assert pv.state_name == "inactive"

    run(main())


def test_read_only_refuses_puts(ioc: IOC) -> None:
    async def main() -> None:
        async with gateway(ioc, read_only=True) as gw:
            env = client_env(gw.server.port)
            _rc, out, err = await run_tool("caput", "-c", "-w", "5", "G:AO", "99", env=env)
            assert "denied" in (out + err).lower()
            async with downstream(gw) as ca:
                ch = ca.create_channel("G:AO")
                await ca.wait_connected(ch, 10)
                assert ch.access == 1
                with pytest.raises(CAError):
                    await ca.put(ch, 98.0)
                assert (await ca.get(ch)).value != 98.0

    run(main())


def test_metadata_follows_property_changes(ioc: IOC) -> None:
    """Change EGU/HOPR on the IOC through the gateway: subscribers get the new DBR_CTRL."""

    async def main() -> None:
        async with gateway(ioc) as gw, downstream(gw) as ca:
            ch = ca.create_channel("G:AI")
            await ca.wait_connected(ch, 10)
            seen: list[dbr.Reading] = []
            ca.subscribe(ch, seen.append, dbr.ctrl_type(dbr.DOUBLE), 1, P.DBE_PROPERTY)
            await until(lambda: seen)
            assert seen[0].units == "mm"
            env = client_env(gw.server.port)
            await run_tool("caput", "-c", "-w", "5", "G:AI.EGU", "cm", env=env)
            await run_tool("caput", "-c", "-w", "5", "G:AI.HOPR", "20", env=env)
            await until(lambda: seen[-1].units == "cm" and seen[-1].upper_disp_limit == 20)
            rd = await ca.get(ch, dbr.ctrl_type(dbr.DOUBLE))
            assert rd.units == "cm" and rd.upper_disp_limit == 20
            await run_tool("caput", "-c", "-w", "5", "G:AI.EGU", "mm", env=env)
            await run_tool("caput", "-c", "-w", "5", "G:AI.HOPR", "10", env=env)
            await until(lambda: seen[-1].units == "mm")

    run(main())


def test_large_arrays_whole_and_clipped(ioc: IOC) -> None:
    async def main() -> None:
        await direct_put(ioc, "G:BIG", [float(i) for i in range(100_000)])
        async with gateway(ioc) as gw, downstream(gw, max_array_bytes=1_000_000) as ca:
            ch = ca.create_channel("G:BIG")
            await ca.wait_connected(ch, 10)
            assert ch.count == 100_000
            rd = await ca.get(ch)
            assert rd.value[-1] == 99_999.0 and len(rd.value) == 100_000
        # a downstream limit below the array: the announced count is clipped, nothing breaks
        async with gateway(ioc, max_bytes=16384) as gw, downstream(gw) as ca:
            ch = ca.create_channel("G:BIG")
            await ca.wait_connected(ch, 10)
            assert ch.count == (16384 - 80) // 8
            rd = await ca.get(ch, dbr.DOUBLE, count=100_000)  # over-count: clipped
            assert rd.value[:3].tolist() == [0.0, 1.0, 2.0]
            env = client_env(gw.server.port)
            _rc, out, _ = await run_tool("caget", "-w", "5", "-#", "5", "G:BIG", env=env)
            assert out.split() == ["G:BIG", "5", "0", "1", "2", "3", "4"]

    run(main())


def test_flood_with_a_client_vanishing(ioc: IOC) -> None:
    """Many updates, three subscribers; one disappears mid-flood; the others see the end."""

    async def main() -> None:
        async with gateway(ioc) as gw:
            clients = [downstream(gw) for _ in range(3)]
            last: list[float] = [0.0, 0.0, 0.0]
            chans = []
            for i, ca in enumerate(clients):
                await ca.start()
                ch = ca.create_channel("G:SEQ")
                await ca.wait_connected(ch, 10)
                ca.subscribe(ch, lambda s, n, sev, st, v, i=i: last.__setitem__(i, v))
                chans.append(ch)
            async with CAClient(ioc.client_config(repeater_port=free_port())) as up:
                src, seq = up.create_channel("G:SEQ.PROC"), up.create_channel("G:SEQ")
                await up.wait_connected(src, 10)
                await up.wait_connected(seq, 10)
                one = struct.pack(">i", 1)
                for k in range(2000):  # fire-and-forget WRITEs: the IOC processes at full speed
                    up._require(src).send(P.message(P.WRITE, dbr.LONG, 1, src.sid, k, one))
                    if k == 1000:  # one subscriber vanishes mid-flood
                        for circuit in list(clients[0]._circuits.values()):
                            circuit.abort()
                    if k % 100 == 0:
                        await asyncio.sleep(0)
                await up.put_raw(src, dbr.LONG, 1, one)  # after every WRITE on this circuit
                final = (await up.get(seq)).value
            await clients[0].close()
            await until(lambda: last[1] == final and last[2] == final, 30)
            await until(lambda: gw.server.channel_count == 2)  # the closed client is gone
            for ca in clients[1:]:
                await ca.close()

    run(main())


def test_ioc_restart_seen_through_gateway(ioc: IOC) -> None:
    async def main() -> None:
        async with gateway(ioc, reconnect_inhibit=0.0) as gw:
            env = client_env(gw.server.port)
            async with Monitor("G:CNT", env=env) as mon:
                await until(lambda: len(mon.lines) >= 3)
                ioc.kill()
                await until(lambda: any("disconnected" in line.lower() for line in mon.lines))
                n = len(mon.lines)
                ioc.start()
                await until(lambda: len(mon.lines) >= n + 3, 60)
            assert gw.pvs["G:CNT"].state_name == "inactive"

    run(main())


def test_stats_pvs_and_flags(ioc: IOC) -> None:
    async def main() -> None:
        async with gateway(ioc) as gw:
            env = client_env(gw.server.port)
            await run_tool("caget", "-w", "5", "G:AI", env=env)
            await until(lambda: gw.stats.values["pvtotal"].state.value() >= 1)
            _rc, out, _ = await run_tool(
                "caget", "-w", "5", "gwt:pvtotal", "gwt:pvtotal.DESC", "gwt:loopRate", env=env
            )
            words = out.split()
            assert words[0] == "gwt:pvtotal" and float(words[1]) >= 1
            assert "Total PVs" in out
            reloads: list[int] = []
            gw.access.reload = lambda *a: reloads.append(1) or []  # type: ignore[method-assign]
            await run_tool("caput", "-c", "-w", "5", "gwt:newAsFlag", "1", env=env)
            await until(lambda: gw.stats.values["newAsFlag"].state.value() == 0)
            assert reloads == [1]
            _rc, out, err = await run_tool("caput", "-c", "-w", "5", "gwt:pvtotal", "5", env=env)
            assert "denied" in (out + err).lower()

    run(main())


def test_never_answers_its_own_client_side(ioc: IOC) -> None:
    """The gateway's client also searches the gateway's own server port: no loop."""

    async def main() -> None:
        port = free_port()
        scfg = ServerConfig(interfaces=["127.0.0.1"], port=port, beacon_addrs=[])
        ccfg = ioc.client_config()
        ccfg.addr_list = [("127.0.0.1", port), ("127.0.0.1", ioc.port)]
        gw = Gateway(GatewaySettings(prefix="gwt"), ccfg, scfg)
        await gw.start()
        try:
            async with downstream(gw) as ca:
                ch = ca.create_channel("G:AI")
                await ca.wait_connected(ch, 10)
                assert (await ca.get(ch)).value is not None
                missing = ca.create_channel("NO:SUCH:PV")
                # the gateway gives the name up after its connect timeout ...
                await until(
                    lambda: "NO:SUCH:PV" in gw.pvs and gw.pvs["NO:SUCH:PV"].state_name == "dead"
                )
                # ... having received searches of its own client side (the server counts
                # every search, the provider only those it was asked: its own are not)
                await until(lambda: gw.server.searches > gw.exist_tests)
                # one more search of ours reaches the provider, then two reads on the same
                # circuit: an answer to that search would have connected `missing` by now
                asked = gw.exist_tests
                await until(lambda: gw.exist_tests > asked)
                for _ in range(2):
                    await ca.get(ch)
                assert not missing.connected
            assert gw.pvs["G:AI"].channel.server == ("127.0.0.1", ioc.port)
            assert set(gw.pvs) == {"G:AI", "NO:SUCH:PV"}
            assert gw.pvs["NO:SUCH:PV"].state_name == "dead"
        finally:
            await gw.close()

    run(main())


# ---------------------------------------------------------------- pvlist and ACF (gw-config)

PVLIST = r"""EVALUATION ORDER ALLOW, DENY
.* ALLOW
G:MB DENY
alias:\(.*\) ALIAS G:\1
gwt:.* ALLOW ADMIN 1
"""

ACF = """
UAG(admins) { boss }
HAG(here) { localhost, 127.0.0.1 }
ASG(DEFAULT) {
    INPA("G:EN")
    RULE(1, READ)
    RULE(1, WRITE, TRAPWRITE) { CALC("A=1") }
}
ASG(ADMIN) {
    RULE(1, READ)
    RULE(1, WRITE) { UAG(admins) }
}
"""


def _access(tmp_path: Path, pvlist: str = PVLIST, acf: str = ACF) -> Any:
    access_mod = pytest.importorskip("pvarchiver.gateway.access")
    (tmp_path / "gw.pvlist").write_text(pvlist)
    (tmp_path / "gw.acf").write_text(acf)
    return access_mod.GatewayAccess.load(
        pvlist_path=str(tmp_path / "gw.pvlist"), access_path=str(tmp_path / "gw.acf")
    )


def test_pvlist_allow_deny_alias(ioc: IOC, tmp_path: Path) -> None:
    async def main() -> None:
        async with gateway(ioc, access=_access(tmp_path)) as gw:
            env = client_env(gw.server.port)
            _rc, out, _ = await run_tool("caget", "-w", "5", "G:AI", "alias:AI", env=env)
            assert out.split() == ["G:AI", "3.5", "alias:AI", "3.5"]
            _rc, out, _ = await run_tool("caget", "-w", "1", "G:MB", env=env)
            assert "not found" in out  # DENY: no search reply
            assert "G:MB" not in gw.pvs
            assert gw.pvs["G:AI"].downstream == 0  # alias and real name share one upstream PV

    run(main())


def test_acf_calc_flips_write_access_live(ioc: IOC, tmp_path: Path) -> None:
    async def main() -> None:
        await direct_put(ioc, "G:EN", 0)
        putlog = tmp_path / "put.log"
        async with (
            gateway(ioc, access=_access(tmp_path), putlog=str(putlog)) as gw,
            downstream(gw) as ca,
        ):
            ch = ca.create_channel("G:AO")
            await ca.wait_connected(ch, 10)
            await until(lambda: ch.access == 1)
            with pytest.raises(CAError):
                await ca.put(ch, 5.0)
            await direct_put(ioc, "G:EN", 1)
            await until(lambda: ch.access == 3)  # pushed, no reconnect
            await ca.put(ch, 6.0)
            assert (await ca.get(ch)).value == 6.0
            assert "G:AO 6.0" in putlog.read_text()  # TRAPWRITE rule: logged
            await direct_put(ioc, "G:EN", 0)
            await until(lambda: ch.access == 1)
            # the admin-only stats flag: this user is not "boss"
            flag = ca.create_channel("gwt:newAsFlag")
            await ca.wait_connected(flag, 10)
            assert flag.access == 1

    run(main())


# ---------------------------------------------------------------- command line


def test_cli_gateway_process(ioc: IOC, tmp_path: Path) -> None:
    """`pvarchiver gateway` with ca-gateway's options, stopped by writing quitFlag."""
    import subprocess
    import sys

    (tmp_path / "gw.pvlist").write_text(".* ALLOW\n")
    (tmp_path / "gw.acf").write_text("ASG(DEFAULT) { RULE(1, WRITE, TRAPWRITE) }\n")
    sport = free_port()
    env = client_env(sport)
    env["EPICS_CA_REPEATER_PORT"] = str(free_port())
    import pvarchiver

    src = str(Path(pvarchiver.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    argv = [
        sys.executable, "-m", "pvarchiver", "gateway",
        "-sip", "127.0.0.1", "-sport", str(sport), "-cip", "127.0.0.1",
        "-cport", str(ioc.port), "-prefix", "gwc", "-pvlist", "gw.pvlist", "-access", "gw.acf",
        "-putlog", "put.log",
    ]  # fmt: skip
    bad = subprocess.run([*argv[:4], "-bogus"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "-pvlist" in bad.stderr  # the valid options are listed
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:

        async def main() -> None:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            assert f"port {sport}" in line
            _rc, out, _ = await run_tool("caget", "-w", "5", "G:AI", "gwc:pvtotal", env=env)
            assert out.split()[:2] == ["G:AI", "3.5"]
            _rc, out, _ = await run_tool("caput", "-c", "-w", "5", "G:AO", "4.5", env=env)
            assert "New : G:AO" in out and "4.5" in out
            await run_tool("caput", "-c", "-w", "5", "gwc:quitFlag", "1", env=env)

        run(main())
        assert proc.wait(20) == 0
        assert "G:AO 4.5" in (tmp_path / "put.log").read_text()
    finally:
        proc.kill()
        proc.wait(10)


def test_dbe_masks_respected(ioc: IOC) -> None:
    """Through the gateway an ALARM-only or PROPERTY-only monitor gets no value-only updates."""

    async def main() -> None:
        async with gateway(ioc) as gw, downstream(gw) as ca:
            ch = ca.create_channel("G:CNT")
            await ca.wait_connected(ch, 10)
            by_mask: dict[int, list[float]] = {P.DBE_VALUE: [], P.DBE_ALARM: [], P.DBE_PROPERTY: []}
            for mask, sink in by_mask.items():
                ca.subscribe(ch, lambda s, n, sev, st, v, sink=sink: sink.append(v), mask=mask)
            await until(lambda: len(by_mask[P.DBE_VALUE]) >= 8)
            # the first update of every monitor is the current value, then only matching events
            assert len(by_mask[P.DBE_ALARM]) == 1 and len(by_mask[P.DBE_PROPERTY]) == 1

    run(main())


def test_no_cache_reads_the_ioc(ioc: IOC) -> None:
    """G:DB's value deadband hides small changes from monitors: only -no_cache sees them."""

    async def main() -> None:
        await direct_put(ioc, "G:DB", 1.0)
        async with gateway(ioc) as cached, gateway(ioc, cache=False) as uncached:
            for gw in (cached, uncached):
                _rc, out, _ = await run_tool(
                    "caget", "-w", "5", "G:DB", env=client_env(gw.server.port)
                )
                assert out.split() == ["G:DB", "1"]
            # G:CNT through the cached gateway: the marker upstream_caught_up waits for
            await run_tool("caget", "-w", "5", "G:CNT", env=client_env(cached.server.port))
            events = cached.pvs["G:DB"].events
            await direct_put(ioc, "G:DB", 2.0)  # below MDEL: no monitor update upstream
            await upstream_caught_up(cached, ioc)  # had the IOC sent one, it is here now
            assert cached.pvs["G:DB"].events == events
            _rc, out, _ = await run_tool(
                "caget", "-w", "5", "G:DB", env=client_env(cached.server.port)
            )
            assert out.split() == ["G:DB", "1"]  # the cache, as ca-gateway
            _rc, out, _ = await run_tool(
                "caget", "-w", "5", "G:DB", env=client_env(uncached.server.port)
            )
            assert out.split() == ["G:DB", "2"]

    run(main())


def test_archive_forwards_log_events(ioc: IOC) -> None:
    """-archive: DBE_LOG subscribers get archive-deadband (ADEL) updates, VALUE ones do not."""

    async def main() -> None:
        await direct_put(ioc, "G:DB", 1.0)
        async with gateway(ioc, archive=True) as gw, downstream(gw) as ca:
            ch = ca.create_channel("G:DB")
            await ca.wait_connected(ch, 10)
            log_events: list[float] = []
            value_events: list[float] = []
            ca.subscribe(ch, lambda s, n, sev, st, v: log_events.append(v), mask=P.DBE_LOG)
            ca.subscribe(ch, lambda s, n, sev, st, v: value_events.append(v), mask=P.DBE_VALUE)
            await until(lambda: log_events and value_events)
            marker = ca.create_channel("G:CNT")  # what upstream_caught_up waits for
            await ca.wait_connected(marker, 10)
            await direct_put(ioc, "G:DB", 3.0)  # > ADEL, < MDEL
            await until(lambda: log_events[-1] == 3.0)
            # a VALUE update of that put would have reached the gateway, and everything the
            # gateway queued for this client before answering a read reaches it before the
            # answer (one output queue per circuit)
            await upstream_caught_up(gw, ioc)
            await ca.get(ch)
            assert value_events == [1.0]

    run(main())


def test_dead_and_inactive_pvs_are_purged(ioc: IOC) -> None:
    async def main() -> None:
        async with (
            gateway(ioc, connect_timeout=0.3, dead_timeout=0.5, inactive_timeout=0.5) as gw,
            downstream(gw) as ca,
        ):
            missing = ca.create_channel("NO:SUCH")
            ch = ca.create_channel("G:AI")
            await ca.wait_connected(ch, 10)
            await until(lambda: "NO:SUCH" in gw.pvs and gw.pvs["NO:SUCH"].state_name == "dead")
            assert not missing.connected
            ca.clear_channel(ch)
            await until(lambda: "G:AI" in gw.pvs and gw.pvs["G:AI"].state_name == "inactive")
            await until(lambda: "G:AI" not in gw.pvs)  # inactive_timeout
            ca.clear_channel(missing)
            await until(lambda: "NO:SUCH" not in gw.pvs)  # dead_timeout

    run(main())
