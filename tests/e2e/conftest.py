"""End-to-end fixtures: the local QStash-compatible server in a subprocess, and the live site.

Jobs travel for real: enqueue -> HTTP publish -> the dev server -> signed HTTP delivery -> the
receiver of a live Django server -> the database.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import override_settings

from django_qstash_jobs.models import JobExecution
from tests.signing_helpers import CURRENT_KEY, NEXT_KEY

TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DevServerProcess:
    """``python -m django_qstash_jobs.devserver`` running in a subprocess."""

    db_path: Path
    backoff_scale: float = 0.0
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DevServerProcess:
        command = [
            sys.executable,
            "-m",
            "django_qstash_jobs.devserver",
            "--host=127.0.0.1",
            f"--port={self.port}",
            f"--db={self.db_path}",
            f"--backoff-scale={self.backoff_scale}",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dev server exited: {self.process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                response = requests.get(
                    f"{self.url}/v2/keys", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1
                )
                if response.ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("dev server did not start within 15 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Die at once, as in a crash: no clean shutdown."""
        self.stop(signal.SIGKILL)


@pytest.fixture
def devserver_factory(tmp_path: Path) -> Iterator[Callable[..., DevServerProcess]]:
    started: list[DevServerProcess] = []

    def start(backoff_scale: float = 0.0, db_name: str = "qstash.sqlite3") -> DevServerProcess:
        server = DevServerProcess(db_path=tmp_path / db_name, backoff_scale=backoff_scale).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def devserver(devserver_factory: Callable[..., DevServerProcess]) -> DevServerProcess:
    return devserver_factory()


def qstash_settings(devserver_url: str, live_server_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "TRANSPORT": "qstash",
        "URL": devserver_url,
        "TOKEN": TOKEN,
        "CURRENT_SIGNING_KEY": CURRENT_KEY,
        "NEXT_SIGNING_KEY": NEXT_KEY,
        "RECEIVER_URL": f"{live_server_url}/jobs/receive/",
        **extra,
    }


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
