"""``GET /metrics``: the appliance's numbers in the Prometheus text format (built by
:mod:`pvarchiver.mgmt.prometheus`). Read-only, never restricted."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..mgmt.prometheus import CONTENT_TYPE, metrics_text
from ..mgmt.service import Mgmt
from ..storage.schedule import ETLScheduler


def make_metrics_routes(mgmt: Mgmt, scheduler: ETLScheduler | None = None) -> list[Route]:
    """The ``/metrics`` route; ETL stage timings are included when ``scheduler`` is given."""

    async def metrics(_request: Request) -> Response:
        return Response(await metrics_text(mgmt, scheduler), media_type=CONTENT_TYPE)

    return [Route("/metrics", metrics, methods=["GET"])]
