"""Pure tests of the search scheduler: backoff, batching, AIMD window, reset (simulated time)."""

from __future__ import annotations

import itertools

from pvarchiver.ca import protocol as P
from pvarchiver.ca.search import MAX_WINDOW, MIN_PERIOD, PAYLOAD_LIMIT, SearchScheduler


def cids_in(body: bytes) -> list[int]:
    return [m.p1 for m in P.iter_messages(body) if m.cmd == P.SEARCH]


def run_until_quiet(
    s: SearchScheduler, answer: set[int] | None, t: float = 0.0, limit: float = 60.0
) -> tuple[float, list[int]]:
    """Poll at every wake-up; answer (found) the cids in ``answer`` (None = all) at once."""
    frames_per_poll: list[int] = []
    while t < limit:
        bodies = s.poll(t)
        if bodies:
            frames_per_poll.append(len(bodies))
        for body in bodies:
            assert len(body) + 16 <= PAYLOAD_LIMIT
            for cid in cids_in(body):
                if answer is None or cid in answer:
                    s.found(cid, t + 0.0005)
        nxt = s.next_wakeup()
        if nxt is None:
            return t, frames_per_poll
        t = max(nxt, t + 1e-6)
    return t, frames_per_poll


def test_ten_thousand_served_names_batched_with_slow_start() -> None:
    s = SearchScheduler(max_period=300)
    for cid in range(1, 10_001):
        s.add(cid, f"B:C{cid:05d}", 0.0)
    t, frames = run_until_quiet(s, None)
    assert len(s) == 0 and s.stats.responses == 10_000
    # ~31 names per datagram: about 10,000 * 32 B / 1008 B datagrams, not 10,000
    assert s.stats.requests == 10_000
    assert 300 <= s.stats.datagrams <= 340
    # slow start: 1, 2, 4, ... frames per tick, never more than the cap
    assert frames[:5] == [1, 2, 4, 8, 16]
    assert max(frames) <= MAX_WINDOW
    assert t < 1.0  # simulated seconds: a dozen ticks


def test_missing_names_back_off_and_shrink_the_window() -> None:
    s = SearchScheduler(max_period=5.0)
    for cid in range(1, 1_001):
        s.add(cid, f"GONE:{cid:04d}", 0.0)
    t = 0.0
    sends: dict[int, list[float]] = {}
    while t < 120.0:
        for body in s.poll(t):
            for cid in cids_in(body):
                sends.setdefault(cid, []).append(t)
        nxt = s.next_wakeup()
        assert nxt is not None
        t = max(nxt, t + 1e-6)
    assert s.window == 1.0 and s.stats.window_cuts == 0  # never grew: nothing answered
    # ~32 datagrams per round at one per tick: nobody waits more than a round past due
    gaps = [b - a for a, b in itertools.pairwise(sends[1])]
    assert max(gaps) <= 5.0 + 32 * MIN_PERIOD + 0.1
    assert all(ts[-1] > 120.0 - 5.0 - 2.0 for ts in sends.values())  # never given up
    # rate bound: one datagram per tick at most while nothing answers
    assert s.stats.datagrams <= 120.0 / MIN_PERIOD + 1


def test_one_missing_name_backs_off_exponentially_to_the_cap() -> None:
    s = SearchScheduler(max_period=5.0)
    s.add(1, "GONE", 0.0)
    t, sends = 0.0, []
    while t < 60.0:
        if s.poll(t):
            sends.append(t)
        t = s.next_wakeup() or 60.0
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(sends)]
    assert gaps[:4] == [MIN_PERIOD, 2 * MIN_PERIOD, 4 * MIN_PERIOD, 8 * MIN_PERIOD]
    assert max(gaps) == 5.0 and gaps[-1] == 5.0


def test_missing_names_mixed_in_do_not_stall_and_unanswered_datagrams_cut() -> None:
    s = SearchScheduler(max_period=300)
    for cid in range(1, 5_001):
        s.add(cid, f"B:C{cid:05d}", 0.0)
    # only even cids exist: every first-pass datagram still gets answers, so the window grows
    # (judging names, half missing would look like heavy loss); the retries then carry only
    # missing names, nobody answers, and the window is cut
    served = {c for c in range(1, 5_001) if c % 2 == 0}
    _, frames = run_until_quiet(s, served, limit=2.0)
    assert max(frames) >= 16
    assert s.stats.responses == len(served)
    assert s.stats.window_cuts >= 1


def test_server_starting_late_is_found_within_the_max_period() -> None:
    s = SearchScheduler(max_period=5.0)
    s.add(7, "LATE:PV", 0.0)
    t, up_at, found_at = 0.0, 30.0, None
    while found_at is None:
        for body in s.poll(t):
            if t >= up_at and 7 in cids_in(body):
                assert s.found(7, t)
                found_at = t
        nxt = s.next_wakeup()
        if nxt is None:
            break
        t = nxt
    assert found_at is not None and found_at - up_at <= 5.0 + MIN_PERIOD


def test_reset_makes_everything_due_but_keeps_the_rate_limit() -> None:
    s = SearchScheduler(max_period=300)
    for cid in range(1, 3_001):
        s.add(cid, f"GONE:{cid:04d}", 0.0)
    t = 0.0
    while t < 600:  # everyone backed off to the 300 s cap
        s.poll(t)
        t = max(s.next_wakeup() or t, t + 1e-6)
    wake = s.next_wakeup()
    assert wake is not None
    assert s.reset(t) == 3_000
    assert s.next_wakeup() == t or s.next_wakeup() <= t + MIN_PERIOD
    bodies = s.poll(t + MIN_PERIOD)
    assert len(bodies) <= max(1, int(s.window))  # not all ~100 datagrams in one burst
    assert s.stats.resets == 1


def test_found_remove_and_duplicates() -> None:
    s = SearchScheduler(max_period=10)
    s.add(1, "A", 0.0)
    s.add(2, "B", 0.0)
    assert s.poll(0.0)
    assert s.tries(1) == 1
    assert s.found(1, 0.001) and not s.found(1, 0.002)  # second reply ignored
    s.remove(2)
    assert len(s) == 0 and s.next_wakeup() is None
    assert s.poll(100.0) == []
    s.add(2, "B", 100.0)  # lost its server again: searched at once, fresh backoff
    assert cids_in(s.poll(100.0)[0]) == [2]


def test_found_then_lost_before_the_old_retry_is_searched_once() -> None:
    """A name answered and lost again (CREATE_CH_FAIL, a dropped circuit) before its old
    retry slot came due must not match that slot too: it was searched twice per datagram."""
    s = SearchScheduler(60.0)
    s.add(1, "A", 0.0)
    assert len(s.poll(0.0)) == 1  # retry slot at 0.032 stays in the heap
    s.found(1, 0.01)
    s.add(1, "A", 0.02)
    (body,) = s.poll(0.05)
    assert [m.p2 for m in P.iter_messages(body)] == [1]
