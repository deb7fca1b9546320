"""Channel lifecycle: search -> connect -> create -> connected -> lost (no sockets, explicit
times). The searches that go out are read from the scheduler the lifecycle feeds."""

from __future__ import annotations

from pvarchiver.ca import protocol as P
from pvarchiver.ca.lifecycle import ChannelState, Found, Lifecycle

S = ChannelState
IOC = ("10.0.0.1", 5064)
OTHER = ("10.0.0.2", 5064)


def searched(life: Lifecycle, now: float) -> list[int]:
    """Channel ids in the search datagrams due at ``now``."""
    cids = []
    for body in life.search.poll(now):
        for msg in P.iter_messages(body):
            assert msg.cmd == P.SEARCH
            cids.append(msg.p2)
    return cids


def test_new_channel_is_searched_at_once() -> None:
    life = Lifecycle(max_search_period=60.0)
    assert life.add(1, "A", now=0.0) is S.SEARCHING
    assert life.unresolved == 1
    assert searched(life, 0.0) == [1]


def test_first_reply_opens_a_circuit_the_others_wait_for_it() -> None:
    life = Lifecycle(60.0)
    for cid in (1, 2, 3):
        life.add(cid, f"PV{cid}", 0.0)
    searched(life, 0.0)
    assert life.found(1, IOC, 0.01, circuit_up=False) is Found.CONNECT
    assert life.found(2, IOC, 0.01, circuit_up=False) is Found.WAIT
    assert life.found(2, IOC, 0.02, circuit_up=False) is Found.IGNORE  # second reply
    assert life.found(3, OTHER, 0.02, circuit_up=False) is Found.CONNECT
    assert life.state(1) is S.CONNECTING and life.unresolved == 0
    assert life.circuit_up(IOC) == [1, 2]
    assert life.state(1) is S.CREATING
    assert life.connected(1) and life.connected(2)
    assert life.state(2) is S.CONNECTED
    assert not life.connected(2)  # not being created: an unasked reply changes nothing


def test_reply_for_a_server_with_a_circuit_creates_at_once() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    assert life.found(1, IOC, 0.01, circuit_up=True) is Found.CREATE
    assert life.state(1) is S.CREATING


def test_failed_connect_searches_the_waiting_channels_again() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    life.add(2, "B", 0.0)
    searched(life, 0.0)
    life.found(1, IOC, 0.01, False)
    life.found(2, IOC, 0.01, False)
    life.clear(2)  # cleared while waiting: forgotten
    assert life.circuit_failed(IOC, 1.0) == [1]
    assert life.state(1) is S.SEARCHING and life.state(2) is None
    assert searched(life, 1.0) == [1]  # backoff restarted: due at once


def test_lost_connection_goes_back_to_search_with_backoff_restarted() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    searched(life, 0.0)
    life.found(1, IOC, 0.01, True)
    life.connected(1)
    assert life.lost(1, now=100.0) is True  # was connected: tell the callbacks
    assert life.state(1) is S.SEARCHING
    assert searched(life, 100.0) == [1]
    assert life.lost(1, now=100.5) is False  # already searching: nothing changes
    assert life.search.tries(1) == 1


def test_refused_while_creating_is_not_a_disconnect() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    life.found(1, IOC, 0.01, True)
    assert life.lost(1, 0.02) is False  # CREATE_CH_FAIL / SERVER_DISCONN
    assert life.state(1) is S.SEARCHING


def test_follower_is_never_searched() -> None:
    life = Lifecycle(60.0)
    life.add(1, "REC", 0.0)
    assert life.add(2, "REC.HIHI", 0.0, follows=True) is S.FOLLOWING
    assert searched(life, 0.0) == [1]
    life.found(1, IOC, 0.01, True)
    life.connected(1)
    assert life.attach(2) and life.state(2) is S.CREATING  # CREATE_CHAN on REC's circuit
    assert not life.attach(2)  # sent once
    assert life.connected(2)
    assert life.lost(2, 5.0) is True  # circuit lost: waits for REC, no search
    assert life.state(2) is S.FOLLOWING and life.unresolved == 0
    assert life.lost(1, 5.0) is True
    assert searched(life, 5.0) == [1]


def test_follower_refused_waits_for_the_next_connect() -> None:
    life = Lifecycle(60.0)
    life.add(2, "calc.DRVH", 0.0, follows=True)
    assert life.attach(2)
    assert life.lost(2, 1.0) is False  # CREATE_CH_FAIL: the field does not exist
    assert life.state(2) is S.FOLLOWING
    assert life.attach(2)  # tried again when the channel it follows connects again


def test_invalid_name_is_never_searched_nor_connected() -> None:
    life = Lifecycle(60.0)
    assert life.add(1, "bad name", 0.0, valid=False) is S.INVALID
    assert searched(life, 0.0) == []
    assert life.found(1, IOC, 0.0, True) is Found.IGNORE
    assert not life.attach(1) and not life.lost(1, 1.0)
    assert life.state(1) is S.INVALID


def test_cleared_channel_ignores_late_replies() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    life.clear(1)
    assert 1 not in life
    assert life.found(1, IOC, 0.01, True) is Found.IGNORE
    assert not life.connected(1) and not life.lost(1, 1.0)
    assert searched(life, 0.0) == []


def test_research_restarts_every_unresolved_backoff() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    life.add(2, "B", 0.0)
    life.found(2, IOC, 0.01, True)
    t = 0.0
    for _ in range(8):  # let A's backoff grow
        t = life.search.next_wakeup() or t
        searched(life, t)
    assert life.search.next_wakeup() - t > 1.0  # type: ignore[operator]
    assert life.research(now=t + 0.5) == 1  # a beacon anomaly: only A is unresolved
    assert searched(life, t + 0.5) == [1]


def test_close_forgets_everything() -> None:
    life = Lifecycle(60.0)
    life.add(1, "A", 0.0)
    life.found(1, IOC, 0.0, False)
    life.add(2, "B", 0.0)
    life.close()
    assert life.unresolved == 0 and life.state(1) is None
    assert life.circuit_up(IOC) == []
