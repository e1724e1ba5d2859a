"""End-to-end fixtures: the local QStash-compatible server in a subprocess, and the live site.

Jobs travel for real: enqueue -> HTTP publish -> the dev server -> signed HTTP delivery -> the
receiver of a live Django server -> the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from django_qstash_jobs.models import JobExecution
from tests.servers import DevServerProcess, qstash_settings


@pytest.fixture
def devserver_factory(tmp_path: Path) -> Iterator[Callable[..., DevServerProcess]]:
    started: list[DevServerProcess] = []

    def start(backoff_scale: float = 0.0, **options: Any) -> DevServerProcess:
        db_path = tmp_path / "qstash.sqlite3"
        server = DevServerProcess(db_path=db_path, backoff_scale=backoff_scale, **options).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def devserver(devserver_factory: Callable[..., DevServerProcess]) -> DevServerProcess:
    return devserver_factory()


@pytest.fixture
def through_qstash(devserver: DevServerProcess, live_server: Any) -> Iterator[DevServerProcess]:
    """Settings that send jobs through the dev server to the live server's receiver."""
    with override_settings(QSTASH_JOBS=qstash_settings(devserver.url, live_server.url)):
        yield devserver


def wait_for(job_id: str, *statuses: str, timeout: float = 15.0) -> JobExecution:
    """Poll the row until it reaches one of ``statuses``; fail with its state otherwise."""
    deadline = time.monotonic() + timeout
    execution = JobExecution.objects.get(job_id=job_id)
    while time.monotonic() < deadline:
        execution.refresh_from_db()
        if execution.status in statuses:
            return execution
        time.sleep(0.02)
    raise AssertionError(
        f"job {job_id} is {execution.status} after {timeout} s, expected {statuses}: "
        f"{execution.error}"
    )


def wait_until(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
