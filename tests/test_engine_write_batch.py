"""The batched write path gives byte-identical files to the per-PV path, in every case the
engine can produce: rows with fieldvalues, partition boundaries, rows already stored, a PV
whose rows are out of order, a PV that cannot be written, and the first write of many PVs
sharing one folder (one listing, not one per PV)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pvarchiver.engine.writer import Engine
from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import PlainPBStore
from pvarchiver.storage.batch import Batch, append_samples

from .helpers.stores import make_store

D = PayloadType.SCALAR_DOUBLE
HOUR = 1_700_000_000 - 1_700_000_000 % 3600  # an hour boundary


def rows_for(k: int) -> list[Sample]:
    """A PV's samples: across an hour boundary, some with fields, some alarms."""
    out = []
    for i in range(5 + k % 7):
        fields = {"cnxlostepsecs": "0", "startup": "true"} if i == 0 and k % 2 else None
        if i == 3 and k % 3 == 0:
            fields = {"HIHI": "9.5"}
        out.append(
            Sample(HOUR - 3 + i, i * 1000 + k, float(k) + i / 8, i % 3, (i * k) % 5, fields=fields)
        )
    return out


def files_bytes(store: PlainPBStore, names: list[str]) -> dict[str, list[bytes]]:
    return {n: [pf.path.read_bytes() for pf in store.files_for_pv(n)] for n in names}


def batch_args(
    per_pv: dict[str, list[Sample]],
) -> tuple[list[str], list[int], list[np.ndarray], dict[int, Sample]]:
    names, counts, rows, special = [], [], [], {}
    for name, samples in per_pv.items():
        names.append(name)
        counts.append(len(samples))
        for s in samples:
            if s.fields:
                special[len(rows)] = s
            rows.append((s.secs, s.nanos, s.val, s.severity, s.status))
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    return names, counts, cols, special


def test_batch_equals_per_pv_append(tmp_path: Path) -> None:
    ref = make_store(tmp_path / "ref", "STS", "PARTITION_HOUR")
    got = make_store(tmp_path / "got", "STS", "PARTITION_HOUR")
    per_pv = {f"B:PV{k:03d}": rows_for(k) for k in range(60)}
    # already stored data: the first rows of B:PV007 are not after it and must be dropped
    for store in (ref, got):
        append_samples(store, "B:PV007", D, [Sample(HOUR - 1, 0, -1.0)])
    # out of order rows: that PV goes through the general path, still identical
    per_pv["B:PV011"] = [per_pv["B:PV011"][2], *per_pv["B:PV011"]]
    for name, samples in per_pv.items():
        append_samples(ref, name, D, samples)
    names, counts, cols, special = batch_args(per_pv)
    res = got.append(Batch.of_many(D, names, counts, *cols, special=special))
    assert not res.failures
    assert files_bytes(got, names) == files_bytes(ref, names)
    assert res.dropped_not_increasing[names.index("B:PV007")] == 2
    assert res.dropped_not_increasing[names.index("B:PV011")] >= 1
    assert (
        res.total_written == sum(len(list(ref.read_all(n))) for n in names) - 1
    )  # the pre-stored sample of B:PV007


def test_one_unwritable_pv_fails_alone(tmp_path: Path) -> None:
    store = make_store(tmp_path, "STS", "PARTITION_HOUR")
    (store.root / "X").parent.mkdir(parents=True, exist_ok=True)
    (store.root / "X").write_text("a file where X's folder must go")
    per_pv = {"X:BAD": rows_for(1), "Y:GOOD": rows_for(2)}
    names, counts, cols, special = batch_args(per_pv)
    res = store.append(Batch.of_many(D, names, counts, *cols, special=special))
    assert set(res.failures) == {"X:BAD"}
    assert res.written == [0, len(per_pv["Y:GOOD"])]


@pytest.mark.parametrize("n", [300])
def test_engine_first_write_lists_each_folder_once(
    tmp_path: Path, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path, "STS", "PARTITION_HOUR")
    engine = Engine(store, clock=lambda: HOUR + 60)
    for k in range(n):
        pv = engine.add_pv(f"S:C{k:05d}", D)
        pv.on_connect(D)
        for i in range(3):
            pv.on_event(HOUR + i, k, 0, 0, float(i))
    listings: list[str] = []
    real = __import__("os").listdir

    def counting(path: object) -> list[str]:
        listings.append(str(path))
        return real(path)

    monkeypatch.setattr("pvarchiver.storage.store.os.listdir", counting)
    assert engine.write_all() == 3 * n
    assert len(listings) <= 2  # one look for all PVs (not n)
    first = next(iter(store.read_all("S:C00000")))
    assert first.fields == {"cnxlostepsecs": "0", "cnxregainedepsecs": str(HOUR + 60),
                            "startup": "true"}  # fmt: skip


@pytest.mark.parametrize(
    ("ptype", "dtype"),
    [
        (PayloadType.WAVEFORM_DOUBLE, np.float64),
        (PayloadType.WAVEFORM_DOUBLE, np.int32),
        (PayloadType.WAVEFORM_FLOAT, np.float32),
        (PayloadType.WAVEFORM_INT, np.int32),
        (PayloadType.WAVEFORM_INT, np.uint16),
    ],
)
def test_waveform_arrays_encode_like_protobuf(ptype: PayloadType, dtype: type) -> None:
    """numpy waveforms take the packed fast path; lists take protobuf's: same bytes."""
    from pvarchiver.pb.sample import encode_sample

    rng = np.random.default_rng(7)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 1e-310, 0x1B, 0x0A, 0x0D])
    for n in (0, 1, 2, 127, 128, 10_000):
        if np.issubdtype(dtype, np.floating):
            arr = rng.normal(size=n).astype(dtype)
            arr[: min(n, len(special))] = special[: min(n, len(special))]
        else:
            info = np.iinfo(dtype)
            arr = rng.integers(info.min, info.max, size=n, dtype=dtype)
        for sev, fields in ((0, None), (2, {"HIHI": "1", "cnxlostepsecs": "0"})):
            s_np = Sample(HOUR + 5, 123, arr, sev, 3, fields=fields)
            s_list = Sample(HOUR + 5, 123, arr.tolist(), sev, 3, fields=fields)
            year = 2023
            assert encode_sample(ptype, year, s_np) == encode_sample(ptype, year, s_list)
