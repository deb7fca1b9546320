"""The ASGI application serving the AA's paths on one port (the AA's single-Tomcat layout)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..retrieval.service import Retrieval
from .retrieval_routes import make_routes

if TYPE_CHECKING:
    from ..mgmt.service import Mgmt

log = logging.getLogger(__name__)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Never a traceback to the client; the log has it.
    log.exception("unexpected error for %s", request.url.path)
    return PlainTextResponse(f"Internal error: {type(exc).__name__}\n", status_code=500)


async def _to_ui(_request: Request) -> Response:
    return RedirectResponse("/mgmt/ui/index.html", status_code=302)


def _ui_routes() -> list[BaseRoute]:
    """The management UI (``web/ui_routes.py``), when that module is present."""
    try:
        from .ui_routes import make_ui_routes
    except ImportError:
        return []
    return list(make_ui_routes())


def build_app(retrieval: Retrieval, mgmt: Mgmt | None = None) -> Starlette:
    routes: list[BaseRoute] = list(make_routes(retrieval))
    if mgmt is not None:
        from ..mgmt.bpl_routes import make_mgmt_routes

        routes += make_mgmt_routes(mgmt)
        from ..mgmt.prometheus import make_metrics_routes

        routes += make_metrics_routes(mgmt)  # GET /metrics (Prometheus text format)
    ui = _ui_routes()
    if ui:
        routes += [Route("/mgmt", _to_ui), Route("/mgmt/", _to_ui)]
        routes += ui
    app = Starlette(routes=routes, exception_handlers={Exception: _unexpected})
    app.state.retrieval = retrieval
    app.state.mgmt = mgmt
    return app
