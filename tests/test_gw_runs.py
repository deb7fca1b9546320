"""The gateway's bulk path for runs of updates does exactly what the per-message path does.

Why this test: ``gateway/fanout.py`` replaces, for runs of same-size updates,
the per-update work of ``UpstreamPV``'s handler (new state, alarm and value
comparison, counters) and the collection for ``post_batch``, with numpy on
rows of a table.  A mistake there (a stale row, a repeat in a run compared
with the wrong predecessor, a PV that should have left the run) sends wrong
masks, drops or duplicates updates, or leaves a stale cached value, and the
functional tests would mostly still pass.  So the same upstream byte stream
goes through real ``UpstreamPV`` handlers twice, once with runs enabled (at
any length, so nearly everything takes the bulk path) and once without, and
every circuit's bytes, the held updates, the counters and the cached states
must be identical.  The stream mixes double, long and string PVs (three
message sizes), alarm changes, repeated values (masks differ per subscriber),
a PV twice or more in one run, a PV whose subscriber needs conversion (it
must leave the run), a PV without subscribers, a PV whose first value arrives
in the middle of a run, a subscriber added, a state read and a rights change
half-way, a held circuit, and reads split at random points.
"""

from __future__ import annotations

import asyncio
import random
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pvarchiver.ca import dbr
from pvarchiver.ca import protocol as P
from pvarchiver.ca.server_pv import Subscriber
from pvarchiver.gateway import fanout
from pvarchiver.gateway.event_runs import BulkFramer
from pvarchiver.gateway.fanout import FanOutTable, make_fan_out
from pvarchiver.gateway.upstream import UpstreamPV

from .helpers.gw_fakes import FakeCircuit

DOUBLE, LONG, SHORT, STRING = 6, 5, 1, 0
# (native type, subscribers: (circuit, DBR type or None for the time type, count, mask))
VM, AM, LM = P.DBE_VALUE | P.DBE_ALARM, P.DBE_ALARM, P.DBE_LOG | P.DBE_VALUE
WORLD: list[tuple[int, list[tuple[int, int | None, int, int]]]] = [
    (DOUBLE, [(0, None, 0, VM), (1, None, 0, P.DBE_VALUE), (2, None, 0, AM)]),
    (DOUBLE, [(0, None, 1, VM), (0, None, 0, AM), (1, None, 0, LM)]),
    (LONG, [(0, None, 0, VM), (2, None, 1, VM)]),
    (STRING, [(1, None, 0, VM)]),
    (DOUBLE, [(0, None, 0, VM), (1, DOUBLE, 1, VM)]),  # plain DBR_DOUBLE: leaves every run
    (DOUBLE, []),  # no subscriber: only the state changes
    (LONG, [(2, None, 0, P.DBE_VALUE)]),
    (DOUBLE, [(0, None, 0, VM), (2, None, 0, VM)]),  # first value only half-way
    (SHORT, [(1, None, 0, VM)]),  # same message size as LONG, value at another offset
]
LATE = 7


class StubClient:
    """What UpstreamPV asks of the CA client: channels, subscriptions (kept to feed them)."""

    def __init__(self) -> None:
        self.subs: list[tuple[Any, Any, int]] = []

    def create_channel(self, name: str, *_cb: Any, follow: Any = None) -> Any:
        return SimpleNamespace(name=name, access=3, count=1, native_type=-1)

    def subscribe(self, ch: Any, handler: Any, dbr_type: Any, count: Any, mask: int) -> Any:
        self.subs.append((ch, handler, mask))
        return SimpleNamespace(cancel=lambda: None)

    subscribe_raw = subscribe

    def clear_channel(self, ch: Any) -> None:
        return None


def _gateway(circuits: list[FakeCircuit]) -> Any:
    gw = SimpleNamespace(
        client=StubClient(),
        archive=False,
        mask=P.DBE_VALUE | P.DBE_ALARM | P.DBE_LOG,
        client_events=0,
        client_posts=0,
        settings=SimpleNamespace(connect_timeout=1.0),
        reconnected=lambda pv: None,
        upstream_rights_changed=lambda pv: None,
    )
    gw.server = SimpleNamespace(flush_now=lambda: None, disconnect=lambda pv: None)
    gw.fan_out = make_fan_out(gw)
    gw.fanout = FanOutTable(gw, gw.fan_out, 5)  # runs sent in pieces of 5 updates
    return gw


def _payload(
    native: int, rng: random.Random, stamp: int, prev: dict[int, tuple[int, Any]], k: int,
    steady: bool = False,
) -> bytes:  # fmt: skip
    """A DBR_TIME payload: the alarm and value repeat often, so masks differ per subscriber."""
    sev, value = prev.get(k, (0, 0))
    if rng.random() < 0.3 and not steady:
        sev = rng.randrange(3)
    if rng.random() < 0.6:
        value = rng.randrange(4)
    prev[k] = (sev, value)
    head = struct.pack(">hhII", sev, sev, stamp, 0)
    if native == DOUBLE:
        return head + b"\0" * 4 + struct.pack(">d", float(value))
    if native == LONG:
        return head + struct.pack(">i", value)
    if native == SHORT:
        return head + b"\0\0" + struct.pack(">h", value)
    return head + f"text {value}".encode().ljust(40, b"\0")


