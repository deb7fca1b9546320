"""Serving the archiver's ASGI app with uvicorn (the process is built by
:func:`pvarchiver.appliance.build_appliance`)."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette

from ..settings import HTTPSettings


def run(app: Starlette, http: HTTPSettings) -> None:
    """Serve until SIGINT/SIGTERM; the app's lifespan then writes every buffered sample."""
    # wsproto (a runtime dependency) for /pvws/pv whatever else is installed: the same
    # websocket code in tests, benchmarks and production
    uvicorn.run(
        app,
        host=http.host,
        port=http.port,
        log_level="info",
        timeout_graceful_shutdown=10,
        ws="wsproto",
    )
