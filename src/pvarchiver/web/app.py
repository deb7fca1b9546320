"""The ASGI application serving the AA's paths on one port (the AA's single-Tomcat layout)."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..retrieval.service import Retrieval
from .retrieval_routes import make_routes

log = logging.getLogger(__name__)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Never a traceback to the client; the log has it.
    log.exception("unexpected error for %s", request.url.path)
    return PlainTextResponse(f"Internal error: {type(exc).__name__}\n", status_code=500)


def build_app(retrieval: Retrieval) -> Starlette:
    app = Starlette(routes=make_routes(retrieval), exception_handlers={Exception: _unexpected})
    app.state.retrieval = retrieval
    return app
