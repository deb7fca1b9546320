"""``/mgmt/bpl/<action>``: the AA's management BPL over Starlette.

The actions are declared in the modules listed in :data:`MGMT_ACTION_MODULES` (the one
declaration style of :mod:`.bpl`). What all of them need is this app's :class:`~.bpl.BPLStyle`:
the body size limit, the optional access restriction of state-changing actions, the check
for unknown parameters, and any refusal answered as the AA's JSON message
``{"status": "error", "validation": ...}`` with a 4xx status. The JSON shapes and wording
are the AA's.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..mgmt.manager import OperationError
from ..mgmt.policies import PolicyError
from ..mgmt.process_metrics import PROCESS
from ..mgmt.pvinput import InputError
from ..mgmt.registry import RegistryUnavailable
from ..mgmt.service import Mgmt
from ..settings import HTTPSettings, IPNetwork
from . import (
    mgmt_actions,
    mgmt_config_actions,
    mgmt_data_actions,
    mgmt_flag_actions,
    mgmt_list_actions,
    mgmt_metrics_actions,
    mgmt_report_actions,
    mgmt_store_actions,
)
from .bpl import BPLError, BPLStyle, action_table, bpl_route
from .mgmt_context import MgmtContext

#: every module declaring ``/mgmt/bpl`` actions; a new module is added here
MGMT_ACTION_MODULES = (
    mgmt_actions,
    mgmt_config_actions,
    mgmt_report_actions,
    mgmt_flag_actions,
    mgmt_list_actions,
    mgmt_metrics_actions,
    mgmt_store_actions,
    mgmt_data_actions,
)

__all__ = ["MGMT_ACTION_MODULES", "BPLError", "MgmtContext", "make_mgmt_routes"]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": "error", "validation": message}, status_code=status)


def check_access(request: Request, allow_hosts: Sequence[IPNetwork], token: str) -> str | None:
    """None if the client may change things, else why not. Off unless configured."""
    if allow_hosts:
        host = request.client.host if request.client else ""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return f"client {host!r} is not in PVARCHIVER_MGMT_ALLOW_HOSTS"
        if not any(addr in n for n in allow_hosts):
            return f"client {host} is not in PVARCHIVER_MGMT_ALLOW_HOSTS"
    if token:
        auth = request.headers.get("authorization", "")
        if auth != f"Bearer {token}":
            return "this action needs 'Authorization: Bearer <PVARCHIVER_MGMT_TOKEN>'"
    return None


def known_error(e: Exception) -> tuple[int, str] | None:
    """The management service's refusals as status and message."""
    if isinstance(e, OperationError):
        return e.status, e.message
    if isinstance(e, InputError):
        return 400, str(e)
    if isinstance(e, RegistryUnavailable):  # PostgreSQL lost: nothing was changed
        return 503, str(e)
    if isinstance(e, PolicyError):
        return 500, str(e)
    if isinstance(e, re.error):
        return 400, f"Invalid regex: {e}"
    return None


def mgmt_style(http: HTTPSettings) -> BPLStyle:
    allow, token = http.mgmt_allow_hosts, http.mgmt_token
    return BPLStyle(
        prefix="/mgmt/bpl",
        error=error,
        unknown_status=404,
        context=MgmtContext,
        body_limit=http.mgmt_max_body,
        check_params=True,
        access=lambda request: check_access(request, allow, token),
        known_error=known_error,
        catch_all=True,
    )


def make_mgmt_routes(mgmt: Mgmt, http: HTTPSettings | None = None) -> list[Route]:
    table = action_table(m.ACTIONS for m in MGMT_ACTION_MODULES)
    PROCESS.start()  # this process's samples for getProcessMetrics (once a minute, a day)
    return [bpl_route(mgmt_style(http or HTTPSettings()), table, mgmt)]
