"""pyarrow is the optional ``parquet`` extra: without it the archiver still starts and a
``parquet://`` store or a ``.parquet`` answer is refused with a message naming the extra.
"Without it" is made by blocking the import in a fresh interpreter (the test venv has it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

BLOCK = """
import sys
class _NoPyarrow:
    def find_spec(self, name, path=None, target=None):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError("No module named 'pyarrow' (blocked by the test)")
        return None
sys.meta_path.insert(0, _NoPyarrow())
"""


def run(code: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        env={"PYTHONPATH": str(SRC), "TMP": str(tmp)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_pyarrow_a_parquet_store_is_refused_naming_the_extra(tmp_path: Path) -> None:
    code = f"""
from pathlib import Path
from pvarchiver.storage.chains import ChainError, StoreChains
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import parse_store_url
sts = PlainPBStore(parse_store_url("pb://localhost?name=STS&rootFolder={tmp_path}/sts&partitionGranularity=PARTITION_HOUR"))
chains = StoreChains([sts])
try:
    chains.validate([sts.config.to_url(), "parquet://localhost?name=LTS&rootFolder={tmp_path}/lts"])
except ChainError as e:
    print("REFUSED", e)
"""
    r = run(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "pvarchiver[parquet]" in r.stdout, r.stdout


def test_without_pyarrow_the_appliance_still_builds(tmp_path: Path) -> None:
    code = f"""
import os
from pvarchiver.settings import load_settings
from pvarchiver.appliance import build_appliance
s = load_settings({{}}, storage="{tmp_path}/storage", host="127.0.0.1", port=0)
a = build_appliance(s)
print("BUILT", len(a.stores))
"""
    r = run(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "BUILT 3" in r.stdout
