"""``python dev.py serve``: Ctrl+C lets the archiver finish its shutdown.

subprocess.call (used before) killed the child 0.25 s after Ctrl+C, in the middle of the
archiver's flush of buffered samples. Here the terminal's Ctrl+C is a SIGINT to the whole
foreground process group, as a shell sends it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import signal, sys, time
def stop(*_):
    time.sleep(1.5)  # a shutdown that flushes for a while
    open(sys.argv[1], "w").write("flushed")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""

PARENT = """
import sys
sys.path.insert(0, {root!r})
import dev
sys.exit(dev.run_to_the_end([sys.executable, "-c", {child!r}, {marker!r}]))
"""


@pytest.mark.skipif(os.name == "nt", reason="sends SIGINT to a process group (POSIX)")
def test_ctrl_c_waits_for_the_archiver_to_finish(tmp_path: Path) -> None:
    marker = tmp_path / "flushed"
    code = PARENT.format(root=str(ROOT), child=CHILD, marker=str(marker))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)  # the parent sets SIG_IGN right after starting the child
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(20) == 0
    assert marker.read_text() == "flushed"
