"""``pvarchiver pb rekey SRC DST``: a store tree copied to the other file naming and back.

The source trees have AA names (``:`` before the partition name), which Windows refuses: the
tests that lay one out on disk skip there. The Java AA's own files come from
``PVARCHIVER_AA_VECTORS`` (as in test_pb_vectors.py); they are read, never copied into the repo.
"""

from __future__ import annotations

import calendar
import dataclasses
import os
from pathlib import Path

import pytest

from pvarchiver.cli.main import main
from pvarchiver.pb import PayloadInfo, PayloadType, Sample, header_line, sample_line, year_of
from pvarchiver.storage import rekey as rekey_mod
from pvarchiver.storage.naming import KeyNaming, portable, unportable
from pvarchiver.storage.partitions import Granularity, partition_for
from pvarchiver.storage.pbfile import PBFile
from pvarchiver.storage.rekey import (
    TEMP_SUFFIX,
    RekeyError,
    convert_relpath,
    parse_name,
    rekey,
)

VECTORS = Path(
    os.environ.get(
        "PVARCHIVER_AA_VECTORS",
        Path(__file__).resolve().parents[2] / "shared" / "vectors" / "aa-upstream",
    )
)
needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no AA vectors at {VECTORS}")

D = PayloadType.SCALAR_DOUBLE
T0 = calendar.timegm((2024, 3, 1, 12, 5, 0))
AA = KeyNaming()
G = Granularity

# (PV, store folder, granularity, time): every partition-name length, a key that is a prefix of
# another (VAL / VAL_BOOK: what the terminator is for), dots, a device name, a trailing dot and
# characters Windows forbids
SYNTHETIC = [
    ("SYN:DEV-1:VAL", "sts", G.PARTITION_HOUR, T0),
    ("SYN:DEV-1:VAL", "mts", G.PARTITION_DAY, T0),
    ("SYN:DEV-1:VAL", "lts", G.PARTITION_YEAR, T0),
    ("SYN:DEV-1:VAL", "lts", G.PARTITION_YEAR, T0 - 366 * 86400),
    ("SYN:DEV-1:VAL_BOOK", "lts", G.PARTITION_YEAR, T0),
    ("SYN:A.B{x}:C", "lts", G.PARTITION_MONTH, T0),
    ("SYN:FIVE", "sts", G.PARTITION_5MIN, T0),
    ("SYN:CON:X", "lts", G.PARTITION_YEAR, T0),
    ("SYN:ODD.:Y", "lts", G.PARTITION_YEAR, T0),
    ("SYN:Q?:Z*", "lts", G.PARTITION_YEAR, T0),
]


def _pb(pv: str, secs: int, n: int = 3) -> bytes:
    year = year_of(secs)
    lines = [sample_line(D, year, Sample(secs + i, 0, float(i))) for i in range(n)]
    return header_line(PayloadInfo(D, pv, year)) + b"".join(lines)


def _put(root: Path, rel: str, data: bytes) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def synthetic_tree(root: Path) -> dict[str, bytes]:
    """An AA storage root (sts/mts/lts) with AA names; returns {relative path: bytes}."""
    out: dict[str, bytes] = {}
    for pv, store, g, secs in SYNTHETIC:
        rel = f"{store}/{AA.key(pv)}{partition_for(secs, g)}.pb"
        out[rel] = _pb(pv, secs)
    # a post-processor cache of the AA: store data, copied with the .pb files
    out["lts/SYN/DEV/1/VAL:2024.firstSample_3600"] = _pb("SYN:DEV-1:VAL", T0, 1)
    for rel, data in out.items():
        _put(root, rel, data)
    return out


