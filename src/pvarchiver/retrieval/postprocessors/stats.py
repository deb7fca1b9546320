"""Per-bin statistics with the AA's (Apache commons-math) definitions.

Two kinds of accumulators:

* :class:`MomentAccumulator` for everything that can be merged from partial results (count,
  mean, sum of squared deviations, min, max): a bin that spans many chunks costs O(1) memory.
  Partials of one chunk are computed with ``np.add.reduceat`` over the runs of equal bins and
  merged across chunk boundaries with Chan's formula.
* :class:`HolisticAccumulator` for statistics that need every value of the bin (median,
  skewness, kurtosis, linear and loess interpolation); like the AA's DescriptiveStatistics it
  keeps the open bin's values, so its memory is proportional to the largest bin.

commons-math facts reproduced here: NaN inputs are skipped by the summaries (an all-NaN bin
gives NaN, count 0); ``getStandardDeviation``/``getVariance`` are bias-corrected and 0 for one
value; percentile 50 uses the LEGACY estimate ``lower + d*(upper-lower)`` at ``0.5*(n+1)``;
skewness needs 3 values, kurtosis 4 (NaN otherwise), both via ``evaluate`` (so a zero variance
gives NaN). Results agree with the AA to rounding, not bit for bit: commons-math updates its
moments one value at a time, numpy sums pairwise.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from ._common import java_double_str
from .binning import Records, seg_flags, seg_lengths, segments

MEAN = "mean"
STD = "std"
JITTER = "jitter"
VARIANCE = "variance"
POPVARIANCE = "popvariance"
MIN = "min"
MAX = "max"
COUNT = "count"
ERRORBAR = "errorbar"
STATS = "stats"
STATS_LAST = "statslast"  # optimLastSample: [mean, std, min, max, count, last value]
MEDIAN = "median"
SKEWNESS = "skewness"
KURTOSIS = "kurtosis"
LINEAR = "linear"
LOESS = "loess"

MOMENT_KINDS = frozenset(
    {MEAN, STD, JITTER, VARIANCE, POPVARIANCE, MIN, MAX, COUNT, ERRORBAR, STATS, STATS_LAST}
)
HOLISTIC_KINDS = frozenset({MEDIAN, SKEWNESS, KURTOSIS, LINEAR, LOESS})
VECTOR_KINDS = {STATS: 5, STATS_LAST: 6}

_NEEDS_M2 = frozenset({STD, JITTER, VARIANCE, POPVARIANCE, ERRORBAR, STATS, STATS_LAST})
_NEEDS_MINMAX = frozenset({MIN, MAX, STATS, STATS_LAST})


@dataclass
class Moments:
    """Mergeable partial statistics, one entry per bin."""

    bins: np.ndarray
    n: np.ndarray  # values that are not NaN
    total: np.ndarray  # their sum (the mean is total/n: exact for integer data)
    m2: np.ndarray  # sum of squared deviations from the mean
    vmin: np.ndarray
    vmax: np.ndarray
    last: np.ndarray  # last non-NaN value (NaN if none)
    sev: np.ndarray
    conn: np.ndarray

    def __len__(self) -> int:
        return len(self.bins)

    def part(self, sl: slice) -> Moments:
        return Moments(*(getattr(self, f)[sl] for f in _MOMENT_FIELDS))

    @staticmethod
    def concat(a: Moments, b: Moments) -> Moments:
        return Moments(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in _MOMENT_FIELDS))

    def absorb_first(self, prev: Moments) -> None:
        """Merge the one-bin ``prev`` (earlier rows of the same bin) into entry 0."""
        na, nb = int(prev.n[0]), int(self.n[0])
        if na and nb:  # Chan et al.'s pairwise update of the squared deviations
            n = na + nb
            delta = float(self.total[0]) / nb - float(prev.total[0]) / na
            self.m2[0] = float(prev.m2[0]) + float(self.m2[0]) + delta * delta * na * nb / n
        elif na:
            self.m2[0] = prev.m2[0]
        self.total[0] = float(prev.total[0]) + float(self.total[0])
        self.n[0] = na + nb
        self.vmin[0] = np.fmin(prev.vmin[0], self.vmin[0])
        self.vmax[0] = np.fmax(prev.vmax[0], self.vmax[0])
        if math.isnan(self.last[0]):
            self.last[0] = prev.last[0]
        self.sev[0] = max(int(prev.sev[0]), int(self.sev[0]))
        self.conn[0] = bool(prev.conn[0]) or bool(self.conn[0])


_MOMENT_FIELDS = ("bins", "n", "total", "m2", "vmin", "vmax", "last", "sev", "conn")


def moments(
    starts: np.ndarray,
    bins: np.ndarray,
    v: np.ndarray,
    sev: np.ndarray,
    conn_rows: np.ndarray,
    kind: str,
) -> Moments:
    """Partial statistics of each run of rows (``starts``) of one chunk."""
    k = len(starts)
    lengths = seg_lengths(starts, len(v))
    nan = np.isnan(v)
    any_nan = bool(nan.any())
    with np.errstate(invalid="ignore", divide="ignore"):
        if any_nan:
            valid = ~nan
            n = np.add.reduceat(valid, starts, dtype=np.int64)
            vz = np.where(nan, 0.0, v)
        else:
            n = lengths.astype(np.int64)
            vz = v
        total = np.add.reduceat(vz, starts)
        mean = total / n
        if kind in _NEEDS_M2:
            dev = vz - np.repeat(mean, lengths)
            if any_nan:
                dev[nan] = 0.0
            m2 = np.add.reduceat(dev * dev, starts)
        else:
            m2 = np.zeros(k)
    if kind in _NEEDS_MINMAX:
        vmin = np.fmin.reduceat(v, starts)
        vmax = np.fmax.reduceat(v, starts)
    else:
        vmin = np.full(k, np.nan)
        vmax = np.full(k, np.nan)
    if kind == STATS_LAST:
        idx = np.arange(len(v), dtype=np.int64)
        if any_nan:
            idx = np.where(nan, -1, idx)
        li = np.maximum.reduceat(idx, starts)
        last = np.where(li >= 0, v[np.maximum(li, 0)], np.nan)
    else:
        last = np.full(k, np.nan)
    return Moments(
        bins.astype(np.int64, copy=False),
        n,
        total,
        m2,
        vmin,
        vmax,
        last,
        np.maximum.reduceat(sev, starts).astype(np.int32),
        seg_flags(starts, conn_rows),
    )


class MomentAccumulator:
    """Bins of mergeable statistics; the last (open) bin of a chunk is carried to the next."""

    def __init__(self, kind: str, interval: int) -> None:
        self.kind = kind
        self.interval = interval
        self._open: Moments | None = None
        self._running_last = 0.0  # optimLastSample: last non-NaN value so far (AA starts at 0)

    def single(self, bin_: int, v: float) -> Records:
        """A bin holding only the last sample before ``from`` (severity 0, no reconnect flag:
        the AA does not look at that sample's alarm or fields)."""
        m = moments(
            np.zeros(1, dtype=np.int64),
            np.array([bin_], dtype=np.int64),
            np.array([v], dtype=np.float64),
            np.zeros(1, dtype=np.int32),
            np.zeros(0, dtype=np.int64),
            self.kind,
        )
        return self._records(m)

    def feed(
        self, secs: np.ndarray, v: np.ndarray, sev: np.ndarray, conn_rows: np.ndarray
    ) -> Records | None:
        starts, bins = segments(secs, self.interval)
        m = moments(starts, bins, v, sev, conn_rows, self.kind)
        closed: Moments | None = None
        if self._open is not None:
            if int(self._open.bins[0]) == int(m.bins[0]):
                m.absorb_first(self._open)
            else:
                closed = self._open
        if len(m) > 1:
            head = m.part(slice(0, len(m) - 1))
            closed = head if closed is None else Moments.concat(closed, head)
        self._open = m.part(slice(len(m) - 1, len(m)))
        return None if closed is None else self._records(closed)

    def close(self) -> Records | None:
        m, self._open = self._open, None
        return None if m is None else self._records(m)

    def _records(self, m: Moments) -> Records:
        vals, fields = moment_values(self.kind, m)
        if self.kind == STATS_LAST:
            last = m.last.copy()
            for i in range(len(last)):  # few bins per chunk
                if math.isnan(last[i]):
                    last[i] = self._running_last
                self._running_last = float(last[i])
            vals = np.column_stack([vals, last])
        return Records(m.bins, vals, m.sev, np.zeros(len(m), dtype=np.int32), m.conn, fields)


def moment_values(kind: str, m: Moments) -> tuple[np.ndarray, list[dict[str, str] | None] | None]:
    n = m.n
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, m.total / n, np.nan)
        if kind in (MEAN,):
            return mean, None
        if kind == COUNT:
            return n.astype(np.float64), None
        if kind == MIN:
            return m.vmin.astype(np.float64), None
        if kind == MAX:
            return m.vmax.astype(np.float64), None
        var = np.where(n > 1, m.m2 / (n - 1), np.where(n == 1, 0.0, np.nan))
        std = np.sqrt(var)
        if kind == STD:
            return std, None
        if kind == VARIANCE:
            return var, None
        if kind == POPVARIANCE:
            return np.where(n > 0, m.m2 / n, np.nan), None
        if kind == JITTER:
            return std / mean, None
        if kind == ERRORBAR:
            return mean, [{"stdz": java_double_str(float(s))} for s in std]
        # STATS / STATS_LAST: [mean, std, min, max, count]
        return np.column_stack([mean, std, m.vmin, m.vmax, n.astype(np.float64)]), None


