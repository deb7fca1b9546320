"""pyarchappl, a client nobody here wrote, reads our .raw and .json answers.

pyarchappl pins protobuf < 4, so it gets its own virtual environment (``.venv-clients``,
created on first use) and never touches the project's protobuf.
"""

from __future__ import annotations

import calendar
import json
import os
import subprocess
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import default_store_urls, open_store, parse_store_url
from pvarchiver.storage.batch import append_samples

from .http_server import running_server

REPO = Path(__file__).resolve().parents[1]
CLIENT_VENV = REPO / ".venv-clients"
PV = "TEST:PYARCHAPPL-1:AI"
T0 = calendar.timegm((2025, 2, 1, 0, 0, 0))


def client_python() -> Path:
    py = CLIENT_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not py.exists():
        venv.EnvBuilder(with_pip=True).create(CLIENT_VENV)
    probe = subprocess.run([str(py), "-c", "import archappl"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "pyarchappl==1.0.3.post3"], check=True
        )
    return py


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("pyarchappl") / "storage"
    sts = open_store(parse_store_url(default_store_urls(root)[0]))
    append_samples(
        sts,
        PV,
        PayloadType.SCALAR_DOUBLE,
        [Sample(T0 + i, 250_000_000, i * 0.5, severity=i % 3) for i in range(120)],
    )
    with running_server(root) as url:
        yield url


@pytest.mark.slow
def test_pyarchappl_reads_raw_and_json(base: str) -> None:
    py = client_python()
    # its packaged configuration; the URL is passed explicitly
    env = {k: v for k, v in os.environ.items() if k != "PYARCHAPPL_CONFIG"}
    r = subprocess.run(
        [
            str(py),
            str(REPO / "tests/clients/pyarchappl_probe.py"),
            base,
            PV,
            "2025-02-01T00:00:10.000Z",
            "2025-02-01T00:01:00Z",
            "2025-02-01T00:00:30.5Z",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for fmt in ("raw", "json"):
        d = got[fmt]
        assert d is not None, f"pyarchappl got nothing from .{fmt}: {r.stderr}"
        # the sample before `from` (at 9.25 s) and then 10.25 .. 59.25 s
        assert d["rows"] == 51
        assert d["first_ms"] == (T0 + 9) * 1000 + 250
        assert d["last_ms"] == (T0 + 59) * 1000 + 250
        assert d["vals"] == [i * 0.5 for i in range(9, 60)]
        assert d["severity"] == [i % 3 for i in range(9, 60)]
    assert got["raw"]["columns"] == got["json"]["columns"]
    at = got["at"][PV]
    assert (at["secs"], at["nanos"], at["val"]) == (T0 + 30, 250_000_000, 15.0)
