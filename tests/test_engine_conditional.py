"""Conditional archiving (the AA's ``controllingPV``): samples are stored only while the
controlling PV is non-zero. Pure parts first, then a real IOC and a real server: the gate is
a ``bo`` record switched with a CA put while a 10 Hz counter is archived."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import httpx
import numpy as np

from pvarchiver.ca import CAClient
from pvarchiver.engine.archived_pv import ArchivedPV
from pvarchiver.engine.budget import MemoryBudget
from pvarchiver.engine.conditional import is_on
from pvarchiver.pb import PayloadType

from .helpers.mgmt import bpl, ca_env, statuses, wait_status
from .helpers.wait import wait_for
from .http_server import running_server
from .ioc import IOC


def test_is_on_is_non_zero() -> None:
    assert not is_on(0.0) and not is_on(0) and not is_on(-0.0)
    assert is_on(1.0) and is_on(-2) and is_on(math.nan)
    assert not is_on(np.array([0.0, 1.0])) and is_on(np.array([3.0]))
    assert not is_on(np.array([]))
    assert not is_on("0.000") and is_on("on") and not is_on("")


def test_held_value_is_stored_when_switched_on() -> None:
    now = time.time()
    pv = ArchivedPV("X", PayloadType.SCALAR_DOUBLE, MemoryBudget(1 << 20), clock=lambda: now)
    s = int(now)
    assert pv.on_event(s, 0, 0, 0, 1.0)
    pv.set_control("conditional archiving: controlling PV G is 0")
    assert not pv.on_event(s, 1, 0, 0, 2.0)
    assert not pv.on_event(s, 2, 0, 0, 3.0)
    assert len(pv.buffer) == 1 and not pv.metrics.drops  # not stored, and not a drop
    pv.set_control("")
    # the latest value seen while off is stored once archiving resumes, as a new
    # subscription would give it
    assert [pv.buffer.row(i)[2] for i in range(len(pv.buffer))] == [1.0, 3.0]
    assert pv.metrics.events_received == 3
    assert pv.on_event(s, 3, 0, 0, 4.0)


DB = """
record(calc, "CT:CNT") { field(SCAN, ".1 second") field(CALC, "A+1") field(INPA, "CT:CNT") }
record(bo, "CT:GATE") { field(VAL, "1") field(PINI, "YES") field(ZNAM, "off") field(ONAM, "on") }
"""


def put(ioc: IOC, name: str, value: float) -> None:
    async def main() -> None:
        async with CAClient(ioc.client_config()) as ca:
            ch = ca.create_channel(name)
            await ca.wait_connected(ch, 10)
            await ca.put(ch, value)

    asyncio.run(main())


def get(ioc: IOC, name: str) -> float:
    async def main() -> float:
        async with CAClient(ioc.client_config()) as ca:
            ch = ca.create_channel(name)
            await ca.wait_connected(ch, 10)
            return float((await ca.get(ch)).value)

    return asyncio.run(main())


def stamps(base: str) -> list[float]:
    r = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": "CT:CNT", "from": "2020-01-01T00:00:00Z"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return [d["secs"] + d["nanos"] * 1e-9 for d in r.json()[0]["data"]]


def test_controlling_pv_gates_archiving(tmp_path: Path) -> None:
    with IOC(DB, tmp_path / "ioc") as ioc, running_server(tmp_path / "st", ca_env(ioc)) as base:
        r = bpl(base, "archivePV", "POST", json=[{"pv": "CT:CNT", "controllingPV": "CT:GATE"}])
        assert r.status_code == 200, r.text
        wait_status(base, ["CT:CNT"], "Being archived")
        assert bpl(base, "getPVTypeInfo", params={"pv": "CT:CNT"}).json()["controllingPV"] == (
            "CT:GATE"
        )
        assert wait_for(lambda: len(stamps(base)) >= 5, 20, 0.2)

        put(ioc, "CT:GATE", 0)

        def message() -> str:
            row = bpl(base, "getPVStatus", params={"pv": "CT:CNT"}).json()[0]
            return str(row.get("statusMessage", ""))

        # the gate's monitor may be slow on a busy machine
        assert wait_for(lambda: "controlling PV CT:GATE is 0" in message(), 20, 0.1)
        t_off = time.time()  # the gate is closed now: nothing stamped after this is stored
        assert statuses(base, ["CT:CNT"])["CT:CNT"] == "Being archived"
        # the off period: the 10 Hz counter goes on in the IOC (>= 20 updates, >= 2 s)
        counted = get(ioc, "CT:CNT")
        assert wait_for(lambda: get(ioc, "CT:CNT") >= counted + 20, 20, 0.2)
        t_on = time.time()
        put(ioc, "CT:GATE", 1)
        wait_for(lambda: [t for t in stamps(base) if t > t_on + 0.5], 20, 0.2)
        got = stamps(base)
        # nothing from the off period, except the one value held at switch-on (the PV's
        # value when archiving resumed: the gate opens after the put, so that value is at
        # most one 10 Hz period older than the put)
        off = [t for t in got if t_off <= t < t_on]
        assert len(off) <= 1 and all(t > t_on - 0.2 for t in off), ("stored while 0", off)
        assert [t for t in got if t > t_on + 0.5], "not archived again after the gate went to 1"
        row = bpl(base, "getPVStatus", params={"pv": "CT:CNT"}).json()[0]
        assert "statusMessage" not in row, row
