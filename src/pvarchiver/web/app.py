"""The ASGI application serving the AA's paths on one port (the AA's single-Tomcat layout).

Every HTTP route of the archiver is listed here; the services behind them
(:mod:`pvarchiver.retrieval`, :mod:`pvarchiver.mgmt`) know nothing of HTTP.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ..retrieval.runtime import RetrievalOptions, RetrievalRuntime
from ..retrieval.service import Retrieval
from ..settings import HTTPSettings
from .retrieval_routes import make_routes
from .ui_routes import make_ui_routes

if TYPE_CHECKING:
    from ..mgmt.service import Mgmt
    from ..pvws.web import PVWS
    from ..storage.schedule import ETLScheduler

log = logging.getLogger(__name__)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Never a traceback to the client; the log has it.
    log.exception("unexpected error for %s", request.url.path)
    return PlainTextResponse(f"Internal error: {type(exc).__name__}\n", status_code=500)


async def _to_ui(_request: Request) -> Response:
    return RedirectResponse("/mgmt/ui/index.html", status_code=302)


def build_app(
    retrieval: Retrieval,
    mgmt: Mgmt | None = None,
    http: HTTPSettings | None = None,
    etl: ETLScheduler | None = None,
    retrieval_options: RetrievalOptions | None = None,
    pvws: PVWS | None = None,
) -> Starlette:
    """``/retrieval/...`` for ``retrieval`` (the site's ``retrieval_options``, else the AA's
    defaults); with ``mgmt`` also ``/mgmt/bpl/...`` (limits and access from ``http``) and
    ``/metrics`` (ETL timings when ``etl`` is given); the UI."""
    runtime = RetrievalRuntime(retrieval_options or RetrievalOptions())
    routes: list[BaseRoute] = list(make_routes(retrieval, runtime))
    if mgmt is not None:
        from .metrics_routes import make_metrics_routes
        from .mgmt_routes import make_mgmt_routes

        routes += make_mgmt_routes(mgmt, http)
        routes += make_metrics_routes(mgmt, etl)  # GET /metrics (Prometheus text format)
    if pvws is not None:  # the PVWS websocket /pvws/pv (and /pvws/summary, /pvws/pool)
        from ..pvws.web import make_pvws_routes

        routes += make_pvws_routes(pvws)
    routes += [Route("/mgmt", _to_ui), Route("/mgmt/", _to_ui)]
    routes += make_ui_routes()
    app = Starlette(routes=routes, exception_handlers={Exception: _unexpected})
    app.state.retrieval = retrieval
    app.state.mgmt = mgmt
    return app
