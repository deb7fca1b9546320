"""kill -9 tests: real child processes appending or running ETL, killed at random moments.

The child writes its progress to a log file (a real file, so nothing it wrote before the kill
can be lost in a pipe); the test then inspects the stores with fresh ``PlainPBStore`` objects,
as a restarted archiver would.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import PlainPBStore, open_store, parse_store_url, run_etl
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.pbfile import PBFile
from pvarchiver.storage.store import iter_pb_files
from pvarchiver.storage.validate import validate_file

from .helpers.wait import wait_for

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[1] / "src"
WAIT_LIMIT = 60.0  # seconds a child may take to reach a state before the test gives up

# The sample streams, shared verbatim by the children and the test.
STREAMS = """
import numpy as np
from pvarchiver.pb import Sample

T0 = 1710028800  # 2024-03-10T00:00:00Z
SCALAR_STEP = 20  # 180 samples per hourly partition
WAVE_STEP = 900  # 4 waveforms per hourly partition
WAVE_N = 200_000  # 1.6 MB per line


def scalar_sample(k):
    return Sample(T0 + SCALAR_STEP * k, (k * 7919) % 1_000_000_000, k * 0.25)


def wave_sample(k):
    return Sample(T0 + WAVE_STEP * k, k % 1000, (np.arange(WAVE_N, dtype=float) + k).tolist())
"""
_ns: dict[str, object] = {}
exec(STREAMS, _ns)
T0: int = _ns["T0"]  # type: ignore[assignment]
SCALAR_STEP: int = _ns["SCALAR_STEP"]  # type: ignore[assignment]
WAVE_STEP: int = _ns["WAVE_STEP"]  # type: ignore[assignment]
WAVE_N: int = _ns["WAVE_N"]  # type: ignore[assignment]
scalar_sample: Callable[[int], Sample] = _ns["scalar_sample"]  # type: ignore[assignment]

APPENDER = (
    STREAMS
    + """
import random
import sys

from pvarchiver.pb import PayloadType
from pvarchiver.storage import append_samples, open_store, parse_store_url

url, mode, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = open_store(parse_store_url(url))
rng = random.Random(seed)
if mode == "scalar":
    pv, ptype, make, step = "CRASH:SCALAR", PayloadType.SCALAR_DOUBLE, scalar_sample, SCALAR_STEP
    most = 500  # up to 3 partitions per append
else:
    pv, ptype, make, step = "CRASH:WAVE", PayloadType.WAVEFORM_DOUBLE, wave_sample, WAVE_STEP
    most = 7
last = store.last_known_timestamp(pv)
k = 0 if last is None else (last[0] - T0) // step + 1
print("ready", k, flush=True)
while True:
    n = rng.randint(1, most)
    result = append_samples(store, pv, ptype, [make(i) for i in range(k, k + n)])
    assert result.written == n, result
    k += n
    print("committed", k - 1, flush=True)
"""
)

ETL_LOOP = """
import sys

from pvarchiver.storage import open_store, parse_store_url, run_etl

sts, mts, lts = (open_store(parse_store_url(u)) for u in sys.argv[1:4])
now = int(sys.argv[4])
print("ready", flush=True)
while True:
    a = run_etl(sts, mts, now=now)
    b = run_etl(mts, lts, now=now)
    print("pass", a.files_moved, b.files_moved, a.errors + b.errors, flush=True)
