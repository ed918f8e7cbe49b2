"""The READMEs' commands, run as written.

Every fenced ``bash``/``sh``/``shell``/``console`` block of every README.md (and the command of every ``cron``
line) runs as one ``bash -e -o pipefail`` script, in document order, in the root of a copy of the project,
with the project's .venv first on PATH (as after ``source .venv/bin/activate``). The copy shares the
installed environments and talks to the test database and to a local mirror of the source on 127.0.0.1: the
public source URL and the documented local addresses are replaced by the test's own (``substitutions``). A
block must exit 0 and print no warning (WARNING).

An HTML comment right before a block says how to treat it:

- ``<!-- not run: why -->``: the block is not run (it cannot run here; say why);
- ``<!-- serves: URL -->``: the block keeps serving. It runs in the background until URL answers, stays up
  while the next blocks run, and is stopped when another block serves or the README ends.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import FIXTURE_METERS
from tests.pipeline import FOREIGN_PREFIXES, PROJECT_ROOT, SHARED_DATA, create_database, drop_database
from tools.mirror import Mirror
from tools.synthetic import day_start, write_exports

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^\s*```\s*([\w-]*)")
MARKER = re.compile(r"^\s*<!--\s*(not run|serves):\s*(.*?)\s*-->\s*$")
LOOKS_LIKE_MARKER = re.compile(r"^\s*<!--\s*(not[ -]run|serves?)\b", re.IGNORECASE)
# Python warnings (DeprecationWarning: …), log records at warning level (meltano, gunicorn, pip, dbt's
# [WARNING]) and dbt results that warn (`WARN 3 …`, not the `WARN=0` of its summary).
WARNING = re.compile(r"\w+Warning\b|\bwarning\b|\bWARN\b(?!=)", re.IGNORECASE)
EXPECTED_WARNINGS = (
    # Meltano's notice on the first run of every pipeline (meltano/core/plugin/singer/tap.py).
    "No state was found, complete import.",
    # The SDK's notice for the tap's `reading` layout in file mode, which passes the files' readings on
    # unsorted by design (README, "Loading modes"): the bookmark is committed when the stream has finished.
    "Stream is assumed to be unsorted, progress is not resumable if interrupted",
)
LOCAL_ADDRESS = re.compile(r"127\.0\.0\.1:\d+")
API_ADDRESS, MIRROR_ADDRESS = "127.0.0.1:5000", "127.0.0.1:8000"
PROJECT_PLACEHOLDER = "/opt/exnaton-elt"  # where the cron line supposes the project
SERVE_TIMEOUT_S = 600


def documents() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "README.md", "*/README.md"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(name for name in listed if (PROJECT_ROOT / name).is_file())


@dataclass
class Block:
    document: str
    line: int
    language: str
    code: str
    marker: str | None = None  # "not run" or "serves"
    marker_text: str = ""

    @property
    def where(self) -> str:
        return f"{self.document}:{self.line}"

    def script(self, substitutions: dict[str, str]) -> str:
        if self.language == "console":
            lines = [line.removeprefix("$ ") for line in self.code.splitlines() if line.startswith("$ ")]
        elif self.language == "cron":
            lines = [
                line.split(maxsplit=5)[5]
                for line in self.code.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
        else:
            lines = self.code.splitlines()
        return substitute("\n".join(lines) + "\n", substitutions)


def blocks(document: str) -> list[Block]:
    """The runnable blocks of a Markdown file, each with the marker comment right before it, if any."""
    found: list[Block] = []
    lines = (PROJECT_ROOT / document).read_text().splitlines()
    previous = ""
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            if lines[index].strip():
                previous = lines[index]
            index += 1
            continue
        end = next((i for i in range(index + 1, len(lines)) if FENCE.match(lines[i])), len(lines))
        language = fence.group(1).lower()
        if language in SHELL_LANGUAGES or language == "cron":
            marker = MARKER.match(previous)
            block = Block(document, index + 1, language, "\n".join(lines[index + 1 : end]))
            if marker:
                block.marker, block.marker_text = marker.group(1), marker.group(2)
            elif LOOKS_LIKE_MARKER.match(previous):
                raise AssertionError(f"{block.where}: unknown marker {previous.strip()!r}")
            found.append(block)
        previous = ""
        index = end + 1
    return found


def substitute(text: str, substitutions: dict[str, str]) -> str:
    for old, new in substitutions.items():
        text = text.replace(old, new)
    return text


def assert_no_warnings(output: str, where: str) -> None:
    noisy = [
        line for line in output.splitlines() if WARNING.search(line) and not line.endswith(EXPECTED_WARNINGS)
    ]
    assert not noisy, f"{where} printed warnings:\n" + "\n".join(noisy)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class DocsProject:
    root: Path
    env: dict[str, str]
    substitutions: dict[str, str]

    def run(self, block: Block) -> None:
        mark_installed(self.root)
        result = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", block.script(self.substitutions)],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{block.where} exited {result.returncode}:\n{output[-6000:]}"
        assert_no_warnings(output, block.where)

    def serve(self, block: Block, log: Path) -> Server:
        mark_installed(self.root)
        url = substitute(block.marker_text, self.substitutions)
        server = Server(block, url, log)
        with log.open("w") as out:
            server.process = subprocess.Popen(
                ["bash", "-e", "-o", "pipefail", "-c", block.script(self.substitutions)],
                cwd=self.root,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it stops everything it started
            )
        server.wait_until_up()
        return server


@dataclass
class Server:
    block: Block
    url: str
    log: Path
    process: subprocess.Popen | None = None

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + SERVE_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.block.where} ended ({self.process.returncode}) before {self.url} answered:\n"
                    + self.log.read_text()[-6000:]
                )
            try:
                with urllib.request.urlopen(self.url, timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise AssertionError(f"{self.block.where}: {self.url} did not answer in {SERVE_TIMEOUT_S} s")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass


def copy_project(target: Path) -> Path:
    """The project's files (tracked or new), sharing the installed environments of the project.

    Its .venv is a folder of links to the project's, with an install stamp of its own (``mark_installed``).
    """
    stamp = PROJECT_ROOT / ".venv" / ".install-stamp"
    assert stamp.is_file(), "run `make install` first"
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    venv = target / ".venv"
    venv.mkdir()
    for entry in (PROJECT_ROOT / ".venv").iterdir():
        if entry.name != stamp.name:
            (venv / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    mark_installed(target)
    (target / ".meltano").mkdir()
    for kind in ("extractors", "loaders", "utilities"):
        if (PROJECT_ROOT / ".meltano" / kind).is_dir():
            (target / ".meltano" / kind).symlink_to(
                PROJECT_ROOT / ".meltano" / kind, target_is_directory=True
            )
    return target


def mark_installed(project: Path) -> None:
    """Date the copy's install stamp now, so that `make` in a block never installs into the shared
    environments: a file a block rewrote (`meltano config set` rewrites meltano.yml) would look newer."""
    (project / ".venv" / ".install-stamp").touch()


def write_source(directory: Path) -> Path:
    """The source files: the real ones when they are beside the project, else synthetic ones of both meters."""
    if SHARED_DATA.is_dir():
        directory.mkdir(parents=True)
        for path in SHARED_DATA.glob("*.json"):
            (directory / path.name).write_bytes(path.read_bytes())
        return directory
    return write_exports(directory, FIXTURE_METERS, day_start("2023-02-01"), day_start("2023-03-28"))


def public_source_url() -> str:
    meltano_yml = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())
    (tap,) = (p for p in meltano_yml["plugins"]["extractors"] if p["name"] == "tap-exnaton")
    return tap["config"]["base_url"]


@pytest.fixture(scope="session")
def docs_project(tmp_path_factory):
    """A copy of the project at <tmp>/project with the source at <tmp>/shared/data/exnaton (as beside the
    real project), a database of its own, and a local mirror standing in for the public source."""
    root = tmp_path_factory.mktemp("docs")
    project = copy_project(root / "project")
    source = write_source(root / "shared" / "data" / "exnaton")
    curl_home = root / "curl"
    curl_home.mkdir()
    # curl exits non-zero on an HTTP error, so that a documented call answering 4xx/5xx fails its block.
    (curl_home / ".curlrc").write_text("fail-with-body\nmax-time = 60\n")
    pg = create_database("exnaton_docs")
    api_port, mirror_port = free_port(), free_port()
    with Mirror(source) as mirror:
        env = {k: v for k, v in os.environ.items() if not k.startswith((*FOREIGN_PREFIXES, "PG", "API_"))}
        env.update(pg)
        env.update(
            {
                "PATH": f"{project / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
                "TAP_EXNATON_BASE_URL": mirror.base_url,
                "API_PORT": str(api_port),
                "MIRROR_PORT": str(mirror_port),
                "CURL_HOME": str(curl_home),
                "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
            }
        )
        substitutions = {
            public_source_url(): mirror.base_url,
            API_ADDRESS: f"127.0.0.1:{api_port}",
            MIRROR_ADDRESS: f"127.0.0.1:{mirror_port}",
            PROJECT_PLACEHOLDER: str(project),
        }
        yield DocsProject(project, env, substitutions)
    drop_database(pg)


def test_every_block_runs_or_says_why():
    """Markers are well-formed, and a block that runs talks only to the addresses the tests replace."""
    known = {API_ADDRESS, MIRROR_ADDRESS}
    for document in documents():
        for block in blocks(document):
            if block.marker == "not run":
                assert block.marker_text, f"{block.where}: say why the block is not run"
                continue
            unknown = set(LOCAL_ADDRESS.findall(block.code + block.marker_text)) - known
            assert not unknown, f"{block.where}: {unknown} is no address the tests serve on"
            if block.marker == "serves":
                assert block.marker_text.startswith("http://127.0.0.1:"), f"{block.where}: serves a local URL"


def test_warning_pattern_catches_the_noise_of_each_tool():
    """What assert_no_warnings looks for, on lines the tools print (so that the check can fail)."""
    noisy = [
        "[warning  ] meltano  /x/canonical.py:86: DeprecationWarning: The 'version' field in meltano.yml is deprecated",
        "[info     ] tap-exnaton /x/y.py:3: UserWarning: something",
        "[2026-01-01 10:00:00 +0000] [1] [WARNING] Worker with pid 2 was sent SIGTERM!",
        "12:00:00  [WARNING]: Deprecated functionality",
        "12:00:00  5 of 74 WARN 3 accepted_values_fct_readings_quality ........ [WARN 3 in 0.05s]",
    ]
    quiet = [
        "12:00:00  Done. PASS=74 WARN=0 ERROR=0 SKIP=0 NO-OP=0 TOTAL=74",
        "[warning  ] meltano  " + EXPECTED_WARNINGS[0],
    ]
    for line in noisy:
        with pytest.raises(AssertionError):
            assert_no_warnings(line, "example")
    assert_no_warnings("\n".join(quiet), "example")


@pytest.mark.e2e
@pytest.mark.parametrize("document", documents())
def test_readme_commands_run(document, docs_project, tmp_path):
    runnable = [block for block in blocks(document) if block.marker != "not run"]
    if not runnable:
        pytest.skip(f"{document} has no block to run")
    servers: list[Server] = []
    try:
        for block in runnable:
            if block.marker == "serves":
                for server in servers:
                    server.stop()
                servers.append(docs_project.serve(block, tmp_path / f"serve-{block.line}.log"))
            else:
                docs_project.run(block)
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert_no_warnings(server.log.read_text(), server.block.where)
