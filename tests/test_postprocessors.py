"""Post-processors against simple reference implementations, on random data.

Every operator is run on random streams (several samples per second, gaps of many bins, NaNs,
severities, reconnect fields, samples before ``from`` and after ``to``, data across a UTC
year boundary) cut into random chunks, and compared with the loop-based reference in
``tests/helpers/postprocessors_ref.py``. Matching for every chunking also shows that results do not
depend on where the chunks are cut. Hand-computed examples and parsing tests follow.
"""

from __future__ import annotations

import calendar
import itertools
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvarchiver.pb import PayloadInfo, PayloadType, Sample, year_of
from pvarchiver.retrieval.model import Chunk, block_from_samples, block_samples
from pvarchiver.retrieval.postprocessors import (
    REGISTERED,
    PostProcessorError,
    parse_post_processor,
    split_function_syntax,
)
from pvarchiver.retrieval.postprocessors._common import java_double_str

from .helpers import postprocessors_ref as ref

NS = ref.NS
D = PayloadType.SCALAR_DOUBLE
Y2025 = calendar.timegm((2025, 1, 1, 0, 0, 0))
PROPERTY = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- helpers


def make_chunks(
    samples: list[Sample], ptype: PayloadType = D, cuts: set[int] | frozenset[int] = frozenset()
) -> list[Chunk]:
    """The samples as chunks, cut at ``cuts`` (indexes) and at every UTC year change."""
    out: list[Chunk] = []
    cur: list[Sample] = []
    for i, s in enumerate(samples):
        if cur and (i in cuts or year_of(s.secs) != year_of(cur[0].secs)):
            out.append(_chunk(cur, ptype))
            cur = []
        cur.append(s)
    if cur:
        out.append(_chunk(cur, ptype))
    return out


def _chunk(samples: list[Sample], ptype: PayloadType) -> Chunk:
    header = PayloadInfo(ptype, "PV", year_of(samples[0].secs), 1, {"EGU": "mA"})
    return Chunk(header, block_from_samples(samples, ptype), b"raw")


def rows_of(
    chunks: list[Chunk], ptype: PayloadType | None = None, pvname: str = "PV"
) -> list[ref.Row]:
    """Flatten output chunks, checking what every chunk must satisfy on the way."""
    rows: list[ref.Row] = []
    for c in chunks:
        assert c.raw is None
        assert len(c) > 0
        assert c.header.pvname == pvname
        if ptype is not None:
            assert c.header.type == ptype
        for s in block_samples(c.block):
            assert year_of(s.secs) == c.header.year
            rows.append((s.secs, s.nanos, s.val, s.severity, s.status, s.fields or None))
    stamps = [r[0] * NS + r[1] for r in rows]
    assert all(a < b for a, b in itertools.pairwise(stamps)), "not increasing"
    return rows


def run(spec: str, samples: list[Sample], start, end, cuts=frozenset(), ptype=D):  # type: ignore[no-untyped-def]
    pp = parse_post_processor(spec)
    return list(pp.process(iter(make_chunks(samples, ptype, cuts)), start, end))


def close(a: object, b: object, rel: float) -> bool:
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(close(x, y, rel) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) or isinstance(b, float):
        x, y = float(a), float(b)  # type: ignore[arg-type]
        if math.isnan(x) or math.isnan(y):
            return math.isnan(x) and math.isnan(y)
        if math.isinf(x) or math.isinf(y):
            return x == y
        return abs(x - y) <= rel * max(1.0, abs(x), abs(y))
    return a == b


def assert_rows(got: list[ref.Row], want: list[ref.Row], rel: float = 1e-9) -> None:
    assert len(got) == len(want), (got[:5], want[:5])
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2], (g, w)
        assert g[3:5] == w[3:5], (g, w)
        assert close(g[2], w[2], rel), (g, w)
        gf, wf = dict(g[5] or {}), dict(w[5] or {})
        if "stdz" in wf:
            assert close(float(gf.pop("stdz")), float(wf.pop("stdz")), rel), (g, w)
        assert gf == wf, (g, w)


# ----------------------------------------------------------------------------- strategies

_FIELDS = [{"cnxregainedepsecs": "1"}, {"cnxlostepsecs": "1", "startup": "true"}, {"EGU": "V"}]
_NUMBERS = [0.5, -2.25, 1000.0, math.nan]
_STRINGS = ["a", "", "b c", "\n"]
_SEVERITIES = [0] * 9 + [1, 2, 3]  # mostly 0, so that bins differ in their highest severity


