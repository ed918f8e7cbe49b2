"""`make orchestrate`: Dagster's webserver and daemon on 127.0.0.1, and Celery workers through the broker.

    exnaton-orchestrate [--port 3000] [--workers 2]

DAGSTER_HOME (default ``.dagster/`` in the project, git-ignored) gets this package's dagster.yaml: storage
in the PG* database, schema ``dagster``. When the broker (EXNATON_CELERY_BROKER, default the local Redis)
answers, steps run on ``--workers`` Celery workers, one step at a time each; without a broker they run in
subprocesses of their run, and the log says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from exnaton_orchestrate.database import DAGSTER_SCHEMA, create_schemas, dagster_postgres_url
from exnaton_orchestrate.project import PROJECT_ROOT

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    print(f"exnaton-orchestrate: {message}", file=sys.stderr)  # noqa: T201


def dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or PROJECT_ROOT / ".dagster").resolve()
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("dagster.yaml"), home / "dagster.yaml")
    return home


def broker_answers(url: str) -> bool:
    parsed = urlparse(url)
    default_port = {"redis": 6379, "amqp": 5672, "pyamqp": 5672}.get(parsed.scheme, 6379)
    try:
        socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ).close()
    except OSError:
        return False
    return True


def worker_command(home: Path, broker: str, number: int) -> list[str]:
    config = home / "celery.yaml"
    # Late acks with a prefetch of one: a busy worker holds no second step back from an idle one.
    config.write_text(
        f"execution:\n  config:\n    broker: '{broker}'\n    backend: '{broker}'\n"
        "    config_source:\n      task_acks_late: true\n      worker_prefetch_multiplier: 1\n"
    )
    # One step at a time per worker: two workers run two steps at once, like two machines would.
    return [
        str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(config),
        "-n", f"exnaton-{number}", "--", "--concurrency=1", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("DAGSTER_PORT", "3000")))
    parser.add_argument("--workers", type=int, default=2, help="Celery workers to start (0: none)")
    options = parser.parse_args(argv)
    if not os.environ.get("PGDATABASE"):
        say("error: PGDATABASE is not set: start it with `make orchestrate`")
        return 2
    home = dagster_home()
    create_schemas(DAGSTER_SCHEMA)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": dagster_postgres_url(),
        # dagster-celery starts `celery` from PATH; started outside `meltano invoke`, the venv is not on it.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    broker = os.environ.get("EXNATON_CELERY_BROKER", DEFAULT_BROKER)
    commands = []
    if options.workers and broker_answers(broker):
        env["EXNATON_CELERY_BROKER"] = broker
        commands += [worker_command(home, broker, n) for n in range(1, options.workers + 1)]
    else:
        env.pop("EXNATON_CELERY_BROKER", None)
        say(f"no broker at {broker}: steps run in their run's subprocesses")
    commands.append(
        [
            str(BIN / "dagster"),
            "dev",
            "-m",
            "exnaton_orchestrate.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(options.port),
        ]
    )
    return supervise(commands, env)


def supervise(commands: list[list[str]], env: dict[str, str]) -> int:
    """Run every command until one ends or we are told to stop; then stop them all, with their children.

    Each runs in its own process group: `dagster dev` and the Celery workers have children of their own,
    stopped by SIGINT (what Ctrl-C sends them) to the whole group, and killed if still there after 30 s.
    """
    children = [
        subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, start_new_session=True) for command in commands
    ]

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    try:
        pid, status = os.wait()
        ended = next((c for c in children if c.pid == pid), None)
        name = " ".join(Path(a).name for a in ended.args[:3]) if ended else pid
        say(f"{name} ended (status {status}); stopping the others")
        return 1
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            _signal_group(child, signal.SIGINT)
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=30)
            _signal_group(child, signal.SIGKILL)


def _signal_group(child: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone
        os.killpg(child.pid, signum)


if __name__ == "__main__":
    sys.exit(main())
