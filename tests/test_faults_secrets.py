"""Secrets and logs: keys and passwords come from the environment and never show up in a run's output;
the log tells how each stream went (readings, pages, retries, seconds)."""

from __future__ import annotations

import re
import secrets
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import FIXTURE_METERS
from tests.faulty_source import echoing_error, error_lines
from tests.pipeline import PROJECT_ROOT

HAS_MARTS = any((PROJECT_ROOT / "transform" / "models").rglob("*.sql"))
EL = ("run", "tap-exnaton", "target-postgres")
FULL_RUN = (*EL, "dbt") if HAS_MARTS else EL
MUID_1, MUID_2 = (meter.muid for meter in FIXTURE_METERS)
SECRET_NAME = re.compile(r"password|passwd|secret|api_?key|token|private_?key|credential", re.IGNORECASE)
PROGRESS = re.compile(
    r"(?P<stream>\w+): (?P<readings>\d+) readings from (?P<pages>\d+) page\(s\) in [\d.]+ s \((?P<retries>\d+) retries\)"
)


@pytest.fixture
def run_secrets(faulty_pipeline) -> dict[str, str]:
    """An API key, and a database password: the real one when the server needs one, else a made-up one
    (the embedded server trusts local connections and ignores it)."""
    return {
        "TAP_EXNATON_API_KEY": f"exk-{secrets.token_hex(12)}",
        "PGPASSWORD": faulty_pipeline.pg.get("PGPASSWORD") or f"pg-{secrets.token_hex(12)}",
    }


def assert_no_secret(output: str, run_secrets: dict[str, str]) -> None:
    for name, value in run_secrets.items():
        assert value not in output, f"the value of {name} is in the output"


def test_a_run_logs_progress_per_stream_and_no_secret(faulty_pipeline, faulty_source, run_secrets):
    # A retried error page that shows the request's headers back, API key included.
    faulty_source.on(MUID_1, echoing_error(503))

    run = faulty_pipeline.meltano(*FULL_RUN, extra_env=run_secrets)

    assert faulty_source.seen(MUID_1)[0].headers.get("Authorization") == run_secrets["TAP_EXNATON_API_KEY"]
    assert_no_secret(run.stdout + run.stderr, run_secrets)
    progress = {m["stream"]: m.groupdict() for m in PROGRESS.finditer(run.stderr)}
    assert progress["muid_1"] == {"stream": "muid_1", "readings": "288", "pages": "1", "retries": "1"}
    assert progress["muid_2"] == {"stream": "muid_2", "readings": "288", "pages": "1", "retries": "0"}
    retry = next(line for line in run.stderr.splitlines() if "retry 1 of 3" in line)
    assert f"muid_1: GET {faulty_source.base_url}/{MUID_1}.json failed (" in retry and "***" in retry
    for stream in ("muid_1", "muid_2"):
        # The SDK's own metrics: records per stream from the tap and from the loader.
        assert f'"metric":"record_count","value":288,"tags":{{"stream":"{stream}"' in run.stderr.replace(
            " ", ""
        )


def test_an_error_never_repeats_a_secret_the_server_echoes(faulty_pipeline, faulty_source, run_secrets):
    faulty_source.on(MUID_2, then=echoing_error(401))

    failed = faulty_pipeline.meltano(*EL, check=False, extra_env=run_secrets)

    assert failed.returncode != 0
    assert faulty_source.seen(MUID_2)[0].headers.get("Authorization") == run_secrets["TAP_EXNATON_API_KEY"]
    [message] = error_lines(failed.stderr)
    assert message.startswith(f"muid_2: GET {faulty_source.base_url}/{MUID_2}.json failed with HTTP 401")
    assert '"Authorization": "***"' in message
    assert_no_secret(failed.stdout + failed.stderr, run_secrets)


# --- meltano.yml holds no secrets ----------------------------------------------------------------------


def plugin_configs(project: dict):
    """(plugin name, setting definitions, config mapping, env mapping) for every plugin and environment."""
    definitions = {}
    for plugins in project.get("plugins", {}).values():
        for plugin in plugins:
            definitions[plugin["name"]] = plugin.get("settings", [])
            yield (
                plugin["name"],
                plugin.get("settings", []),
                plugin.get("config") or {},
                plugin.get("env") or {},
            )
    for environment in project.get("environments") or []:
        for plugins in ((environment.get("config") or {}).get("plugins") or {}).values():
            for plugin in plugins:
                settings = definitions.get(plugin["name"], [])
                yield plugin["name"], settings, plugin.get("config") or {}, plugin.get("env") or {}
        yield environment["name"], [], {}, environment.get("env") or {}


def sensitive_names(settings: list[dict]) -> set[str]:
    return {
        setting["name"]
        for setting in settings
        if setting.get("sensitive")
        or setting.get("kind") in ("password", "oauth")
        or SECRET_NAME.search(setting["name"])
    }


def credentials_in(name: str, value: object, sensitive: set[str]) -> bool:
    """Whether a configured value carries a credential: a password in a URL, or any sensitive value that
    is not a reference to an environment variable."""
    if isinstance(value, str) and "://" in value:
        return urlsplit(value).password is not None
    if name in sensitive or SECRET_NAME.search(name):
        return value not in (None, "") and not (isinstance(value, str) and value.startswith("$"))
    return False


def test_meltano_yml_holds_no_password_or_key():
    project = yaml.safe_load((PROJECT_ROOT / "meltano.yml").read_text())
    leaks = []
    for plugin, settings, config, env in plugin_configs(project):
        sensitive = sensitive_names(settings)
        leaks += [f"{plugin}.config.{k}" for k, v in config.items() if credentials_in(k, v, sensitive)]
        leaks += [f"{plugin}.env.{k}" for k, v in env.items() if credentials_in(k, v, set())]
    assert leaks == []
    # The sensitive settings this project has are declared as such, so Meltano redacts them.
    assert "api_key" in sensitive_names(next(p["settings"] for p in project["plugins"]["extractors"]))


def test_the_env_file_for_local_secrets_is_git_ignored():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT_ROOT, check=False)
    if ignored.returncode == 128:
        pytest.skip("not a git work tree")
    assert ignored.returncode == 0
