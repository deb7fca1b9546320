"""The gateway's batch fan-out sends exactly what the per-event path sends.

Why this test: the batch path (``gateway.event_runs.BulkFramer`` collecting a
read's updates, ``gateway.fanout.make_fan_out`` segmenting them,
``gateway.fanplan.post_batch`` copying the upstream messages with new
subscription ids) replaces ``ServedPV.post`` for most events.  A bug there
drops, reorders or misaddresses events without any functional test noticing
(values still arrive, just not all or not to the right subscription).  So one
upstream byte stream (mixed masks, scalars and arrays, PVs whose subscribers
need conversion, several subscriptions on one circuit, non-batched messages in
between, a held client, one switching between held and not in the middle of
reads, reads split at arbitrary points) goes through both paths, and every
circuit's output bytes, held updates and the post counters must be identical.
"""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace
from typing import Any

import pytest

from pvarchiver.ca import dbr
from pvarchiver.ca import protocol as P
from pvarchiver.ca.dbr_encode import Meta, PVState
from pvarchiver.ca.server_pv import Subscriber
from pvarchiver.gateway.event_runs import BulkFramer
from pvarchiver.gateway.fanout import UpdateHandler, make_fan_out
from pvarchiver.gateway.fanplan import FanOutPV

from .helpers.gw_fakes import FakeCircuit

DOUBLE = 6
T_DOUBLE = dbr.time_type(DOUBLE)
HEAD = dbr.data_size(T_DOUBLE, 0)
MASKS = (P.DBE_VALUE | P.DBE_LOG, P.DBE_ALARM, P.DBE_VALUE | P.DBE_ALARM | P.DBE_LOG, P.DBE_LOG)


def _world() -> tuple[list[FanOutPV], list[FakeCircuit]]:
    """Five PVs on three circuits (C held) with every kind of subscriber mix."""
    circuits = [FakeCircuit(), FakeCircuit(), FakeCircuit(hold=True)]
    a, b, c = circuits
    subid = iter(range(100, 1000))

    def sub(pv: FanOutPV, circuit: FakeCircuit, dbr_type: int, count: int, mask: int) -> None:
        channel = SimpleNamespace(circuit=circuit, rights=3)
        pv.add_subscriber(Subscriber(channel, next(subid), dbr_type, count, mask))  # type: ignore[arg-type]

    pvs = [FanOutPV(f"pv{i}") for i in range(6)]
    vm, am = P.DBE_VALUE | P.DBE_ALARM, P.DBE_ALARM
    sub(pvs[0], a, T_DOUBLE, 0, vm)  # fast: masks differ per circuit
    sub(pvs[0], b, T_DOUBLE, 0, P.DBE_VALUE)
    sub(pvs[0], c, T_DOUBLE, 0, am)
    sub(pvs[1], a, T_DOUBLE, 0, vm)  # slow: a client wants plain DBR_DOUBLE
    sub(pvs[1], b, DOUBLE, 1, vm)
    sub(pvs[2], a, T_DOUBLE, 0, vm)  # fast: two subscriptions on one circuit, DBE_LOG only
    sub(pvs[2], b, T_DOUBLE, 1, P.DBE_LOG)
    sub(pvs[2], a, T_DOUBLE, 1, P.DBE_VALUE)
    sub(pvs[2], c, T_DOUBLE, 0, vm)
    sub(pvs[3], a, T_DOUBLE, 0, vm)  # fast array of 5 (other message length)
    sub(pvs[3], c, T_DOUBLE, 5, P.DBE_VALUE)
    sub(pvs[4], b, T_DOUBLE, 3, vm)  # slow: a fixed count below the array's
    # pvs[5]: no subscribers
    return pvs, circuits


def _stream(rng: random.Random, n: int) -> tuple[bytes, list[tuple[int, int]]]:
    """Upstream EVENT_ADD messages (subid = PV index) and one non-batched message per 37."""
    msgs = []
    events = []
    for i in range(n):
        if i % 37 == 36:
            msgs.append(P.HEADER.pack(P.EVENT_ADD, 8, DOUBLE, 1, 1, 99) + bytes(8))
            continue
        k = rng.randrange(6)
        count = 5 if k == 3 else 1
        values = struct.pack(f">{count}d", *(rng.random() for _ in range(count)))
        payload = struct.pack(">hhIII", rng.randrange(3), 0, i, 0, 0) + values
        msgs.append(P.HEADER.pack(P.EVENT_ADD, len(payload), T_DOUBLE, count, 1, k) + payload)
        events.append((k, MASKS[rng.randrange(len(MASKS))]))
    return b"".join(msgs), events


def _run(batched: bool, seed: int) -> tuple[list[Any], list[int], list[str]]:
    rng = random.Random(seed)
    pvs, circuits = _world()
    stream, events = _stream(rng, 400)
    order = iter(events)
    log: list[str] = []

    def make_handler(k: int) -> Any:
        pv = pvs[k]

        def update(buf: bytes, off: int, count: int) -> int:
            kk, mask = next(order)
            assert kk == k
            pv.state = PVState(DOUBLE, count, bytes(buf[off : off + HEAD + 8 * count]), Meta())
            log.append(f"u{k}")
            return mask

        return UpdateHandler(pv, gw, DOUBLE, update)  # type: ignore[arg-type]

    def other_event(buf: bytes, off: int, count: int) -> None:
        log.append("x")
        for c in circuits[:2]:
            c.out.append(b"<x>")  # a non-batched update lands between the runs around it
        b = circuits[1]
        b.hold = not b.hold  # B is flow-controlled for every other stretch of the stream
        if not b.hold:  # and gets what it held back on release, as ServerCircuit does
            for sub, parts in b._held.values():
                b.out.extend((parts[0], sub.idb, parts[1]))
            b._held.clear()

    gw = SimpleNamespace(
        server=SimpleNamespace(flush_now=lambda: log.append("flush")), client_events=0
    )
    framer = BulkFramer(make_fan_out(gw)) if batched else P.Framer()
    framer.add_handler(99, other_event)
    for k in range(6):
        framer.add_handler(k, make_handler(k))
    cut = 0
    while cut < len(stream):  # reads of arbitrary size, splitting messages
        step = rng.randrange(1, 3000)
        framer.feed(stream[cut : cut + step])
        cut += step
    return [c.result() for c in circuits], [pv.posted for pv in pvs], log


def test_batch_fan_out_equals_per_event_path() -> None:
    for seed in range(5):
        got, got_posted, got_log = _run(True, seed)
        want, want_posted, want_log = _run(False, seed)
        assert got_posted == want_posted
        assert sum(want_posted) > 300
        for g, w in zip(got, want, strict=True):
            assert g[0] == w[0]  # every byte of every circuit: order and subscription ids
            assert g[1] == w[1]  # the held client keeps the same newest update per subscription
            assert g[2] == w[2]
        assert len(want[2][1]) == 3  # C holds the newest of pv0, pv2, pv3 and drops the rest
        assert [x for x in got_log if x != "flush"] == [x for x in want_log if x != "flush"]


def test_batch_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    """The eligible PVs really go through post_batch (the comparison above is not vacuous)."""
    import pvarchiver.gateway.fanout as fanout

    calls: list[int] = []
    real = fanout.post_batch

    def spy(buf: bytes, pvs: Any, offs: Any, ends: Any, masks: Any) -> None:
        calls.append(len(pvs))
        real(buf, pvs, offs, ends, masks)

    monkeypatch.setattr(fanout, "post_batch", spy)
    _run(True, 1)
    assert sum(calls) > 150
