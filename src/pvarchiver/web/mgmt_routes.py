"""``/mgmt/bpl/<action>``: the AA's management BPL over Starlette.

Every action is a small async function registered with :func:`register_action` (other
modules, e.g. the reports, add theirs the same way). The dispatcher does what all of them
need: the body size limit, the optional access restriction of state-changing actions, the
check for unknown parameters, and turning any refusal into a 4xx JSON message
``{"status": "error", "validation": ...}``. The JSON shapes and wording are the AA's.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .manager import OperationError
from .policies import PolicyError
from .pvinput import InputError, names_from_body, split_names
from .service import Mgmt
from .typeinfo import PVTypeInfo

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 32 << 20
#: parameters any action tolerates (jQuery's cache buster, the UI's ignored reporttype)
ALWAYS_ALLOWED = {"_", "reporttype"}


class BPLError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "validation": message}, status_code=status)


@dataclass
class BPLContext:
    request: Request
    mgmt: Mgmt
    params: list[tuple[str, str]]
    body: bytes = b""
    content_type: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def one(self, key: str) -> str | None:
        vals = [v for k, v in self.params if k == key]
        return vals[-1] if vals else None

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

    def pv_names(self) -> list[str]:
        """Names from ``pv=`` (comma lists) and, for POST, the body in any AA form."""
        names = split_names([v for k, v in self.params if k == "pv"])
        if self.request.method == "POST" and self.body:
            try:
                names += names_from_body(self.content_type, self.body)
            except InputError as e:
                raise BPLError(400, str(e)) from None
        return names

    def one_pv(self) -> str:
        return self.required("pv")

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")


Handler = Callable[[BPLContext], Awaitable[Response]]


@dataclass
class Action:
    handler: Handler
    params: set[str]
    mutating: bool = False


ACTIONS: dict[str, Action] = {}


def register_action(
    name: str, handler: Handler, params: set[str] | None = None, *, mutating: bool = False
) -> None:
    """Add ``/mgmt/bpl/<name>``; ``params`` are the query/form keys it accepts (None: any)."""
    ACTIONS[name] = Action(handler, params if params is not None else {"*"}, mutating)


def action(name: str, params: set[str], mutating: bool = False) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        register_action(name, fn, params, mutating=mutating)
        return fn

    return deco


# ---------------------------------------------------------------------- access control
def _allowed_hosts() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    text = os.environ.get("PVARCHIVER_MGMT_ALLOW_HOSTS", "").strip()
    nets = []
    for part in re.split(r"[,\s]+", text):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                log.error("PVARCHIVER_MGMT_ALLOW_HOSTS: %r is not an address or network", part)
    return nets


def check_access(request: Request) -> str | None:
    """None if the client may change things, else why not. Off unless configured."""
    nets = _allowed_hosts()
    if nets:
        host = request.client.host if request.client else ""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return f"client {host!r} is not in PVARCHIVER_MGMT_ALLOW_HOSTS"
        if not any(addr in n for n in nets):
            return f"client {host} is not in PVARCHIVER_MGMT_ALLOW_HOSTS"
    token = os.environ.get("PVARCHIVER_MGMT_TOKEN", "")
    if token:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {token}":
            return "this action needs 'Authorization: Bearer <PVARCHIVER_MGMT_TOKEN>'"
    return None


# ---------------------------------------------------------------------- dispatcher
async def _read_body(request: Request, limit: int) -> bytes:
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


def load_action_modules() -> None:
    """Import every ``pvarchiver.mgmt`` module named ``*_actions`` (``bpl_actions`` and any
    other module that registers actions, e.g. reports), so that adding a module is enough."""
    import importlib
    import pkgutil

    from .. import mgmt

    for info in pkgutil.iter_modules(mgmt.__path__):
        if info.name.endswith("_actions"):
            importlib.import_module(f"{mgmt.__name__}.{info.name}")


def make_mgmt_routes(mgmt: Mgmt) -> list[Route]:
    load_action_modules()

    limit = int(os.environ.get("PVARCHIVER_MGMT_MAX_BODY", DEFAULT_MAX_BODY))

    async def dispatch(request: Request) -> Response:
        name = request.path_params["name"]
        act = ACTIONS.get(name)
        if act is None:
            return error(404, f'"{name}" is not a valid API method.')
        try:
            if act.mutating:
                denied = check_access(request)
                if denied:
                    return error(403, denied)
            params = list(request.query_params.multi_items())
            body = b""
            ctype = request.headers.get("content-type", "")
            if request.method == "POST":
                body = await _read_body(request, limit)
                if ctype.startswith("application/x-www-form-urlencoded"):
                    from urllib.parse import parse_qsl

                    form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                    params += [(k, v) for k, v in form if k != "pv"]
            if "*" not in act.params:
                unknown = sorted({k for k, _ in params} - act.params - ALWAYS_ALLOWED)
                if unknown:
                    return error(400, f"Unknown parameter(s) for {name}: {', '.join(unknown)}")
            ctx = BPLContext(request, mgmt, params, body, ctype)
            return await act.handler(ctx)
        except BPLError as e:
            return error(e.status, e.message)
        except OperationError as e:
            return error(e.status, e.message)
        except InputError as e:
            return error(400, str(e))
        except PolicyError as e:
            return error(500, str(e))
        except re.error as e:
            return error(400, f"Invalid regex: {e}")
        except Exception as e:  # a bug: logged with its traceback, the client gets JSON
            log.exception("/mgmt/bpl/%s failed", name)
            return error(500, f"Internal error in {name}: {type(e).__name__}: {e}")

    return [Route("/mgmt/bpl/{name}", dispatch, methods=["GET", "POST"])]


def typeinfo_from_body(ctx: BPLContext) -> PVTypeInfo:
    try:
        data = json.loads(ctx.body.decode("utf-8", "replace") or "null")
    except json.JSONDecodeError as e:
        raise BPLError(400, f"The body is not valid JSON: {e}") from None
    try:
        return PVTypeInfo.from_json(data)
    except ValueError as e:
        raise BPLError(400, str(e)) from None
