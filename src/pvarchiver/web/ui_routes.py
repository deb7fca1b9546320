"""``/mgmt/ui/...``: the management web UI, static files only (no build step, no internet).

The pages are plain HTML + JavaScript that call the BPL endpoints under ``/mgmt/bpl/`` and
the retrieval API, just as the AA's own UI does; this module only serves the files.

Caching: the pages and their scripts are answered with ``Cache-Control: no-cache`` so a
browser always revalidates (cheaply: Starlette sends ``ETag``/``Last-Modified`` and answers
``304``) and never runs a stale script against a newer server.  The vendored chart library
only changes with a release, so it may be cached for a day without asking.  A
Content-Security-Policy of ``'self'`` makes the "no internet at run time" promise checkable:
the browser refuses any script, style or connection to another origin.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

UI_DIR = Path(__file__).resolve().parent / "ui"
UI_PREFIX = "/mgmt/ui"

NO_CACHE = "no-cache"
VENDOR_CACHE = "public, max-age=86400"
CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)


def cache_control_for(path: str) -> str:
    """The Cache-Control value for a file under the UI directory (path relative to it)."""
    return VENDOR_CACHE if path.startswith("vendor/") else NO_CACHE


class UIStaticFiles(StaticFiles):
    """StaticFiles with the cache and security headers described in the module docstring."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        rel = path.replace("\\", "/").lstrip("/")
        response.headers["Cache-Control"] = cache_control_for(rel)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = CSP
        return response


async def _to_index(_request: object) -> RedirectResponse:
    return RedirectResponse(UI_PREFIX + "/index.html", status_code=302)


def make_ui_routes() -> list[BaseRoute]:
    """Routes serving the UI at ``/mgmt/ui/``; ``/mgmt/ui`` and ``/mgmt/ui/`` go to index.html.

    Mount these before any catch-all route.  The redirect for the bare directory keeps the
    pages' relative links (``../bpl/...``) resolving the same way as the AA's.
    """
    return [
        Route(UI_PREFIX, _to_index, methods=["GET", "HEAD"]),
        Route(UI_PREFIX + "/", _to_index, methods=["GET", "HEAD"]),
        Mount(UI_PREFIX, app=UIStaticFiles(directory=UI_DIR, html=False), name="mgmt-ui"),
    ]
