"""The SCAN schedule (issue 21): only SCAN PVs are in it, due ones come out in time order,
each once per period, with no catch-up burst and nothing done while none is due."""

from __future__ import annotations

from pvarchiver.engine.scan import ScanSchedule


def test_due_pvs_come_out_once_per_period() -> None:
    s = ScanSchedule()
    s.add("A", 1.0, 0.0)
    s.add("B", 2.5, 0.0)
    assert s.seconds_until_next(0.0) == 1.0
    assert s.due(0.5) == []
    ticks = {t / 10: s.due(t / 10) for t in range(1, 61)}
    got = [(t, n) for t, names in ticks.items() for n in names]
    assert got == [
        (1.0, "A"),
        (2.0, "A"),
        (2.5, "B"),
        (3.0, "A"),
        (4.0, "A"),
        (5.0, "A"),
        (5.0, "B"),
        (6.0, "A"),
    ]


def test_a_late_caller_gets_one_tick_not_a_burst() -> None:
    s = ScanSchedule()
    s.add("A", 1.0, 0.0)
    assert s.due(10.3) == ["A"]  # ten periods late: one tick
    assert s.due(10.9) == []
    assert s.seconds_until_next(10.9) is not None
    assert abs(s.seconds_until_next(10.9) - 0.4) < 1e-9  # type: ignore[operator]


def test_removed_and_re_added_names_tick_on_their_new_schedule_only() -> None:
    s = ScanSchedule()
    s.add("A", 1.0, 0.0)
    s.add("B", 1.0, 0.0)
    s.remove("B")
    s.add("A", 5.0, 0.5)  # a new period replaces the old schedule
    assert "B" not in s and len(s) == 1
    assert s.due(2.0) == []
    assert s.due(5.5) == ["A"]
    s.remove("A")
    assert s.seconds_until_next(6.0) is None


def test_stale_entries_do_not_pile_up() -> None:
    s = ScanSchedule()
    for i in range(10_000):
        s.add("A", 1.0, float(i))  # re-added over and over
    s.due(1e9)
    assert s.heap_size < 200
