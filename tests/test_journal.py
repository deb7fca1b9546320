"""The write-ahead journal without sockets or sleeps: what a crash at any point leaves is
replayed into the store exactly once, a torn tail is cut, deleted PVs stay deleted, and
segments go once their samples are in ``.pb`` files."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from pvarchiver.engine.journal import Journal, segment_numbers, segment_path
from pvarchiver.engine.journal_replay import replay
from pvarchiver.engine.writer import Engine
from pvarchiver.pb import PayloadType
from pvarchiver.storage import PlainPBStore
from pvarchiver.storage.batch import append_samples

from .helpers.clock import Clock
from .helpers.stores import make_store

D = PayloadType.SCALAR_DOUBLE
S = PayloadType.SCALAR_STRING
W = PayloadType.WAVEFORM_DOUBLE
NOW = calendar.timegm((2025, 6, 1, 12, 0, 0))


def _engine(tmp_path: Path) -> tuple[Engine, PlainPBStore, Journal]:
    sts = make_store(tmp_path, "STS", "PARTITION_HOUR")
    j = Journal(tmp_path / "journal", fsync_seconds=0)
    return Engine(sts, clock=Clock(NOW + 100), journal=j), sts, j


def _crash(j: Journal) -> None:
    """What a SIGKILL leaves: whatever was written; the file descriptor goes."""
    import os

    os.close(j._fd)


def _fresh_store(tmp_path: Path) -> PlainPBStore:
    return make_store(tmp_path, "STS", "PARTITION_HOUR")


def test_samples_journaled_in_a_tick_survive_a_crash(tmp_path: Path) -> None:
    engine, sts, j = _engine(tmp_path)
    a = engine.add_pv("J:A", D)
    s = engine.add_pv("J:S", S)
    w = engine.add_pv("J:W", W)
    for pv, ptype in ((a, D), (s, S), (w, W)):
        pv.on_connect(ptype)
    for i in range(50):
        a.on_event(NOW + i, 7, 0, 0, float(i))
        s.on_event(NOW + i, 0, 1, 2, f"text {i}")
        w.on_event(NOW + i, 0, 0, 0, [float(i), -float(i)])
    j.tick(0.1)
    a.on_event(NOW + 60, 0, 0, 0, 60.0)  # after the last tick: lost with the process
    _crash(j)
    assert not list(sts.root.rglob("*.pb"))
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert (rep.samples_read, rep.samples_written, rep.errors) == (150, 150, [])
    got = list(_fresh_store(tmp_path).read_all("J:A"))
    assert [(x.secs, x.nanos, x.val) for x in got] == [(NOW + i, 7, float(i)) for i in range(50)]
    # the connection fields of the first sample came back too
    assert got[0].fields is not None and got[0].fields["startup"] == "true"
    strs = list(_fresh_store(tmp_path).read_all("J:S"))
    assert [(x.val, x.severity, x.status) for x in strs][:2] == [("text 0", 1, 2), ("text 1", 1, 2)]
    waves = [list(x.val) for x in _fresh_store(tmp_path).read_all("J:W")]
    assert waves[3] == [3.0, -3.0] and len(waves) == 50
    assert segment_numbers(tmp_path / "journal") == []  # replayed segments are gone


def test_replay_writes_only_what_the_store_does_not_have(tmp_path: Path) -> None:
    engine, sts, j = _engine(tmp_path)
    a = engine.add_pv("J:A", D)
    a.on_connect(D)
    for i in range(10):
        a.on_event(NOW + i, 0, 0, 0, float(i))
    j.tick(0.1)
    engine.take_all()  # a write cycle begins (the segment is sealed)...
    # ...and the process dies before anything reaches the .pb file; more events had come
    for i in range(10, 15):
        a.on_event(NOW + i, 0, 0, 0, float(i))
    j.tick(0.1)
    _crash(j)
    # half of it had already been written by an earlier life of the archiver
    append_samples(sts, "J:A", D, [s for s in _samples(range(6))])
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert rep.samples_written == 9
    assert [x.val for x in _fresh_store(tmp_path).read_all("J:A")] == [float(i) for i in range(15)]
    # a second replay of the same data (nothing left) writes nothing
    assert replay(tmp_path / "journal", _fresh_store(tmp_path)).samples_written == 0


def _samples(r: range):
    from pvarchiver.pb import Sample

    return [Sample(NOW + i, 0, float(i)) for i in r]


def test_segments_go_once_written_and_failed_writes_stay_journaled(tmp_path: Path) -> None:
    engine, sts, j = _engine(tmp_path)
    a = engine.add_pv("J:A", D)
    a.on_connect(D)
    a.on_event(NOW, 0, 0, 0, 1.0)
    j.tick(0.1)
    assert engine.write_all() == 1
    assert segment_numbers(tmp_path / "journal") == [2]  # the first one is dropped
    # the next write fails: the sample must stay protected by the journal
    a.on_event(NOW + 1, 0, 0, 0, 2.0)
    blocker = tmp_path / "blocked"
    blocker.write_text("x")
    sts.root.rename(tmp_path / "sts-away")
    sts.root.parent.mkdir(parents=True, exist_ok=True)
    sts.root.symlink_to(blocker)  # the STS folder is now a file: every write fails
    sts.forget("J:A")
    assert engine.write_all() == 0 and a.metrics.write_errors == 1
    a.on_event(NOW + 2, 0, 0, 0, 3.0)
    j.tick(0.1)
    _crash(j)  # and now the process dies
    sts.root.unlink()
    (tmp_path / "sts-away").rename(sts.root)
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert rep.errors == []
    assert [x.val for x in _fresh_store(tmp_path).read_all("J:A")] == [1.0, 2.0, 3.0]


def test_held_samples_of_a_paused_pv_are_carried(tmp_path: Path) -> None:
    engine, _sts, j = _engine(tmp_path)
    a = engine.add_pv("J:A", D)
    a.on_connect(D)
    a.on_event(NOW, 0, 0, 0, 1.0)
    a.paused = True  # e.g. its file holds another type: samples stay in memory
    for _ in range(3):
        engine.write_all()
    assert len(segment_numbers(tmp_path / "journal")) == 1
    _crash(j)
    a.paused = False
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert rep.samples_written == 1


def test_deleted_pv_is_not_resurrected(tmp_path: Path) -> None:
    engine, _sts, j = _engine(tmp_path)
    a = engine.add_pv("J:DEL", D)
    a.on_connect(D)
    a.on_event(NOW, 0, 0, 0, 1.0)
    j.tick(0.1)
    engine.remove_pv("J:DEL")  # deletePV: its data files are being removed
    b = engine.add_pv("J:DEL", D)  # archived again afterwards
    b.on_connect(D)
    b.on_event(NOW + 5, 0, 0, 0, 5.0)
    j.tick(0.1)
    _crash(j)
    replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert [x.val for x in _fresh_store(tmp_path).read_all("J:DEL")] == [5.0]


def test_a_torn_tail_is_cut_never_replayed(tmp_path: Path) -> None:
    engine, _sts, j = _engine(tmp_path)
    a = engine.add_pv("J:A", D)
    a.on_connect(D)
    for i in range(20):
        a.on_event(NOW + i, 0, 0, 0, float(i))
        j.tick(0.1)  # one record per sample
    _crash(j)
    path = segment_path(tmp_path / "journal", 1)
    data = path.read_bytes()
    # the write of the last record torn half-way, and a flipped byte in the one before
    cut = len(data) - 11
    damaged = bytearray(data[:cut])
    record_len = 9 + 1 + 4 + 24  # header, typecode, id + one packed double row
    damaged[cut - record_len - 3] ^= 0xFF
    path.write_bytes(bytes(damaged))
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert rep.cut_bytes > 0 and rep.errors == []
    vals = [x.val for x in _fresh_store(tmp_path).read_all("J:A")]
    # everything before the damage, nothing after, no garbage
    assert vals == [float(i) for i in range(len(vals))] and 15 <= len(vals) <= 18


def test_a_store_that_refuses_keeps_the_segments_aside(tmp_path: Path) -> None:
    engine, sts, j = _engine(tmp_path)
    a = engine.add_pv("J:T", D)
    a.on_connect(D)
    a.on_event(NOW + 10, 0, 0, 0, 1.0)
    j.tick(0.1)
    _crash(j)
    # meanwhile the PV's file got another type: replay must not mix types, nor drop data
    from pvarchiver.pb import Sample

    append_samples(sts, "J:T", PayloadType.SCALAR_INT, [Sample(NOW + 5, 0, 3)])
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert rep.errors and rep.moved_to
    assert list(Path(rep.moved_to).glob("seg-*.jrn"))
    assert segment_numbers(tmp_path / "journal") == []


def test_replay_does_not_rewrite_what_etl_moved_on(tmp_path: Path) -> None:
    """A crash between a write cycle and the drop of its segment, with ETL having moved the
    STS file to the MTS meanwhile: the samples are in the MTS, so replay writes nothing."""
    from pvarchiver.storage.etl import run_etl

    engine, sts, j = _engine(tmp_path)
    a = engine.add_pv("J:E", D)
    a.on_connect(D)
    for i in range(5):
        a.on_event(NOW + i, 0, 0, 0, float(i))
    j.tick(0.1)
    taken = engine.take_all()  # sealed, not yet dropped...
    written, failed = engine.write_buffers(taken)
    assert written == 5 and not failed
    _crash(j)  # ...when the process dies
    mts = make_store(tmp_path, "MTS", "PARTITION_DAY")
    run_etl(sts, mts, now=NOW + 10 * 86400)
    assert not list(sts.read_all("J:E")) and len(list(mts.read_all("J:E"))) == 5
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path), [mts])
    assert rep.samples_written == 0 and rep.errors == []
    assert not list(_fresh_store(tmp_path).read_all("J:E"))


def test_a_segment_that_cannot_be_created_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk when a write cycle starts a new segment: the write loop goes on, the
    current segment keeps growing and nothing journaled is dropped."""
    import errno

    engine, _sts, j = _engine(tmp_path)
    a = engine.add_pv("J:F", D)
    a.on_connect(D)
    a.on_event(NOW, 0, 0, 0, 1.0)

    def full(n: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(j, "_open", full)
    assert engine.write_all() == 1  # the write cycle itself is not disturbed
    assert j.stats.write_errors == 1 and segment_numbers(tmp_path / "journal") == [1]
    a.on_event(NOW + 1, 0, 0, 0, 2.0)
    j.tick(0.1)
    _crash(j)
    rep = replay(tmp_path / "journal", _fresh_store(tmp_path))
    assert rep.errors == [] and rep.samples_written == 1
    assert [x.val for x in _fresh_store(tmp_path).read_all("J:F")] == [1.0, 2.0]
