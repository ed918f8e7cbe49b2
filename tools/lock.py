"""Exact versions for every environment of the project: `make lock` resolves them, `make install` installs them.

The version ranges stay where they are written by hand: ``requirements.txt`` for the project's ``.venv`` and
each plugin's ``pip_url`` in ``meltano.yml``. uv resolves them into ``locks/``, for any OS and Python 3.11+:

- ``locks/project.txt``, which ``make install`` installs into ``.venv`` with ``uv pip sync``;
- ``locks/<plugin>.txt``, which the plugin's own ``pip_url`` hands to ``uv pip install`` as constraints
  (``-c locks/<plugin>.txt``) when ``meltano install`` builds the plugin's virtualenv.

    python -m tools.lock            # resolve again, upgrading every pin as far as the ranges allow
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCKS = PROJECT_ROOT / "locks"
PROJECT_REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
PROJECT_LOCK = LOCKS / "project.txt"
# The oldest Python the project supports (pyproject.toml requires-python): markers hold for the newer ones.
PYTHON_VERSION = "3.11"
CONSTRAINT_FLAGS = ("-c", "--constraint")


def plugins() -> dict[str, str]:
    """Every installable plugin of meltano.yml and its pip_url."""
    project = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())
    return {
        plugin["name"]: plugin["pip_url"]
        for kind in project.get("plugins", {}).values()
        for plugin in kind
        if plugin.get("pip_url")
    }


def plugin_lock(name: str) -> Path:
    return LOCKS / f"{name}.txt"


def pip_url_requirements(pip_url: str) -> list[str]:
    """The pip_url as requirement lines, without its own constraints file: what the lock is resolved from."""
    args = shlex.split(pip_url)
    lines: list[str] = []
    while args:
        arg = args.pop(0)
        if arg in CONSTRAINT_FLAGS:
            args.pop(0)
        elif arg in ("-e", "--editable"):
            lines.append(f"-e {args.pop(0)}")
        else:
            lines.append(arg)
    return lines


def editable_names(requirement_lines: list[str]) -> list[str]:
    """Names of the local packages among the requirements: uv refuses them in a constraints file."""
    paths = [line.split(maxsplit=1)[1] for line in requirement_lines if line.startswith("-e ")]
    return [
        tomllib.loads((PROJECT_ROOT / p / "pyproject.toml").read_text())["project"]["name"] for p in paths
    ]


def uv_compile(source: str, output: Path, *, stdin: str | None = None, extra: tuple[str, ...] = ()) -> bool:
    """Resolve ``source`` into ``output``; True when the lock changed (an unchanged one keeps its time, so
    that `make install` has nothing to do)."""
    from uv import find_uv_bin

    command = [
        find_uv_bin(),
        "pip",
        "compile",
        "--quiet",
        "--universal",
        f"--python-version={PYTHON_VERSION}",
        "--upgrade",
        "--custom-compile-command=make lock",
        *extra,
        source,
    ]
    resolved = subprocess.run(
        command, cwd=PROJECT_ROOT, input=stdin, capture_output=True, text=True, check=True
    ).stdout
    if output.is_file() and output.read_text() == resolved:
        return False
    output.write_text(resolved)
    return True


def lock_all() -> None:
    LOCKS.mkdir(exist_ok=True)
    changed = [PROJECT_LOCK] if uv_compile(PROJECT_REQUIREMENTS.name, PROJECT_LOCK) else []
    for name, pip_url in plugins().items():
        requirements = pip_url_requirements(pip_url)
        hidden = tuple(f"--no-emit-package={package}" for package in editable_names(requirements))
        if uv_compile("-", plugin_lock(name), stdin="\n".join(requirements) + "\n", extra=hidden):
            changed.append(plugin_lock(name))
    for lock in changed:
        print(f"updated {lock.relative_to(PROJECT_ROOT)}")  # noqa: T201
    if not changed:
        print("every lock is up to date")  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args(argv)
    lock_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
