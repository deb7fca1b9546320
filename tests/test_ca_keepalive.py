"""Keepalive of a circuit: when to ECHO, when to drop it (no sockets, explicit times)."""

from __future__ import annotations

from pvarchiver.ca.keepalive import Keepalive, KeepaliveAction

NOTHING = KeepaliveAction.NOTHING
SEND_ECHO = KeepaliveAction.SEND_ECHO
DEAD = KeepaliveAction.DEAD


def test_busy_circuit_is_never_echoed() -> None:
    ka = Keepalive(conn_tmo=30.0, echo_timeout=5.0)
    for t in range(0, 300, 1):
        assert ka.poll(now=t + 0.5, last_rx=float(t)) is NOTHING
    assert not ka.waiting_for_echo


def test_echo_after_conn_tmo_of_silence_then_dead_after_echo_timeout() -> None:
    ka = Keepalive(conn_tmo=30.0, echo_timeout=5.0)
    assert ka.poll(30.0, last_rx=0.0) is NOTHING  # not more than conn_tmo yet
    assert ka.poll(30.5, last_rx=0.0) is SEND_ECHO
    assert ka.waiting_for_echo
    assert ka.poll(31.0, last_rx=0.0) is NOTHING  # one echo per silence
    assert ka.poll(35.5, last_rx=0.0) is NOTHING  # exactly echo_timeout: not yet
    assert ka.poll(35.6, last_rx=0.0) is DEAD
    assert ka.poll(40.0, last_rx=0.0) is DEAD  # stays dead until the circuit is dropped


def test_any_bytes_answer_the_echo() -> None:
    ka = Keepalive(conn_tmo=30.0, echo_timeout=5.0)
    assert ka.poll(31.0, last_rx=0.0) is SEND_ECHO
    assert ka.poll(33.0, last_rx=32.0) is NOTHING  # a monitor update, or the ECHO reply
    assert not ka.waiting_for_echo
    assert ka.poll(62.0, last_rx=32.0) is NOTHING
    assert ka.poll(62.5, last_rx=32.0) is SEND_ECHO  # silent again for conn_tmo: a new echo
    assert ka.poll(68.0, last_rx=32.0) is DEAD


def test_late_answer_after_a_missed_poll_still_counts() -> None:
    """Bytes that came before the overdue poll keep the circuit, however late the poll."""
    ka = Keepalive(conn_tmo=1.0, echo_timeout=1.0)
    assert ka.poll(2.0, last_rx=0.0) is SEND_ECHO
    # the loop stalled; the answer was in time, so not DEAD, but silent again since 2.5 s
    assert ka.poll(10.0, last_rx=2.5) is SEND_ECHO
    assert ka.poll(10.5, last_rx=10.2) is NOTHING


def test_poll_interval() -> None:
    assert Keepalive.tick(30.0, 5.0) == 1.0
    assert Keepalive.tick(1.0, 1.0) == 0.25
    assert Keepalive.tick(0.1, 0.1) == 0.1
