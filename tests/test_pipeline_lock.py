"""The pipeline lock on a real PostgreSQL: loads share it, a build holds it alone and waits its turn, a waiting
build shuts new loads out, and a closed session frees it (pipeline-lock/README.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from contextlib import ExitStack

import psycopg
import pytest
from pipeline_lock import PipelineBusyError, hold_for_build, hold_for_load, holders

from tests.pipeline import MELTANO, PROJECT_ROOT, Pipeline, conninfo, wait_until


@pytest.fixture
def sessions(database):
    """Opens sessions on the test database; closes them all at the end."""
    with ExitStack() as stack:

        def open_session(name: str) -> psycopg.Connection:
            return stack.enter_context(psycopg.connect(conninfo(database), application_name=name))

        yield open_session


def build_in_thread(connection: psycopg.Connection, wait: str) -> tuple[threading.Thread, list]:
    outcome: list = []

    def build() -> None:
        try:
            hold_for_build(connection, wait)
            outcome.append("held")
        except PipelineBusyError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    return thread, outcome


def waiting_build(observer: psycopg.Connection, name: str | None = None) -> Callable[[], bool]:
    """True once a build (of application ``name``, if given) waits for the lock."""

    def check() -> bool:
        return any(
            kind == "build" and not granted and name in (None, application)
            for _, kind, granted, application in holders(observer)
        )

    return check


def test_loads_share_the_lock_and_a_build_waits_for_them_then_shuts_new_loads_out(sessions):
    first_load, second_load, build, late_load, observer = (
        sessions(name) for name in ("load 1", "load 2", "build", "late load", "observer")
    )
    hold_for_load(first_load)
    hold_for_load(second_load)  # parallel shards load side by side

    thread, outcome = build_in_thread(build, wait="30s")
    wait_until(waiting_build(observer), timeout=5, what="the build to queue for the lock")
    with pytest.raises(PipelineBusyError, match=r"a dbt build is running or waiting .*build pid \d+ waiting"):
        hold_for_load(late_load)  # queued behind the waiting build, not let in ahead of it

    first_load.close()
    assert outcome == [], "the build went ahead while a load still held the lock"
    second_load.close()
    thread.join(timeout=10)
    assert outcome == ["held"]
    with pytest.raises(PipelineBusyError, match=r"build pid \d+ 'build'\)"):
        hold_for_load(late_load)

    build.close()  # a killed build's session ends the same way: the lock goes with it
    # The server releases it when the build's backend exits, a moment after the client has closed.
    wait_until(
        lambda: not holders(observer), timeout=5, what="the closed build's backend to release the lock"
    )
    hold_for_load(late_load)


def test_a_build_gives_up_after_its_wait_naming_who_holds_the_lock(sessions):
    load, build, second_build = (sessions(name) for name in ("stuck load", "build", "second build"))
    hold_for_load(load)
    with pytest.raises(
        PipelineBusyError, match=r"held this database for 200ms \(load pid \d+ 'stuck load'\)"
    ):
        hold_for_build(build, wait="200ms")

    load.close()
    hold_for_build(build, wait="1s")
    with pytest.raises(PipelineBusyError, match=r"build pid \d+ 'build'"):
        hold_for_build(second_build, wait="200ms")  # builds never overlap


def test_the_lock_is_per_database(sessions, database):
    other = {**database, "PGDATABASE": "postgres"}
    hold_for_build(sessions("build"))
    with psycopg.connect(conninfo(other)) as elsewhere:
        hold_for_load(elsewhere)


@pytest.mark.e2e
def test_the_dbt_utility_queues_a_build_behind_the_lock_and_lets_other_commands_pass(
    sessions, database, tmp_path
):
    """Through Meltano's dbt utility, as `meltano run dbt` calls it: its executable is the locked wrapper."""
    pipeline = Pipeline(pg=database, workdir=tmp_path, base_url="http://127.0.0.1:9/unused")
    hold_for_build(sessions("a running build"))

    pipeline.meltano("invoke", "dbt-postgres:debug")  # reads no model: no lock, no wait

    build = subprocess.Popen(
        [MELTANO, "invoke", "dbt-postgres:build"],
        cwd=PROJECT_ROOT,
        env=pipeline.env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with psycopg.connect(conninfo(database)) as observer:
            queued = waiting_build(observer, "exnaton dbt build")

            def queued_while_running() -> bool:
                assert build.poll() is None, "the build went ahead while another held the lock"
                return queued()

            wait_until(queued_while_running, timeout=60, what="the build to queue for the lock")
    finally:
        os.killpg(build.pid, signal.SIGKILL)
        build.wait()
