"""The column buffer of ArchivedPV: compact rows, values that do not fit, requeue order."""

from __future__ import annotations

from pvarchiver.engine.archived_pv import ArchivedPV, Buffer
from pvarchiver.engine.budget import MemoryBudget
from pvarchiver.engine.metrics import DropReason
from pvarchiver.pb import PayloadType

NOW = 1_700_000_000


def make(ptype: PayloadType) -> ArchivedPV:
    pv = ArchivedPV("T:PV", ptype, MemoryBudget(1 << 20), clock=lambda: NOW)
    pv.on_connect(ptype)
    return pv


def test_numeric_rows_are_array_columns_and_bad_values_are_counted() -> None:
    pv = make(PayloadType.SCALAR_INT)
    assert pv.on_event(NOW, 1, 0, 0, 7)
    assert not pv.on_event(NOW + 1, 0, 0, 0, 2**40)  # does not fit DBR_LONG
    assert not pv.on_event(NOW + 2, 0, 0, 0, "seven")
    assert pv.on_event(NOW + 3, 0, 2, 3, -5)
    b = pv.buffer
    assert b.typecode == "i" and b.objs is None  # packed rows, no Python object per value
    assert [b.row(i) for i in range(len(b))] == [(NOW, 1, 7, 0, 0), (NOW + 3, 0, -5, 2, 3)]
    assert pv.metrics.drops[DropReason.BAD_VALUE] == 2
    assert pv.budget.used == 2 * 32  # rows cost their column bytes, not Python objects


def test_object_values_stay_in_a_list_and_requeue_keeps_order() -> None:
    pv = make(PayloadType.SCALAR_STRING)
    pv.on_event(NOW, 0, 0, 0, "a")
    first = pv.take_buffer()
    pv.on_event(NOW + 1, 0, 0, 0, "b")
    pv.set_field("EGU", "mm")
    pv.requeue(first)  # the write of `first` failed
    b = pv.buffer
    assert isinstance(b.vals, list)
    assert [s.val for s in b.samples()] == ["a", "b"]
    assert b.samples()[0].fields and "startup" in b.samples()[0].fields


def test_snapshot_has_whole_rows_only() -> None:
    b = Buffer("d")
    for i in range(3):
        b.append(NOW + i, 0, float(i), 0, 0)
    b.data += b.struct.pack(NOW + 9, 0, 9.0, 0, 0)[:10]  # a row half appended (torn)
    snap = b.snapshot()
    assert len(snap) == 3 and list(snap.vals) == [0.0, 1.0, 2.0]