# --------------------------------------------------------------------------- holistic


class HolisticAccumulator:
    """Bins whose statistic needs all the bin's values; the open bin's rows are carried as a
    list of pieces and joined once, when the bin closes."""

    def __init__(self, kind: str, interval: int) -> None:
        self.kind = kind
        self.interval = interval
        self._bin: int | None = None
        self._pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # secs, nanos, v
        self._sev = 0
        self._conn = False

    def single(self, bin_: int, secs: int, nanos: int, v: float) -> Records:
        vals = holistic_values(
            self.kind,
            self.interval,
            np.array([bin_], dtype=np.int64),
            np.zeros(1, dtype=np.int64),
            np.array([secs], dtype=np.int64),
            np.array([nanos], dtype=np.int64),
            np.array([v], dtype=np.float64),
        )
        return Records(
            np.array([bin_], dtype=np.int64),
            vals,
            np.zeros(1, dtype=np.int32),
            np.zeros(1, dtype=np.int32),
            np.zeros(1, dtype=bool),
        )

    def feed(
        self,
        secs: np.ndarray,
        nanos: np.ndarray,
        v: np.ndarray,
        sev: np.ndarray,
        conn_rows: np.ndarray,
    ) -> Records | None:
        starts, bins = segments(secs, self.interval)
        seg_sev = np.maximum.reduceat(sev, starts)
        seg_conn = seg_flags(starts, conn_rows)
        last_start = int(starts[-1])
        if self._bin is not None and int(bins[0]) == self._bin and len(starts) == 1:
            self._pieces.append((secs, nanos, v))
            self._sev = max(self._sev, int(seg_sev[0]))
            self._conn = self._conn or bool(seg_conn[0])
            return None
        # Rows of the closing bins: the carried open bin, then all but the chunk's last run.
        parts_s, parts_n, parts_v = [], [], []
        r_bins: list[int] = []
        r_starts: list[int] = []
        r_sev: list[int] = []
        r_conn: list[bool] = []
        offset = 0
        first_run = 0
        if self._bin is not None:
            for ps, pn, pv in self._pieces:
                parts_s.append(ps)
                parts_n.append(pn)
                parts_v.append(pv)
                offset += len(ps)
            r_bins.append(self._bin)
            r_starts.append(0)
            sev0, conn0 = self._sev, self._conn
            if int(bins[0]) == self._bin:  # the chunk's first run continues the open bin
                sev0 = max(sev0, int(seg_sev[0]))
                conn0 = conn0 or bool(seg_conn[0])
                first_run = 1
            r_sev.append(sev0)
            r_conn.append(conn0)
        parts_s.append(secs[:last_start])
        parts_n.append(nanos[:last_start])
        parts_v.append(v[:last_start])
        for j in range(first_run, len(starts) - 1):
            r_bins.append(int(bins[j]))
            r_starts.append(offset + int(starts[j]))
            r_sev.append(int(seg_sev[j]))
            r_conn.append(bool(seg_conn[j]))
        self._bin = int(bins[-1])
        self._pieces = [(secs[last_start:], nanos[last_start:], v[last_start:])]
        self._sev = int(seg_sev[-1])
        self._conn = bool(seg_conn[-1])
        if not r_bins:
            return None
        b = np.array(r_bins, dtype=np.int64)
        vals = holistic_values(
            self.kind,
            self.interval,
            b,
            np.array(r_starts, dtype=np.int64),
            np.concatenate(parts_s),
            np.concatenate(parts_n),
            np.concatenate(parts_v),
        )
        return Records(
            b,
            vals,
            np.array(r_sev, dtype=np.int32),
            np.zeros(len(b), dtype=np.int32),
            np.array(r_conn, dtype=bool),
        )

    def close(self) -> Records | None:
        if self._bin is None:
            return None
        b = np.array([self._bin], dtype=np.int64)
        vals = holistic_values(
            self.kind,
            self.interval,
            b,
            np.zeros(1, dtype=np.int64),
            np.concatenate([p[0] for p in self._pieces]),
            np.concatenate([p[1] for p in self._pieces]),
            np.concatenate([p[2] for p in self._pieces]),
        )
        rec = Records(
            b,
            vals,
            np.array([self._sev], dtype=np.int32),
            np.zeros(1, dtype=np.int32),
            np.array([self._conn]),
        )
        self._bin = None
        self._pieces = []
        return rec


