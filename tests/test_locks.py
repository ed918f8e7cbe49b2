"""Every environment holds exactly the versions of its lock (locks/, written by `make lock`, installed by
`make install`), and every lock still satisfies the ranges it was resolved from."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from uv import find_uv_bin

from tools.lock import (
    PROJECT_LOCK,
    PROJECT_REQUIREMENTS,
    PROJECT_ROOT,
    pip_url_requirements,
    plugin_lock,
    plugins,
)

# `python -m venv` of Python 3.11 seeds .venv with setuptools besides pip (which Meltano needs, so it is locked);
# `uv pip sync` leaves seed packages alone.
VENV_SEED_PACKAGES = {"setuptools"}


class Environment:
    """Packages by name and version, and local packages installed editable (their folders)."""

    def __init__(self, versions: dict[str, str], editables: set[Path]) -> None:
        self.versions = versions
        self.editables = editables

    @classmethod
    def of_lock(cls, lock: Path) -> Environment:
        """What the lock installs here: its markers evaluated for this Python, the one every venv uses."""
        versions: dict[str, str] = {}
        editables: set[Path] = set()
        for line in requirement_lines(lock.read_text()):
            if line.startswith("-e "):
                editables.add((PROJECT_ROOT / line.removeprefix("-e ")).resolve())
                continue
            requirement = Requirement(line)
            (pin,) = requirement.specifier
            assert pin.operator == "==", f"{lock.name}: {line} is not an exact pin"
            if requirement.marker is None or requirement.marker.evaluate():
                versions[canonicalize_name(requirement.name)] = pin.version
        return cls(versions, editables)

    @classmethod
    def of_venv(cls, python: Path) -> Environment:
        listing = subprocess.run(
            [find_uv_bin(), "pip", "list", "--quiet", "--format=json", f"--python={python}"],
            capture_output=True,
            text=True,
            check=True,
        )
        packages = json.loads(listing.stdout)
        return cls(
            {
                canonicalize_name(p["name"]): p["version"]
                for p in packages
                if "editable_project_location" not in p
            },
            {
                Path(p["editable_project_location"]).resolve()
                for p in packages
                if "editable_project_location" in p
            },
        )


def requirement_lines(text: str) -> list[str]:
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def venv_python(plugin: str) -> Path:
    venvs = list(PROJECT_ROOT.glob(f".meltano/*/{plugin}/venv"))
    assert venvs, f"{plugin} is not installed: run `make install`"
    return venvs[0] / "bin" / "python"


def assert_installed_as_locked(installed: Environment, locked: Environment, allowed_extra: set[str]) -> None:
    wrong = {
        name: f"{version} installed, locked: {locked.versions.get(name, 'none')}"
        for name, version in installed.versions.items()
        if locked.versions.get(name) != version and name not in allowed_extra
    }
    missing = sorted(set(locked.versions) - set(installed.versions))
    assert not wrong and not missing, f"run `make install` (or `make lock`): wrong {wrong}, missing {missing}"
    assert installed.editables == locked.editables


def test_project_venv_is_the_lock():
    installed = Environment.of_venv(Path(sys.executable))
    assert_installed_as_locked(installed, Environment.of_lock(PROJECT_LOCK), VENV_SEED_PACKAGES)


@pytest.mark.parametrize("plugin", sorted(plugins()))
def test_plugin_venv_is_its_lock(plugin, request):
    if plugin == "dagster":  # not installed by `make install`: on first use
        request.getfixturevalue("orchestrator_installed")
    assert f"-c {plugin_lock(plugin).relative_to(PROJECT_ROOT)}" in plugins()[plugin], (
        "the pip_url must pass its lock to uv"
    )
    locked = Environment.of_lock(plugin_lock(plugin))
    # A local package (the tap) is not in its constraints file; the pip_url installs it editable.
    locked.editables |= {
        (PROJECT_ROOT / line.removeprefix("-e ")).resolve()
        for line in pip_url_requirements(plugins()[plugin])
        if line.startswith("-e ")
    }
    assert_installed_as_locked(Environment.of_venv(venv_python(plugin)), locked, allowed_extra=set())


def locked_versions_outside(ranges: list[str], lock: Path) -> list[str]:
    """The requirements whose range the lock's version is not in (or that the lock lacks)."""
    locked = Environment.of_lock(lock)
    outside = []
    for line in ranges:
        if line.startswith("-e "):
            path = line.removeprefix("-e ").split("[", 1)[0]
            if (PROJECT_ROOT / path).resolve() not in locked.editables:
                outside.append(line)
            continue
        requirement = Requirement(line)
        version = locked.versions.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            outside.append(f"{line} (locked: {version})")
    return outside


def test_project_lock_satisfies_requirements_txt():
    assert locked_versions_outside(requirement_lines(PROJECT_REQUIREMENTS.read_text()), PROJECT_LOCK) == [], (
        "requirements.txt changed since the lock: run `make lock`"
    )


@pytest.mark.parametrize("plugin", sorted(plugins()))
def test_plugin_lock_satisfies_its_pip_url(plugin):
    requirements = pip_url_requirements(plugins()[plugin])
    assert requirements, shlex.quote(plugins()[plugin])
    # The plugin's own package is editable and not in its constraints: its dependencies are, in the lock.
    ranges = [line for line in requirements if not line.startswith("-e ")]
    assert locked_versions_outside(ranges, plugin_lock(plugin)) == [], (
        f"the pip_url of {plugin} changed since its lock: run `make lock`"
    )