SCAN = (0, 1, 5, 0, 1, 5, 1)  # one periodic scan: the same run again and again


def _scan(rng: random.Random, stamp: int, prev: dict[int, tuple[int, Any]]) -> bytes:
    """One read holding a scan of SCAN, alarms unchanged: the same bulk ids and masks
    each time, so the fan-out plan of the first one is reused."""
    msgs = []
    for k in SCAN:
        payload = P.pad(_payload(DOUBLE, rng, stamp, prev, k, steady=True))
        msgs.append(P.HEADER.pack(P.EVENT_ADD, len(payload), dbr.time_type(DOUBLE), 1, 1, k))
        msgs.append(payload)
    return b"".join(msgs)


def _stream(rng: random.Random, n: int, prev: dict[int, tuple[int, Any]]) -> list[bytes]:
    msgs = []
    for i in range(n):
        # runs of one record type, with repeats, as scans of several record types give
        if rng.random() < 0.5:
            k = rng.choice([0, 1, 4, 5, 7])
        elif rng.random() < 0.5:
            k = rng.choice([2, 6, 8])  # LONG and SHORT records mixed in one run
        else:
            k = rng.randrange(len(WORLD))
        if k == LATE and i < n // 2:
            k = 0
        payload = P.pad(_payload(WORLD[k][0], rng, i, prev, k))
        msgs.append(P.HEADER.pack(P.EVENT_ADD, len(payload), dbr.time_type(WORLD[k][0]), 1, 1, k))
        msgs.append(payload)
    return msgs


