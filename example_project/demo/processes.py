"""The two servers the demo runs: the local QStash server and this site (runserver)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import requests
from django.conf import settings
from django.core.management.base import CommandError


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # As the servers do: a port whose old connections linger in TIME_WAIT is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pick_port(preferred: int) -> int:
    """``preferred`` if it is free, else any free port (0 always means any)."""
    if preferred and port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(
    url: str,
    what: str,
    process: subprocess.Popen[bytes],
    log: Path,
    headers: dict[str, str] | None = None,
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"{what} exited at start; see {log}")
        try:
            requests.get(url, headers=headers, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise CommandError(f"{what} did not start at {url}; see {log}")


@dataclass(frozen=True)
class Servers:
    site_url: str
    qstash_url: str
    logs: tuple[Path, ...]
    site: subprocess.Popen[bytes]
    qstash: subprocess.Popen[bytes]

    @property
    def receiver_url(self) -> str:
        return f"{self.site_url}/jobs/receive/"

    def running(self) -> bool:
        return self.site.poll() is None and self.qstash.poll() is None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(stack: ExitStack, *, site_port: int, qstash_port: int, log_dir: Path) -> Servers:
    """Start both servers; ``stack`` stops them (on any exit, Ctrl-C included)."""
    site_url = f"http://127.0.0.1:{pick_port(site_port)}"
    qstash_url = f"http://127.0.0.1:{pick_port(qstash_port)}"
    environment = {
        **os.environ,
        "QSTASH_URL": qstash_url,
        "QSTASH_RECEIVER_URL": f"{site_url}/jobs/receive/",
        "EXAMPLE_SITE_URL": site_url,
        "PYTHONUNBUFFERED": "1",
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    qstash_log, site_log = log_dir / "qstash.log", log_dir / "site.log"

    def launch(command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as output:
            # A session of its own: Ctrl-C reaches the demo only, which stops the servers in
            # order, instead of three processes printing their tracebacks at once.
            process = subprocess.Popen(
                command,
                env=environment,
                cwd=settings.BASE_DIR,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(_stop, process)
        return process

    var_dir = Path(settings.VAR_DIR)
    # Retry backoffs are minutes to hours in production; a hundredth keeps the demo brisk.
    qstash = launch(
        [
            sys.executable, "-m", "django_qstash_jobs.devserver",
            f"--port={qstash_url.rsplit(':', 1)[1]}", f"--db={var_dir / 'qstash-dev.sqlite3'}",
            "--backoff-scale=0.01",
        ],
        qstash_log,
    )  # fmt: skip
    token = settings.QSTASH_JOBS["TOKEN"]
    wait_http(
        f"{qstash_url}/v2/keys",
        "The QStash server",
        qstash,
        qstash_log,
        {"Authorization": f"Bearer {token}"},
    )
    site = launch(
        [
            sys.executable, "manage.py", "runserver", site_url.removeprefix("http://"),
            "--noreload",
        ],
        site_log,
    )  # fmt: skip
    wait_http(f"{site_url}/accounts/login/", "The site", site, site_log)
    return Servers(site_url, qstash_url, (site_log, qstash_log), site, qstash)