def holistic_values(
    kind: str,
    interval: int,
    bins: np.ndarray,
    starts: np.ndarray,
    secs: np.ndarray,
    nanos: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    lengths = seg_lengths(starts, len(v))
    if kind == LINEAR:
        return _linear(interval, bins, starts, lengths, secs, nanos, v)
    if kind == LOESS:
        x = secs.astype(np.float64) + nanos / 1e9
        out = np.empty(len(bins))
        for j in range(len(bins)):
            s = int(starts[j])
            e = s + int(lengths[j])
            centre = float(int(bins[j]) * interval + interval // 2)
            out[j] = loess_value(x[s:e], v[s:e], centre)
        return out
    k = len(bins)
    valid = ~np.isnan(v)
    seg = np.repeat(np.arange(k), lengths)[valid]
    vs = v[valid]
    cnt = np.bincount(seg, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        if kind == MEDIAN:
            return _median(seg, vs, cnt)
        fn = cnt.astype(np.float64)
        # commons-math Mean.evaluate: sum/n plus a correction pass
        xbar = np.bincount(seg, weights=vs, minlength=k) / fn
        xbar = xbar + np.bincount(seg, weights=vs - xbar[seg], minlength=k) / fn
        d = vs - xbar[seg]
        d2 = d * d
        accum = np.bincount(seg, weights=d2, minlength=k)
        if kind == SKEWNESS:
            accum2 = np.bincount(seg, weights=d, minlength=k)
            var = (accum - accum2 * accum2 / fn) / (fn - 1)
            acc3 = np.bincount(seg, weights=d2 * d, minlength=k) / (var * np.sqrt(var))
            res = (fn / ((fn - 1) * (fn - 2))) * acc3
            return np.where(cnt > 2, res, np.nan)
        # KURTOSIS
        std = np.sqrt(accum / (fn - 1))
        acc4 = np.bincount(seg, weights=d2 * d2, minlength=k) / std**4
        c1 = (fn * (fn + 1)) / ((fn - 1) * (fn - 2) * (fn - 3))
        t2 = (3 * (fn - 1) ** 2) / ((fn - 2) * (fn - 3))
        return np.where(cnt > 3, c1 * acc4 - t2, np.nan)


def _median(seg: np.ndarray, vs: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    k = len(cnt)
    out = np.full(k, np.nan)
    if len(vs) == 0:
        return out
    off = np.concatenate(([0], np.cumsum(cnt)[:-1]))
    has = cnt > 0
    n = cnt[has]
    o = off[has]
    pos = 0.5 * (n + 1)
    fpos = np.floor(pos).astype(np.int64)
    dif = pos - fpos
    lo_at = o + fpos - 1
    hi_at = o + np.minimum(fpos, n - 1)
    if len(vs) >= 64 * k:
        # few long bins: select the two middle values of each bin (vs is grouped by bin)
        lower = np.empty(len(n))
        upper = np.empty(len(n))
        for j, (a, c, lo_k, hi_k) in enumerate(zip(o, n, lo_at - o, hi_at - o, strict=True)):
            part = np.partition(vs[a : a + c], (lo_k, hi_k))
            lower[j] = part[lo_k]
            upper[j] = part[hi_k]
    else:
        sv = vs[np.lexsort((vs, seg))]
        lower = sv[lo_at]
        upper = sv[hi_at]
    with np.errstate(invalid="ignore"):
        res = lower + dif * (upper - lower)
    res = np.where(n == 1, lower, res)  # one value: commons-math returns it as is
    out[has] = res
    return out


def _linear(
    interval: int,
    bins: np.ndarray,
    starts: np.ndarray,
    lengths: np.ndarray,
    secs: np.ndarray,
    nanos: np.ndarray,
    v: np.ndarray,
) -> np.ndarray:
    """commons-math LinearInterpolator through the bin's samples, evaluated at the bin centre
    (integer seconds). Where it throws (fewer than 2 samples, timestamps that are equal as
    doubles, centre outside the samples) the AA returns the bin's first value, and so do we."""
    x = secs.astype(np.float64) + nanos / 1e9
    first = starts
    last = starts + lengths - 1
    centre = (bins * interval + interval // 2).astype(np.float64)
    out = v[first].copy()
    bad_step = np.zeros(len(x), dtype=bool)
    bad_step[:-1] = np.diff(x) <= 0
    bad_step[last] = False  # a step into the next bin does not count
    seg_bad = np.add.reduceat(bad_step, starts, dtype=np.int64) > 0
    ok = (lengths >= 2) & ~seg_bad & (centre >= x[first]) & (centre <= x[last])
    if ok.any():
        c = centre[ok]
        i = np.searchsorted(x, c, side="right") - 1
        i = np.clip(i, first[ok], last[ok] - 1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            slope = (v[i + 1] - v[i]) / (x[i + 1] - x[i])
            out[ok] = (c - x[i]) * slope + v[i]
    return out


# --------------------------------------------------------------------------- loess


class _NoFit(Exception):
    """commons-math threw; the AA then uses the bin's first value."""


def loess_value(x: np.ndarray, y: np.ndarray, centre: float) -> float:
    """commons-math ``new LoessInterpolator().interpolate(x, y).value(centre)`` (bandwidth
    0.3, 2 robustness iterations, accuracy 1e-12, natural cubic spline through the smoothed
    values), or ``y[0]`` where that throws: fewer than 7 samples (the bandwidth would cover
    fewer than 2 points), NaN/Inf values, timestamps equal as doubles, centre outside the
    samples. Sums run left to right like the Java loops, as the fit is sensitive to rounding
    (x is in epoch seconds)."""
    try:
        return _loess(x, y, centre)
    except _NoFit:
        return float(y[0])


def _loess(x: np.ndarray, y: np.ndarray, centre: float) -> float:
    n = len(x)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise _NoFit
    if n > 1 and not (np.diff(x) > 0).all():
        raise _NoFit
    if n < 3:
        raise _NoFit  # smooth() returns y itself, then the spline needs 3 points
    bw = int(0.3 * n)
    if bw < 2:
        raise _NoFit
    fitted = _loess_smooth(x, y, bw)
    return _spline_value(x.tolist(), fitted.tolist(), centre)


def _loess_windows(xl: list[float], bw: int) -> np.ndarray:
    n = len(xl)
    left = np.empty(n, dtype=np.int64)
    lo, hi = 0, bw - 1
    for i in range(n):
        if i > 0:
            nxt = hi + 1
            if nxt < n and xl[nxt] - xl[i] < xl[i] - xl[lo]:
                lo += 1
                hi = nxt
        left[i] = lo
    return left


def _loess_smooth(x: np.ndarray, y: np.ndarray, bw: int) -> np.ndarray:
    n = len(x)
    accuracy = 1e-12
    left = _loess_windows(x.tolist(), bw)
    right = left + bw - 1
    rob = np.ones(n)
    res = np.empty(n)
    residuals = np.empty(n)
    block = max(1, (1 << 20) // bw)
    offs = np.arange(bw)
    for it in range(3):  # the fit plus 2 robustness iterations
        for a in range(0, n, block):
            i = np.arange(a, min(a + block, n))
            win = left[i, None] + offs
            xi = x[i]
            xk = x[win]
            yk = y[win]
            edge = np.where(xi - x[left[i]] > x[right[i]] - xi, left[i], right[i])
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                denom = np.abs(1.0 / (x[edge] - xi))
                t = np.abs(xk - xi[:, None]) * denom[:, None]
                tmp = 1 - t * t * t
                tri = np.where(t >= 1.0, 0.0, tmp * tmp * tmp)
                w = tri * rob[win]
                xkw = xk * w
                sw = np.cumsum(w, axis=1)[:, -1]
                sx = np.cumsum(xkw, axis=1)[:, -1]
                sxx = np.cumsum(xk * xkw, axis=1)[:, -1]
                sy = np.cumsum(yk * w, axis=1)[:, -1]
                sxy = np.cumsum(yk * xkw, axis=1)[:, -1]
                mx = sx / sw
                my = sy / sw
                mxy = sxy / sw
                mxx = sxx / sw
                spread = mxx - mx * mx
                beta = np.where(np.sqrt(np.abs(spread)) < accuracy, 0.0, (mxy - mx * my) / spread)
                alpha = my - beta * mx
                res[i] = beta * xi + alpha
                residuals[i] = np.abs(y[i] - res[i])
        if it == 2:
            break
        median_residual = float(np.sort(residuals)[n // 2])
        if abs(median_residual) < accuracy:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            arg = residuals / (6 * median_residual)
            rob = np.where(arg >= 1, 0.0, (1 - arg * arg) ** 2)
    return res


def _spline_value(x: list[float], y: list[float], v: float) -> float:
    """commons-math SplineInterpolator (natural cubic spline) evaluated at ``v``."""
    n = len(x) - 1
    if v < x[0] or v > x[n]:
        raise _NoFit
    h = [x[i + 1] - x[i] for i in range(n)]
    mu = [0.0] * n
    z = [0.0] * (n + 1)
    for i in range(1, n):
        g = 2.0 * (x[i + 1] - x[i - 1]) - h[i - 1] * mu[i - 1]
        mu[i] = h[i] / g
        z[i] = (
            3.0
            * (y[i + 1] * h[i - 1] - y[i] * (x[i + 1] - x[i - 1]) + y[i - 1] * h[i])
            / (h[i - 1] * h[i])
            - h[i - 1] * z[i - 1]
        ) / g
    c = [0.0] * (n + 1)
    j = bisect.bisect_right(x, v) - 1
    if j >= n:
        j = n - 1
    for k in range(n - 1, j - 1, -1):
        c[k] = z[k] - mu[k] * c[k + 1]
    b = (y[j + 1] - y[j]) / h[j] - h[j] * (c[j + 1] + 2.0 * c[j]) / 3.0
    d = (c[j + 1] - c[j]) / (3.0 * h[j])
    t = v - x[j]
    return ((d * t + c[j]) * t + b) * t + y[j]