async def _run(runs: bool, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    circuits = [FakeCircuit(), FakeCircuit(), FakeCircuit(hold=True)]
    gw = _gateway(circuits)
    pvs = [UpstreamPV(gw, f"pv{k}") for k in range(len(WORLD))]
    subid = iter(range(100, 10_000))

    def subscribe(pv: UpstreamPV, k: int, spec: tuple[int, int | None, int, int]) -> None:
        circuit, dbr_type, count, mask = spec
        native = WORLD[k][0]
        channel = SimpleNamespace(circuit=circuits[circuit], rights=3)
        t = dbr.time_type(native) if dbr_type is None else dbr_type
        pv.add_subscriber(Subscriber(channel, next(subid), t, count, mask))  # type: ignore[arg-type]

    framer = BulkFramer(gw.fan_out, gw.fanout.consume_run if runs else None)
    for k, (pv, (native, specs)) in enumerate(zip(pvs, WORLD, strict=True)):
        pv.channel.native_type = native
        pv._connected(pv.channel)
        for spec in specs:
            subscribe(pv, k, spec)
        handler = gw.client.subs[-2][1]  # DBR_TIME (the last one is DBR_CTRL)
        framer.add_handler(k, handler)
    if framer.finder is not None:
        framer.finder.run_min = 2  # every run, even of two updates, takes the bulk path
    prev: dict[int, tuple[int, Any]] = {}
    stream = b"".join(_stream(rng, 3000, prev))
    states: list[Any] = []
    cut = 0
    halfway = False
    while cut < len(stream):
        step = rng.randrange(1, 6000)
        framer.feed(stream[cut : cut + step])
        cut += step
        if not framer.pending and rng.random() < 0.6:  # whole scans, between messages
            for _ in range(rng.randrange(1, 4)):
                framer.feed(_scan(rng, cut, prev))
        if not halfway and cut > len(stream) // 2:
            halfway = True
            # a new subscriber: the row is refreshed and no plan made before may be used
            subscribe(pvs[0], 0, (1, None, 0, P.DBE_VALUE))
            states.append(pvs[1].state.time_payload)  # a read rebuilds the state from the row
            pvs[2]._on_rights(pvs[2].channel, 0)  # the IOC withdraws read access...
            pvs[2]._on_rights(pvs[2].channel, 3)  # ...and gives it back: invalid until a value
        if rng.random() < 0.2:  # a held client released now and then, as ServerCircuit does
            b = circuits[2]
            for sub, parts in b._held.values():
                b.out.extend((parts[0], sub.idb, parts[1]))
            b._held.clear()
    return {
        "circuits": [c.result() for c in circuits],
        "posted": [pv.posted for pv in pvs],
        "events": [pv.events for pv in pvs],
        "states": [pv.state.time_payload if pv.state else None for pv in pvs],
        "valid": [pv.valid for pv in pvs],
        "read": states,
        "counters": (gw.client_events, gw.client_posts),
        "bulk": int(gw.fanout.events.sum()),
        "plan_hits": gw.fanout.plan_hits,
        "plan_bytes": (
            gw.fanout._plan_bytes,
            sum(len(k) + getattr(v, "nbytes", 0) for k, v in gw.fanout._plans.items()),
        ),
    }


@pytest.mark.parametrize(
    ("plan_bytes", "min_segment", "bulk"),
    [(fanout.PLAN_BYTES, 0, 1200), (2000, 0, 1200), (fanout.PLAN_BYTES, fanout.MIN_SEGMENT, 300)],
)
def test_runs_equal_per_message_path(
    monkeypatch: pytest.MonkeyPatch, plan_bytes: int, min_segment: int, bulk: int
) -> None:
    """With 2,000 bytes for plans, old ones are dropped all the time.  With MIN_SEGMENT
    0 every eligible stretch takes the bulk path, however short; with the default, runs
    broken up by many ineligible updates go message by message as a whole."""
    monkeypatch.setattr(fanout, "PLAN_BYTES", plan_bytes)
    monkeypatch.setattr(fanout, "MIN_SEGMENT", min_segment)
    for seed in range(4):
        got = asyncio.run(_run(True, seed))
        want = asyncio.run(_run(False, seed))
        assert want["bulk"] == 0
        assert got["bulk"] > bulk, "the bulk path must carry enough updates, or this is vacuous"
        assert got["plan_hits"] > 20  # and reuse fan-out plans
        kept, counted = got["plan_bytes"]
        assert kept == counted <= plan_bytes
        for g, w in zip(got["circuits"], want["circuits"], strict=True):
            assert g[0] == w[0]  # every byte: order, subscription ids, masks applied
            assert g[1] == w[1]  # the held client's newest update per subscription
            assert g[2] == w[2]
        for key in ("posted", "events", "states", "valid", "read", "counters"):
            assert got[key] == want[key], key
        assert sum(want["posted"]) > 3000


def test_real_ioc_bursts_through_gateway_equal_direct(tmp_path: Path) -> None:
    """The same thing end to end: a real IOC scans 300 records at once (runs of 300
    updates reach the gateway), alarms flip every other update; through the gateway a
    value+alarm and an alarm-only subscriber must see exactly the updates, in order, that
    the same subscriptions see directly on the IOC, and the bulk path must have been used."""
    from pvarchiver.ca import CAClient

    from .aio import run
    from .helpers.gateway import downstream, gateway
    from .helpers.wait import until
    from .ioc import IOC

    n = 300
    db = "".join(
        f'record(calc, "R:C{i:03d}") {{ field(SCAN, ".1 second") field(CALC, "(A+1)%4") '
        f'field(INPA, "R:C{i:03d}") field(HIGH, "2") field(HSV, "MINOR") }}\n'
        for i in range(n)
    )
    names = [f"R:C{i:03d}" for i in range(n)]

    async def watch(
        ca: CAClient, seen: dict[tuple[str, int], list[tuple[int, int, int, float]]]
    ) -> None:
        chans = [ca.create_channel(name) for name in names]
        for ch in chans:
            await ca.wait_connected(ch, 30)
        for name, ch in zip(names, chans, strict=True):
            for mask in (P.DBE_VALUE | P.DBE_ALARM, P.DBE_ALARM):
                got = seen.setdefault((name, mask), [])
                ca.subscribe(
                    ch, lambda s, ns, sev, st, v, got=got: got.append((s, ns, sev, v)), mask=mask
                )

    async def main(ioc: IOC) -> tuple[dict[Any, list[Any]], dict[Any, list[Any]], int, int]:
        via: dict[Any, list[Any]] = {}
        direct: dict[Any, list[Any]] = {}
        async with gateway(ioc) as gw:
            async with downstream(gw) as ca_gw, CAClient(ioc.client_config()) as ca_direct:
                await watch(ca_gw, via)
                await watch(ca_direct, direct)
                await until(lambda: min(len(v) for v in via.values()) >= 12)
                await asyncio.sleep(3.0)
            return via, direct, int(gw.fanout.events.sum()), gw.fanout.plan_hits

    with IOC(db, tmp_path) as ioc:
        via, direct, bulk, hits = run(main(ioc))
    assert bulk > 20 * n  # most updates took the bulk path
    assert hits > 5  # and the periodic scan reused its fan-out plans
    for key, updates in via.items():
        got, want = updates[1:], direct[key][1:]  # not the value each subscription starts with
        start = max(got[0][:2], want[0][:2])  # the window both saw
        end = min(got[-1][:2], want[-1][:2])
        a = [u for u in got if start <= u[:2] <= end]
        b = [u for u in want if start <= u[:2] <= end]
        assert a == b, key
        assert len(a) >= (20 if key[1] & P.DBE_VALUE else 10)
