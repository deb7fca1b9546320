"""``pvarchiver pb dump|validate|repair`` run as real subprocesses on real files."""

from __future__ import annotations

import calendar
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pvarchiver.pb import PayloadType, Sample, sample_line
from pvarchiver.storage import PlainPBStore
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.validate import validate_file

VECTORS = Path(
    os.environ.get(
        "PVARCHIVER_AA_VECTORS",
        Path(__file__).resolve().parents[2] / "shared" / "vectors" / "aa-upstream",
    )
)
SRC = Path(__file__).resolve().parents[1] / "src"
PV = "TEST:CLI-PV"
T0 = calendar.timegm((2024, 3, 1, 12, 0, 0))
D = PayloadType.SCALAR_DOUBLE


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-m", "pvarchiver", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _file(sts: PlainPBStore, vals: list[float]) -> Path:
    append_samples(sts, PV, D, [Sample(T0 + i, i, v) for i, v in enumerate(vals)])
    return sts.files_for_pv(PV)[0].path


needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no AA vectors at {VECTORS}")


@needs_vectors
def test_dump_of_a_java_aa_file() -> None:
    r = run("pb", "dump", str(VECTORS / "sig1-wo-adel.pb"))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert lines[0] == {
        "header": {
            "type": "SCALAR_DOUBLE",
            "pvname": "TST-CT{}Sig:1-I",
            "year": 2014,
            "elementCount": 1,
            "headers": {"PREC": "0"},
        }
    }
    assert len(lines) == 38
    assert lines[1] == {
        "secs": 1418238633,
        "nanos": 256370038,
        "val": 1.0,
        "severity": 0,
        "status": 0,
    }
    assert lines[-1]["fields"] == {"cnxlostepsecs": "1418238772", "cnxregainedepsecs": "1418238776"}


def test_dump_writes_strict_json_for_nan_and_infinities(sts: PlainPBStore) -> None:
    path = _file(sts, [math.nan, math.inf, -math.inf, 1.5])
    r = run("pb", "dump", str(path))
    assert r.returncode == 0
    vals = [json.loads(x, parse_constant=lambda c: 1 / 0)["val"] for x in r.stdout.splitlines()[1:]]
    assert vals == ["NaN", "Infinity", "-Infinity", 1.5]


@needs_vectors
def test_validate_java_aa_files() -> None:
    r = run("pb", "validate", *map(str, sorted(VECTORS.glob("*.pb"))))
    assert r.returncode == 0 and r.stdout.count(": OK:") == 3


def test_validate_reports_each_problem(sts: PlainPBStore) -> None:
    path = _file(sts, [1.0, 2.0, 3.0])
    with open(path, "ab") as fh:
        fh.write(b"\x08\x01garbage\n")  # not a valid sample
        fh.write(sample_line(D, 2024, Sample(T0 + 1, 0, 9.0)))  # older than the one before
        fh.write(sample_line(D, 2024, Sample(T0 + 10, 0, 4.0))[:5])  # interrupted write
    r = run("pb", "validate", str(path))
    assert r.returncode == 1
    assert "corrupt-line" in r.stdout and "not-increasing" in r.stdout
    assert "partial-tail" in r.stdout


def test_repair_cuts_the_tail_and_says_what_it_dropped(sts: PlainPBStore) -> None:
    path = _file(sts, [1.0, 2.0, 3.0])
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(sample_line(D, 2024, Sample(T0 + 10, 0, 4.0))[:5])
    r = run("pb", "repair", str(path))
    assert r.returncode == 0, r.stdout
    assert "cut 5 bytes" in r.stdout
    assert path.read_bytes() == good
    assert run("pb", "repair", str(path)).stdout.strip().endswith("nothing to repair")


def test_repair_drops_bad_lines_keeps_a_backup_and_all_good_samples(sts: PlainPBStore) -> None:
    path = _file(sts, [1.0, 2.0, 3.0])
    with open(path, "ab") as fh:
        fh.write(b"\x08\x01garbage\n")
        fh.write(sample_line(D, 2024, Sample(T0 + 20, 0, 5.0)))
    original = path.read_bytes()
    r = run("pb", "repair", str(path))
    assert r.returncode == 0, r.stdout
    assert "dropped line 5" in r.stdout and ".bak" in r.stdout
    assert path.with_name(path.name + ".bak").read_bytes() == original
    rep = validate_file(path)
    assert rep.ok and rep.samples == 4
    assert [s.val for s in PlainPBStore(sts.config, naming=sts.naming).read_all(PV)] == [
        1.0,
        2.0,
        3.0,
        5.0,
    ]


def _store_file(sts: PlainPBStore, partition: str) -> Path:
    """Where the store keeps PV's file of that partition, its folder created: named as the
    store names files (the AA's ``TEST/CLI/PV:<partition>.pb`` on an ordinary folder)."""
    path = sts.root / f"{sts.key(PV)}{partition}.pb"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_bad_header_is_reported_not_repaired(sts: PlainPBStore, tmp_path: Path) -> None:
    path = _store_file(sts, "2024")
    path.write_bytes(b"\x1b\x1b\x1b\n")
    assert run("pb", "validate", str(path)).returncode == 1
    r = run("pb", "repair", str(path))
    assert r.returncode == 1 and "cannot repair" in r.stdout
    assert path.read_bytes() == b"\x1b\x1b\x1b\n"
    d = run("pb", "dump", str(path))
    assert d.returncode == 1 and "bad header" in d.stderr and "Traceback" not in d.stderr
    assert run("pb", "dump", str(tmp_path / "missing.pb")).returncode == 1


def test_serve_creates_the_storage_root(tmp_path: Path) -> None:
    r = run("serve", "--check", "--storage", str(tmp_path / "store"))
    assert r.returncode == 0
    assert all((tmp_path / "store" / d).is_dir() for d in ("sts", "mts", "lts"))
    assert "PARTITION_HOUR" in r.stdout and "/mgmt/bpl" in r.stdout


def test_zero_byte_file_is_reported_and_removed_by_repair(sts: PlainPBStore) -> None:
    path = _store_file(sts, "2024_03_01_12")
    if not sts.naming.portable:  # an ordinary folder: the AA's own name, byte for byte
        assert path == sts.root / "TEST/CLI/PV:2024_03_01_12.pb"
    else:
        assert path == sts.root / "TEST/CLI/PV\uf03a2024_03_01_12.pb"
    path.write_bytes(b"")
    v = run("pb", "validate", str(path))
    assert v.returncode == 1 and "empty-file" in v.stdout
    r = run("pb", "repair", str(path))
    assert r.returncode == 0 and "removed an empty" in r.stdout and not path.exists()
