"""A client circuit's own state (up/closed) and its pending GETs/PUTs, without sockets.

Every way a request can end is driven directly: its answer, an ECA error, a server ERROR
naming it, a malformed payload, a late answer after the caller gave up, the circuit lost or
closed with requests in flight. The waiters are plain strings: the state never touches them.
"""

from __future__ import annotations

import pytest

from pvarchiver.ca import dbr
from pvarchiver.ca import protocol as P
from pvarchiver.ca.circuit_state import (
    CircuitPhase,
    CircuitRequestError,
    CircuitState,
    Completion,
    RequestKind,
)

SERVER = ("10.0.0.7", 5064)
DOUBLE = 6  # DBR_DOUBLE


def state() -> CircuitState[str]:
    return CircuitState(SERVER)


def test_greeting_brings_the_circuit_up_once() -> None:
    cs = state()
    assert cs.phase is CircuitPhase.CONNECTING and not cs.closed
    hello = cs.opened("alice", "host1")
    assert hello == P.version() + P.client_name("alice") + P.host_name("host1")
    assert cs.phase is CircuitPhase.UP
    cs.lost()
    cs.opened("alice", "host1")  # a late connection_made cannot reopen a closed circuit
    assert cs.closed


def test_get_answer_is_decoded_for_its_waiter_and_the_entry_goes() -> None:
    cs = state()
    cs.opened("u", "h")
    cs.request(7, RequestKind.GET, "w7", DOUBLE)
    cs.request(8, RequestKind.GET, "w8", DOUBLE, as_array=True)
    assert cs.pending == 2
    payload, n = dbr.encode(DOUBLE, [1.0, 2.0])
    done = cs.reply(P.READ_NOTIFY, DOUBLE, n, P.ECA_NORMAL, 8, payload)
    assert done is not None and done.waiter == "w8"
    assert list(done.result().value) == [1.0, 2.0]
    assert cs.pending == 1
    assert cs.reply(P.READ_NOTIFY, DOUBLE, n, P.ECA_NORMAL, 8, payload) is None  # repeated
    payload, n = dbr.encode(DOUBLE, 2.5)
    done = cs.reply(P.READ_NOTIFY, DOUBLE, n, P.ECA_NORMAL, 7, payload)
    assert done is not None and done.waiter == "w7" and done.result().value == 2.5
    assert cs.pending == 0


def test_put_answer_carries_nothing() -> None:
    cs = state()
    cs.request(3, RequestKind.PUT, "p", DOUBLE)
    done = cs.reply(P.WRITE_NOTIFY, DOUBLE, 1, P.ECA_NORMAL, 3, b"")
    assert done is not None and done.kind is RequestKind.PUT and done.result() is None


def test_eca_error_fails_only_that_request() -> None:
    cs = state()
    cs.request(1, RequestKind.PUT, "a", DOUBLE)
    cs.request(2, RequestKind.GET, "b", DOUBLE)
    done = cs.reply(P.WRITE_NOTIFY, DOUBLE, 1, 114, 1, b"")  # 114: ECA_PUTFAIL
    assert done is not None and done.waiter == "a"
    with pytest.raises(CircuitRequestError, match="ECA status 114") as e:
        done.result()
    assert not e.value.disconnected
    assert cs.pending == 1 and not cs.closed


def test_malformed_payload_fails_the_request_not_the_circuit() -> None:
    cs = state()
    cs.request(5, RequestKind.GET, "g", DOUBLE)
    done = cs.reply(P.READ_NOTIFY, DOUBLE, 4, P.ECA_NORMAL, 5, b"\x00\x01")  # 4 doubles?
    assert done is not None
    with pytest.raises(CircuitRequestError, match="cannot decode DBR type 6"):
        done.result()
    assert not cs.closed


def test_server_error_naming_the_request_fails_it() -> None:
    cs = state()
    cs.request(9, RequestKind.GET, "g", DOUBLE)
    assert cs.refused(10, "no such request") is None
    done = cs.refused(9, "Read access denied")
    assert done is not None and done.waiter == "g"
    with pytest.raises(CircuitRequestError, match="Read access denied"):
        done.result()
    assert cs.pending == 0


def test_an_answer_after_the_caller_gave_up_is_ignored() -> None:
    cs = state()
    cs.request(4, RequestKind.GET, "late", DOUBLE)
    cs.give_up(4)
    cs.give_up(4)  # twice is harmless
    payload, n = dbr.encode(DOUBLE, 1.0)
    assert cs.reply(P.READ_NOTIFY, DOUBLE, n, P.ECA_NORMAL, 4, payload) is None


@pytest.mark.parametrize(("end", "why"), [("lost", "circuit to"), ("close", "client closed")])
def test_end_of_circuit_fails_every_pending_request_as_disconnected(end: str, why: str) -> None:
    cs = state()
    cs.opened("u", "h")
    for i, kind in enumerate([RequestKind.GET, RequestKind.PUT, RequestKind.GET]):
        cs.request(i, kind, f"w{i}", DOUBLE)
    done: list[Completion[str]] = getattr(cs, end)()
    assert cs.closed and cs.pending == 0
    assert sorted(d.waiter for d in done) == ["w0", "w1", "w2"]
    for d in done:
        with pytest.raises(CircuitRequestError, match=why) as e:
            d.result()
        assert e.value.disconnected
    if end == "lost":
        assert str(SERVER) in str(e.value)
    assert getattr(cs, end)() == []  # nothing left to fail a second time


def test_no_request_on_a_closed_circuit() -> None:
    cs = state()
    cs.lost()
    with pytest.raises(CircuitRequestError) as e:
        cs.request(1, RequestKind.GET, "w", DOUBLE)
    assert e.value.disconnected and cs.pending == 0
