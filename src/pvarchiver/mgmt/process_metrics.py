"""This process's own figures, sampled once a minute for a day: the AA's ``ProcessMetrics``
(getProcessMetrics, getProcessMetricsDataForAppliance) without a JVM.

The AA samples, per web application, the system load average and the JVM heap in use as a
percentage of the heap's maximum. Here one process is engine, ETL, retrieval and mgmt, and
there is no heap with a maximum; the nearest true figure is the resident memory (RSS) as a
percentage of the machine's physical memory, so that is what ``heapUsedPercent`` holds.
Each sample also carries what the AA cannot show: RSS in bytes, CPU used since the previous
sample, threads and open files. A figure the platform does not give is left out of the
sample (never guessed); the load average is -1 where there is none (Windows), which is what
Java's ``getSystemLoadAverage`` answers there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: one sample a minute for a day, as the AA keeps them
MAX_SAMPLES = 24 * 60
SAMPLE_SECONDS = 60.0


def rss_bytes() -> int | None:
    """Resident memory of this process now (Linux: /proc; Windows: the working set)."""
    statm = Path("/proc/self/statm")
    if statm.exists():
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    if sys.platform == "win32":
        return _windows_working_set()
    return None  # macOS has no cheap current-RSS call without mach APIs: not reported


def _windows_working_set() -> int | None:
    import ctypes
    from ctypes import wintypes

    class Counters(ctypes.Structure):
        _fields_ = [
            ("cb", wintypes.DWORD),
            ("PageFaultCount", wintypes.DWORD),
            ("PeakWorkingSetSize", ctypes.c_size_t),
            ("WorkingSetSize", ctypes.c_size_t),
            ("QuotaPeakPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPagedPoolUsage", ctypes.c_size_t),
            ("QuotaPeakNonPagedPoolUsage", ctypes.c_size_t),
            ("QuotaNonPagedPoolUsage", ctypes.c_size_t),
            ("PagefileUsage", ctypes.c_size_t),
            ("PeakPagefileUsage", ctypes.c_size_t),
        ]

    try:
        c = Counters()
        c.cb = ctypes.sizeof(c)
        k32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        k32.GetCurrentProcess.restype = wintypes.HANDLE
        psapi = ctypes.windll.psapi  # type: ignore[attr-defined]
        if psapi.GetProcessMemoryInfo(k32.GetCurrentProcess(), ctypes.byref(c), c.cb):
            return int(c.WorkingSetSize)
    except (OSError, AttributeError):
        pass
    return None


def physical_memory_bytes() -> int | None:
    """The machine's physical memory (POSIX sysconf; Windows GlobalMemoryStatusEx)."""
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if sys.platform == "win32":
        import ctypes

        class Status(ctypes.Structure):
            _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong)] + [
                (n, ctypes.c_ulonglong)
                for n in (
                    "ullTotalPhys",
                    "ullAvailPhys",
                    "ullTotalPageFile",
                    "ullAvailPageFile",
                    "ullTotalVirtual",
                    "ullAvailVirtual",
                    "ullAvailExtendedVirtual",
                )
            ]

        with contextlib.suppress(OSError, AttributeError):
            st = Status()
            st.dwLength = ctypes.sizeof(st)
            if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(st)):  # type: ignore[attr-defined]
                return int(st.ullTotalPhys)
    return None


def os_threads() -> int | None:
    """Threads of this process as the OS counts them (Linux only; elsewhere None)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return None


def open_files() -> int | None:
    """Open file descriptors (sockets included) on Linux and macOS; None on Windows."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return len(os.listdir(folder))
    return None


def load_average() -> float:
    """The 1-minute system load average; -1 where the OS has none (Java's answer too)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return -1.0


@dataclass(frozen=True)
class ProcessSample:
    """One measurement. None: the platform does not give that figure."""

    epoch: int
    load_average: float
    rss_bytes: int | None
    physical_bytes: int | None
    #: CPU seconds of all threads per wall second since the previous sample, in %
    cpu_percent: float | None
    os_threads: int | None
    python_threads: int
    open_files: int | None

    @property
    def memory_percent(self) -> float | None:
        """RSS as a share of physical memory: what ``heapUsedPercent`` carries."""
        if self.rss_bytes is None or not self.physical_bytes:
            return None
        return self.rss_bytes * 100.0 / self.physical_bytes


class ProcessMetrics:
    """The last day of samples; :meth:`start` takes one a minute, :meth:`sample` on demand."""

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        self.started_epoch = time.time()
        self._samples: deque[ProcessSample] = deque(maxlen=max_samples)
        self._lock = threading.Lock()
        self._last_cpu = (time.monotonic(), time.process_time())
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def sample(self) -> ProcessSample:
        """Measure now and keep the sample (the oldest goes past ``max_samples``)."""
        wall, cpu = time.monotonic(), time.process_time()
        with self._lock:
            wall0, cpu0 = self._last_cpu
            self._last_cpu = (wall, cpu)
        cpu_pct = (cpu - cpu0) * 100.0 / (wall - wall0) if wall > wall0 else None
        s = ProcessSample(
            epoch=int(time.time()),
            load_average=load_average(),
            rss_bytes=rss_bytes(),
            physical_bytes=physical_memory_bytes(),
            cpu_percent=cpu_pct,
            os_threads=os_threads(),
            python_threads=threading.active_count(),
            open_files=open_files(),
        )
        with self._lock:
            self._samples.append(s)
        return s

    def samples(self) -> list[ProcessSample]:
        with self._lock:
            return list(self._samples)

    def uptime_seconds(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.started_epoch)

    def start(self, interval: float = SAMPLE_SECONDS) -> None:
        """Sample now and then every ``interval`` s on a daemon thread (once; later calls do
        nothing). A thread, not a task: it needs no event loop and /proc reads on a slow
        file system never stall one."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, args=(interval,), name="process-metrics", daemon=True
            )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """End the sampler thread and wait for it (up to ``timeout`` s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self, interval: float) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # a figure that fails once must not end the sampling
                log.exception("process metrics: sample failed")
            if self._stop.wait(interval):
                return


#: this process's figures (one process, one set of samples): started by the mgmt routes
PROCESS = ProcessMetrics()
