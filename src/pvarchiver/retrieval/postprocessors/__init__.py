"""The AA's retrieval post-processors (``pp=mean_600`` or ``mean_600(PV)``).

Lookup follows ``PostProcessors.findPostProcessor``: the user string is matched with
``startswith`` against the registered names in registration order, and every operator that
supports "no fill" is registered a second time, just before itself, as ``<name>Sample``
(``meanSample_600`` = mean without repeating values into empty bins). Arguments are
``spec.split("_")[1:]`` as in Java (trailing empty parts dropped). Checked for this order:
no registered name is a prefix of a later one (``ncount`` is not matched by ``count``,
``meanSample`` comes before ``mean``, ``optimLastSample`` and ``optimized`` share only
``optim``), so every name reaches its own operator.

Like the AA, every result goes through its merge rule "at most one sample before ``from``,
the latest" (:func:`._common.first_event_rule`): the bin ``firstBin-1`` made from the last
sample before ``from`` is sent only while no later result is also before ``from``.

Deliberate deviations from the AA (see also each operator's docstring):

* an unknown name or a bad argument raises :class:`PostProcessorError` (HTTP 400); the AA
  silently returns raw data for an unknown name and answers 404 for a bad argument;
* arguments must be positive where the AA would divide by them or loop forever (bin sizes,
  ``optimized``'s N, ``nth``'s n), and ADEL / numStdDev must be finite (numStdDev >= 0);
* ``count`` and ``ncount`` also count samples of non-numeric PVs (the AA's count throws);
  numeric operators refuse string / V4 PVs with PostProcessorError instead of failing in
  the middle of the response; an empty waveform counts as NaN (the AA throws);
* the AA's binned operators keep state per source stream (per store and year); here the
  whole merged stream is one stream, so results do not depend on where stores split data
  (ignoreflyers/flyers compute one statistic per bin, not one per store piece of a bin);
* where a sample lies exactly at ``from`` the AA's summaries drop their last bin if another
  sample lies before ``from`` (a bug only reachable with several stores); not reproduced;
* ``optimLastSample`` fills every empty bin with ``[L,0,L,L,0,L]`` (the AA repeats the full
  previous bin for the gap just before the last bin), and its ``...Sample`` variant really
  skips empty bins (the AA's no-fill switch does not reach that operator); a range shorter
  than N seconds gives 1 s bins (the AA divides by zero);
* caplotbinning drops output samples whose (whole-second) timestamp does not increase;
* lastFill writes the sample before ``from`` also when the range has no data (as firstFill
  and lastSample do; older AA versions of lastFill did not);
* scalar results carry ``elementCount`` 1 for waveform inputs (the AA copies the input's);
* the ``identity`` of a ``...Sample`` variant keeps ``Sample`` (the AA's extension drops it).

Statistics agree with commons-math to rounding, not bit for bit (see :mod:`.stats`);
``linear`` and ``loess`` follow commons-math's algorithms operation by operation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from typing import Protocol

from ...pb import PayloadType
from ..model import Chunk
from ._common import Instant, PostProcessorError, java_double_str
from .filters import DeadBand, Flyers, NCount, Nth
from .samples import CAPlotBinning, FirstFill, FirstSample, LastFill, LastSample
from .stats import (
    COUNT,
    ERRORBAR,
    JITTER,
    KURTOSIS,
    LINEAR,
    LOESS,
    MAX,
    MEAN,
    MEDIAN,
    MIN,
    POPVARIANCE,
    SKEWNESS,
    STATS,
    STD,
    VARIANCE,
)
from .summary import Optimized, Summary

__all__ = [
    "REGISTERED",
    "PostProcessor",
    "PostProcessorError",
    "parse_post_processor",
    "split_function_syntax",
]

DEFAULT_INTERVAL = 900  # PostProcessors.DEFAULT_SUMMARIZING_INTERVAL
DEFAULT_POINTS = 1000
DEFAULT_NUM_DEV = 3.0
DEFAULT_ADEL = 1.0


class PostProcessor(Protocol):
    identity: str

    def output_type(self, input_type: PayloadType) -> PayloadType:
        """Type of the result for ``input_type``; raises PostProcessorError if the operator
        does not apply (e.g. ``mean`` of a string PV). For ``optimized`` this is the binned
        type; with few samples the raw samples (input type) are sent instead."""
        ...

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        """The post-processed stream (lazy; chunks with ``raw=None``)."""
        ...


# ----------------------------------------------------------------------------- arguments


def _java_split(spec: str) -> list[str]:
    parts = spec.split("_")
    while len(parts) > 1 and parts[-1] == "":
        parts.pop()
    return parts


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?")


def _positive_int(spec: str, text: str, what: str) -> int:
    if not _INT.fullmatch(text) or not 0 < int(text) <= 2**31 - 1:
        raise PostProcessorError(
            f"invalid argument {text!r} in post processor {spec!r}: {what} must be a "
            "positive whole number"
        )
    return int(text)


def _finite_float(spec: str, text: str, what: str) -> float:
    value = float(text.strip().rstrip("fFdD")) if _FLOAT.fullmatch(text.strip()) else math.nan
    if not math.isfinite(value):
        raise PostProcessorError(
            f"invalid argument {text!r} in post processor {spec!r}: {what} must be a number"
        )
    return value


def _arg(spec: str, index: int) -> str | None:
    """``userarg.split("_")[index]`` when the spec has a ``_`` at all (else the default)."""
    if "_" not in spec:
        return None
    parts = _java_split(spec)
    if len(parts) <= index:
        if index == 1:  # the AA indexes [1] whenever there is a "_": "mean_" fails there
            raise PostProcessorError(f"post processor {spec!r} lacks its argument after '_'")
        return None
    return parts[index]


def _interval(spec: str) -> int:
    text = _arg(spec, 1)
    return DEFAULT_INTERVAL if text is None else _positive_int(spec, text, "the bin size (s)")


def _ext(name: str, arg: str | None) -> str:
    """The AA's getExtension: the name alone for default arguments."""
    return name if arg is None else f"{name}_{arg}"


