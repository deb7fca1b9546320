"""The engine's source interface without sockets: the Archiver routes names by protocol, and
the CA source drives the engine's PVs only through SourceHost and ArchivedPV."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pvarchiver.ca import dbr
from pvarchiver.ca.protocol import DBE_ALARM, DBE_LOG
from pvarchiver.engine.archived_pv import ArchivedPV, SamplingMethod
from pvarchiver.engine.ca_source import CASource
from pvarchiver.engine.channels import CAArchiver
from pvarchiver.engine.source import CA, PVA, Archiver, Source, split_protocol
from pvarchiver.engine.writer import Engine
from pvarchiver.pb import PayloadType
from pvarchiver.storage import PlainPBStore

# --------------------------------------------------------------------------- fakes


@dataclass
class FakeConn:
    connected: bool = False
    server: tuple[str, int] | None = None
    count: int = 1


@dataclass
class FakeSource:
    """A second protocol's source, recording what the archiver asked of it."""

    channels: dict[str, FakeConn] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    meta: dict[str, dict[str, str]] = field(default_factory=dict)
    host: Any = None

    def attach(self, host: Any) -> None:
        self.host = host

    def archive(self, name: str, fields: Iterable[str]) -> None:
        self.calls.append(("archive", name))
        self.channels[name] = FakeConn()

    def add_fields(self, name: str, fields: Iterable[str]) -> None:
        self.calls.append(("add_fields", name))

    def stop_archiving(self, name: str) -> bool:
        self.calls.append(("stop", name))
        return self.channels.pop(name, None) is not None

    def forget(self, name: str) -> None:
        self.calls.append(("forget", name))
        self.stop_archiving(name)

    def metadata(self, name: str) -> dict[str, str]:
        return self.meta.get(name, {})

    def status_message(self, name: str) -> str:
        return "fake: not there" if name in self.channels else ""

    def start(self) -> None:
        self.calls.append(("start", ""))

    async def stop(self) -> None:
        self.calls.append(("stop_all", ""))


class FakeControls:
    def __init__(self) -> None:
        self.applied: list[str] = []
        self.set_to: dict[str, str | None] = {}

    def set(self, name: str, controlling: str | None) -> None:
        self.set_to[name] = controlling

    def apply(self, name: str) -> None:
        self.applied.append(name)


class FakeChannel:
    def __init__(self, name: str, cb: Callable[..., None] | None) -> None:
        self.name = name
        self.cb = cb
        self.connected = False
        self.native_type = dbr.DOUBLE
        self.count = 1
        self.error = ""
        self.server: tuple[str, int] | None = None
        self.created_at = 0.0
        self.subs: list[tuple[Callable[..., None], int | None, int | None, int]] = []

    def up(self, native: int = dbr.DOUBLE, count: int = 1) -> None:
        self.connected, self.native_type, self.count = True, native, count
        self.server = ("127.0.0.1", 5064)
        assert self.cb is not None
        self.cb(self, True)

    def down(self) -> None:
        self.connected = False
        assert self.cb is not None
        self.cb(self, False)


class FakeCAClient:
    """What CASource uses of CAClient."""

    def __init__(self) -> None:
        self.made: dict[str, FakeChannel] = {}
        self.cleared: list[str] = []
        self.reading = dbr.Reading(None, units="mm", precision=3, upper_disp_limit=10.0)

    def create_channel(
        self, name: str, on_connection: Any = None, follow: Any = None
    ) -> FakeChannel:
        ch = FakeChannel(name, on_connection)
        self.made[name] = ch
        return ch

    def subscribe(
        self,
        ch: FakeChannel,
        callback: Callable[..., None],
        dbr_type: int | None = None,
        count: int | None = None,
        mask: int = 0,
    ) -> None:
        ch.subs.append((callback, dbr_type, count, mask))

    def clear_channel(self, ch: FakeChannel) -> None:
        self.cleared.append(ch.name)

    async def get(self, ch: FakeChannel, dbr_type: int | None = None, count: int = 1) -> Any:
        return self.reading

    def search_tries(self, ch: FakeChannel) -> int:
        return 7


def ca_archiver(sts: PlainPBStore) -> tuple[Archiver, CASource, FakeCAClient, FakeControls]:
    client = FakeCAClient()
    controls = FakeControls()
    arch = Archiver(Engine(sts), controls)
    ca = CASource(client)  # type: ignore[arg-type]
    arch.add_source(CA, ca)
    return arch, ca, client, controls


# --------------------------------------------------------------------------- routing


def test_split_protocol() -> None:
    assert split_protocol("pva://X:Y") == (PVA, "X:Y")
    assert split_protocol("ca://X:Y", use_pva=True) == (CA, "X:Y")
    assert split_protocol("X:Y") == (CA, "X:Y")
    assert split_protocol("X:Y", use_pva=True) == (PVA, "X:Y")


def test_the_sources_satisfy_the_protocol() -> None:
    sources: list[Source] = [CASource(FakeCAClient()), FakeSource()]  # type: ignore[list-item]
    for s in sources:
        for attr in ("channels", "attach", "archive", "add_fields", "stop_archiving"):
            assert hasattr(s, attr)
        for attr in ("forget", "metadata", "status_message", "start", "stop"):
            assert hasattr(s, attr)


