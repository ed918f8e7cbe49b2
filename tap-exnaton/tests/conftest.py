from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from source_server import SourceServer

TAP = str(Path(sys.executable).parent / "tap-exnaton")


@dataclass
class TapRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def records(self, stream: str | None = None) -> list[dict]:
        return [
            m["record"]
            for m in self.messages
            if m["type"] == "RECORD" and (stream is None or m["stream"] == stream)
        ]

    def schema(self, stream: str) -> dict:
        return next(m for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream)

    @property
    def final_state(self) -> dict:
        return [m for m in self.messages if m["type"] == "STATE"][-1]["value"]


@pytest.fixture
def source():
    server = SourceServer()
    yield server
    server.close()


@pytest.fixture
def run_tap(tmp_path):
    """Run the real ``tap-exnaton`` CLI with a config (and state), return its parsed output."""

    def run(config: dict, state: dict | None = None, *args: str, env: dict[str, str] | None = None) -> TapRun:
        config_file = tmp_path / "config.json"
        config_file.write_text(json.dumps(config))
        command = [TAP, "--config", str(config_file), *args]
        if state is not None:
            state_file = tmp_path / "state.json"
            state_file.write_text(json.dumps(state))
            command += ["--state", str(state_file)]
        environment = {**os.environ, **(env or {})}
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=120, check=False, env=environment
        )
        return TapRun(done.returncode, done.stdout, done.stderr)

    return run
