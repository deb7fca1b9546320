"""Straightforward reference versions of the post-processors, for the property tests in
``test_postprocessors.py`` (the references' own checks are in ``test_postprocessors_ref.py``).

Written from the AA's rules (see ``pvarchiver.retrieval.postprocessors``), sample by sample
with plain Python lists and loops, sharing no code with the numpy implementation. Each
function takes the whole input as a list of Samples and returns the expected output rows as
``(secs, nanos, val, severity, status, fields)`` tuples.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable

from pvarchiver.pb import Sample

NS = 1_000_000_000
Row = tuple[int, int, object, int, int, dict[str, str] | None]
Stat = Callable[[list[float]], object]


def ns(t: tuple[int, int] | Sample) -> int:
    if isinstance(t, Sample):
        return t.secs * NS + t.nanos
    return t[0] * NS + t[1]


def number(v: object) -> float:
    if isinstance(v, bytes):
        return float(int.from_bytes(v[:1], "big", signed=True)) if v else math.nan
    if isinstance(v, list):
        return number(v[0]) if v else math.nan
    return float(v)  # type: ignore[arg-type]


def raw_row(s: Sample, keep_fields: bool = True) -> Row:
    fields = dict(s.fields) if (keep_fields and s.fields) else None
    return (s.secs, s.nanos, s.val, s.severity, s.status, fields)


def has_field(s: Sample, name: str) -> bool:
    return bool(s.fields) and name in s.fields  # type: ignore[operator]


def collapse_before(rows: list[Row], start: tuple[int, int]) -> list[Row]:
    """The AA merge's rule: of the leading rows before ``start`` only the latest is sent."""
    out: list[Row] = []
    pending: Row | None = None
    released = False
    for r in rows:
        if not released:
            if r[0] * NS + r[1] < ns(start):
                pending = r
                continue
            released = True
            if pending is not None:
                out.append(pending)
        out.append(r)
    if not released and pending is not None:
        out.append(pending)
    return out


# ----------------------------------------------------------------------------- statistics


def _clean(vals: list[float]) -> list[float]:
    return [v for v in vals if not math.isnan(v)]


def st_mean(vals: list[float]) -> float:
    v = _clean(vals)
    return sum(v) / len(v) if v else math.nan


def st_var(vals: list[float]) -> float:
    v = _clean(vals)
    if not v:
        return math.nan
    if len(v) == 1:
        return 0.0
    m = sum(v) / len(v)
    return sum((x - m) ** 2 for x in v) / (len(v) - 1)


def st_std(vals: list[float]) -> float:
    return math.sqrt(st_var(vals)) if not math.isnan(st_var(vals)) else math.nan


def st_popvar(vals: list[float]) -> float:
    v = _clean(vals)
    if not v:
        return math.nan
    m = sum(v) / len(v)
    return sum((x - m) ** 2 for x in v) / len(v)


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def st_jitter(vals: list[float]) -> float:
    return _div(st_std(vals), st_mean(vals))


def st_min(vals: list[float]) -> float:
    v = _clean(vals)
    return min(v) if v else math.nan


def st_max(vals: list[float]) -> float:
    v = _clean(vals)
    return max(v) if v else math.nan


def st_count(vals: list[float]) -> float:
    return float(len(_clean(vals)))


