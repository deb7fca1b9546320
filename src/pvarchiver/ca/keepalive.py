"""Keepalive of one CA virtual circuit (pure: no sockets, time is passed in).

A circuit that has been silent for ``EPICS_CA_CONN_TMO`` may be dead (the server hung, a
cable was pulled, a NAT forgot us): the client sends an ECHO, and if nothing at all comes
back within the echo timeout the circuit is dropped, so its channels go back to the search
and reconnect when the server is reachable again. Any bytes answer an echo, as in libca:
a busy circuit is alive whether or not the ECHO reply itself has arrived yet.

:class:`Keepalive` makes those decisions. The circuit only records when it last received
bytes (one attribute store per read, no call) and the client's timer calls :meth:`poll`.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ECHO_TIMEOUT", "Keepalive", "KeepaliveAction"]

#: seconds an ECHO may stay unanswered before the circuit is taken for dead
ECHO_TIMEOUT = 5.0


class KeepaliveAction(IntEnum):
    NOTHING = 0
    SEND_ECHO = 1  #: the circuit was silent for conn_tmo: send an ECHO
    DEAD = 2  #: the ECHO went unanswered for echo_timeout: drop the circuit


class Keepalive:
    """When to ECHO one circuit and when to give it up."""

    __slots__ = ("conn_tmo", "echo_sent", "echo_timeout")

    def __init__(self, conn_tmo: float, echo_timeout: float = ECHO_TIMEOUT) -> None:
        self.conn_tmo = conn_tmo
        self.echo_timeout = echo_timeout
        self.echo_sent: float | None = None  #: when the unanswered ECHO went out

    def poll(self, now: float, last_rx: float) -> KeepaliveAction:
        """What to do at ``now`` when the circuit last received bytes at ``last_rx``.

        Call it every :meth:`tick` seconds or more often; SEND_ECHO is returned once per
        silence, DEAD once the echo is overdue (and again on later polls).
        """
        sent = self.echo_sent
        if sent is not None:
            if last_rx < sent:  # nothing since the echo went out
                if now - sent > self.echo_timeout:
                    return KeepaliveAction.DEAD
                return KeepaliveAction.NOTHING
            self.echo_sent = None  # answered (by the reply, or by any other bytes)
        if now - last_rx > self.conn_tmo:
            self.echo_sent = now
            return KeepaliveAction.SEND_ECHO
        return KeepaliveAction.NOTHING

    @property
    def waiting_for_echo(self) -> bool:
        """An ECHO went out and nothing has been seen since the latest poll."""
        return self.echo_sent is not None

    @staticmethod
    def tick(conn_tmo: float, echo_timeout: float = ECHO_TIMEOUT) -> float:
        """How often to poll: a quarter of the shorter timeout, within [0.1, 1] s."""
        return max(0.1, min(1.0, conn_tmo / 4, echo_timeout / 4))
