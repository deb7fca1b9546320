"""The one BPL layer (``web/bpl.py``): declaring actions, listing their modules, and what the
dispatcher does for each web application's style, without a server process."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, Response

from pvarchiver.settings import HTTPSettings
from pvarchiver.web import mgmt_routes, retrieval_routes
from pvarchiver.web.bpl import Actions, BPLError, BPLStyle, Context, action_table, bpl_route


class Refused(Exception):
    pass


def _json_error(status: int, message: str) -> Response:
    return JSONResponse({"status": "error", "validation": message}, status_code=status)


def _actions() -> Actions:
    acts = Actions()

    @acts.action("echo", {"pv"})
    async def echo(ctx: Context) -> Response:
        return JSONResponse({"pv": ctx.one("pv"), "body": ctx.body.decode(), "svc": ctx.service})

    @acts.action("change", {"pv"}, mutating=True)
    async def change(ctx: Context) -> Response:
        return JSONResponse({"changed": ctx.required("pv")})

    @acts.action("anything")
    async def anything(ctx: Context) -> Response:
        return JSONResponse(sorted(k for k, _ in ctx.params))

    @acts.action("refuse", set())
    async def refuse(ctx: Context) -> Response:
        raise BPLError(409, "busy")

    @acts.action("service_error", set())
    async def service_error(ctx: Context) -> Response:
        raise Refused("no such thing")

    @acts.action("bug", set())
    async def bug(ctx: Context) -> Response:
        raise KeyError("oops")

    return acts


class Client:
    """Requests to an ASGI app in this process (httpx's ASGI transport, no server)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, **kw)

        return asyncio.run(go())

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


def _client(**style: object) -> Client:
    full: dict[str, object] = {"prefix": "/x/bpl", "error": _json_error, "unknown_status": 404}
    full.update(style)
    route = bpl_route(BPLStyle(**full), action_table([_actions()]), "the service")  # type: ignore[arg-type]

    async def unexpected(_request: object, exc: Exception) -> Response:
        return PlainTextResponse(f"Internal error: {type(exc).__name__}\n", status_code=500)

    app = Starlette(routes=[route], exception_handlers={Exception: unexpected})
    return Client(app)


def test_declared_actions_run_with_their_context() -> None:
    c = _client(body_limit=100)
    r = c.get("/x/bpl/echo", params={"pv": "A"})
    assert r.status_code == 200 and r.json() == {"pv": "A", "body": "", "svc": "the service"}
    r = c.post("/x/bpl/echo?pv=B", content=b"hello", headers={"content-type": "text/plain"})
    assert r.json()["body"] == "hello"
    # form fields are parameters, except pv= (names in a body are the action's to read)
    r = c.post("/x/bpl/anything", data={"pv": "A", "k": "v"})
    assert r.json() == ["k"]


def test_unknown_action_and_refusals_in_the_style_of_the_app() -> None:
    c = _client(known_error=lambda e: (404, str(e)) if isinstance(e, Refused) else None)
    r = c.get("/x/bpl/nope")
    assert r.status_code == 404 and r.json()["validation"] == '"nope" is not a valid API method.'
    r = c.get("/x/bpl/refuse")
    assert (r.status_code, r.json()) == (409, {"status": "error", "validation": "busy"})
    assert c.get("/x/bpl/service_error").json()["validation"] == "no such thing"
    # not caught: the app's generic handler answers
    r = c.get("/x/bpl/bug")
    assert r.status_code == 500 and r.text == "Internal error: KeyError\n"
    r = c.get("/x/bpl/change")
    assert r.status_code == 400 and r.json()["validation"] == "Missing parameter pv"


def test_parameters_checked_only_where_the_style_says() -> None:
    strict = _client(check_params=True)
    r = strict.get("/x/bpl/echo", params={"pv": "A", "pvv": "B", "_": "1", "reporttype": "x"})
    assert r.status_code == 400
    assert r.json()["validation"] == "Unknown parameter(s) for echo: pvv"
    assert strict.get("/x/bpl/anything", params={"whatever": "1"}).status_code == 200
    assert _client().get("/x/bpl/echo", params={"pv": "A", "pvv": "B"}).status_code == 200


def test_body_limit_access_and_catch_all() -> None:
    c = _client(
        body_limit=10,
        access=lambda request: None if request.headers.get("x-ok") else "not you",
        catch_all=True,
    )
    r = c.post("/x/bpl/echo", content=b"x" * 11)
    assert r.status_code == 413 and r.json()["validation"] == "Request body larger than 10 bytes"
    r = c.get("/x/bpl/change", params={"pv": "A"})
    assert r.status_code == 403 and r.json()["validation"] == "not you"
    r = c.get("/x/bpl/change", params={"pv": "A"}, headers={"x-ok": "1"})
    assert r.json() == {"changed": "A"}
    assert c.get("/x/bpl/echo").status_code == 200  # queries are never restricted
    r = c.get("/x/bpl/bug")
    assert r.status_code == 500
    assert r.json()["validation"] == "Internal error in bug: KeyError: 'oops'"


def test_action_modules_are_listed_and_names_unique() -> None:
    mgmt = action_table(m.ACTIONS for m in mgmt_routes.MGMT_ACTION_MODULES)
    assert {"archivePV", "getPVStatus", "exportConfig", "getEventRateReport"} <= set(mgmt)
    assert mgmt["archivePV"].mutating and not mgmt["getPVStatus"].mutating
    retrieval = action_table(m.ACTIONS for m in retrieval_routes.RETRIEVAL_ACTION_MODULES)
    assert set(retrieval) == {
        "getVersion",
        "getMatchingPVs",
        "searchForPVsRegex",
        "areWeArchivingPV",
        "getMetadata",
        # the rest of the AA's retrieval BPLServlet and BasicDispatcher
        "getApplianceMetrics",
        "getApplianceMetricsForAppliance",
        "getInstanceMetricsForAppliance",
        "getPVDetails",
        "getProcessMetrics",
        "getClientConfig",
        "resetFailoverCachesForThisAppliance",
        "filterArchivedPVs",
        "ping",
        "startupState",
        "postStartup",
    }
    acts = Actions()
    acts.add("getVersion", _json_error)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="declared twice"):
        action_table([acts, retrieval_routes.retrieval_actions.ACTIONS])


def test_mgmt_access_check_from_settings() -> None:
    class Req:
        def __init__(self, host: str, auth: str = "") -> None:
            self.client = type("C", (), {"host": host})()
            self.headers = {"authorization": auth} if auth else {}

    nets = (ipaddress.ip_network("10.1.2.0/24"),)
    check = mgmt_routes.check_access
    assert check(Req("10.1.2.3"), nets, "") is None  # type: ignore[arg-type]
    assert "not in PVARCHIVER_MGMT_ALLOW_HOSTS" in str(check(Req("10.9.9.9"), nets, ""))  # type: ignore[arg-type]
    assert "Bearer" in str(check(Req("10.1.2.3"), nets, "tok"))  # type: ignore[arg-type]
    assert check(Req("10.1.2.3", "Bearer tok"), nets, "tok") is None  # type: ignore[arg-type]
    style = mgmt_routes.mgmt_style(HTTPSettings(mgmt_max_body=5))
    assert style.body_limit == 5 and style.check_params and style.unknown_status == 404