def test_pva_goes_to_ca_until_a_pva_source_is_registered(sts: PlainPBStore) -> None:
    arch, ca, client, _ = ca_archiver(sts)
    arch.archive("pva://P:A", fields=())
    arch.archive("P:B", fields=(), pva=True)
    # today's behaviour: prefix stripped, archived over Channel Access
    assert set(ca.channels) == {"P:A", "P:B"} and set(client.made) == {"P:A", "P:B"}
    assert arch.source_of("P:A") is ca and "P:B" in arch.channels


def test_pva_names_go_to_the_pva_source(sts: PlainPBStore) -> None:
    arch, ca, client, controls = ca_archiver(sts)
    pva = FakeSource()
    arch.add_source(PVA, pva)  # type: ignore[arg-type]
    assert pva.host is arch
    arch.archive("pva://P:A", SamplingMethod.SCAN, 2.0, fields=())
    arch.archive("P:B", fields=(), pva=True)
    arch.archive("C:A", fields=())
    arch.archive("C:A", fields=())  # twice: once
    arch.archive("pva://C:A", fields=())  # already archived (over CA): left alone
    assert set(pva.channels) == {"P:A", "P:B"} and set(ca.channels) == {"C:A"}
    assert list(client.made) == ["C:A"]
    assert sorted(arch.channels) == ["C:A", "P:A", "P:B"]
    assert arch.sampling["P:A"] == (SamplingMethod.SCAN, 2.0)
    pva.meta["P:A"] = {"EGU": "V"}
    assert arch.metadata("P:A") == {"EGU": "V"} and arch.metadata("nothing") == {}
    assert arch.status_message("P:A") == "fake: not there"
    arch.add_fields("P:A", ["HIHI"])
    assert arch.stop_archiving("P:B") and not arch.stop_archiving("P:B")
    arch.forget("P:A")
    assert "P:A" not in arch.channels and "P:A" not in arch.sampling
    assert controls.set_to["P:A"] is None
    assert ("add_fields", "P:A") in pva.calls and ("forget", "P:A") in pva.calls

    async def run() -> None:
        arch.start()
        await arch.stop()

    asyncio.run(run())
    assert ("start", "") in pva.calls and ("stop_all", "") in pva.calls


def test_create_pv_applies_sampling_and_control(sts: PlainPBStore) -> None:
    arch, _, _, controls = ca_archiver(sts)
    arch.archive("S:1", SamplingMethod.SCAN, 5.0, fields=())
    arch.change_sampling("S:1", SamplingMethod.SCAN, 3.0)  # before the first connect
    pv = arch.create_pv("S:1", PayloadType.SCALAR_DOUBLE)
    assert arch.pvs["S:1"] is pv and (pv.method, pv.period) == (SamplingMethod.SCAN, 3.0)
    assert controls.applied == ["S:1"]


# --------------------------------------------------------------------------- the CA source


def test_ca_source_connects_the_engine_pv_directly(sts: PlainPBStore) -> None:
    arch, ca, client, controls = ca_archiver(sts)

    async def main() -> None:
        arch.archive("C:1", fields=("HIHI",))
        ch, hihi = client.made["C:1"], client.made["C:1.HIHI"]
        # a field value before its PV exists is kept, then set at the first connect
        hihi.subs[0][0](0, 0, 0, 0, 5.5)
        assert "C:1" not in arch.pvs
        assert arch.status_message("C:1").startswith("never connected: no server answered 7")
        ch.up()
        pv = arch.pvs["C:1"]
        assert isinstance(pv, ArchivedPV) and pv.metrics.connected
        assert controls.applied == ["C:1"] and pv.field_values["HIHI"] == "5.5"
        # the hot path: the client calls the ArchivedPV's own bound on_event
        cb, dbr_type, count, mask = ch.subs[0]
        assert cb.__self__ is pv and cb.__func__ is ArchivedPV.on_event  # type: ignore[attr-defined]
        assert (dbr_type, count, mask) == (None, None, DBE_LOG | DBE_ALARM)
        assert cb(1_700_000_000, 0, 0, 0, 1.0) is not None
        await asyncio.sleep(0)  # the DBR_CTRL read
        await asyncio.sleep(0)
        assert arch.metadata("C:1") == {"EGU": "mm", "PREC": "3", "HOPR": "10.0", "HIHI": "5.5"}
        ch.down()
        assert not pv.metrics.connected
        ch.up()  # reconnect on the same channel: no second subscription
        assert len(ch.subs) == 1 and pv.metrics.connected
        arch.add_fields("C:1", ["HIHI", "LOLO"])
        assert "C:1.LOLO" in client.made and len(ca.field_channels["C:1"]) == 2
        assert arch.stop_archiving("C:1") and not pv.metrics.connected
        assert set(client.cleared) == {"C:1", "C:1.HIHI", "C:1.LOLO"}
        arch.forget("C:1")
        # the DBR_CTRL metadata is gone; the engine's PV (removed by mgmt next) keeps its fields
        assert arch.metadata("C:1") == pv.field_values and "HOPR" not in arch.metadata("C:1")
        assert "C:1" not in arch.sampling
        await arch.stop()

    asyncio.run(main())


def test_ca_archiver_is_an_archiver_with_the_ca_source(sts: PlainPBStore) -> None:
    arch = CAArchiver(Engine(sts), FakeCAClient())  # type: ignore[arg-type]
    assert arch.sources == {CA: arch.ca} and arch.source_for(PVA) is arch.ca
    arch.archive("X:1")  # the AA's default archive fields
    assert len(arch.field_channels["X:1"]) == 8 and arch.channels["X:1"] is not None
