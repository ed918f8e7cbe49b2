"""The Meltano project the code location orchestrates: its paths, its meltano.yml, its commands.

Everything the orchestrator runs is a command of the project (``meltano run …`` and the dbt utility's own
executable), in the project's folder, with the PG* variables of the database in use: Dagster adds history,
retries, concurrency and workers around the same commands an operator runs by hand.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

# orchestrate/exnaton_orchestrate/project.py -> the project root (the package is installed editable).
PROJECT_ROOT = Path(os.environ.get("MELTANO_PROJECT_ROOT") or Path(__file__).resolve().parents[2])
# Shards of the fleet: a fixed number, so each keeps its state id and partition (tens, never one per meter).
SHARD_COUNT = 4
# The dbt manifest, parsed once by `make orchestrate-install` (never at load time: parallel runs would race).
MANIFEST = PROJECT_ROOT / "orchestrate" / "dbt-target" / "manifest.json"
PLUGIN_KINDS = ("extractors", "loaders", "utilities", "mappers", "orchestrators", "transformers")
# Lines of a failed command's output kept in the step's error: Meltano logs the cause at the end.
TAIL_LINES = 40


@cache
def meltano_yml() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())


def meltano_executable() -> str:
    """The project's Meltano (its .venv), else one on PATH."""
    own = PROJECT_ROOT / ".venv" / "bin" / "meltano"
    found = str(own) if own.is_file() else shutil.which("meltano")
    if not found:
        raise RuntimeError(f"meltano not found in {own.parent} nor on PATH: run `make install`")
    return found


def sys_dir() -> Path:
    """Meltano's system dir of the caller (installed plugins, run files)."""
    return Path(os.environ.get("MELTANO_SYS_DIR_ROOT") or PROJECT_ROOT / ".meltano")


def run_dir(name: str) -> Path:
    """A Meltano system dir of its own for one kind of run (a shard, the mission's pipeline).

    Meltano writes a run's catalog and state file into ``<sys dir>/run/<plugin>/``: two runs at once in one
    dir read each other's half-written files (docs/scaling.md). The installed plugins are shared by symlink.
    """
    base = sys_dir()
    own = base / "orchestrate" / name
    own.mkdir(parents=True, exist_ok=True)
    for kind in PLUGIN_KINDS:
        installed = (base / kind).resolve()
        link = own / kind
        if installed.is_dir() and not link.is_symlink():
            link.symlink_to(installed, target_is_directory=True)
    return own


def shard_env(index: int) -> dict[str, str]:
    return {
        "TAP_EXNATON_SHARD_COUNT": str(SHARD_COUNT),
        "TAP_EXNATON_SHARD_INDEX": str(index),
        "MELTANO_SYS_DIR_ROOT": str(run_dir(f"shard-{index}")),
    }


def shard_state_suffix(index: int) -> str:
    return f"shard-{index}"


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    job: str


def schedules() -> list[Schedule]:
    """meltano.yml's schedules: one definition for `meltano schedule` and Dagster."""
    return [Schedule(s["name"], s["interval"], s["job"]) for s in meltano_yml().get("schedules", [])]


def dbt_utility() -> dict:
    (plugin,) = (p for p in meltano_yml()["plugins"]["utilities"] if p["name"] == "dbt-postgres")
    return plugin


def dbt_executable() -> Path:
    """The dbt utility's own executable (`dbt_invoker_locked`: dbt behind the pipeline lock)."""
    return sys_dir() / "utilities" / "dbt-postgres" / "venv" / "bin" / dbt_utility()["executable"]


def dbt_env() -> dict[str, str]:
    """The environment Meltano gives the dbt utility: its settings' variables (with their meltano.yml
    values) and its `env`, so the executable runs as under `meltano invoke dbt-postgres`."""
    plugin = dbt_utility()
    env = {"MELTANO_PROJECT_ROOT": str(PROJECT_ROOT)}
    for setting in plugin.get("settings", []):
        if "env" in setting and "value" in setting:
            value = setting["value"]
            if isinstance(value, bool):
                value = str(value).lower()
            env[setting["env"]] = os.path.expandvars(
                str(value).replace("$MELTANO_PROJECT_ROOT", str(PROJECT_ROOT))
            )
    env.update({k: str(v) for k, v in plugin.get("env", {}).items()})
    # As Meltano runs a plugin: its virtualenv first on PATH (dbt's own subprocesses, if any, are that venv's).
    venv = dbt_executable().parent.parent
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return env


def dbt_project_dir() -> Path:
    return Path(dbt_env()["DBT_PROJECT_DIR"])


def worker_identity() -> str:
    """Which process ran a step: on Celery, the worker's host and pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class CommandFailed(RuntimeError):
    def __init__(self, command: list[str], returncode: int, tail: str) -> None:
        super().__init__(f"{' '.join(command)} exited {returncode}")
        self.tail = tail


def run_meltano(args: list[str], env: dict[str, str], log) -> float:
    """Run ``meltano ARGS`` in the project; its output goes to the step's log. Returns the seconds taken."""
    command = [meltano_executable(), *args]
    started = time.monotonic()
    log.info(f"running {' '.join(command[1:])} ({', '.join(f'{k}={v}' for k, v in sorted(env.items()))})")
    result = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    tail = "\n".join(result.stdout.splitlines()[-TAIL_LINES:])
    if result.returncode != 0:
        raise CommandFailed(command[1:], result.returncode, tail)
    log.info(tail)
    return time.monotonic() - started
