"""Channel lifecycle of a CA client (pure: no sockets, time is passed in).

Every channel the client holds is in one state::

    INVALID      bad PV name: never searched, never connected
    SEARCHING    in the search scheduler (new, or lost its server)
    CONNECTING   a server answered; the circuit to it is being opened
    CREATING     CREATE_CHAN went out on a circuit
    CONNECTED    the server answered CREATE_CHAN
    FOLLOWING    follows another channel (``REC.HIHI`` follows ``REC``) that is not
                 connected: created on that one's circuit when it connects, never searched

A lost circuit, CREATE_CH_FAIL or SERVER_DISCONN takes a channel back to SEARCHING with
its backoff restarted (a follower to FOLLOWING); a failed connect to a server does the
same for the channels that waited for it. A cleared channel is forgotten.

:class:`Lifecycle` holds the states and the :class:`~pvarchiver.ca.search.SearchScheduler`
of the channels being searched, and says what to do on each event (open a circuit, send
CREATE_CHAN); the asyncio layer does it and tells the channel's callbacks.
"""

from __future__ import annotations

from enum import IntEnum

from .search import SearchScheduler

__all__ = ["ChannelState", "Found", "Lifecycle"]

Server = tuple[str, int]


class ChannelState(IntEnum):
    INVALID = 0
    SEARCHING = 1
    CONNECTING = 2
    CREATING = 3
    CONNECTED = 4
    FOLLOWING = 5


class Found(IntEnum):
    """What to do with a search reply (:meth:`Lifecycle.found`)."""

    IGNORE = 0  #: not searching (a duplicate reply, or cleared): nothing
    CREATE = 1  #: a circuit to the server is up: send CREATE_CHAN on it
    CONNECT = 2  #: open a circuit to the server, then :meth:`Lifecycle.circuit_up`
    WAIT = 3  #: a circuit to the server is being opened already


class Lifecycle:
    """The state of every channel (by cid) and what each event means for it."""

    def __init__(self, max_search_period: float) -> None:
        self.search = SearchScheduler(max_search_period)
        self._state: dict[int, ChannelState] = {}
        self._names: dict[int, str] = {}
        self._followers: set[int] = set()
        self._connecting: dict[Server, list[int]] = {}

    def state(self, cid: int) -> ChannelState | None:
        """The channel's state (None: never added, or cleared)."""
        return self._state.get(cid)

    def __contains__(self, cid: int) -> bool:
        return cid in self._state

    @property
    def unresolved(self) -> int:
        """Channels being searched."""
        return len(self.search)

    # ------------------------------------------------------------------ events
    def add(
        self, cid: int, name: str, now: float, *, valid: bool = True, follows: bool = False
    ) -> ChannelState:
        """A new channel: INVALID, FOLLOWING (see :meth:`attach`) or SEARCHING from ``now``."""
        self._names[cid] = name
        if not valid:
            state = ChannelState.INVALID
        elif follows:
            self._followers.add(cid)
            state = ChannelState.FOLLOWING
        else:
            self.search.add(cid, name, now)
            state = ChannelState.SEARCHING
        self._state[cid] = state
        return state

    def found(self, cid: int, server: Server, now: float, circuit_up: bool) -> Found:
        """A search reply names ``server`` for ``cid``; ``circuit_up``: we have a circuit there."""
        if self._state.get(cid) is not ChannelState.SEARCHING:
            return Found.IGNORE
        self.search.found(cid, now)
        if circuit_up:
            self._state[cid] = ChannelState.CREATING
            return Found.CREATE
        self._state[cid] = ChannelState.CONNECTING
        waiting = self._connecting.get(server)
        if waiting is not None:
            waiting.append(cid)
            return Found.WAIT
        self._connecting[server] = [cid]
        return Found.CONNECT

    def circuit_up(self, server: Server) -> list[int]:
        """The circuit to ``server`` is open: the channels to send CREATE_CHAN for."""
        out = []
        for cid in self._connecting.pop(server, ()):
            if self._state.get(cid) is ChannelState.CONNECTING:
                self._state[cid] = ChannelState.CREATING
                out.append(cid)
        return out

    def circuit_failed(self, server: Server, now: float) -> list[int]:
        """Opening the circuit failed: the channels that waited for it are searched again."""
        out = []
        for cid in self._connecting.pop(server, ()):
            if self._state.get(cid) is ChannelState.CONNECTING:
                self.lost(cid, now)
                out.append(cid)
        return out

    def attach(self, cid: int) -> bool:
        """A follower's channel is connected: send CREATE_CHAN on its circuit (True) or not."""
        if self._state.get(cid) is not ChannelState.FOLLOWING:
            return False
        self._state[cid] = ChannelState.CREATING
        return True

    def connected(self, cid: int) -> bool:
        """The server answered CREATE_CHAN; False if the channel is not being created."""
        if self._state.get(cid) is not ChannelState.CREATING:
            return False
        self._state[cid] = ChannelState.CONNECTED
        return True

    def lost(self, cid: int, now: float) -> bool:
        """The channel lost its server (or was refused); True if it was connected.

        It is searched again from ``now`` with the backoff restarted; a follower waits
        for the channel it follows instead.
        """
        state = self._state.get(cid)
        if state is None or state is ChannelState.INVALID:
            return False
        if cid in self._followers:
            self._state[cid] = ChannelState.FOLLOWING
        elif state is not ChannelState.SEARCHING:
            self._state[cid] = ChannelState.SEARCHING
            self.search.add(cid, self._names[cid], now)
        return state is ChannelState.CONNECTED

    def clear(self, cid: int) -> None:
        """The channel is dropped: forget it (replies and answers for it are ignored)."""
        self._state.pop(cid, None)
        self._names.pop(cid, None)
        self._followers.discard(cid)
        self.search.remove(cid)

    def research(self, now: float) -> int:
        """A server appeared or restarted: search every unresolved channel now (backoff
        restarted, still rate-limited). Returns how many."""
        return self.search.reset(now)

    def close(self) -> None:
        """Forget every channel."""
        for cid in list(self._state):
            self.clear(cid)
        self._connecting.clear()