def st_median(vals: list[float]) -> float:
    v = sorted(_clean(vals))
    n = len(v)
    if n == 0:
        return math.nan
    if n % 2:
        return v[n // 2]
    lo, hi = v[n // 2 - 1], v[n // 2]
    return lo + 0.5 * (hi - lo)


def st_skewness(vals: list[float]) -> float:
    v = _clean(vals)
    n = len(v)
    if n < 3:
        return math.nan
    m = sum(v) / n
    var = sum((x - m) ** 2 for x in v) / (n - 1)
    third = sum((x - m) ** 3 for x in v)
    return _div(n * third, (n - 1) * (n - 2) * var * math.sqrt(var))


def st_kurtosis(vals: list[float]) -> float:
    v = _clean(vals)
    n = len(v)
    if n < 4:
        return math.nan
    m = sum(v) / n
    var = sum((x - m) ** 2 for x in v) / (n - 1)
    fourth = sum((x - m) ** 4 for x in v)
    scaled = _div(fourth, var * var)
    return n * (n + 1) / ((n - 1) * (n - 2) * (n - 3)) * scaled - 3 * (n - 1) ** 2 / (
        (n - 2) * (n - 3)
    )


def st_stats(vals: list[float]) -> list[float]:
    return [st_mean(vals), st_std(vals), st_min(vals), st_max(vals), st_count(vals)]


def linear_at(xs: list[float], ys: list[float], c: float) -> float:
    """LinearInterpolator through (xs, ys) at c; the first y where commons-math throws."""
    n = len(xs)
    if n < 2 or any(xs[i + 1] <= xs[i] for i in range(n - 1)) or not xs[0] <= c <= xs[-1]:
        return ys[0]
    i = n - 2
    for k in range(n - 1):
        if xs[k] <= c < xs[k + 1]:
            i = k
            break
    slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
    return (c - xs[i]) * slope + ys[i]


def loess_at(xs: list[float], ys: list[float], c: float) -> float:
    """commons-math LoessInterpolator (0.3, 2 iterations, 1e-12) + natural cubic spline."""
    n = len(xs)
    ok = all(math.isfinite(x) for x in xs) and all(math.isfinite(y) for y in ys)
    ok = ok and all(xs[i + 1] > xs[i] for i in range(n - 1))
    bw = int(0.3 * n)
    if not ok or n < 3 or bw < 2 or not xs[0] <= c <= xs[-1]:
        return ys[0]
    weights = [1.0] * n
    fit = [0.0] * n
    res = [0.0] * n
    for it in range(3):
        left, right = 0, bw - 1
        for i in range(n):
            x = xs[i]
            if i > 0 and right + 1 < n and xs[right + 1] - x < x - xs[left]:
                left += 1
                right += 1
            edge = left if x - xs[left] > xs[right] - x else right
            denom = abs(1.0 / (xs[edge] - x))
            sw = sx = sxx = sy = sxy = 0.0
            for k in range(left, right + 1):
                d = abs(xs[k] - x) * denom
                tmp = 1 - d * d * d
                tri = 0.0 if d >= 1 else tmp * tmp * tmp
                w = tri * weights[k]
                sw += w
                sx += xs[k] * w
                sxx += xs[k] * (xs[k] * w)
                sy += ys[k] * w
                sxy += ys[k] * (xs[k] * w)
            mx, my, mxy, mxx = _div(sx, sw), _div(sy, sw), _div(sxy, sw), _div(sxx, sw)
            spread = mxx - mx * mx
            beta = 0.0 if math.sqrt(abs(spread)) < 1e-12 else (mxy - mx * my) / spread
            fit[i] = beta * x + (my - beta * mx)
            res[i] = abs(ys[i] - fit[i])
        if it == 2:
            break
        med = sorted(res)[n // 2]
        if abs(med) < 1e-12:
            break
        weights = []
        for r in res:
            arg = r / (6 * med)
            w = 1 - arg * arg
            weights.append(0.0 if arg >= 1 else w * w)
    return _natural_spline(xs, fit, c)


def _natural_spline(x: list[float], y: list[float], v: float) -> float:
    n = len(x) - 1
    h = [x[i + 1] - x[i] for i in range(n)]
    mu = [0.0] * (n + 1)
    z = [0.0] * (n + 1)
    for i in range(1, n):
        g = 2 * (x[i + 1] - x[i - 1]) - h[i - 1] * mu[i - 1]
        mu[i] = h[i] / g
        rhs = 3 * (y[i + 1] * h[i - 1] - y[i] * (x[i + 1] - x[i - 1]) + y[i - 1] * h[i])
        z[i] = (rhs / (h[i - 1] * h[i]) - h[i - 1] * z[i - 1]) / g
    c = [0.0] * (n + 1)
    for j in range(n - 1, -1, -1):
        c[j] = z[j] - mu[j] * c[j + 1]
    j = min(bisect.bisect_right(x, v) - 1, n - 1)
    b = (y[j + 1] - y[j]) / h[j] - h[j] * (c[j + 1] + 2 * c[j]) / 3
    d = (c[j + 1] - c[j]) / (3 * h[j])
    t = v - x[j]
    return y[j] + t * (b + t * (c[j] + t * d))


# ----------------------------------------------------------------------------- binned


def _centre(b: int, interval: int) -> tuple[int, int]:
    return b * interval + interval // 2, (500_000_000 if interval % 2 else 0)


def summary(
    samples: list[Sample],
    start: tuple[int, int],
    end: tuple[int, int],
    interval: int,
    stat: Stat | str,
    fill: str,
) -> list[Row]:
    """SummaryStatsPostProcessor; ``stat`` is a function of the bin's values, or "linear" /
    "loess" (functions of the bin's samples and centre); fill is repeat/zero/none."""
    first_bin, last_bin = start[0] // interval, end[0] // interval
    before: Sample | None = None
    exact = False
    bins: dict[int, list[Sample]] = {}
    for s in samples:
        t = ns(s)
        if t < ns(start):
            before = s
        elif t <= ns(end):
            exact = exact or t == ns(start)
            bins.setdefault(s.secs // interval, []).append(s)

    def compute(b: int, ss: list[Sample]) -> object:
        if stat in ("linear", "loess"):
            xs = [s.secs + s.nanos / 1e9 for s in ss]
            ys = [number(s.val) for s in ss]
            c = float(b * interval + interval // 2)
            return linear_at(xs, ys, c) if stat == "linear" else loess_at(xs, ys, c)
        return stat([number(s.val) for s in ss])  # type: ignore[operator]

    results: dict[int, tuple[object, int, bool, dict[str, str] | None]] = {}
    if before is not None and not exact:
        results[first_bin - 1] = (compute(first_bin - 1, [before]), 0, False, None)
    for b, ss in bins.items():
        results[b] = (
            compute(b, ss),
            max(s.severity for s in ss),
            any(has_field(s, "cnxregainedepsecs") for s in ss),
            None,
        )
    return _write_bins(results, interval, last_bin, fill)


def _write_bins(
    results: dict[int, tuple[object, int, bool, dict[str, str] | None]],
    interval: int,
    last_bin: int,
    fill: str,
) -> list[Row]:
    out: list[Row] = []
    if not results:
        return out
    prev = None
    for b in range(min(results), last_bin + 1):
        if b in results:
            prev = results[b]
        elif fill == "none" or prev is None:
            continue
        elif fill == "zero":
            prev = (0.0, 0, False, None)
        secs, nanos = _centre(b, interval)
        value, sev, conn, extra = prev
        fields: dict[str, str] = {}
        if conn:
            fields["connectionChange"] = "true"
        fields.update(extra or {})
        out.append((secs, nanos, value, sev, 0, fields or None))
    return out


def errorbar(samples, start, end, interval, fill):  # type: ignore[no-untyped-def]
    """mean, with the standard deviation as field ``stdz`` (compared numerically)."""
    rows_mean = summary(samples, start, end, interval, st_mean, fill)
    rows_std = summary(samples, start, end, interval, st_std, fill)
    out = []
    for m, s in zip(rows_mean, rows_std, strict=True):
        fields = dict(m[5] or {})
        fields["stdz"] = s[2]  # a float here; the test parses the implementation's string
        out.append((*m[:5], fields))
    return out


def optimized(samples, start, end, points, fill):  # type: ignore[no-untyped-def]
    interval = max(1, (end[0] - start[0]) // points)
    before = None
    exact = False
    inside = []
    for s in samples:
        if ns(s) < ns(start):
            before = s
        elif ns(s) <= ns(end):
            exact = exact or ns(s) == ns(start)
            inside.append(s)
    fed = ([before] if before is not None and not exact else []) + inside
    if len(fed) <= points:
        return [raw_row(s) for s in fed]
    return summary(samples, start, end, interval, st_stats, "repeat" if fill else "none")


def optim_last_sample(samples, start, end, points, fill):  # type: ignore[no-untyped-def]
    millis = ns(end) // 1_000_000 - ns(start) // 1_000_000
    interval = max(1, millis // (1000 * points))
    first_bin, last_bin = start[0] // interval, end[0] // interval
    before = None
    bins: dict[int, list[Sample]] = {}
    for s in samples:
        b = s.secs // interval
        if b < first_bin:
            before = s
        elif b <= last_bin:
            bins.setdefault(b, []).append(s)
    if not bins:
        return []
    fed = ([before] if before is not None else []) + [s for ss in bins.values() for s in ss]
    if len(fed) <= points:
        return [raw_row(s) for s in fed]
    groups: list[tuple[int, list[Sample], int, bool]] = []
    if before is not None:
        groups.append((first_bin - 1, [before], 0, False))
    for b, ss in bins.items():
        sev = max(s.severity for s in ss)
        groups.append((b, ss, sev, any(has_field(s, "cnxregainedepsecs") for s in ss)))
    running = 0.0
    data: dict[int, tuple[list[float], int, bool]] = {}
    for b, ss, sev, conn in groups:
        vals = [number(s.val) for s in ss]
        for v in vals:
            if not math.isnan(v):
                running = v
        data[b] = ([*st_stats(vals), running], sev, conn)
    out: list[Row] = []
    keys = sorted(data)
    for b in range(keys[0], last_bin + 1):
        if b in data:
            vec, sev, conn = data[b]
        elif not fill:
            continue
        else:
            k = bisect.bisect_left(keys, b)
            last = data[keys[k - 1]][0][5]
            vec = [last, 0.0, last, last, 0.0, last]
            nxt = keys[k] if k < len(keys) else keys[-1]
            _v, sev, conn = data[nxt]
        secs, nanos = _centre(b, interval)
        out.append((secs, nanos, vec, sev, 0, {"connectionChange": "true"} if conn else None))
    return out


# ----------------------------------------------------------------------------- selections


def _by_bin(samples, start, end, interval):  # type: ignore[no-untyped-def]
    first_bin, last_bin = start[0] // interval, end[0] // interval
    before = None
    bins: dict[int, list[Sample]] = {}
    for s in samples:
        b = s.secs // interval
        if b < first_bin:
            before = s
        elif b <= last_bin:
            bins.setdefault(b, []).append(s)
    return first_bin, last_bin, before, bins


def first_sample(samples, start, end, interval):  # type: ignore[no-untyped-def]
    _fb, _lb, before, bins = _by_bin(samples, start, end, interval)
    out = [raw_row(before)] if before is not None else []
    out += [raw_row(ss[0]) for ss in bins.values()]
    return out


def last_sample(samples, start, end, interval):  # type: ignore[no-untyped-def]
    _fb, _lb, before, bins = _by_bin(samples, start, end, interval)
    out = [raw_row(before, False)] if before is not None else []
    out += [raw_row(ss[-1], False) for ss in bins.values()]
    return out


def fill(samples, start, end, interval, last):  # type: ignore[no-untyped-def]
    first_bin, last_bin, before, bins = _by_bin(samples, start, end, interval)
    picked: dict[int, Sample] = {}
    if before is not None:
        picked[first_bin - 1] = before
    for b, ss in bins.items():
        picked[b] = ss[-1] if last else ss[0]
    out: list[Row] = []
    prev = None
    for b in range(min(picked), last_bin + 1) if picked else []:
        prev = picked.get(b, prev)
        if prev is not None:
            out.append(
                (b * interval + interval // 2, 0, prev.val, prev.severity, prev.status, None)
            )
    return out


def caplotbinning(samples, start, end, interval):  # type: ignore[no-untyped-def]
    first_bin, _lb, before, bins = _by_bin(samples, start, end, interval)
    if not bins:
        return []
    out: list[Row] = []
    groups = ([(first_bin - 1, [before], 0, False)] if before is not None else []) + [
        (
            b,
            ss,
            max(s.severity for s in ss),
            any(has_field(s, "cnxregainedepsecs") for s in ss),
        )
        for b, ss in bins.items()
    ]
    for b, ss, sev, conn in groups:
        vals = [number(s.val) for s in ss]
        if len(ss) <= 2:
            points = [(s.secs, number(s.val)) for s in ss]
        else:
            b0 = b * interval
            points = [
                (b0, vals[0]),
                (b0 + int(0.25 * interval), st_min(vals)),
                (b0 + int(0.5 * interval), st_max(vals)),
                (b0 + int(0.75 * interval), vals[-1]),
            ]
        for secs, v in points:
            if out and secs <= out[-1][0]:
                continue
            out.append((secs, 0, v, sev, 0, {"connectionChange": "true"} if conn else None))
    return out


def nth(samples, start, end, n):  # type: ignore[no-untyped-def]
    lo, hi = ns(start) // 1_000_000, ns(end) // 1_000_000
    inside = [s for s in samples if lo <= ns(s) // 1_000_000 <= hi]
    return [raw_row(s, False) for i, s in enumerate(inside) if i % n == 0]


def ncount(samples, start, end):  # type: ignore[no-untyped-def]
    lo, hi = ns(start) // 1_000_000, ns(end) // 1_000_000
    count = sum(1 for s in samples if lo <= ns(s) // 1_000_000 <= hi)
    return [(lo // 1000, (lo % 1000) * 1_000_000, count, 0, 0, None)]


def dead_band(samples, adel):  # type: ignore[no-untyped-def]
    out: list[Row] = []
    last: Sample | None = None
    for s in samples:
        send = last is None
        if not send:
            v, lv = number(s.val), number(last.val)  # type: ignore[union-attr]
            send = (
                not math.isfinite(v)
                or not math.isfinite(lv)
                or s.severity != last.severity  # type: ignore[union-attr]
                or has_field(s, "cnxlostepsecs") != has_field(last, "cnxlostepsecs")  # type: ignore[arg-type]
                or abs(v - lv) > adel
            )
        if send:
            out.append(raw_row(s))
            last = s
    return out


def flyers(samples, interval, num_dev, keep_flyers):  # type: ignore[no-untyped-def]
    """(rows certainly sent, rows whose decision is within rounding of the cutoff)."""
    bins: dict[int, list[Sample]] = {}
    for s in samples:
        bins.setdefault(s.secs // interval, []).append(s)
    sure: list[Row] = []
    unsure: list[Row] = []
    for ss in bins.values():
        vals = [number(s.val) for s in ss]
        m, sd = st_mean(vals), st_std(vals)
        for s, v in zip(ss, vals, strict=True):
            if math.isnan(v) or math.isnan(m):
                continue
            dist, cut = abs(v - m), num_dev * sd
            if cut > 0 and abs(dist - cut) <= 1e-9 * max(1.0, cut):
                unsure.append(raw_row(s))
            elif (dist > cut) == keep_flyers:
                sure.append(raw_row(s))
    return sure, unsure
