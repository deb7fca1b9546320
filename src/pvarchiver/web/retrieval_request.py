"""Two request options of the AA's DataRetrievalServlet that change what a data request
reads or writes, kept apart from the routing: ``usereduced`` and ``fetchLatestMetadata``.

``usereduced=true`` (Java's ``Boolean.parseBoolean``: "true" in any case, anything else is
false) with no post-processor (neither ``pp`` nor ``op(PV)``) selects the site's
``DefaultUseReducedPostProcessor`` (``archappl.properties``; the AA ships TwoWeekRaw): raw
samples for the last two weeks, ``firstSample`` (900 s bins) before that. A request that names
a post-processor ignores it, as the AA does.

``fetchLatestMetadata=true`` adds what the engine knows of the PV now (every field of its
latest metadata: limits, DESC, archive fields ...) to the response's ``meta``; without it
``meta`` holds the PV's ``EGU`` and ``PREC`` (from its typeinfo, else from the engine), as
the AA's stream headers merged with the typeinfo do.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

from ..retrieval.times import Instant

log = logging.getLogger(__name__)

TWO_WEEKS = 14 * 86400

#: AA post-processor classes a site may name as its DefaultUseReducedPostProcessor, by
#: simple class name -> the post-processor spec here ("" = raw data, None = TwoWeekRaw)
_REDUCED_CLASSES: dict[str, str | None] = {
    "TwoWeekRaw": None,
    "DefaultRawPostProcessor": "",
    "FirstSamplePP": "firstSample",
    "LastSample": "lastSample",
    "FirstFill": "firstFill",
    "LastFill": "lastFill",
    "Mean": "mean",
    "Min": "min",
    "Max": "max",
    "Median": "median",
    "Count": "count",
    "StandardDeviation": "std",
    "Optimized": "optimized",
    "OptimizedWithLastSample": "optimLastSample",
    "CAPlotBinning": "caplotbinning",
}

Span = tuple[Instant, Instant, str | None]


def java_bool(text: str | None) -> bool:
    """``Boolean.parseBoolean``: only "true" (any case) is true."""
    return text is not None and text.strip().lower() == "true"


def reduced_default(class_name: str) -> str | None:
    """The spec for the site's DefaultUseReducedPostProcessor (None: TwoWeekRaw; "": raw).
    An unknown class gives raw data, as the AA does after logging that it cannot make one."""
    simple = class_name.strip().rsplit(".", 1)[-1]
    if simple in _REDUCED_CLASSES:
        return _REDUCED_CLASSES[simple]
    log.warning(
        "DefaultUseReducedPostProcessor %s is not known here; usereduced gives raw data", class_name
    )
    return ""


def spans(
    start: Instant,
    end: Instant,
    pp: str | None,
    use_reduced: bool,
    reduced_class: str,
    now: float | None = None,
) -> list[Span]:
    """The pieces a request reads: ``[(start, end, pp)]``, or with ``usereduced`` and no
    ``pp`` the site default's pieces (TwoWeekRaw: sparsified before two weeks ago, raw after)."""
    if pp or not use_reduced:
        return [(start, end, pp)]
    spec = reduced_default(reduced_class)
    if spec is not None:
        return [(start, end, spec or None)]
    cut = int(time.time() if now is None else now) - TWO_WEEKS
    cut_at: Instant = (cut, 0)
    if end[0] <= cut:
        return [(start, end, "firstSample")]
    if start[0] < cut:
        return [(start, cut_at, "firstSample"), (cut_at, end, None)]
    return [(start, end, None)]


def shape_meta(
    name: str,
    engine: Mapping[str, str],
    units: str | None,
    precision: float | None,
    fetch_latest: bool,
) -> dict[str, str]:
    """A response's ``meta``: ``name``, then ``EGU`` (when not empty) and ``PREC`` from the
    PV's typeinfo (``units``/``precision``; None without one), else from the engine, else
    PREC "0"; with ``fetch_latest`` every field of the engine's latest metadata (``engine``)
    as well, the engine's values winning, as the AA's ``mergeFrom`` puts them last."""
    engine = {k: str(v) for k, v in engine.items() if v not in (None, "") and k != "name"}
    egu = units or engine.get("EGU", "")
    prec = engine.get("PREC", "0")
    if precision is not None and math.isfinite(precision):
        prec = str(int(precision))
    out = {"name": name}
    if egu:
        out["EGU"] = egu
    out["PREC"] = prec
    if fetch_latest:
        out.update(engine)
    return out
