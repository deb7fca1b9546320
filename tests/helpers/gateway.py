"""The gateway in-process between a test IOC and our CAClient: the harness that
test_gateway, test_gw_upstream, test_gw_runs and test_gateway_netns share."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pvarchiver.ca import CAClient, CAConfig
from pvarchiver.ca.server import ServerConfig
from pvarchiver.gateway.core import Gateway, GatewaySettings

from ..ioc import IOC
from .net import free_port
from .wait import until

# the records test_gateway's IOC serves (test_gateway_netns serves them too)
GATEWAY_DB = """
record(ai, "G:AI") {
    field(VAL, "3.5") field(EGU, "mm") field(PREC, "3") field(HOPR, "10") field(LOPR, "-10")
    field(HIHI, "9") field(HIGH, "8") field(LOW, "-8") field(LOLO, "-9")
    field(HHSV, "MAJOR") field(HSV, "MINOR") field(LSV, "MINOR") field(LLSV, "MAJOR")
    field(PINI, "YES")
}
record(ao, "G:AO") { field(VAL, "1") field(PINI, "YES") }
record(bo, "G:EN") { field(ZNAM, "off") field(ONAM, "on") field(VAL, "0") field(PINI, "YES") }
record(mbbi, "G:MB") { field(ZRST, "zero") field(ONST, "one") field(VAL, "1") field(PINI, "YES") }
record(calc, "G:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "G:CNT") }
record(waveform, "G:BIG") { field(FTVL, "DOUBLE") field(NELM, "100000") }
record(calc, "G:SEQ") { field(CALC, "A+1") field(INPA, "G:SEQ") }
record(ai, "G:DB") { field(VAL, "1") field(MDEL, "100") field(ADEL, "0.5") field(PINI, "YES") }
"""


@contextlib.asynccontextmanager
async def gateway(
    ioc: IOC, access: Any = None, max_bytes: int = 1_000_000, **settings: Any
) -> AsyncIterator[Gateway]:
    scfg = ServerConfig(
        interfaces=["127.0.0.1"], port=free_port(), beacon_addrs=[], max_array_bytes=max_bytes
    )
    ccfg = ioc.client_config(max_array_bytes=1_000_000)
    settings.setdefault("prefix", "gwt")
    settings.setdefault("stats_interval", 0.3)
    gw = Gateway(GatewaySettings(**settings), ccfg, scfg, access)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.close()


def downstream(gw: Gateway, **kw: Any) -> CAClient:
    port = gw.server.port
    cfg = CAConfig(
        addr_list=[("127.0.0.1", port)],
        auto_addr_list=False,
        server_port=port,
        repeater_port=free_port(),
        **kw,
    )
    return CAClient(cfg)


async def direct_put(ioc: IOC, name: str, value: Any) -> None:
    async with CAClient(ioc.client_config(repeater_port=free_port())) as ca:
        ch = ca.create_channel(name)
        await ca.wait_connected(ch, 10)
        await ca.put(ch, value)


async def direct_get(ioc: IOC, name: str) -> Any:
    """``name``'s value read straight from the IOC (not through any gateway)."""
    async with CAClient(ioc.client_config(repeater_port=free_port())) as ca:
        ch = ca.create_channel(name)
        await ca.wait_connected(ch, 10)
        return (await ca.get(ch)).value


async def upstream_caught_up(gw: Gateway, ioc: IOC, counter: str = "G:CNT") -> None:
    """Return once ``gw`` holds an update of ``counter`` that the IOC posted after this call
    began: every update the IOC posted for ``gw`` before (one a put just caused, or did not
    cause) has then reached ``gw``.

    Why this holds: an IOC sends one client's monitor updates from one queue, in the order
    they were posted, over the one circuit the gateway has to it. ``counter`` is a record
    counting up on a scan that ``gw`` already monitors (a downstream client asked for it);
    its value read now bounds what was posted before, so a larger one came after.
    """
    now = await direct_get(ioc, counter)
    pv = gw.pvs[counter]

    def newer() -> bool:
        state = pv.state
        return state is not None and state.value() > now

    await until(newer, 30)
