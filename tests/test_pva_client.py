"""Our asyncio PVA client against real servers on 127.0.0.1: a p4p server (NT types and a
custom structure, compared with p4p's own client), a pvxs QSRV IOC (100 monitor updates
with none lost, reconnect after a restart, TCP search through EPICS_PVA_NAME_SERVERS),
and fake servers that never validate or send garbage (the channel is closed and retried)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

from pvarchiver.pva.client import PVAClient
from pvarchiver.pva.connection import MonitorUpdate
from pvarchiver.pva.env import PVAConfig
from pvarchiver.pva.protocol import build_message, parse_search_response

from .aio import run
from .helpers.net import free_port
from .helpers.wait import until
from .pva_peers import client_config, p4p_client_conf, p4p_server, qsrv_ioc
from .test_pva_protocol import _plain


def test_env_config() -> None:
    cfg = PVAConfig.from_env(
        {
            "EPICS_PVA_ADDR_LIST": "127.0.0.1 127.0.0.1:7000",
            "EPICS_PVA_AUTO_ADDR_LIST": "no",
            "EPICS_PVA_BROADCAST_PORT": "6000",
            "EPICS_PVA_SERVER_PORT": "6001",
            "EPICS_PVA_NAME_SERVERS": "127.0.0.1 127.0.0.1:7001",
        }
    )
    assert cfg.addr_list == [("127.0.0.1", 6000), ("127.0.0.1", 7000)]
    assert cfg.name_servers == [("127.0.0.1", 6001), ("127.0.0.1", 7001)]
    assert cfg.search_targets() == cfg.addr_list
    auto = PVAConfig.from_env({})
    assert auto.search_targets() == [("255.255.255.255", 5076)]


def test_values_equal_p4p_client() -> None:
    from p4p import Type
    from p4p.client.thread import Context
    from p4p.nt import NTEnum, NTScalar
    from p4p.server.thread import SharedPV

    custom = Type(
        [("a", "i"), ("inner", ("S", "my:inner", [("x", "d"), ("tags", "as")]))], id="my:t"
    )
    pvs = {
        "T:D": SharedPV(nt=NTScalar("d", display=True, control=True, valueAlarm=True), initial=2.5),
        "T:I": SharedPV(nt=NTScalar("ai"), initial=[1, 2, -3]),
        "T:S": SharedPV(nt=NTScalar("as"), initial=["x", "yé"]),
        "T:E": SharedPV(nt=NTEnum(), initial={"index": 2, "choices": ["a", "b", "c"]}),
        "T:C": SharedPV(initial=custom({"a": 5, "inner": {"x": 1.25, "tags": ["p", "q"]}})),
    }
    with p4p_server(pvs) as (_, bport):
        ctx = Context("pva", conf=p4p_client_conf(bport), useenv=False, nt=False)
        theirs = {name: _plain(ctx.get(name).todict()) for name in pvs}

        async def main() -> dict[str, Any]:
            client = PVAClient(client_config(bport))
            await client.start()
            try:
                out = {}
                for name in pvs:
                    out[name] = (await client.channel(name).get(10)).todict()
                # monitor: updates posted by the server arrive as p4p reads them
                seen: list[MonitorUpdate] = []
                ch = client.channel("T:D")
                ch.monitor(seen.append)
                await until(lambda: len(seen) >= 1, 20)
                for i in range(5):
                    pvs["T:D"].post(float(i), timestamp=1_700_000_000.5 + i)
                await until(lambda: len(seen) >= 6, 20)
                out["updates"] = [u.value["value"] for u in seen[1:]]
                out["last"] = seen[-1].value.todict()
                return out
            finally:
                await client.close()

        ours = run(main(), 120)
        try:
            assert {n: ours[n] for n in pvs} == theirs
            assert ours["updates"] == [0.0, 1.0, 2.0, 3.0, 4.0]
            assert ours["last"] == _plain(ctx.get("T:D").todict())
            assert ours["last"]["timeStamp"]["secondsPastEpoch"] == 1_700_000_004
        finally:
            ctx.close()


def _counter_db(n: int, scan: str) -> str:
    return "".join(
        f'record(calc, "PVA:C{i:04d}") {{ field(SCAN, "{scan}") field(CALC, "A+1") '
        f'field(INPA, "PVA:C{i:04d}") }}\n'
        for i in range(n)
    )


def test_qsrv_monitor_100_updates_and_reconnect(tmp_path: Path) -> None:
    with qsrv_ioc(_counter_db(2, ".1 second"), tmp_path) as ioc:

        async def main() -> None:
            client = PVAClient(client_config(ioc.bport, conn_tmo=5.0))
            await client.start()
            try:
                values: list[float] = []
                states: list[bool] = []
                ch = client.channel("PVA:C0000", on_state=lambda c, up: states.append(up))
                v = await ch.get(10)
                assert v.layout.top.id.startswith("epics:nt/NTScalar")
                assert "display.limitLow" in v and "timeStamp.userTag" in v
                ch.monitor(lambda u: values.append(u.value["value"]))
                await until(lambda: len(values) >= 101, 60)
                steps = [b - a for a, b in itertools.pairwise(values)]
                assert steps[:100] == [1.0] * 100, "a counter update was lost"
                # the IOC restarts on the same ports: the channel and the monitor come back
                ioc.kill()
                await until(lambda: states[-1:] == [False], 30)
                await asyncio.to_thread(ioc.start)
                before = len(values)
                await until(lambda: states[-1:] == [True] and len(values) > before + 3, 60)
                assert ch.connects == 2 and client.connections_opened >= 2
                assert values[-1] - values[-2] == 1.0
            finally:
                await client.close()

        run(main(), 200)


def test_tcp_search_through_name_server(tmp_path: Path) -> None:
    with qsrv_ioc(_counter_db(1, "1 second"), tmp_path) as ioc:

        async def main() -> None:
            cfg = PVAConfig.from_env(
                {
                    "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                    "EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{ioc.sport}",
                }
            )
            assert cfg.search_targets() == []  # no UDP at all
            client = PVAClient(cfg)
            await client.start()
            try:
                v = await client.channel("PVA:C0000").get(20)
                assert v["value"] >= 0
            finally:
                await client.close()

        run(main(), 60)


class _FakeServer:
    """Answers UDP searches for every name with its own TCP port, and on TCP either says
    nothing (``mode="silent"``) or sends bytes that are no PVA (``mode="garbage"``)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.bport = free_port()
        self.accepted = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tcp = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.sport = self.tcp.sockets[0].getsockname()[1]
        fake = self

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, transport: Any) -> None:
                self.t = transport

            def datagram_received(self, data: bytes, addr: Any) -> None:
                body = data[8:]
                seq = body[:4]
                n = int.from_bytes(body[31:33], "big")
                cids, pos = [], 33
                for _ in range(n):
                    cids.append(body[pos : pos + 4])
                    pos += 4
                    pos += 1 + body[pos]
                reply = (
                    b"G" * 12
                    + seq
                    + bytes(16)
                    + fake.sport.to_bytes(2, "big")
                    + b"\x03tcp\x01"
                    + n.to_bytes(2, "big")
                    + b"".join(cids)
                )
                parse_search_response(reply, ">")  # what we send is well formed
                self.t.sendto(build_message(4, reply, ">", server=True), addr)

        self.udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", self.bport))

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "garbage":
            writer.write(b"\xca\x02\x40\x01" + b"\xff" * 4 + b"not pva at all" * 10)
        try:
            await reader.read()  # until the client closes
        finally:
            writer.close()

    async def stop(self) -> None:
        self.udp.close()
        self.tcp.close()


def _fake_server_case(mode: str, expect: str) -> None:
    async def main() -> None:
        fake = _FakeServer(mode)
        await fake.start()
        client = PVAClient(client_config(fake.bport, validation_timeout=0.5))
        await client.start()
        try:
            ch = client.channel("FAKE:PV")
            await until(lambda: fake.accepted >= 2 and expect in ch.error, 30)
            assert not ch.connected
            # the client is still healthy: another channel gets searched and tried too
            other = client.channel("FAKE:OTHER")
            await until(lambda: other.error != "", 30)
        finally:
            await client.close()
            await fake.stop()

    run(main(), 60)


def test_server_that_never_validates_is_dropped_and_retried() -> None:
    _fake_server_case("silent", "no connection validation")


def test_garbage_from_server_closes_and_retries() -> None:
    _fake_server_case("garbage", "malformed message")