def vector_tree(root: Path) -> dict[str, bytes]:
    """The Java AA's own files laid out as its lts/ would hold them."""
    out: dict[str, bytes] = {}
    for i, f in enumerate(sorted(VECTORS.glob("*.pb"))):
        with PBFile.open(f) as pf:
            first = pf.first_sample()
            pv = pf.header.pvname
        g = [G.PARTITION_YEAR, G.PARTITION_DAY, G.PARTITION_HOUR][i % 3]
        secs = first.secs if first is not None else calendar.timegm((pf.header.year, 1, 1, 0, 0, 0))
        rel = f"{AA.key(pv)}{partition_for(secs, g)}.pb"
        out[rel] = f.read_bytes()
        _put(root, rel, out[rel])
    assert out, f"no .pb files in {VECTORS}"
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def stat_tree(root: Path) -> dict[str, tuple[int, int, int]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def assert_portable_copy(orig: dict[str, bytes], copy: dict[str, bytes]) -> None:
    assert len(copy) == len(orig)
    for rel, data in copy.items():
        assert ":" not in rel, rel
        assert "\uf03a" in rel.rsplit("/", 1)[-1], rel
        assert not any(c in rel for c in '"*<>?|'), rel
        assert unportable(rel) in orig, rel
        assert orig[unportable(rel)] == data


@pytest.fixture(autouse=True)
def _aa_names_allowed(request: pytest.FixtureRequest) -> None:
    """The source trees have AA names: skip where tmp_path refuses them (Windows, or
    ``--storage-fs=ntfs``)."""
    if "tmp_path" not in request.fixturenames:
        return
    tmp_path = request.getfixturevalue("tmp_path")
    try:
        (tmp_path / "a:b").touch()
    except OSError:
        pytest.skip(f"{tmp_path} refuses ':' in file names, so it cannot hold an AA tree")
    (tmp_path / "a:b").unlink()


@pytest.fixture
def aa_tree(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    src = tmp_path / "aa"
    return src, synthetic_tree(src)


# ----------------------------------------------------------------------------- names


def test_parse_name_finds_the_terminator_before_the_partition_name() -> None:
    np = parse_name("HEARTBEAT:2012_08_24_16.pb")
    assert (np.stem, np.terminator, np.partition, np.ext) == (
        "HEARTBEAT",
        ":",
        "2012_08_24_16",
        ".pb",
    )
    assert parse_name("DEV_1999:2012.pb").stem == "DEV_1999"
    assert parse_name("X;2012_03.firstSample_3600").terminator == ";"
    assert parse_name("X_2012_08.pb", "_").stem == "X"
    for bad in ("notes.txt", "X:2012_13.pb", "X:12.pb", "X:2012_08_24_16_07.pb", "X:2012.p"):
        assert parse_name(bad) is None, bad
    assert parse_name("X2012.pb", ":") is None
    assert parse_name("A/:2012.pb".rsplit("/")[-1]).stem == ""  # PV "A:" has an empty stem


def test_convert_relpath_both_ways() -> None:
    aa = "EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb"
    win = convert_relpath(aa, ":", to_portable=True)
    assert win == "EIOC/LI30/MP01/HEARTBEAT\uf03a2012_08_24_16.pb" == portable(aa)
    assert convert_relpath(win, ":") == aa
    assert convert_relpath(aa, ";") == "EIOC/LI30/MP01/HEARTBEAT;2012_08_24_16.pb"
    assert convert_relpath("A/CON/B:2012.pb", ":", to_portable=True) == "A/CO\uf04e/B\uf03a2012.pb"
    assert convert_relpath("README", ":") is None


# ----------------------------------------------------------------------------- (a) round trip


@needs_vectors
def test_java_aa_files_to_portable_names_and_back(tmp_path: Path) -> None:
    src = tmp_path / "lts"
    orig = vector_tree(src)
    before = stat_tree(src)

    win = tmp_path / "win" / "lts"
    rep = rekey(src, win, names="portable")
    assert rep.ok, rep
    assert rep.portable and rep.source_terminator == ":"
    assert len(rep.copied) == len(orig) and not rep.skipped
    assert rep.bytes_copied == sum(len(b) for b in orig.values())
    assert_portable_copy(orig, tree(win))

    back = tmp_path / "back" / "lts"
    rep = rekey(win, back)  # tmp_path accepts ':': AA names
    assert rep.ok and not rep.portable
    assert tree(back) == orig  # byte for byte, name for name
    assert stat_tree(src) == before  # the source was only read


def test_synthetic_store_round_trip_through_the_cli(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, orig = aa_tree
    before = stat_tree(src)
    win = tmp_path / "win"
    assert main(["pb", "rekey", str(src), str(win), "--portable"]) == 0
    out = capsys.readouterr().out
    assert f"copied and verified {len(orig)} file(s)" in out
    assert "portable (Windows) names, terminator ':' written as U+F03A" in out
    copy = tree(win)
    assert_portable_copy(orig, copy)
    assert "lts/SYN/CO\uf04e/X\uf03a2024.pb" in copy  # device name as a folder
    assert "lts/SYN/ODD\uf02e/Y\uf03a2024.pb" in copy  # trailing dot of a folder
    assert "lts/SYN/Q\uf03f/Z\uf02a\uf03a2024.pb" in copy

    back = tmp_path / "back"
    assert main(["pb", "rekey", str(win), str(back)]) == 0
    assert tree(back) == orig
    assert stat_tree(src) == before


# ----------------------------------------------------------------------------- (b) (c) re-runs


def test_rerun_is_a_no_op(aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    src, orig = aa_tree
    dst = tmp_path / "win"
    assert rekey(src, dst, names="portable").ok
    first = stat_tree(dst)
    rep = rekey(src, dst, names="portable")
    assert rep.ok
    assert not rep.copied and len(rep.already) == len(orig)
    assert stat_tree(dst) == first  # nothing rewritten


def test_interrupted_run_completes_on_rerun(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, orig = aa_tree
    dst = tmp_path / "win"
    real_replace = os.replace
    calls = 0

    def replace_then_die(a: str | Path, b: str | Path) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # killed after writing the third copy, before renaming it
            raise KeyboardInterrupt
        real_replace(a, b)

    monkeypatch.setattr(rekey_mod.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        rekey(src, dst, names="portable")
    monkeypatch.undo()
    partial = tree(dst)
    assert len([r for r in partial if not r.endswith(TEMP_SUFFIX)]) == 2
    assert len([r for r in partial if r.endswith(TEMP_SUFFIX)]) == 1

    rep = rekey(src, dst, names="portable")
    assert rep.ok, rep
    assert (len(rep.copied), len(rep.already), rep.temps_removed) == (len(orig) - 2, 2, 1)
    assert_portable_copy(orig, tree(dst))  # no temporary file left


def test_leftover_temp_and_missing_file_completed_on_rerun(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    src, orig = aa_tree
    dst = tmp_path / "win"
    assert rekey(src, dst, names="portable").ok
    victims = sorted(p for p in dst.rglob("*.pb"))[:2]
    victims[0].unlink()  # never renamed into place
    Path(str(victims[0]) + TEMP_SUFFIX).write_bytes(b"half a fi")
    Path(str(victims[1]) + TEMP_SUFFIX).write_bytes(b"stale")  # its file is complete

    rep = rekey(src, dst, names="portable")
    assert rep.ok, rep
    assert (len(rep.copied), len(rep.already), rep.temps_removed) == (1, len(orig) - 1, 2)
    assert_portable_copy(orig, tree(dst))


# ----------------------------------------------------------------------------- (d) conflicts


def test_different_file_in_destination_is_a_conflict_never_overwritten(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, orig = aa_tree
    dst = tmp_path / "win"
    theirs = "lts/SYN/DEV/1/VAL_BOOK\uf03a2024.pb"
    other = _pb("SYN:DEV-1:VAL_BOOK", T0, 7)
    _put(dst, theirs, other)

    assert main(["pb", "rekey", str(src), str(dst), "--portable"]) == 1
    out = capsys.readouterr().out
    assert "CONFLICT: lts/SYN/DEV/1/VAL_BOOK:2024.pb" in out
    assert "conflicts 1" in out
    assert (dst / theirs).read_bytes() == other
    copy = tree(dst)
    assert len(copy) == len(orig)
    assert all(orig[unportable(r)] == b for r, b in copy.items() if r != theirs)

    # resolved by hand (the user removes the other file): the re-run completes it
    (dst / theirs).unlink()
    rep = rekey(src, dst, names="portable")
    assert rep.ok and len(rep.copied) == 1
    assert_portable_copy(orig, tree(dst))


def _case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe says the destination ignores case (logic test on any folder)."""
    real = rekey_mod.probe_folder
    monkeypatch.setattr(
        rekey_mod,
        "probe_folder",
        lambda root: dataclasses.replace(real(root), case_insensitive=True),
    )


def test_names_differing_only_in_case_conflict_on_a_case_insensitive_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "aa"
    orig = {
        "CASE/a:2024.pb": _pb("CASE:a", T0),
        "CASE/A:2024.pb": _pb("CASE:A", T0),
        "Dev/X:2024.pb": _pb("Dev:X", T0),
        "DEV/Y:2024.pb": _pb("DEV:Y", T0),
        "OK/Z:2024.pb": _pb("OK:Z", T0),
    }
    for rel, data in orig.items():
        _put(src, rel, data)
    _case_insensitive(monkeypatch)
    dst = tmp_path / "win"
    rep = rekey(src, dst, names="portable")
    assert not rep.ok
    assert sorted(i.src for i in rep.conflicts) == sorted(set(orig) - {"OK/Z:2024.pb"})
    assert [i.src for i in rep.copied] == ["OK/Z:2024.pb"]
    assert tree(dst) == {"OK/Z\uf03a2024.pb": orig["OK/Z:2024.pb"]}

    assert main(["pb", "rekey", str(src), str(dst), "--portable"]) == 1
    out = capsys.readouterr().out
    assert "CONFLICT: CASE/A:2024.pb -> CASE/A\\uf03a2024.pb" in out
    assert "differing only in case" in out


def test_same_destination_name_from_two_spellings_is_a_conflict(tmp_path: Path) -> None:
    """A tree holding both spellings of one file (AA and portable) cannot be merged."""
    src = tmp_path / "mixed"
    _put(src, "M/X:2024.pb", _pb("M:X", T0))
    _put(src, "M/X\uf03a2024.pb", _pb("M:X", T0, 2))
    rep = rekey(src, tmp_path / "out")
    assert not rep.ok and len(rep.conflicts) == 2 and not rep.copied
    assert "the same name" in rep.conflicts[0].reason


# ----------------------------------------------------------------------------- (e) terminators


def test_custom_terminator_round_trip(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, orig = aa_tree
    semi = tmp_path / "semi"
    assert main(["pb", "rekey", str(src), str(semi), "--terminator", ";"]) == 0
    capsys.readouterr()
    copy = tree(semi)
    assert len(copy) == len(orig)
    for rel, data in copy.items():
        np = parse_name(rel.rsplit("/", 1)[-1], ";")
        assert np is not None, rel
        aa_rel = rel.rsplit("/", 1)[0] + "/" + np.with_terminator(":")
        assert orig[aa_rel] == data
    assert "lts/SYN/DEV/1/VAL_BOOK;2024.pb" in copy

    # portable with ';': nothing in the file name needs mapping but the PV's own characters
    win = tmp_path / "win"
    rep = rekey(semi, win, terminator=";", names="portable")
    assert rep.ok and rep.source_terminator == ";"
    assert "lts/SYN/DEV/1/VAL_BOOK;2024.pb" in tree(win)

    back = tmp_path / "back"
    assert main(["pb", "rekey", str(win), str(back), "--from-terminator", ";"]) == 0
    out = capsys.readouterr().out
    assert "source terminator ';'" in out
    assert tree(back) == orig


def test_files_with_another_terminator_than_the_tree_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "aa"
    for rel in ("A/X:2024.pb", "A/Y:2024.pb", "A/Z;2024.pb"):
        _put(src, rel, _pb("A:" + rel[2], T0))
    rep = rekey(src, tmp_path / "out")
    assert rep.ok and rep.source_terminator == ":"
    assert [(i.src, i.reason.split(",")[0]) for i in rep.skipped] == [
        ("A/Z;2024.pb", "its terminator is ';'")
    ]
    assert "several terminators" in rep.notes[0]
    rep = rekey(src, tmp_path / "semi", from_terminator=";")
    assert [i.src for i in rep.copied] == ["A/Z;2024.pb"] and len(rep.skipped) == 2


# ----------------------------------------------------------------------------- (f) other files


def test_files_that_are_not_store_data_are_skipped_with_a_reason(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, orig = aa_tree
    extra = {
        "README.txt": b"notes",
        "lts/SYN/DEV/1/VAL:2024.pb.bak": b"x",
        "lts/SYN/DEV/1/VAL:2024.pbappend": b"x",
        "sts/SYN/DEV/1/VAL:2024_03_01_12.pb.repair": b"x",
        "lts/SYN/DEV/1/VAL:2024.pb.renaming": b"x",
        "lts/SYN/DEV/1/VAL:2024_13.pb": b"x",  # no month 13: not a partition name
        "lts/SYN/EMPTY:2024.pb": b"",
    }
    for rel, data in extra.items():
        _put(src, rel, data)
    assert main(["pb", "rekey", str(src), str(tmp_path / "win"), "--portable"]) == 0
    out = capsys.readouterr().out
    for rel in extra:
        assert f"skipped: {rel}: " in out, rel
    assert "skipped: README.txt: not a store data file" in out
    assert "original kept by 'pb repair'" in out
    assert "interrupted Java AA ETL" in out
    assert "empty (zero-byte) .pb file" in out
    assert f"skipped {len(extra)}," in out
    assert_portable_copy(orig, tree(tmp_path / "win"))


def test_pb_file_with_unreadable_header_is_an_error(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    src, orig = aa_tree
    _put(src, "lts/BROKEN:2024.pb", b"not a header\n")
    rep = rekey(src, tmp_path / "win", names="portable")
    assert not rep.ok
    assert [i.src for i in rep.errors] == ["lts/BROKEN:2024.pb"]
    assert "header cannot be read" in rep.errors[0].reason
    assert len(rep.copied) == len(orig)


# ----------------------------------------------------------------------------- options


def test_dry_run_writes_nothing(aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    src, orig = aa_tree
    dst = tmp_path / "new" / "lts"
    rep = rekey(src, dst, names="portable", dry_run=True)
    assert rep.ok and len(rep.copied) == len(orig)
    assert not (tmp_path / "new").exists()


def test_folder_refusing_colons_gets_portable_names_unless_aa_names_forced(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, orig = aa_tree
    real = rekey_mod.probe_folder
    monkeypatch.setattr(
        rekey_mod,
        "probe_folder",
        lambda root: dataclasses.replace(real(root), refused=frozenset(':"*<>?|')),
    )
    with pytest.raises(RekeyError, match=r"refuses ':'.*drop --aa-names"):
        rekey(src, tmp_path / "aa-names", names="aa")
    assert not list((tmp_path / "aa-names").rglob("*.pb"))
    rep = rekey(src, tmp_path / "auto")
    assert rep.ok and rep.portable
    assert_portable_copy(orig, tree(tmp_path / "auto"))


def test_bad_arguments_stop_before_anything_is_written(
    aa_tree: tuple[Path, dict[str, bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, _ = aa_tree
    assert main(["pb", "rekey", str(src), str(src / "inside")]) == 2
    assert "overlap" in capsys.readouterr().err
    assert main(["pb", "rekey", str(src), str(tmp_path / "x"), "--terminator", "/"]) == 2
    assert "terminator" in capsys.readouterr().err
    assert main(["pb", "rekey", str(tmp_path / "missing"), str(tmp_path / "x")]) == 2
    assert not (src / "inside").exists()
    with pytest.raises(SystemExit):
        main(["pb", "rekey", str(src), str(tmp_path / "x"), "--portable", "--aa-names"])


# ----------------------------------------------------------------------------- real NTFS rules


def test_into_ntfs_windows_names_and_back(
    aa_tree: tuple[Path, dict[str, bytes]], ntfs_root: Path, tmp_path: Path
) -> None:
    """On a folder that enforces Windows' naming rules the probe chooses portable names."""
    src, orig = aa_tree
    dst = ntfs_root / "lts"
    rep = rekey(src, dst)  # no --portable
    assert rep.ok, rep
    assert rep.portable
    assert_portable_copy(orig, tree(dst))
    assert rekey(src, dst).already  # re-run: a no-op there too
    with pytest.raises(RekeyError, match="refuses ':'"):
        rekey(src, ntfs_root / "forced", names="aa")

    back = tmp_path / "back"
    assert rekey(dst, back).ok
    assert tree(back) == orig


def test_case_conflicts_on_a_real_case_insensitive_folder(
    ntfs_ci_root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "aa"
    orig = {
        "CASE/a:2024.pb": _pb("CASE:a", T0),
        "CASE/A:2024.pb": _pb("CASE:A", T0),
        "OK/Z:2024.pb": _pb("OK:Z", T0),
    }
    for rel, data in orig.items():
        _put(src, rel, data)
    dst = ntfs_ci_root / "lts"
    rep = rekey(src, dst)
    assert rep.case_insensitive and rep.portable
    assert sorted(i.src for i in rep.conflicts) == ["CASE/A:2024.pb", "CASE/a:2024.pb"]
    assert [i.src for i in rep.copied] == ["OK/Z:2024.pb"]
    assert not (dst / "CASE").exists()
    # re-run: the copy is found again although this mount lists names in lower case
    rep = rekey(src, dst)
    assert [i.src for i in rep.already] == ["OK/Z:2024.pb"] and not rep.copied
