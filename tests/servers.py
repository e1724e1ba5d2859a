"""The local QStash-compatible server in a subprocess, for the end-to-end tests and the benchmarks.

No Django here: the benchmarks import it before they configure Django.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from django_qstash_jobs.devserver.defaults import (
    DEFAULT_CURRENT_SIGNING_KEY,
    DEFAULT_NEXT_SIGNING_KEY,
    DEFAULT_TOKEN,
)

TOKEN = DEFAULT_TOKEN
ROOT = Path(__file__).resolve().parents[1]


#: How long a dev server may take to answer after it was started.
STARTUP_SECONDS = 30


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
    #: Seconds an attempt may take before it counts as failed (the server's default if None).
    delivery_timeout: float | None = None
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
        if self.delivery_timeout is not None:
            command.append(f"--delivery-timeout={self.delivery_timeout}")
        # Its log goes to a file beside its database, not a pipe: a pipe nobody reads would
        # block a long run once full.
        log = self.db_path.with_suffix(".log")
        with log.open("ab") as stderr:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr
            )
        # Generous: on a loaded two-core machine, Python and its imports alone can take seconds.
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dev server exited: {log.read_text()}")
            try:
                response = requests.get(
                    f"{self.url}/v2/keys", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=1
                )
                if response.ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        # Not left running: nothing else would stop it once this raised.
        self.kill()
        raise RuntimeError(
            f"dev server did not start within {STARTUP_SECONDS} s: {log.read_text()[-2000:]}"
        )

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


def qstash_settings(devserver_url: str, live_server_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "TRANSPORT": "qstash",
        "URL": devserver_url,
        "TOKEN": TOKEN,
        "CURRENT_SIGNING_KEY": DEFAULT_CURRENT_SIGNING_KEY,
        "NEXT_SIGNING_KEY": DEFAULT_NEXT_SIGNING_KEY,
        "RECEIVER_URL": f"{live_server_url}/jobs/receive/",
        **extra,
    }