# ----------------------------------------------------------------------------- factories

Factory = Callable[[str, str, bool], PostProcessor]  # (spec, registered name, fill)


def _summary(kind: str) -> Factory:
    def make(spec: str, name: str, fill: bool) -> PostProcessor:
        interval = _interval(spec)
        ident = _ext(name, None if interval == DEFAULT_INTERVAL else str(interval))
        return Summary(ident, kind, interval, fill)

    return make


def _binned(cls: type) -> Factory:
    def make(spec: str, name: str, fill: bool) -> PostProcessor:
        interval = _interval(spec)
        ident = _ext(name, None if interval == DEFAULT_INTERVAL else str(interval))
        return cls(ident, interval)  # type: ignore[no-any-return]

    return make


def _flyers(keep: bool) -> Factory:
    def make(spec: str, name: str, fill: bool) -> PostProcessor:
        interval = _interval(spec)
        text = _arg(spec, 2)
        num_dev = DEFAULT_NUM_DEV if text is None else _finite_float(spec, text, "numStdDev")
        if num_dev < 0:
            raise PostProcessorError(f"numStdDev must not be negative in {spec!r}")
        default = interval == DEFAULT_INTERVAL and float(num_dev) == DEFAULT_NUM_DEV
        ident = name if default else f"{name}_{interval}_{java_double_str(num_dev, single=True)}"
        return Flyers(ident, interval, num_dev, keep)

    return make


def _optimized(with_last: bool) -> Factory:
    def make(spec: str, name: str, fill: bool) -> PostProcessor:
        text = _arg(spec, 1)
        points = (
            DEFAULT_POINTS if text is None else _positive_int(spec, text, "the number of points")
        )
        ident = _ext(name, None if points == DEFAULT_POINTS else str(points))
        return Optimized(ident, points, fill, with_last)

    return make


def _nth(spec: str, name: str, fill: bool) -> PostProcessor:
    text = _arg(spec, 1)
    n = DEFAULT_INTERVAL if text is None else _positive_int(spec, text, "n")
    return Nth(_ext(name, None if n == DEFAULT_INTERVAL else str(n)), n)


def _ncount(spec: str, name: str, fill: bool) -> PostProcessor:
    return NCount()


def _deadband(spec: str, name: str, fill: bool) -> PostProcessor:
    text = _arg(spec, 1)
    adel = DEFAULT_ADEL if text is None else _finite_float(spec, text, "ADEL")
    ident = name if adel == DEFAULT_ADEL else f"{name}_{java_double_str(adel)}"
    return DeadBand(ident, adel)