"""


def store_url(root: Path, name: str, granularity: str, extra: str = "") -> str:
    return (
        f"pb://localhost?name={name}&rootFolder={root / name.lower()}"
        f"&partitionGranularity={granularity}{extra}"
    )


class Child:
    """A Python child process whose stdout goes to a real log file."""

    started: ClassVar[list[Child]] = []

    def __init__(self, tmp: Path, script: str, args: list[str]) -> None:
        self.log = tmp / f"child-{time.monotonic_ns()}.log"
        self.err = self.log.with_suffix(".err")
        env = dict(os.environ, PYTHONPATH=str(SRC))
        with open(self.log, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", script, *args], stdout=out, stderr=err, env=env
            )
        Child.started.append(self)

    def lines(self) -> list[str]:
        """Complete lines of the log (a line cut by the kill is ignored)."""
        text = self.log.read_text()
        return text.split("\n")[:-1]

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        met = False  # the condition's last answer (it may be stateful: asked once a poll)

        def met_or_exited() -> bool:
            nonlocal met
            met = condition()
            return met or self.proc.poll() is not None

        wait_for(met_or_exited, WAIT_LIMIT, 0.002)
        if met:
            return
        if self.proc.poll() is not None:
            pytest.fail(f"child exited early ({what}): {self.err.read_text()}")
        self.kill()
        pytest.fail(f"child never got to: {what}")

    def wait_ready(self) -> None:
        self.wait_for(lambda: any(x.startswith("ready") for x in self.lines()), "ready")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def assert_killed(self) -> None:
        assert self.proc.returncode == -signal.SIGKILL, self.err.read_text()


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test() -> Iterator[None]:
    yield
    for child in Child.started:
        if child.proc.poll() is None:
            child.kill()
    Child.started.clear()


class FileChecker:
    """Checks every file: valid, or only a partially written tail, or a zero-byte new file.

    A kill between creating a file and writing its header leaves zero bytes; a kill inside a
    write leaves a partial last line. Both are what the next append repairs. Anything else
    (a bad line in the middle, an order problem) fails the test. Files unchanged (same size
    and mtime) since an earlier check are not decoded again; ``damage`` counts each damaged
    file version once.
    """

    def __init__(self) -> None:
        self.known: dict[Path, tuple[tuple[int, int], str]] = {}
        self.damage = {"partial-tail": 0, "zero-byte": 0}

    def check(self, root: Path) -> dict[str, int]:
        states = {"ok": 0, "partial-tail": 0, "zero-byte": 0}
        for path in iter_pb_files(root):
            st = path.stat()
            version = (st.st_size, st.st_mtime_ns)
            cached = self.known.get(path)
            if cached is not None and cached[0] == version:
                states[cached[1]] += 1
                continue
            if st.st_size == 0:
                kind = "zero-byte"
            else:
                kinds = [p.kind for p in validate_file(path).problems]
                assert kinds in ([], ["partial-tail"]), f"{path}: {kinds}"
                kind = kinds[0] if kinds else "ok"
            if kind != "ok":
                self.damage[kind] += 1
            self.known[path] = (version, kind)
            states[kind] += 1
        return states


# ------------------------------------------------------------------ (a) kill while appending


def check_appended(store: PlainPBStore, pv: str, mode: str, committed: int, known: int) -> int:
    """The PV holds exactly samples 0..K-1 of its stream, with K > committed; returns K.

    Samples before ``known - 1`` were checked in an earlier round (and their files have not
    changed since, which the FileChecker sees): reading restarts at sample ``known - 1``.
    """
    step = SCALAR_STEP if mode == "scalar" else WAVE_STEP
    first = max(known - 1, 0)
    got = list(store.read(pv, (T0 + step * first, 0), (2**62, 0), include_prev=False))
    stamps = [s.timestamp for s in got]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    total = first + len(got)
    assert total > committed, f"lost committed samples: have {total}, committed {committed}"
    if mode == "scalar":
        for k, s in enumerate(got, start=first):
            assert s == scalar_sample(k), k
    else:
        ramp = np.arange(WAVE_N, dtype=float)
        for k, s in enumerate(got, start=first):
            assert (s.secs, s.nanos) == (T0 + WAVE_STEP * k, k % 1000), k
            assert len(s.val) == WAVE_N and np.array_equal(np.asarray(s.val), ramp + k), k
    return total


def append_rounds(tmp_path: Path, mode: str, rounds: int, rng: random.Random) -> dict[str, int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = store_url(tmp_path, "STS", "PARTITION_HOUR")
    root = tmp_path / "sts"
    pv = "CRASH:SCALAR" if mode == "scalar" else "CRASH:WAVE"
    checker = FileChecker()
    count = 0
    for r in range(rounds):
        child = Child(tmp_path, APPENDER, [url, mode, str(rng.randrange(2**31))])
        child.wait_ready()
        start_k = int(next(x for x in child.lines() if x.startswith("ready")).split()[1])
        assert start_k == count  # the child resumed right after what is stored
        # let it make some progress, then kill at a random moment
        child.wait_for(lambda c=child: len(c.lines()) >= 2, "first append")
        if mode == "wave" and r % 2:
            # kill as soon as a write is seen in progress: lands inside a 1.6 MB line
            time.sleep(rng.uniform(0, 0.1))
            folder = root / "CRASH"
            base = sum(p.stat().st_size for p in folder.iterdir())
            child.wait_for(
                lambda f=folder, b=base: sum(p.stat().st_size for p in f.iterdir()) != b,
                "a write",
            )
        else:
            time.sleep(rng.uniform(0, 0.2))
        child.kill()
        child.assert_killed()
        committed = max(
            (int(x.split()[1]) for x in child.lines() if x.startswith("committed")), default=-1
        )
        checker.check(root)
        count = check_appended(open_store(parse_store_url(url)), pv, mode, committed, count)
    # a restarted writer appends through every partition that a kill left damaged
    store = open_store(parse_store_url(url))
    newest_end = max(store.files_for_pv(pv)).end
    step = SCALAR_STEP if mode == "scalar" else WAVE_STEP
    make = scalar_sample if mode == "scalar" else _ns["wave_sample"]
    extra = [make(k) for k in range(count, (newest_end - T0) // step + 2)]  # type: ignore[operator]
    ptype = PayloadType.SCALAR_DOUBLE if mode == "scalar" else PayloadType.WAVEFORM_DOUBLE
    assert append_samples(store, pv, ptype, extra).written == len(extra)
    # every file is now fully valid, and the whole stream reads back exactly once
    assert FileChecker().check(root) == {
        "ok": len(store.files_for_pv(pv)),
        "partial-tail": 0,
        "zero-byte": 0,
    }
    total = check_appended(open_store(parse_store_url(url)), pv, mode, count + len(extra) - 1, 0)
    assert total == count + len(extra)
    return checker.damage


def test_kill_during_scalar_appends(tmp_path: Path) -> None:
    seen = append_rounds(tmp_path, "scalar", rounds=6, rng=random.Random(1001))
    print("damaged files seen after kills:", seen)


def test_kill_during_big_waveform_appends(tmp_path: Path) -> None:
    rng = random.Random(1002)
    seen = append_rounds(tmp_path, "wave", rounds=6, rng=rng)
    print("damaged files seen after kills:", seen)
    if seen["partial-tail"] == 0:
        # the kills happened to miss every write: make sure the mid-line case is covered
        for i in range(6):
            more = append_rounds(tmp_path / f"again{i}", "wave", rounds=2, rng=rng)
            if more["partial-tail"]:
                break
        else:
            pytest.fail("no kill landed inside a waveform line")


# ------------------------------------------------------------------ (b) kill during ETL

N_SCALAR_PVS = 36
N_WAVE_PVS = 4
HOUR = 3600
DAY = 86400


def etl_pv_names() -> list[tuple[str, PayloadType]]:
    names = [(f"ETL:SCALAR:PV{i:02d}", PayloadType.SCALAR_DOUBLE) for i in range(N_SCALAR_PVS // 2)]
    names += [(f"ETL-{i}:VAL", PayloadType.SCALAR_DOUBLE) for i in range(N_SCALAR_PVS // 2)]
    names += [(f"ETL:WAVE-{i}", PayloadType.WAVEFORM_DOUBLE) for i in range(N_WAVE_PVS)]
    return names


def day_of_data(day: int, rng: random.Random) -> dict[str, tuple[PayloadType, list[Sample]]]:
    out = {}
    for pv, ptype in etl_pv_names():
        begin = T0 + day * DAY
        if ptype is PayloadType.SCALAR_DOUBLE:
            samples = [
                Sample(t, rng.randrange(1_000_000_000), rng.random())
                for t in range(begin + rng.randrange(60), begin + DAY, 450)
            ]
        else:
            samples = [
                Sample(t, rng.randrange(1_000_000_000), [rng.random()] * 500)
                for t in range(begin + rng.randrange(60), begin + DAY, 300)
            ]
        out[pv] = (ptype, samples)
    return out


class DataAppended:
    """Polled condition: a file under ``root`` that already held samples has grown.

    That is the bulk append of the next source file into it, so a kill right after it has a
    fair chance to land between the destination write (and fsync) and the delete of the
    source. Growth of a new file's header does not count. Only known paths are stat'ed, and
    the tree is rescanned every 50 polls for new ones, which keeps the poll fast.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sizes: dict[Path, int] = {}
        self.polls = 0

    def __call__(self) -> bool:
        if self.polls % 50 == 0:  # pick up files created meanwhile
            for p in iter_pb_files(self.root):
                self.sizes.setdefault(p, 0)
        self.polls += 1
        grown = False
        for p, before in self.sizes.items():
            try:
                now = os.stat(p).st_size
            except FileNotFoundError:
                continue
            grown = grown or 200 < before < now
            self.sizes[p] = now
        return grown


