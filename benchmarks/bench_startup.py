"""Start-up benchmark: how soon a new archiver serves, and how soon 1,000 demo PVs archive.

Targets (issue #7): ready to serve < 3 s; 1,000 demo PVs archived < 10 s after start;
image < 150 MB (the image size is measured by tests/test_deploy_container.py and read back
from test-artifacts/deploy/image.json when that file exists).

    .venv/bin/python benchmarks/bench_startup.py [--pvs 1000] [--runs 3]

Each run starts ``pvarchiver serve`` (or ``serve --demo`` with PVARCHIVER_DEMO_COUNT) in a
fresh storage folder on a free port and prints the times; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(storage: Path, port: int, demo_pvs: int | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EPICS_", "ARCHAPPL_"))}
    env.update(PYTHONPATH=str(ROOT / "src"), EPICS_CA_AUTO_ADDR_LIST="NO",
               EPICS_CA_ADDR_LIST="", EPICS_CA_REPEATER_PORT=str(free_port()))
    cmd = [sys.executable, "-m", "pvarchiver", "serve", "--storage", str(storage),
           "--host", "127.0.0.1", "--port", str(port)]
    if demo_pvs is not None:
        env["PVARCHIVER_DEMO_COUNT"] = str(demo_pvs)
        cmd.append("--demo")
    log = open(storage.parent / "log", "wb")  # the child keeps it; closed when it exits
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(client: httpx.Client, proc: subprocess.Popen[bytes], t0: float) -> float:
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the server exited")
        try:
            if client.get("/retrieval/bpl/getVersion", timeout=1).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.02)


def wait_archived(client: httpx.Client, expected: int, t0: float, timeout: float = 120) -> float:
    """Seconds from start until ``expected`` demo PVs are ``Being archived`` with a sample."""
    while time.monotonic() - t0 < timeout:
        r = client.get("/mgmt/bpl/getPVStatus", params={"pv": "demo:*"}, timeout=30)
        if r.status_code == 200:
            rows = r.json()
            done = [row for row in rows if row.get("status") == "Being archived"
                    and row.get("connectionState") == "true"]
            if len(done) >= expected:
                return time.monotonic() - t0
        time.sleep(0.2)
    raise RuntimeError(f"not all {expected} demo PVs archived within {timeout} s")


def one_run(demo_pvs: int | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp) / "storage"
        storage.mkdir()
        port = free_port()
        t0 = time.monotonic()
        proc = start(storage, port, demo_pvs)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        try:
            out = {"ready (s)": wait_ready(client, proc, t0)}
            if demo_pvs is not None:
                out["demo PVs archived (s)"] = wait_archived(client, demo_pvs + 8, t0)
                # spot check: the archived PVs really have data
                pvs = [f"demo:bulk:{i:04d}" for i in range(0, demo_pvs, max(1, demo_pvs // 10))]
                for pv in pvs:
                    r = client.get("/retrieval/data/getData.json", params={"pv": pv})
                    assert r.status_code == 200 and r.json()[0]["data"], pv
            return out
        finally:
            proc.terminate()
            proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pvs", type=int, default=1000, help="bulk demo PVs (plus the 8 fixed)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    plain = [one_run(None)["ready (s)"] for _ in range(args.runs)]
    runs = ", ".join(f"{t:.2f}" for t in plain)
    print("pvarchiver serve, empty storage: ready to serve in median "
          f"{statistics.median(plain):.2f} s (runs: {runs}; target < 3 s)")
    demo = [one_run(args.pvs) for _ in range(args.runs)]
    ready = [d["ready (s)"] for d in demo]
    archived = [d["demo PVs archived (s)"] for d in demo]
    print(f"pvarchiver serve --demo with {args.pvs + 8} PVs: ready in median "
          f"{statistics.median(ready):.2f} s; all Being archived and connected in median "
          f"{statistics.median(archived):.2f} s after start "
          f"(runs: {', '.join(f'{t:.2f}' for t in archived)}; target < 10 s)")
    image = ROOT / "test-artifacts" / "deploy" / "image.json"
    if image.exists():
        print("container image (from tests/test_deploy_container.py):",
              json.loads(image.read_text()), "(target < 150 MB)")
    else:
        print("container image size: run tests/test_deploy_container.py first")


if __name__ == "__main__":
    main()
