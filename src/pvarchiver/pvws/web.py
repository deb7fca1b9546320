"""The thin websocket layer of PVWS: ``/pvws/pv`` (and PVWS's ``/pvws/summary``) on the
archiver's Starlette app.

Each socket runs two tasks: this endpoint reads frames into its :class:`Session` and acts on
the replies (the hub subscribes, clears, writes); a writer sends what the session has due.
A client that does not read blocks the writer's send (uvicorn waits while the transport is
over its high-water mark); meanwhile the session only keeps the latest value per PV, and a
send blocked for ``stall_seconds`` ends the socket, so others never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .hub import Hub
from .session import Limits, Session

if TYPE_CHECKING:
    from ..settings import HTTPSettings, PVWSSettings

log = logging.getLogger(__name__)


@dataclass
class _Socket:
    id: int
    created: float
    session: Session
    last_client_message: float
    last_message_sent: float = 0.0
    sent: int = 0


class PVWS:
    """The websocket service: the hub, the settings, the open sockets (for the summary)."""

    def __init__(self, hub: Hub, settings: PVWSSettings, http: HTTPSettings | None) -> None:
        self.hub = hub
        self.settings = settings
        self.http = http
        self.sockets: dict[int, _Socket] = {}
        self._ids = itertools.count(1)

    def limits(self, ws: WebSocket) -> Limits:
        s = self.settings
        refusal = "PV_WRITE_SUPPORT is disabled"
        may_write = s.write
        if may_write and self.http is not None:
            from ..web.mgmt_routes import check_access

            why = check_access(cast(Request, ws), self.http.mgmt_allow_hosts, self.http.mgmt_token)
            if why is not None:
                may_write, refusal = False, f"Writes are refused: {why}"
        return Limits(
            throttle=s.throttle_ms / 1000.0,
            array_throttle=s.array_throttle_ms / 1000.0,
            max_subscriptions=s.max_subscriptions,
            may_write=may_write,
            write_refusal=refusal,
        )

    async def endpoint(self, ws: WebSocket) -> None:
        await ws.accept()
        session = Session(self.limits(ws))
        wake = asyncio.Event()
        session.wake = wake.set
        now = time.time()
        sock = _Socket(next(self._ids), now, session, now)
        self.sockets[sock.id] = sock
        self.hub.attach(session)
        writer = asyncio.create_task(self._writer(ws, sock, wake))
        reader = asyncio.create_task(self._reader(ws, sock))
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (writer, reader):
                t.cancel()
            for t in (writer, reader):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self.hub.detach(session)
            self.sockets.pop(sock.id, None)
        if (
            writer.done()
            and not writer.cancelled()
            and isinstance(writer.exception(), TimeoutError)
        ):
            log.warning(
                "pvws: socket %d dropped: it did not read for %ss",
                sock.id,
                self.settings.stall_seconds,
            )

    async def _reader(self, ws: WebSocket, sock: _Socket) -> None:
        session = sock.session
        while True:
            try:
                msg = await ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if msg["type"] == "websocket.disconnect":
                return
            sock.last_client_message = time.time()
            text = msg.get("text")
            if text is None:
                text = (msg.get("bytes") or b"").decode("utf-8", "replace")
            reply = session.on_text(text)
            for m in reply.send:
                session.push(m)
            for name in reply.subscribe:
                self.hub.subscribe(session, name)
            for name in reply.clear:
                self.hub.clear(session, name)
            if reply.write is not None:
                await self.hub.write(session, *reply.write)
            # ``ping``: PVWS answers with a websocket PING frame, which ASGI cannot send; a
            # browser never sees either, and the pong's only effect is the idle time above

    async def _writer(self, ws: WebSocket, sock: _Socket, wake: asyncio.Event) -> None:
        session = sock.session
        stall = self.settings.stall_seconds
        while True:
            wake.clear()
            msgs = session.take(time.time())
            if msgs:
                async with asyncio.timeout(stall):
                    for m in msgs:
                        await ws.send_text(m)
                sock.sent += len(msgs)
                sock.last_message_sent = time.time()
                continue
            due = session.next_due()
            timeout = None if due is None else max(0.0, due - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)

    async def summary(self, _request: Request) -> Response:
        """PVWS's ``/pvws/summary``: one row per socket (times in epoch milliseconds)."""
        rows = []
        for s in self.sockets.values():
            sess = s.session
            rows.append(
                {
                    "id": str(s.id),
                    "created": int(s.created * 1000),
                    "last_client_message": int(s.last_client_message * 1000),
                    "last_message_sent": int(s.last_message_sent * 1000),
                    "queued": sess.queued(),
                    "pvs": len(sess.pvs),
                    "arrays": sum(1 for p in sess.pvs.values() if p.meta and p.meta.is_array),
                    "max_size": sess.limits.max_subscriptions,
                    "sent": s.sent,
                }
            )
        return JSONResponse({"sockets": rows})

    async def pool(self, _request: Request) -> Response:
        """PVWS's ``/pvws/pool``: each PV served and how many sockets watch it."""
        rows = [{"refs": len(lv.sessions), "pv": name} for name, lv in self.hub.live.items()]
        return Response(json.dumps(rows), media_type="application/json")


def make_pvws_routes(service: PVWS) -> list[BaseRoute]:
    return [
        WebSocketRoute("/pvws/pv", service.endpoint),
        Route("/pvws/summary", service.summary, methods=["GET"]),
        Route("/pvws/pool", service.pool, methods=["GET"]),
    ]