def started_moves(src: PlainPBStore, dst: PlainPBStore) -> int:
    """Source files whose data the destination already (partly) holds: a move in progress."""
    n = 0
    for path in iter_pb_files(src.root):
        if path.stat().st_size == 0:
            continue
        with PBFile.open(path) as f:
            first = f.first_sample()
            pv = f.header.pvname
        if first is None:
            continue
        target = dst.path_for(pv, first.secs)
        if not target.exists() or target.stat().st_size == 0:
            continue
        with PBFile.open(target) as g:
            last = g.last_sample()
        if last is not None and last.timestamp >= first.timestamp:
            n += 1
    return n


def test_kill_during_etl_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(2001)
    urls = [
        store_url(tmp_path, "STS", "PARTITION_HOUR"),
        store_url(tmp_path, "MTS", "PARTITION_DAY", "&hold=2&gather=1"),
        store_url(tmp_path, "LTS", "PARTITION_YEAR"),
    ]

    def open_stores() -> list[PlainPBStore]:
        return [open_store(parse_store_url(u)) for u in urls]

    writer = open_stores()[0]
    mts_root, lts_root = tmp_path / "mts", tmp_path / "lts"
    expected: dict[str, list[Sample]] = {pv: [] for pv, _ in etl_pv_names()}
    checker = FileChecker()
    interrupted = 0
    in_move = 0
    rounds = 4
    for day in range(rounds):
        for pv, (ptype, samples) in day_of_data(day, rng).items():
            assert append_samples(writer, pv, ptype, samples).written == len(samples)
            expected[pv].extend(samples)
        n_files = sum(1 for _ in iter_pb_files(writer.root))
        assert n_files == len(expected) * 24
        now = T0 + (day + 1) * DAY + 300
        child = Child(tmp_path, ETL_LOOP, [*urls, str(now)])
        child.wait_ready()
        # odd days aim at the MTS -> LTS stage (the STS is drained first), even days at the
        # STS -> MTS stage; days 0 and 3 then kill as soon as the destination is seen growing,
        # which lands between its write and the delete of the source more often than not
        stage_dst = lts_root if day % 2 else mts_root
        target = 0 if day % 2 else rng.randrange(1, n_files)
        child.wait_for(
            lambda t=target: sum(1 for _ in iter_pb_files(writer.root)) <= t, "STS draining"
        )
        if day in (0, 3):
            child.wait_for(DataAppended(stage_dst), "a destination write")
        else:
            time.sleep(rng.uniform(0, 0.05) if target == 0 else rng.uniform(0, 0.002))
        child.kill()
        child.assert_killed()
        passes = [x for x in child.lines() if x.startswith("pass")]
        if not passes:
            interrupted += 1
        else:
            assert passes[0].endswith("[]"), passes[0]
        sts, mts, lts = stores = open_stores()
        for st in stores:
            checker.check(st.root)
        in_move += started_moves(sts, mts) + started_moves(mts, lts)
        # the restarted archiver's ETL finishes the job
        a = run_etl(sts, mts, now=now)
        b = run_etl(mts, lts, now=now)
        assert a.errors == [] and b.errors == []
        assert list(iter_pb_files(sts.root)) == []
        for pv in expected:
            days = [(pf.start - T0) // DAY for pf in mts.files_for_pv(pv)]
            assert days == [day]  # hold=2, gather=1: one completed day stays in the MTS
            if day:
                assert [pf.path.name[-7:] for pf in lts.files_for_pv(pv)] == ["2024.pb"]
        for st in stores:
            states = checker.check(st.root)
            assert states["partial-tail"] == states["zero-byte"] == 0, (st.name, states)
        # a second pass finds nothing left to do
        assert run_etl(sts, mts, now=now).files_moved == 0
        assert run_etl(mts, lts, now=now).files_moved == 0
    print(
        f"kills inside a pass: {interrupted}/{rounds}; source files caught mid-move: {in_move};"
        f" damaged files seen: {checker.damage}"
    )
    assert interrupted >= 1
    stores = open_stores()
    for pv, samples in expected.items():
        held = []
        for st in stores:
            got = list(st.read_all(pv))
            stamps = [s.timestamp for s in got]
            assert all(x < y for x, y in itertools.pairwise(stamps)), (st.name, pv)
            held.extend(got)
        held.sort(key=lambda s: s.timestamp)
        assert len({s.timestamp for s in held}) == len(held), f"{pv}: in two stores"
        assert held == samples, pv
