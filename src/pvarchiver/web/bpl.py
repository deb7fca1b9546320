"""The one way an HTTP action is declared and run: ``/mgmt/bpl/<name>`` and
``/retrieval/bpl/<name>`` alike.

A module declares its actions on its own :class:`Actions` collection::

    ACTIONS = Actions()
    action = ACTIONS.action

    @action("getPVStatus", {"pv"})
    async def get_pv_status(ctx: MgmtContext) -> Response: ...

and the web application that serves them lists those modules explicitly
(:data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`, ...). :func:`bpl_route` is the
dispatcher: it finds the action, applies what every action of that application needs (its
:class:`BPLStyle`: error format, body limit, access check, unknown-parameter check) and
turns a refusal (:class:`BPLError`, or an exception the style knows) into a 4xx/5xx answer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger(__name__)

#: parameters any action tolerates (jQuery's cache buster, the UI's ignored reporttype)
ALWAYS_ALLOWED = frozenset({"_", "reporttype"})

T = TypeVar("T")


class BPLError(Exception):
    """A refused request: answered with ``status`` and ``message`` in the app's error format."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (files, big loops) in Starlette's thread pool, off the event loop."""
    return await run_in_threadpool(fn, *args)


# ---------------------------------------------------------------------- context
@dataclass
class Context:
    """What an action gets: the request, the service behind the app, its parameters (query
    and, for a form POST, form fields) and the raw body."""

    request: Request
    service: Any
    params: list[tuple[str, str]]
    body: bytes = b""
    content_type: str = ""

    def one(self, key: str) -> str | None:
        """The last value of ``key``, or None."""
        vals = [v for k, v in self.params if k == key]
        return vals[-1] if vals else None

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.params if k == key]

    def required(self, key: str) -> str:
        v = self.one(key)
        if v is None or not v.strip():
            raise BPLError(400, f"Missing parameter {key}")
        return v.strip()

    def flag(self, key: str) -> bool:
        v = self.one(key)
        if v is None or v == "":
            return False
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        raise BPLError(400, f"{key} must be true or false, not {v!r}")

    def int_param(self, key: str, default: int) -> int:
        v = self.one(key)
        if v is None or v == "":
            return default
        try:
            return int(v)
        except ValueError:
            raise BPLError(400, f"{key} must be an integer, not {v!r}") from None

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")


Handler = Callable[[Any], Awaitable[Response]]


# ---------------------------------------------------------------------- declaring
@dataclass(frozen=True)
class Action:
    name: str
    handler: Handler
    #: the query/form keys it accepts (None: any)
    params: frozenset[str] | None
    #: changes state: subject to the app's access check
    mutating: bool = False


class Actions:
    """The actions one module declares, in the order it declares them."""

    def __init__(self) -> None:
        self._actions: list[Action] = []

    def add(
        self,
        name: str,
        handler: Handler,
        params: Iterable[str] | None = None,
        *,
        mutating: bool = False,
    ) -> None:
        """Declare ``name``; ``params`` are the keys it accepts (None: any)."""
        keys = frozenset(params) if params is not None else None
        self._actions.append(Action(name, handler, keys, mutating))

    def action(
        self, name: str, params: Iterable[str] | None = None, *, mutating: bool = False
    ) -> Callable[[Handler], Handler]:
        """The decorator form of :meth:`add`."""

        def deco(fn: Handler) -> Handler:
            self.add(name, fn, params, mutating=mutating)
            return fn

        return deco

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions)


def action_table(collections: Iterable[Actions]) -> dict[str, Action]:
    """One app's actions by name; a name declared twice is a bug, found at start."""
    table: dict[str, Action] = {}
    for coll in collections:
        for act in coll:
            if act.name in table:
                raise RuntimeError(f"BPL action {act.name!r} is declared twice")
            table[act.name] = act
    return table


# ---------------------------------------------------------------------- running
@dataclass(frozen=True)
class BPLStyle:
    """How one web application answers: the parts of dispatching that differ between the
    AA's mgmt and retrieval BPLs (the AA's own differences, kept for its clients)."""

    #: e.g. ``/mgmt/bpl``
    prefix: str
    #: the response for a refusal
    error: Callable[[int, str], Response]
    #: the status for an action name nobody declared
    unknown_status: int
    context: type[Context] = Context
    #: read the body of a POST up to this many bytes, and its form fields (None: not read)
    body_limit: int | None = None
    #: refuse parameters an action did not declare
    check_params: bool = False
    #: why a mutating action is refused to this request (None: allowed)
    access: Callable[[Request], str | None] | None = None
    #: status and message for exceptions of the services behind the app (None: not one)
    known_error: Callable[[Exception], tuple[int, str] | None] = lambda _e: None
    #: answer any other exception as a logged 500 in the app's format (False: re-raise,
    #: the app's generic 500 handler answers)
    catch_all: bool = False


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past ``limit`` bytes (declared or actually sent)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BPLError(413, f"Request body larger than {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BPLError(413, f"Request body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _context(style: BPLStyle, act: Action, request: Request, service: object) -> Context:
    params = list(request.query_params.multi_items())
    body = b""
    ctype = request.headers.get("content-type", "")
    if request.method == "POST" and style.body_limit is not None:
        body = await read_body(request, style.body_limit)
        if ctype.startswith("application/x-www-form-urlencoded"):
            form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
            params += [(k, v) for k, v in form if k != "pv"]  # pv=: the action reads the body
    if style.check_params and act.params is not None:
        unknown = sorted({k for k, _ in params} - act.params - ALWAYS_ALLOWED)
        if unknown:
            raise BPLError(400, f"Unknown parameter(s) for {act.name}: {', '.join(unknown)}")
    return style.context(request, service, params, body, ctype)


def bpl_route(style: BPLStyle, actions: Mapping[str, Action], service: object) -> Route:
    """``<prefix>/{name}`` (GET and POST) running ``actions`` against ``service``."""

    async def dispatch(request: Request) -> Response:
        name = request.path_params["name"]
        act = actions.get(name)
        if act is None:
            return style.error(style.unknown_status, f'"{name}" is not a valid API method.')
        try:
            if act.mutating and style.access is not None:
                denied = style.access(request)
                if denied:
                    return style.error(403, denied)
            ctx = await _context(style, act, request, service)
            return await act.handler(ctx)
        except BPLError as e:
            return style.error(e.status, e.message)
        except Exception as e:
            known = style.known_error(e)
            if known is not None:
                return style.error(*known)
            if not style.catch_all:
                raise
            # a bug: logged with its traceback, the client gets the app's error format
            log.exception("%s/%s failed", style.prefix, name)
            return style.error(500, f"Internal error in {name}: {type(e).__name__}: {e}")

    return Route(style.prefix + "/{name}", dispatch, methods=["GET", "POST"])
