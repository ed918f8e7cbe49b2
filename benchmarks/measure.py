"""Wall time and peak RSS of a command's whole process tree, sampled with psutil."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

SAMPLE_SECONDS = 0.05


@dataclass
class Measured:
    wall_s: float
    peak_rss_mb: dict[str, float]  # per process name, the largest seen
    returncode: int
    output: str


def run_measured(
    command: list[str], *, env: dict[str, str], cwd: str | None = None, timeout: float = 3600
) -> Measured:
    """Run ``command``; sample the RSS of it and its children until it ends."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks: dict[str, float] = {}
    root = psutil.Process(process.pid)
    output_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: output_chunks.append(process.stdout.read()), daemon=True)
    reader.start()
    while process.poll() is None:
        if time.monotonic() - started > timeout:
            process.kill()
            break
        _sample(root, peaks)
        time.sleep(SAMPLE_SECONDS)
    reader.join()
    return Measured(
        time.monotonic() - started, peaks, process.wait(), b"".join(output_chunks).decode(errors="replace")
    )


def _sample(root: psutil.Process, peaks: dict[str, float]) -> None:
    try:
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        try:
            name = _label(proc)
            rss = proc.memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        peaks[name] = max(peaks.get(name, 0.0), rss)


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