def _gap(rnd: random.Random, profile: str) -> int:
    """Nanoseconds to the next sample."""
    kind = rnd.random()
    if profile == "dense" or (profile == "mixed" and kind < 0.4):
        return rnd.randint(1_000_000, NS // 2)  # several samples per second
    if profile == "regular":
        return rnd.choice([1, 1, 1, 10]) * NS
    if kind < 0.85:
        return rnd.randint(1, 120) * NS + rnd.choice([0, 123_456])
    return rnd.randint(700, 9000) * NS  # gaps longer than several bins


@st.composite
def scenarios(draw, strings: bool = False, max_n: int = 80):  # type: ignore[no-untyped-def]
    """(samples, from, to, chunk cuts). Hypothesis chooses the shape (size, kind of spacing,
    where from/to fall); a seeded generator fills in the bulk, so that even early examples
    have many samples, several per bin, and bins far apart."""
    size = draw(st.sampled_from(["empty", "few", "many", "many", "many"]))
    profile = draw(st.sampled_from(["dense", "mixed", "regular"]))
    rnd = random.Random(draw(st.integers(0, 2**32)))
    n = {"empty": 0, "few": rnd.randint(1, 5), "many": rnd.randint(6, max_n)}[size]
    t = (Y2025 - draw(st.integers(0, 3 * 3600))) * NS + rnd.randint(0, NS - 1)
    samples = []
    for _ in range(n):
        t += _gap(rnd, profile)
        if strings:
            val: object = rnd.choice(_STRINGS)
        else:
            val = rnd.choice(_NUMBERS) if rnd.random() < 0.25 else float(rnd.randint(-20, 20))
        fields = rnd.choice(_FIELDS) if rnd.random() < 0.08 else None
        samples.append(
            Sample(t // NS, t % NS, val, rnd.choice(_SEVERITIES), rnd.randint(0, 2), fields)
        )
    stamps = [x.secs * NS + x.nanos for x in samples] or [t]
    where = draw(st.sampled_from(["at", "inside", "before", "after"]))
    if where == "at":
        start_ns = rnd.choice(stamps)
    elif where == "inside":
        start_ns = rnd.randint(stamps[0], stamps[-1])
    elif where == "before":
        start_ns = stamps[0] - rnd.randint(0, 4000 * NS)
    else:
        start_ns = stamps[-1] + rnd.randint(0, 1000 * NS)
    length = draw(st.sampled_from(["zero", "to the end", "random"]))
    if length == "zero":
        end_ns = start_ns
    elif length == "to the end":
        end_ns = max(start_ns, stamps[-1]) + rnd.randint(0, 3000 * NS)
    else:
        end_ns = start_ns + rnd.randint(0, 25000 * NS)
    chunking = draw(st.sampled_from(["one", "some", "some", "every sample"]))
    if chunking == "every sample":
        cuts = set(range(1, n))
    else:
        cuts = {rnd.randint(1, max(1, n - 1)) for _ in range(8 if chunking == "some" else 0)}
    return samples, (start_ns // NS, start_ns % NS), (end_ns // NS, end_ns % NS), cuts


intervals = st.sampled_from([7, 60, 301, 900, 3600])

# ----------------------------------------------------------------------------- properties

SUMMARY = {
    "mean": ref.st_mean,
    "std": ref.st_std,
    "jitter": ref.st_jitter,
    "variance": ref.st_var,
    "popvariance": ref.st_popvar,
    "min": ref.st_min,
    "max": ref.st_max,
    "count": ref.st_count,
    "median": ref.st_median,
    "skewness": ref.st_skewness,
    "kurtosis": ref.st_kurtosis,
    "stats": ref.st_stats,
    "linear": "linear",
    "loess": "loess",
}


@pytest.mark.parametrize("name", sorted(SUMMARY))
@PROPERTY
@given(sc=scenarios(), interval=intervals, fill=st.booleans())
def test_summaries_match_reference(name, sc, interval, fill) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    spec = f"{name}{'' if fill else 'Sample'}_{interval}"
    mode = ("zero" if name == "count" else "repeat") if fill else "none"
    want = ref.summary(samples, start, end, interval, SUMMARY[name], mode)  # type: ignore[arg-type]
    ptype = PayloadType.WAVEFORM_DOUBLE if name == "stats" else D
    got = rows_of(run(spec, samples, start, end, cuts), ptype)
    rel = 1e-6 if name in ("skewness", "kurtosis", "jitter") else 1e-9
    want = ref.collapse_before(want, start)
    if name == "jitter":  # std/mean explodes where the mean is ~0: compare "huge" as a class
        got, want = _huge_as_inf(got), _huge_as_inf(want)
    assert_rows(got, want, rel)


def _huge_as_inf(rows: list[ref.Row]) -> list[ref.Row]:
    def fix(v: object) -> object:
        if isinstance(v, float) and not math.isnan(v) and abs(v) > 1e9:
            return math.inf
        return v

    return [(r[0], r[1], fix(r[2]), *r[3:]) for r in rows]


@pytest.mark.parametrize("name", sorted(SUMMARY))
@pytest.mark.parametrize("seed", [1, 2])
def test_summaries_of_long_bins(name: str, seed: int) -> None:
    """Bins of hundreds of samples spread over many chunks (the random scenarios are small)."""
    rnd = random.Random(seed)
    t = (Y2025 - 1000) * NS
    samples = []
    interval = 60 if name == "loess" else 301  # the reference loess is slow on long bins
    for _ in range(600 if name == "loess" else 3000):
        t += rnd.randint(NS // 20, NS // 2)
        nan = name not in ("loess", "linear") and rnd.random() < 0.05  # loess fails on NaN
        val = math.nan if nan else rnd.uniform(-100, 100)
        samples.append(Sample(t // NS, t % NS, val, rnd.choice(_SEVERITIES)))
    start = (Y2025 - 990, 0)
    end = (samples[-1].secs + 100, 0)
    cuts = set(rnd.sample(range(1, len(samples)), 40))
    want = ref.summary(samples, start, end, interval, SUMMARY[name], "repeat")  # type: ignore[arg-type]
    got = rows_of(run(f"{name}_{interval}", samples, start, end, cuts))
    assert len(got) > 3
    assert_rows(got, ref.collapse_before(want, start), rel=1e-7)


@PROPERTY
@given(sc=scenarios(), interval=intervals, fill=st.booleans())
def test_errorbar_matches_reference(sc, interval, fill) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    want = ref.errorbar(samples, start, end, interval, "repeat" if fill else "none")
    got = rows_of(run(f"errorbar{'' if fill else 'Sample'}_{interval}", samples, start, end, cuts))
    assert_rows(got, ref.collapse_before(want, start))


@PROPERTY
@given(sc=scenarios(), points=st.integers(1, 40), fill=st.booleans())
def test_optimized_matches_reference(sc, points, fill) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    want = ref.optimized(samples, start, end, points, fill)
    got = rows_of(run(f"optimized{'' if fill else 'Sample'}_{points}", samples, start, end, cuts))
    assert_rows(got, ref.collapse_before(want, start))


@PROPERTY
@given(sc=scenarios(), points=st.integers(1, 40), fill=st.booleans())
def test_optim_last_sample_matches_reference(sc, points, fill) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    want = ref.optim_last_sample(samples, start, end, points, fill)
    spec = f"optimLastSample{'' if fill else 'Sample'}_{points}"
    assert_rows(rows_of(run(spec, samples, start, end, cuts)), ref.collapse_before(want, start))


@pytest.mark.parametrize(
    "name", ["firstSample", "lastSample", "firstFill", "lastFill", "caplotbinning"]
)
@PROPERTY
@given(sc=scenarios(), interval=intervals)
def test_selections_match_reference(name, sc, interval) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    want = {
        "firstSample": lambda: ref.first_sample(samples, start, end, interval),
        "lastSample": lambda: ref.last_sample(samples, start, end, interval),
        "firstFill": lambda: ref.fill(samples, start, end, interval, last=False),
        "lastFill": lambda: ref.fill(samples, start, end, interval, last=True),
        "caplotbinning": lambda: ref.caplotbinning(samples, start, end, interval),
    }[name]()
    got = rows_of(run(f"{name}_{interval}", samples, start, end, cuts), D)
    assert_rows(got, ref.collapse_before(want, start))


@pytest.mark.parametrize("name", ["firstSample", "lastSample", "firstFill", "lastFill"])
@settings(max_examples=15, deadline=None)
@given(sc=scenarios(strings=True, max_n=30), interval=intervals)
def test_selections_of_strings(name, sc, interval) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    want = {
        "firstSample": lambda: ref.first_sample(samples, start, end, interval),
        "lastSample": lambda: ref.last_sample(samples, start, end, interval),
        "firstFill": lambda: ref.fill(samples, start, end, interval, last=False),
        "lastFill": lambda: ref.fill(samples, start, end, interval, last=True),
    }[name]()
    s_type = PayloadType.SCALAR_STRING
    got = rows_of(run(f"{name}_{interval}", samples, start, end, cuts, s_type), s_type)
    assert_rows(got, ref.collapse_before(want, start))


@PROPERTY
@given(sc=scenarios(), n=st.integers(1, 5))
def test_nth_matches_reference(sc, n) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    got = rows_of(run(f"nth_{n}", samples, start, end, cuts), D)
    assert_rows(got, ref.collapse_before(ref.nth(samples, start, end, n), start))


@settings(max_examples=20, deadline=None)
@given(sc=scenarios(strings=True, max_n=30))
def test_ncount_and_count_of_strings(sc) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    s_type = PayloadType.SCALAR_STRING
    out = run("ncount", samples, start, end, cuts, s_type)
    # without any data the PV name is not known to the operator
    got = rows_of(out, PayloadType.SCALAR_INT, "PV" if samples else "")
    assert_rows(got, ref.ncount(samples, start, end))
    got = rows_of(run("count_60", samples, start, end, cuts, s_type))
    ones = [Sample(s.secs, s.nanos, 1.0, s.severity, s.status, s.fields) for s in samples]
    want = ref.summary(ones, start, end, 60, ref.st_count, "zero")
    assert_rows(got, ref.collapse_before(want, start))


@PROPERTY
@given(sc=scenarios())
def test_ncount_matches_reference(sc) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    out = run("ncount", samples, start, end, cuts)
    got = rows_of(out, PayloadType.SCALAR_INT, "PV" if samples else "")
    assert got == ref.ncount(samples, start, end)


@PROPERTY
@given(sc=scenarios(), adel=st.sampled_from([0.0, 0.5, 1.0, 3.0, 100.0]))
def test_dead_band_matches_reference(sc, adel) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    got = rows_of(run(f"deadBand_{adel}", samples, start, end, cuts), D)
    assert_rows(got, ref.collapse_before(ref.dead_band(samples, adel), start))


@pytest.mark.parametrize("name", ["ignoreflyers", "flyers"])
@PROPERTY
@given(sc=scenarios(), interval=intervals, num_dev=st.sampled_from([0.5, 1.0, 1.5, 2.5, 3.0]))
def test_flyers_match_reference(name, sc, interval, num_dev) -> None:  # type: ignore[no-untyped-def]
    samples, start, end, cuts = sc
    got = rows_of(run(f"{name}_{interval}_{num_dev}", samples, start, end, cuts), D)
    sure, unsure = ref.flyers(samples, interval, num_dev, keep_flyers=name == "flyers")
    allowed = {r[:2] for r in sure + unsure}
    got_keys = {r[:2] for r in got}
    # the merge keeps one sample before `from`: compare the rest exactly
    s_ns = start[0] * NS + start[1]
    want_keys = {r[:2] for r in ref.collapse_before(sorted(sure), start)}
    after = {k for k in got_keys if k[0] * NS + k[1] >= s_ns}
    assert after <= allowed
    assert {k for k in want_keys if k[0] * NS + k[1] >= s_ns} <= after
    assert len(got_keys) - len(after) <= 1


def test_every_registered_name_is_covered_by_a_property() -> None:
    covered = set(SUMMARY) | {
        "errorbar",
        "optimized",
        "optimLastSample",
        "firstSample",
        "lastSample",
        "firstFill",
        "lastFill",
        "caplotbinning",
        "nth",
        "ncount",
        "deadBand",
        "ignoreflyers",
        "flyers",
    }
    for name in REGISTERED:
        keep = name in ("firstSample", "lastSample", "optimLastSample")
        base = name if keep else name.removesuffix("Sample")
        assert base in covered, name


# ----------------------------------------------------------------------------- by hand

T0 = calendar.timegm((2024, 12, 31, 22, 0, 0))  # a multiple of 3600


def ramp(n: int, t0: int = T0, step: int = 1) -> list[Sample]:
    return [Sample(t0 + i * step, 0, float(i)) for i in range(n)]


def test_mean_bins_are_centred_and_filled() -> None:
    data = ramp(1200)  # [T0, T0+1200)
    got = rows_of(run("mean_600", data, (T0, 0), (T0 + 2999, 0), cuts={100, 700}))
    assert [(r[0] - T0, r[1], r[2]) for r in got] == [
        (300, 0, 299.5),
        (900, 0, 899.5),
        (1500, 0, 899.5),  # empty bins repeat the previous value ...
        (2100, 0, 899.5),
        (2700, 0, 899.5),  # ... up to the bin of `to`
    ]
    got = rows_of(run("meanSample_600", data, (T0, 0), (T0 + 2999, 0)))
    assert [r[0] - T0 for r in got] == [300, 900]


def test_odd_interval_centres_have_half_seconds() -> None:
    got = rows_of(run("mean_7", ramp(14, T0 - T0 % 7), (T0 - T0 % 7, 0), (T0 - T0 % 7 + 13, 0)))
    assert [(r[0] - (T0 - T0 % 7), r[1], r[2]) for r in got] == [
        (3, 500_000_000, 3.0),
        (10, 500_000_000, 10.0),
    ]


def test_sample_before_from_seeds_the_first_bins() -> None:
    data = [Sample(T0 - 5000, 0, 7.0, severity=2), Sample(T0 + 1300, 0, 1.0, severity=1)]
    got = rows_of(run("mean_600", data, (T0 + 10, 0), (T0 + 1799, 0)))
    # bin firstBin-1 holds the sample before `from`, with severity 0; it fills bins 0 and 1
    assert [(r[0] - T0, r[2], r[3]) for r in got] == [
        (-300, 7.0, 0),
        (300, 7.0, 0),
        (900, 7.0, 0),
        (1500, 1.0, 1),
    ]
    # from past the middle of its bin: the first bin's centre is before `from` too, and the
    # AA's merge keeps only the later of the two
    got = rows_of(run("mean_600", data, (T0 + 400, 0), (T0 + 1799, 0)))
    assert [r[0] - T0 for r in got] == [300, 900, 1500]


def test_a_sample_exactly_at_from_drops_the_one_before() -> None:
    data = [Sample(T0 - 5000, 0, 7.0), Sample(T0, 0, 1.0)]
    got = rows_of(run("mean_600", data, (T0, 0), (T0 + 599, 0)))
    assert [(r[0] - T0, r[2]) for r in got] == [(300, 1.0)]


def test_count_fills_with_zero_and_nan_is_skipped() -> None:
    data = [Sample(T0 + 1, 0, 1.0), Sample(T0 + 2, 0, math.nan), Sample(T0 + 1300, 0, 3.0)]
    got = rows_of(run("count_600", data, (T0, 0), (T0 + 1799, 0)))
    assert [r[2] for r in got] == [1.0, 0.0, 1.0]
    got = rows_of(run("mean_600", [Sample(T0, 0, math.nan)], (T0, 0), (T0 + 599, 0)))
    assert math.isnan(got[0][2])


def test_connection_change_and_severity() -> None:
    data = [
        Sample(T0 + 1, 0, 1.0, severity=1),
        Sample(T0 + 2, 0, 2.0, severity=3, fields={"cnxregainedepsecs": "5", "cnxlostepsecs": "4"}),
        Sample(T0 + 700, 0, 2.0, severity=0, fields={"cnxlostepsecs": "4"}),
    ]
    got = rows_of(run("max_600", data, (T0, 0), (T0 + 1199, 0)))
    assert got == [
        (T0 + 300, 0, 2.0, 3, 0, {"connectionChange": "true"}),
        (T0 + 900, 0, 2.0, 0, 0, None),
    ]


def test_bins_across_a_year_boundary_are_split_into_chunks() -> None:
    base = Y2025 - 10
    data = [Sample(base + i, 0, float(i)) for i in range(20)]
    out = run("mean_7", data, (base, 0), (base + 19, 0))
    assert [c.header.year for c in out][:2] == [2024, 2025]
    assert all(c.header.type is D and c.header.headers == {"EGU": "mA"} for c in out)
    # Y2025 % 7 == 1: the bin [Y2025-1, Y2025+6) starts in 2024 but its centre is in 2025
    assert (Y2025 + 2, 500_000_000, 12.0) in [r[:3] for r in rows_of(out)]


def test_fills_use_whole_second_centres() -> None:
    data = [Sample(T0 + 1, 5, 1.0, status=3, fields={"x": "y"}), Sample(T0 + 20, 0, 2.0)]
    got = rows_of(run("firstFill_7", data, (T0, 0), (T0 + 27, 0)))
    base = T0 - T0 % 7  # bins start at base, base+7, ...; T0+20 is in the bin at base+21
    assert got[0] == (base + 3, 0, 1.0, 0, 3, None)
    assert [(r[0] - base, r[2]) for r in got] == [
        (3, 1.0),
        (10, 1.0),
        (17, 1.0),
        (24, 2.0),
        (31, 2.0),
    ]
    got = rows_of(run("lastSample_60", data, (T0, 0), (T0 + 27, 0)))
    assert got == [(T0 + 20, 0, 2.0, 0, 0, None)]


def test_ncount_is_one_int_at_from() -> None:
    out = run("ncount", ramp(100), (T0 + 10, 123_456_789), (T0 + 49, 0))
    assert rows_of(out, PayloadType.SCALAR_INT) == [(T0 + 10, 123_000_000, 39, 0, 0, None)]
    out = list(parse_post_processor("ncount").process(iter([]), (T0, 0), (T0 + 1, 0)))
    assert rows_of(out, PayloadType.SCALAR_INT, "") == [(T0, 0, 0, 0, 0, None)]


def test_stats_and_optimized() -> None:
    data = ramp(1200)
    got = rows_of(run("stats_600", data, (T0, 0), (T0 + 599, 0)), PayloadType.WAVEFORM_DOUBLE)
    mean, std, lo, hi, n = got[0][2]  # type: ignore[misc]
    assert (mean, lo, hi, n) == (299.5, 0.0, 599.0, 600.0)
    assert std == pytest.approx(math.sqrt(sum((i - 299.5) ** 2 for i in range(600)) / 599))
    out = run("optimized_2000", data, (T0, 0), (T0 + 1199, 0))
    assert rows_of(out, D) == [(T0 + i, 0, float(i), 0, 0, None) for i in range(1200)]
    pp = parse_post_processor("optimized_100")
    assert pp.output_type(D) is PayloadType.WAVEFORM_DOUBLE
    # 1199 s / 100 points: 11 s bins, aligned to multiples of 11 s (T0 % 11 == 1)
    got = rows_of(run("optimized_100", data, (T0, 0), (T0 + 1199, 0)), PayloadType.WAVEFORM_DOUBLE)
    assert len(got) == 110 and got[0][:2] == (T0 + 4, 500_000_000)
    assert got[0][2] == [4.5, pytest.approx(math.sqrt(55 / 6)), 0.0, 9.0, 10.0]
    out = run("optimLastSample_100", data, (T0, 0), (T0 + 1199, 0))
    assert rows_of(out)[1][2] == [15.0, pytest.approx(math.sqrt(11)), 10.0, 20.0, 11.0, 20.0]


def test_errorbar_stdz_is_a_java_double_string() -> None:
    data = [Sample(T0, 0, 1.0), Sample(T0 + 1, 0, 2.0), Sample(T0 + 700, 0, 5.0)]
    got = rows_of(run("errorbar_600", data, (T0, 0), (T0 + 1199, 0)))
    assert [(r[2], r[5]) for r in got] == [
        (1.5, {"stdz": "0.7071067811865476"}),
        (5.0, {"stdz": "0.0"}),
    ]


@pytest.mark.parametrize(
    ("value", "single", "text"),
    [
        (0.0, False, "0.0"),
        (-0.0, False, "-0.0"),
        (1.0, False, "1.0"),
        (100.0, False, "100.0"),
        (123.456, False, "123.456"),
        (0.001, False, "0.001"),
        (0.0001, False, "1.0E-4"),
        (9999999.0, False, "9999999.0"),
        (1e7, False, "1.0E7"),
        (12345678.9, False, "1.23456789E7"),
        (-1.2345678e-10, False, "-1.2345678E-10"),
        (1e21, False, "1.0E21"),
        (0.1, False, "0.1"),
        (math.nan, False, "NaN"),
        (-math.inf, False, "-Infinity"),
        (2.5, True, "2.5"),
        (0.1, True, "0.1"),
        (3.0, True, "3.0"),
    ],
)
def test_java_double_str(value: float, single: bool, text: str) -> None:
    assert java_double_str(value, single) == text


def test_waveforms_are_summarised_by_their_first_element() -> None:
    wf = PayloadType.WAVEFORM_DOUBLE
    data = [Sample(T0 + i, 0, [float(i), 100.0]) for i in range(4)] + [Sample(T0 + 4, 0, [])]
    got = rows_of(run("mean_600", data, (T0, 0), (T0 + 599, 0), ptype=wf), D)
    assert got[0][2] == 1.5
    out = run("mean_600", data, (T0, 0), (T0 + 599, 0), ptype=wf)
    assert out[0].header.element_count == 1


def test_bytes_are_signed_numbers() -> None:
    data = [Sample(T0, 0, b"\xff"), Sample(T0 + 1, 0, b"\x03")]
    got = rows_of(run("mean_600", data, (T0, 0), (T0 + 599, 0), ptype=PayloadType.SCALAR_BYTE))
    assert got[0][2] == 1.0


@pytest.mark.parametrize("ptype", [PayloadType.SCALAR_SHORT, PayloadType.SCALAR_FLOAT])
def test_other_numeric_columns(ptype: PayloadType) -> None:
    data = [Sample(T0 + i, 0, i) for i in range(10)]
    got = rows_of(run("median_600", data, (T0, 0), (T0 + 599, 0), ptype=ptype))
    assert got[0][2] == 4.5


@pytest.mark.parametrize("spec", ["mean_60", "stats", "deadBand", "caplotbinning", "flyers"])
def test_string_pvs_are_refused_for_numeric_operators(spec: str) -> None:
    pp = parse_post_processor(spec)
    with pytest.raises(PostProcessorError, match="DBR_SCALAR_STRING"):
        pp.output_type(PayloadType.SCALAR_STRING)
    data = [Sample(T0, 0, "x"), Sample(T0 + 1, 0, "y")]
    with pytest.raises(PostProcessorError):
        run(spec, data, (T0, 0), (T0 + 10, 0), ptype=PayloadType.SCALAR_STRING)


@pytest.mark.parametrize(
    "spec", ["firstSample", "lastSample", "firstFill", "lastFill", "nth_3", "count", "ncount"]
)
def test_operators_for_any_type(spec: str) -> None:
    pp = parse_post_processor(spec)
    for ptype in (
        PayloadType.SCALAR_STRING,
        PayloadType.WAVEFORM_STRING,
        PayloadType.V4_GENERIC_BYTES,
    ):
        pp.output_type(ptype)


def test_caplotbinning_by_hand() -> None:
    data = [
        Sample(T0 - 10, 0, 9.0, severity=2),  # before from: a bin of its own, as is
        Sample(T0 + 5, 0, 1.0),  # one sample: as is
        Sample(T0 + 65, 0, 3.0),
        Sample(T0 + 70, 0, 4.0),  # two samples: both as they are
        Sample(T0 + 121, 0, 5.0),
        Sample(T0 + 130, 0, -1.0, severity=1),
        Sample(T0 + 140, 0, 8.0),
        Sample(T0 + 150, 0, 6.0),  # four: first/min/max/last at 0, 15, 30, 45 s
    ]
    got = rows_of(run("caplotbinning_60", data, (T0, 0), (T0 + 179, 0)))
    assert [(r[0] - T0, r[2], r[3]) for r in got] == [
        (-10, 9.0, 0),
        (5, 1.0, 0),
        (65, 3.0, 0),
        (70, 4.0, 0),
        (120, 5.0, 1),
        (135, -1.0, 1),
        (150, 8.0, 1),
        (165, 6.0, 1),
    ]


def test_dead_band_by_hand() -> None:
    vals = [0.0, 0.4, 1.1, 1.5, 1.5, math.nan, 1.0, 1.2, 1.3]
    data = [Sample(T0 + i, 0, v) for i, v in enumerate(vals)]
    data[4] = Sample(T0 + 4, 0, 1.5, severity=1)
    got = rows_of(run("deadBand_0.5", data, (T0, 0), (T0 + 100, 0)))
    assert [r[0] - T0 for r in got] == [0, 2, 4, 5, 6]


def test_dead_band_sends_connection_changes() -> None:
    lost = {"cnxlostepsecs": "1"}
    data = [Sample(T0, 0, 1.0), Sample(T0 + 1, 0, 1.0, fields=lost), Sample(T0 + 2, 0, 1.0)]
    got = rows_of(run("deadBand_5", data, (T0, 0), (T0 + 100, 0)))
    assert [(r[0] - T0, r[5]) for r in got] == [(0, None), (1, lost), (2, None)]


def test_linear_ignores_equal_doubles_across_a_bin_edge() -> None:
    # T0+599.999999999 and T0+600 are the same double: that is no reason for bin 0 to fail
    data = [Sample(T0, 0, 0.0), Sample(T0 + 599, 999_999_999, 1.0), Sample(T0 + 600, 0, 5.0)]
    got = rows_of(run("linear_600", data, (T0, 0), (T0 + 1199, 0)))
    assert [r[2] for r in got] == [0.5, 5.0]


def test_caplotbinning_bin_split_across_chunks() -> None:
    data = [Sample(T0 + 5, 0, 1.0), Sample(T0 + 9, 0, 2.0)]
    got = rows_of(run("caplotbinning_60", data, (T0, 0), (T0 + 59, 0), cuts={1}))
    assert [(r[0] - T0, r[2]) for r in got] == [(5, 1.0), (9, 2.0)]


def test_median_linear_and_loess_by_hand() -> None:
    data = [Sample(T0 + i, 0, v) for i, v in enumerate([5.0, 1.0, 3.0, 2.0])]
    assert rows_of(run("median_600", data, (T0, 0), (T0 + 599, 0)))[0][2] == 2.5
    data = [Sample(T0 + 100 * i, 0, 10.0 * i) for i in range(6)]
    assert rows_of(run("linear_600", data, (T0, 0), (T0 + 599, 0)))[0][2] == 30.0
    # the centre lies after the last sample: the AA falls back to the first value
    assert rows_of(run("linear_600", data[:3], (T0, 0), (T0 + 599, 0)))[0][2] == 0.0
    # loess needs 7 samples; on a line it gives the line back
    data = [Sample(T0 + 40 * i, 0, 2.0 * i + 1) for i in range(15)]
    got = rows_of(run("loess_600", data, (T0, 0), (T0 + 599, 0)))[0][2]
    assert got == pytest.approx(2.0 * 300 / 40 + 1, rel=1e-3)
    assert got == ref.loess_at(
        [T0 + 40.0 * i for i in range(15)], [2.0 * i + 1 for i in range(15)], T0 + 300.0
    )
    assert rows_of(run("loess_600", data[:6], (T0, 0), (T0 + 599, 0)))[0][2] == 1.0


def test_flyers_by_hand() -> None:
    vals = [10.0, 11.0, 9.0, 10.0, 50.0, 10.0, math.nan]
    data = [Sample(T0 + i, 0, v) for i, v in enumerate(vals)]
    got = rows_of(run("ignoreflyers_600_1.5", data, (T0, 0), (T0 + 599, 0)))
    assert [r[2] for r in got] == [10.0, 11.0, 9.0, 10.0, 10.0]
    got = rows_of(run("flyers_600_1.5", data, (T0, 0), (T0 + 599, 0)))
    assert [r[2] for r in got] == [50.0]


def test_nth_drops_fields_and_counts_from_from() -> None:
    data = [Sample(T0 + i, 0, float(i), fields={"a": "b"}) for i in range(10)]
    got = rows_of(run("nth_3", data, (T0 + 2, 0), (T0 + 9, 0)))
    assert [(r[2], r[5]) for r in got] == [(2.0, None), (5.0, None), (8.0, None)]


def test_fills_of_huge_gaps_are_written_in_pieces() -> None:
    data = [Sample(T0, 0, 1.0), Sample(T0 + 200_000, 0, 2.0)]
    out = run("mean_1", data, (T0, 0), (T0 + 200_000, 0))
    assert len(out) >= 3 and sum(len(c) for c in out) == 200_001


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("name", REGISTERED)
def test_every_registered_name_resolves_to_itself(name: str) -> None:
    pp = parse_post_processor(name)
    assert pp.identity == name
    pp = parse_post_processor(f"{name}_77")
    expected = {"ncount": "ncount", "deadBand": "deadBand_77.0"}.get(name, f"{name}_77")
    if name in ("ignoreflyers", "flyers"):
        expected = f"{name}_77_3.0"
    assert pp.identity == expected


@pytest.mark.parametrize(
    ("spec", "cls", "attrs"),
    [
        ("mean", "Summary", {"interval": 900, "fill": True, "kind": "mean"}),
        ("mean_600", "Summary", {"interval": 600, "fill": True}),
        ("meanSample_600", "Summary", {"interval": 600, "fill": False, "kind": "mean"}),
        ("mean600", "Summary", {"interval": 900}),  # startsWith, no "_": the default
        ("count_60", "Summary", {"kind": "count"}),
        ("countSample_60", "Summary", {"kind": "count", "fill": False}),
        ("ncount", "NCount", {}),
        ("std_60", "Summary", {"kind": "std"}),
        ("stats_60", "Summary", {"kind": "stats"}),
        ("median_60", "Summary", {"kind": "median"}),
        ("popvariance_60", "Summary", {"kind": "popvariance"}),
        ("variance_60", "Summary", {"kind": "variance"}),
        ("firstSample_3600", "FirstSample", {"interval": 3600}),
        ("lastSample", "LastSample", {"interval": 900}),
        ("firstFill_60", "FirstFill", {"interval": 60}),
        ("lastFill_60", "LastFill", {"interval": 60}),
        ("optimized", "Optimized", {"points": 1000, "fill": True, "with_last": False}),
        ("optimized_2000", "Optimized", {"points": 2000}),
        ("optimizedSample_20", "Optimized", {"points": 20, "fill": False}),
        ("optimLastSample_20", "Optimized", {"points": 20, "with_last": True, "fill": True}),
        ("optimLastSampleSample_20", "Optimized", {"with_last": True, "fill": False}),
        ("ignoreflyers", "Flyers", {"interval": 900, "num_dev": 3.0, "keep_flyers": False}),
        ("ignoreflyers_900_2.5", "Flyers", {"interval": 900, "num_dev": 2.5}),
        ("flyers_60_1.5", "Flyers", {"interval": 60, "num_dev": 1.5, "keep_flyers": True}),
        ("nth", "Nth", {"n": 900}),
        ("nth_5", "Nth", {"n": 5}),
        ("deadBand", "DeadBand", {"adel": 1.0}),
        ("deadBand_0.5", "DeadBand", {"adel": 0.5}),
        ("caplotbinning_60", "CAPlotBinning", {"interval": 60}),
        ("errorbar_60", "Summary", {"kind": "errorbar"}),
        ("linear_60", "Summary", {"kind": "linear"}),
        ("loess_60", "Summary", {"kind": "loess"}),
        ("jitter_60", "Summary", {"kind": "jitter"}),
        ("skewness_60", "Summary", {"kind": "skewness"}),
        ("kurtosis_60", "Summary", {"kind": "kurtosis"}),
        ("min_60", "Summary", {"kind": "min"}),
        ("max_60", "Summary", {"kind": "max"}),
        (" mean_60 ", "Summary", {"interval": 60}),
        ("mean_+60", "Summary", {"interval": 60}),
    ],
)
def test_parse(spec: str, cls: str, attrs: dict[str, object]) -> None:
    pp = parse_post_processor(spec)
    assert type(pp).__name__ == cls
    for k, v in attrs.items():
        assert getattr(pp, k) == v, k


def test_identities_follow_the_aa_extension() -> None:
    assert parse_post_processor("mean_900").identity == "mean"
    assert parse_post_processor("mean_600").identity == "mean_600"
    assert parse_post_processor("ignoreflyers_900_2.5").identity == "ignoreflyers_900_2.5"
    assert parse_post_processor("ignoreflyers_900_3").identity == "ignoreflyers"
    assert parse_post_processor("deadBand_0.5").identity == "deadBand_0.5"
    assert parse_post_processor("deadBand_1").identity == "deadBand"
    assert parse_post_processor("optimized_1000").identity == "optimized"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nosuchop_600", "unknown post processor"),
        ("Mean_600", "unknown post processor"),
        ("", "unknown post processor"),
        ("mean_abc", "positive whole number"),
        ("mean_0", "positive whole number"),
        ("mean_-5", "positive whole number"),
        ("mean_6.5", "positive whole number"),
        ("mean_", "lacks its argument"),
        ("mean__60", "positive whole number"),
        ("mean_99999999999", "positive whole number"),
        ("optimized_0", "positive whole number"),
        ("nth_0", "positive whole number"),
        ("deadBand_x", "must be a number"),
        ("deadBand_NaN", "must be a number"),
        ("ignoreflyers_600_y", "must be a number"),
        ("ignoreflyers_600_-1", "must not be negative"),
    ],
)
def test_parse_errors(spec: str, message: str) -> None:
    with pytest.raises(PostProcessorError, match=message):
        parse_post_processor(spec)


def test_post_processor_error_is_a_value_error() -> None:
    assert issubclass(PostProcessorError, ValueError)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mean_600(X:Y)", ("X:Y", "mean_600")),
        ("mean(X:Y,600)", ("X:Y", "mean_600")),
        ("mean(X:Y, 600)", ("X:Y", "mean_600")),
        ("ignoreflyers(X:Y,900,2.5)", ("X:Y", "ignoreflyers_900_2.5")),
        ("ignoreflyers_900_2.5(X:Y)", ("X:Y", "ignoreflyers_900_2.5")),
        ("ncount(X:Y)", ("X:Y", "ncount")),
        ("X:Y", ("X:Y", None)),
        ("X:Y.VAL", ("X:Y.VAL", None)),
        ("mean_600(A:B(1))", ("A:B(1)", "mean_600")),  # parentheses inside a PV name
        ("RING:BPM(3)", ("RING:BPM(3)", None)),  # not a call: a PV name with parentheses
        ("bogus_5(X:Y)", ("X:Y", "bogus_5")),  # a call of an unknown operator: 400 later
        ("mean_600(X:Y", ("mean_600(X:Y", None)),  # unbalanced: no call
        ("mean_600()", ("mean_600()", None)),
        ("(X:Y)", ("(X:Y)", None)),
        ("mean_600(X:Y)x", ("mean_600(X:Y)x", None)),
    ],
)
def test_split_function_syntax(name: str, expected: tuple[str, str | None]) -> None:
    assert split_function_syntax(name) == expected


def test_function_syntax_with_a_bad_argument_fails_at_parse() -> None:
    name, pp = split_function_syntax("mean(X:Y,abc)")
    assert (name, pp) == ("X:Y", "mean_abc")
    with pytest.raises(PostProcessorError):
        parse_post_processor(pp)
