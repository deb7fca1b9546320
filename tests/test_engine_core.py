"""The engine's network-free core: sanity filters, MONITOR/SCAN, fields, buffers, writes."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from pvarchiver.engine.archived_pv import SamplingMethod
from pvarchiver.engine.metrics import DropReason
from pvarchiver.engine.writer import Engine
from pvarchiver.pb import PayloadType
from pvarchiver.retrieval.sources import merged_chunks
from pvarchiver.storage import PlainPBStore

from .helpers.clock import Clock
from .helpers.stores import make_store

D = PayloadType.SCALAR_DOUBLE
NOW = calendar.timegm((2025, 6, 1, 12, 0, 0))


@pytest.fixture
def env(tmp_path: Path) -> tuple[Engine, PlainPBStore, Clock]:
    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    clock = Clock(NOW)
    return Engine(sts, clock=clock), sts, clock


def test_monitor_keeps_every_event_and_writes_them(
    env: tuple[Engine, PlainPBStore, Clock],
) -> None:
    engine, sts, _clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    for i in range(1000):  # 100 Hz for 10 s: the AA's 11-slot buffer would drop 989 of them
        assert pv.on_event(NOW - 10 + i // 100, (i % 100) * 10_000_000, 0, 0, float(i))
    assert engine.write_all() == 1000
    got = list(sts.read_all("E:AI"))
    assert [s.val for s in got] == [float(i) for i in range(1000)]
    assert got[0].fields == {"cnxlostepsecs": "0", "cnxregainedepsecs": str(NOW), "startup": "true"}
    assert all(s.fields is None for s in got[1:])
    assert engine.budget.used == 0


def test_timestamp_sanity_drops_are_counted_by_reason(
    env: tuple[Engine, PlainPBStore, Clock],
) -> None:
    engine, _sts, _clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    assert pv.on_event(NOW - 5000, 0, 0, 0, 1.0)  # the first event may be old (last value)
    assert not pv.on_event(600000000, 0, 0, 0, 1.0)  # 1989
    assert not pv.on_event(NOW + 3600, 0, 0, 0, 1.0)  # an hour ahead of us
    assert not pv.on_event(NOW - 5000, 0, 0, 0, 1.0)  # equal
    assert not pv.on_event(NOW - 4000, 0, 0, 0, 1.0)  # 2nd event, older than now - 30 min
    assert pv.on_event(NOW - 10, 0, 0, 0, 2.0)
    d = pv.metrics.drops
    assert (
        d[DropReason.BEFORE_1991],
        d[DropReason.IN_FUTURE],
        d[DropReason.NOT_INCREASING],
        d[DropReason.TOO_OLD],
    ) == (1, 1, 1, 1)


def test_scan_stores_at_most_one_sample_per_period_the_latest(
    env: tuple[Engine, PlainPBStore, Clock],
) -> None:
    engine, sts, _clock = env
    pv = engine.add_pv("E:SCAN", D, SamplingMethod.SCAN, period=1.0)
    pv.on_connect(D)
    # 10 Hz for 3 s; ticks at every second store the straggler
    for i in range(30):
        pv.on_event(NOW - 3 + i // 10, (i % 10) * 100_000_000, 0, 0, float(i))
        if i % 10 == 9:
            pv.on_scan_tick()
    engine.write_all()
    # the first event is stored at once; after that each tick stores the latest value, and an
    # event closer than 0.95 periods to the last stored one waits for the tick
    assert [s.val for s in sts.read_all("E:SCAN")] == [0.0, 9.0, 19.0, 29.0]
    # switching to MONITOR at run time keeps every event again
    pv.set_sampling(SamplingMethod.MONITOR, 1.0)
    assert pv.on_event(NOW + 1, 0, 0, 0, 99.0) and pv.on_event(NOW + 1, 1, 0, 0, 98.0)


def test_reconnect_fields_and_counts(env: tuple[Engine, PlainPBStore, Clock]) -> None:
    engine, sts, clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    pv.on_event(NOW, 0, 0, 0, 1.0)
    clock.t = NOW + 100
    pv.on_disconnect()
    clock.t = NOW + 160
    pv.on_connect(D)
    pv.on_event(NOW + 161, 0, 0, 0, 2.0)
    pv.on_event(NOW + 162, 0, 0, 0, 3.0)
    engine.write_all()
    got = list(sts.read_all("E:AI"))
    assert got[1].fields == {"cnxlostepsecs": str(NOW + 100), "cnxregainedepsecs": str(NOW + 160)}
    assert got[2].fields is None
    assert pv.metrics.connection_loss_regain_count == 1


def test_archive_fields_attached_on_change_and_daily(
    env: tuple[Engine, PlainPBStore, Clock],
) -> None:
    engine, sts, clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    pv.set_field("HIHI", "10")
    pv.set_field("EGU", "mA")
    for i in range(3):
        pv.on_event(NOW + i, 0, 0, 0, float(i))
    engine.write_all()  # first write: the daily snapshot of every field
    clock.t = NOW + 20
    pv.set_field("HIHI", "12")
    pv.set_field("EGU", "mA")  # unchanged: not attached again
    for i in range(3, 5):
        pv.on_event(NOW + i, 0, 0, 0, float(i))
    engine.write_all()
    got = list(sts.read_all("E:AI"))
    assert got[2].fields == {"HIHI": "10", "EGU": "mA"} and got[2].fieldactualchange is None
    assert got[4].fields == {"HIHI": "12"} and got[4].fieldactualchange is True
    assert all(s.fields is None for s in (got[1], got[3]))


def test_memory_bound_drops_are_counted_not_silent(tmp_path: Path) -> None:
    engine = Engine(
        make_store(tmp_path, "STS", "PARTITION_HOUR"), memory_limit_bytes=3_200, clock=Clock(NOW)
    )
    a, b = engine.add_pv("A", D), engine.add_pv("B", D)
    a.on_connect(D)
    b.on_connect(D)
    kept = sum(a.on_event(NOW - 100 + i, 0, 0, 0, 1.0) for i in range(200))
    assert 0 < kept < 200
    assert a.metrics.drops[DropReason.BUFFER_FULL] == 200 - kept
    assert not b.on_event(NOW, 0, 0, 0, 1.0)  # the bound is shared
    engine.write_all()
    assert engine.budget.used == 0 and b.on_event(NOW, 1, 0, 0, 1.0)


def test_type_change_pauses_and_loses_nothing(env: tuple[Engine, PlainPBStore, Clock]) -> None:
    engine, sts, _clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    pv.on_event(NOW, 0, 0, 0, 1.0)
    engine.write_all()
    pv.on_disconnect()
    pv.on_connect(PayloadType.SCALAR_STRING)  # the IOC now serves a string
    assert pv.paused and "changed type" in pv.status_message
    assert not pv.on_event(NOW + 5, 0, 0, 0, "x")
    assert pv.metrics.drops[DropReason.TYPE_CHANGE] == 1
    assert [s.val for s in sts.read_all("E:AI")] == [1.0]


def test_failed_write_is_retried_in_order(tmp_path: Path) -> None:
    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    engine = Engine(sts, clock=Clock(NOW))
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    pv.on_event(NOW, 0, 0, 0, 1.0)
    blocker = sts.root / "E"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the PV's folder must go")
    assert engine.write_all() == 0 and pv.metrics.write_errors == 1
    pv.on_event(NOW + 1, 0, 0, 0, 2.0)
    blocker.unlink()
    assert engine.write_all() == 2
    assert [s.val for s in sts.read_all("E:AI")] == [1.0, 2.0]


def test_unwritten_samples_are_merged_into_retrieval(
    env: tuple[Engine, PlainPBStore, Clock],
) -> None:
    engine, sts, _clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    for i in range(5):
        pv.on_event(NOW + i, 0, 0, 0, float(i))
    engine.write_all()
    for i in range(5, 8):
        pv.on_event(NOW + i, 0, 0, 0, float(i))
    chunks = list(merged_chunks([sts], "E:AI", (NOW + 2, 0), (NOW + 6, 0), live=engine))
    vals = [float(v) for c in chunks for v in c.block.vals]
    assert vals == [2.0, 3.0, 4.0, 5.0, 6.0]


def test_events_during_failing_write_cycles_are_not_lost(tmp_path: Path) -> None:
    """The write loop's disk work runs in a thread while events keep arriving on the loop;
    buffers that fail to write are put back without losing what arrived meanwhile."""
    import asyncio

    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    engine = Engine(sts, seconds_to_buffer=1.0)
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    blocker = sts.root / "E"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the PV's folder must go: every write fails")
    import time as _time

    t0 = int(_time.time()) - 100
    n = 30_000

    async def main() -> None:
        stop = asyncio.Event()
        writer = asyncio.create_task(engine.run(stop))
        for i in range(n):
            assert pv.on_event(t0 + i // 1000, (i % 1000) * 1_000_000, 0, 0, float(i))
            if i % 500 == 0:
                await asyncio.sleep(0.05)  # ~3 s in all: several write cycles happen
        blocker.unlink()
        stop.set()
        await writer

    asyncio.run(main())
    assert pv.metrics.write_errors >= 1
    engine.write_all()
    assert [s.val for s in sts.read_all("E:AI")] == [float(i) for i in range(n)]
    assert engine.budget.used == 0


def test_read_spans_in_flight_and_current_buffers(env: tuple[Engine, PlainPBStore, Clock]) -> None:
    engine, _sts, _clock = env
    pv = engine.add_pv("E:AI", D)
    pv.on_connect(D)
    for i in range(5):
        pv.on_event(NOW + i, 0, 0, 0, float(i))
    taken = engine.take_all()  # being written: in flight, not yet on disk
    for i in range(5, 10):
        pv.on_event(NOW + i, 0, 0, 0, float(i))
    vals = [float(v) for c in engine.read("E:AI", (NOW + 6, 0), (NOW + 8, 0)) for v in c.block.vals]
    assert vals == [5.0, 6.0, 7.0, 8.0]  # exactly one sample before start
    vals = [float(v) for c in engine.read("E:AI", (NOW + 3, 0), (NOW + 6, 0)) for v in c.block.vals]
    assert vals == [2.0, 3.0, 4.0, 5.0, 6.0]
    engine.finish(taken, {})