# (name, factory, has a "...Sample" no-fill variant) in the AA's registration order
_ORDER: list[tuple[str, Factory, bool]] = [
    ("firstSample", _binned(FirstSample), False),
    ("mean", _summary(MEAN), True),
    ("jitter", _summary(JITTER), True),
    ("std", _summary(STD), True),
    ("ignoreflyers", _flyers(False), False),
    ("flyers", _flyers(True), False),
    ("linear", _summary(LINEAR), True),
    ("loess", _summary(LOESS), True),
    ("median", _summary(MEDIAN), True),
    ("variance", _summary(VARIANCE), True),
    ("popvariance", _summary(POPVARIANCE), True),
    ("kurtosis", _summary(KURTOSIS), True),
    ("skewness", _summary(SKEWNESS), True),
    ("firstFill", _binned(FirstFill), False),
    ("lastFill", _binned(LastFill), False),
    ("lastSample", _binned(LastSample), False),
    ("max", _summary(MAX), True),
    ("min", _summary(MIN), True),
    ("count", _summary(COUNT), True),
    ("ncount", _ncount, False),
    ("nth", _nth, False),
    ("stats", _summary(STATS), True),
    ("optimLastSample", _optimized(True), True),
    ("optimized", _optimized(False), True),
    ("caplotbinning", _binned(CAPlotBinning), False),
    ("deadBand", _deadband, False),
    ("errorbar", _summary(ERRORBAR), True),
]

#: (key, factory, fill) in lookup order, the no-fill variant just before its operator.
_REGISTRY: list[tuple[str, Factory, bool]] = []
for _name, _factory, _has_variant in _ORDER:
    if _has_variant:
        _REGISTRY.append((_name + "Sample", _factory, False))
    _REGISTRY.append((_name, _factory, True))

#: Every name that resolves, in lookup order.
REGISTERED: tuple[str, ...] = tuple(key for key, _f, _fill in _REGISTRY)


def _lookup(spec: str) -> tuple[str, Factory, bool] | None:
    for key, factory, fill in _REGISTRY:
        if spec.startswith(key):
            return key, factory, fill
    return None


def parse_post_processor(spec: str) -> PostProcessor:
    """The operator for a ``pp`` value such as ``mean_600``, ``firstSample``,
    ``optimized_2000``, ``ignoreflyers_900_2.5``, ``meanSample_600``, ``deadBand_0.5``."""
    spec = spec.strip()
    found = _lookup(spec)
    if found is None:
        raise PostProcessorError(
            f"unknown post processor {spec!r}; known: {', '.join(n for n, _f, _s in _ORDER)}"
        )
    key, factory, fill = found
    return factory(spec, key, fill)


_CALL = re.compile(r"([A-Za-z][A-Za-z0-9_.+-]*)\((.*)\)", re.DOTALL)


def split_function_syntax(pvname: str) -> tuple[str, str | None]:
    """``mean_600(X:Y)`` -> ``("X:Y", "mean_600")``; ``mean(X:Y,600)`` -> ``("X:Y",
    "mean_600")`` (extra arguments are appended with ``_``, spaces around them ignored);
    ``X:Y`` -> ``("X:Y", None)``.

    The AA treats any name containing ``(`` as a call (and answers 400 "Unbalanced paran"
    without ``)``), so PV names with parentheses cannot be read there. Here a name is a call
    only if it is ``op(...)``: ``op`` a word of letters, digits and ``_ . + -`` starting with a
    letter, the closing parenthesis last. An unknown ``op`` is still a call, so that a typo
    is reported (400 from :func:`parse_post_processor`) rather than looked up as a PV.
    Anything else, e.g. ``RING:BPM(3)`` (a ``:`` before the parenthesis) or an unbalanced
    ``mean(X``, is a plain PV name. The first comma separates the PV name from the arguments,
    and the PV name may contain parentheses itself: ``mean(A:B(1))`` reads ``A:B(1)``. This
    never raises.
    """
    m = _CALL.fullmatch(pvname)
    if m is None:
        return pvname, None
    op, inner = m.group(1), m.group(2)
    name, *args = inner.split(",")
    name = name.strip()
    if not name:
        return pvname, None
    pp = "_".join([op, *(a.strip() for a in args)]) if args else op
    return name, pp
