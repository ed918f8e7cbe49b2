"""Wall time and peak RSS of a command's whole process tree, sampled with psutil."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

SAMPLE_SECONDS = 0.05


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: dict[str, float]  # per process name, the largest seen
    returncode: int
    output: str
    # per process name, seconds after the start when it was first and last seen (sampled)
    seen_s: dict[str, tuple[float, float]] = field(default_factory=dict)
    # per process name, CPU seconds (user + system) at its last sample: where a run's time went
    cpu_s: dict[str, float] = field(default_factory=dict)

    def ended_s(self, process: str) -> float | None:
        """When ``process`` was last seen, e.g. the loader's exit: the end of extract+load."""
        return self.seen_s[process][1] if process in self.seen_s else None


def run_measured(
    command: list[str], *, env: dict[str, str], cwd: str | None = None, timeout: float = 3600
) -> Measured:
    """Run ``command``; sample the RSS of it and its children until it ends."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[str, float] = {}
    seen: dict[str, tuple[float, float]] = {}
    cpu: dict[int, tuple[str, float]] = {}
    root = psutil.Process(process.pid)
    output_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: output_chunks.append(process.stdout.read()), daemon=True)
    reader.start()
    while process.poll() is None:
        if time.monotonic() - started > timeout:
            process.kill()
            break
        _sample(root, peaks, seen, cpu, time.monotonic() - started)
        time.sleep(SAMPLE_SECONDS)
    reader.join()
    return Measured(
        time.monotonic() - started,
        peaks,
        process.wait(),
        b"".join(output_chunks).decode(errors="replace"),
        seen,
        _cpu_by_name(cpu),
    )


def _sample(
    root: psutil.Process,
    peaks: dict[str, float],
    seen: dict[str, tuple[float, float]],
    cpu: dict[int, tuple[str, float]],
    now: float,
) -> None:
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            if not proc.cmdline():
                continue  # exiting (a zombie has no command line; its short name would count apart)
            name = _label(proc)
            rss = proc.memory_info().rss / 2**20
            times = proc.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        peaks[name] = max(peaks.get(name, 0.0), rss)
        seen[name] = (seen.get(name, (now, now))[0], now)
        cpu[proc.pid] = (name, times.user + times.system)


def _cpu_by_name(cpu: dict[int, tuple[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = {}
    for name, seconds in cpu.values():
        totals[name] = totals.get(name, 0.0) + seconds
    return totals


def _label(proc: psutil.Process) -> str:
    """A readable name: the script behind a Python interpreter (tap-exnaton, target-postgres, dbt, meltano)."""
    cmdline = proc.cmdline()
    for index, part in enumerate(cmdline[:3]):
        if part == "-m" and index + 1 < len(cmdline):
            return cmdline[index + 1]
        base = part.rsplit("/", 1)[-1]
        if base and not base.startswith("python"):
            return base
    return proc.name()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
