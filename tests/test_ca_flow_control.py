"""FlowControl: EVENTS_OFF / EVENTS_ON decisions from read sizes, the kernel's backlog and
the time (no sockets, explicit times). tests/test_ca_flow.py checks the same against an IOC."""

from __future__ import annotations

from pvarchiver.ca.flow import (
    EVENTS_ON_IDLE,
    FLOW_CONTROL_READS,
    FLOW_CONTROL_SECONDS,
    MIN_FULL_READ,
    FlowAction,
    FlowControl,
)

FULL = 262144  # what asyncio reads at most at once
BACKLOG = 1 << 20  # the kernel still holds this much after the read


def feed(flow: FlowControl, reads: list[tuple[float, int, int | None]]) -> list[FlowAction]:
    """Play (time, size, waiting) reads the way the circuit does; the decisions made."""
    out = []
    for now, n, waiting in reads:
        if n >= flow.full_size:
            out.append(flow.full_read(n, waiting, now))
        elif flow.armed:
            out.append(flow.short_read())
    return [a for a in out if a is not FlowAction.NOTHING]


def lasting_backlog(start: float, reads: int, gap: float) -> list[tuple[float, int, int | None]]:
    return [(start + i * gap, FULL, BACKLOG) for i in range(reads)]


def test_lasting_backlog_sends_events_off_once() -> None:
    flow = FlowControl()
    # the first read teaches the transport's read size; then 20 full reads over 1.9 s
    acts = feed(flow, lasting_backlog(0.0, 2 * FLOW_CONTROL_READS, 0.1))
    assert acts == [FlowAction.EVENTS_OFF]
    assert flow.events_off and flow.offs == 1
    assert flow.full_size == FULL


def test_short_stall_is_not_flow_controlled() -> None:
    """Ten full reads within 0.3 s (a GC pass): the backlog drains by itself."""
    flow = FlowControl()
    reads = lasting_backlog(0.0, FLOW_CONTROL_READS + 5, 0.02)
    assert (FLOW_CONTROL_READS + 4) * 0.02 < FLOW_CONTROL_SECONDS
    assert feed(flow, [*reads, (0.4, 5000, None)]) == []
    assert not flow.events_off and not flow.armed


def test_run_of_full_reads_is_broken_by_a_short_one() -> None:
    flow = FlowControl()
    reads = lasting_backlog(0.0, FLOW_CONTROL_READS - 1, 0.1)
    reads.append((1.0, 1000, None))  # caught up for a moment
    reads += lasting_backlog(1.1, FLOW_CONTROL_READS - 1, 0.1)
    assert feed(flow, reads) == []
    assert feed(flow, [(2.1, FULL, BACKLOG)]) == [FlowAction.EVENTS_OFF]


def test_first_short_read_sends_events_on() -> None:
    flow = FlowControl()
    feed(flow, lasting_backlog(0.0, FLOW_CONTROL_READS + 1, 0.1))
    assert flow.events_off
    assert feed(flow, lasting_backlog(1.1, 5, 0.1)) == []  # still behind: nothing more
    assert feed(flow, [(2.0, 100, None)]) == [FlowAction.EVENTS_ON]
    assert not flow.events_off and not flow.armed
    assert feed(flow, [(2.1, 100, None)]) == []  # steady flow: no call at all


def test_whole_bursts_of_the_usual_size_are_not_a_backlog() -> None:
    """A scan of many records arrives as one burst of the same size each period, read whole:
    the kernel holds nothing after it, so it is not a full read."""
    flow = FlowControl()
    bursts = [(0.1 * i, 70000, 0) for i in range(100)]
    assert feed(flow, bursts) == []
    assert flow.full_reads == 0 and not flow.events_off


def test_without_the_kernel_check_the_read_size_alone_decides() -> None:
    """Windows (no FIONREAD): equal bursts look full, as in libca."""
    flow = FlowControl()
    bursts = [(0.1 * i, 70000, None) for i in range(FLOW_CONTROL_READS + 1)]
    assert feed(flow, bursts) == [FlowAction.EVENTS_OFF]


def test_a_small_kernel_backlog_counts_as_caught_up() -> None:
    flow = FlowControl()
    feed(flow, lasting_backlog(0.0, FLOW_CONTROL_READS + 1, 0.1))
    assert flow.events_off
    assert feed(flow, [(1.2, FULL, MIN_FULL_READ - 1)]) == [FlowAction.EVENTS_ON]


def test_reads_under_the_minimum_never_count() -> None:
    flow = FlowControl()
    assert feed(flow, [(0.1 * i, MIN_FULL_READ - 1, BACKLOG) for i in range(50)]) == []
    assert flow.full_size == MIN_FULL_READ


def test_silence_after_events_off_brings_events_on() -> None:
    """The backlog can drain in reads that all look full, and a server holding events then
    sends nothing: silence must bring EVENTS_ON or monitors would stay off for good."""
    flow = FlowControl()
    feed(flow, lasting_backlog(0.0, FLOW_CONTROL_READS, 0.1))
    assert flow.events_off
    last_rx = 0.9
    assert flow.idle(now=0.9 + EVENTS_ON_IDLE / 2, last_rx=last_rx) is FlowAction.RECHECK
    assert flow.idle(now=0.9 + EVENTS_ON_IDLE, last_rx=last_rx) is FlowAction.EVENTS_ON
    assert not flow.events_off and not flow.armed
    assert flow.idle(now=5.0, last_rx=last_rx) is FlowAction.NOTHING  # already on


def test_events_off_again_after_a_new_lasting_backlog() -> None:
    flow = FlowControl()
    feed(flow, lasting_backlog(0.0, FLOW_CONTROL_READS, 0.1))
    feed(flow, [(1.0, 10, None)])
    assert not flow.events_off
    acts = feed(flow, lasting_backlog(2.0, FLOW_CONTROL_READS, 0.1))
    assert acts == [FlowAction.EVENTS_OFF] and flow.offs == 2


def test_thresholds_are_parameters() -> None:
    flow = FlowControl(reads=2, seconds=0.0, min_full_read=64, idle_delay=0.001)
    assert feed(flow, [(0.0, 64, 1000), (0.0, 64, 1000)]) == [FlowAction.EVENTS_OFF]
    assert flow.idle(0.001, 0.0) is FlowAction.EVENTS_ON
