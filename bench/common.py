"""Shared by the benchmarks: Django on a scratch database, the local QStash server, timing."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
# The project first on the path: the imports below, and the benchmarks', come from it.
sys.path.insert(0, str(ROOT))

from tests.servers import TOKEN, DevServerProcess, free_port  # noqa: E402, F401
from tests.signing_helpers import CURRENT_KEY, NEXT_KEY  # noqa: E402, F401


def setup_django(database: str, workdir: Path, settings_module: str = "tests.settings") -> None:
    """Configure Django with the test settings on a scratch database, migrated."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if database == "postgres":
        os.environ["TEST_DB"] = "postgres"
        os.environ.setdefault("PGDATABASE", "qstash_jobs_bench")
        subprocess.run(
            ["psql", "-h", os.environ.get("PGHOST", "127.0.0.1"),
             "-U", os.environ.get("PGUSER", "postgres"), "-d", "postgres",
             "-qc", f"DROP DATABASE IF EXISTS {os.environ['PGDATABASE']}",
             "-c", f"CREATE DATABASE {os.environ['PGDATABASE']}"],
            check=True, capture_output=True,
        )  # fmt: skip
    else:
        os.environ["SQLITE_PATH"] = str(workdir / "bench.sqlite3")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


@contextmanager
def devserver(workdir: Path, backoff_scale: float = 0.0) -> Iterator[DevServerProcess]:
    """The local QStash-compatible server in a subprocess, started; stopped afterwards."""
    server = DevServerProcess(db_path=workdir / "qstash.sqlite3", backoff_scale=backoff_scale)
    try:
        yield server.start()
    finally:
        server.stop()


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def sink() -> Iterator[str]:
    """An HTTP endpoint that accepts anything: a destination for messages nobody runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/jobs/receive/"
    finally:
        server.shutdown()


@contextmanager
def distant(url: str, one_way_seconds: float) -> Iterator[str]:
    """``url`` as if its server were ``one_way_seconds`` away: the URL of a TCP relay to it.

    Each chunk is forwarded that long after it arrived, in each direction, as a network path
    would carry it (chunks in flight together are not delayed one after the other).
    """
    target = urlsplit(url)
    listener = socket.create_server(("127.0.0.1", 0))

    def delay_line(source: socket.socket, destination: socket.socket) -> None:
        chunks: queue.Queue[tuple[float, bytes]] = queue.Queue()

        def forward() -> None:
            while True:
                arrived, chunk = chunks.get()
                if not chunk:
                    break
                time.sleep(max(0.0, arrived + one_way_seconds - time.perf_counter()))
                try:
                    destination.sendall(chunk)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                destination.shutdown(socket.SHUT_WR)

        threading.Thread(target=forward, daemon=True).start()
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                chunks.put((time.perf_counter(), chunk))
        chunks.put((time.perf_counter(), b""))

    def relay() -> None:
        while True:
            try:
                client, _address = listener.accept()
            except OSError:
                return  # closed: the benchmark is over
            upstream = socket.create_connection((target.hostname, target.port))
            for end in (client, upstream):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=delay_line, args=(client, upstream), daemon=True).start()
            threading.Thread(target=delay_line, args=(upstream, client), daemon=True).start()

    threading.Thread(target=relay, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@dataclass
class Timing:
    """Wall and CPU seconds per call of one contender."""

    name: str
    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_mean(self) -> float:
        return statistics.fmean(self.cpu)


def interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, per_round: int
) -> dict[str, Timing]:
    """Time each contender in alternating blocks, so drift and CPU steal hit all of them alike."""
    timings = {name: Timing(name, [], []) for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            for _ in range(per_round):
                wall, cpu = time.perf_counter(), time.process_time()
                call()
                timings[name].wall.append(time.perf_counter() - wall)
                timings[name].cpu.append(time.process_time() - cpu)
    return timings


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="qstash-bench-"))


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of the processes, from /proc (a process that is gone counts for 0)."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def pids_named(command: str) -> list[int]:
    """Every process whose command name is ``command`` (such as PostgreSQL's backends)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name = (entry / "comm").read_text().strip()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if name == command:
                pids.append(int(entry.name))
    return pids


def worker_pids(master: int) -> list[int]:
    """The worker processes of a gunicorn master."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def start_gunicorn(
    port: int,
    environment: dict[str, str],
    workers: int = 2,
    timeout: int = 30,
    log: Path | None = None,
) -> subprocess.Popen[bytes]:
    """gunicorn serving the Django settings named in ``environment``, ready to answer.

    A worker busy with one request for longer than ``timeout`` seconds is killed, as a
    platform's request timeout would. Its log goes to ``log`` when given, else to stderr.
    """
    with open(log or os.devnull, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", f"--workers={workers}", f"--bind=127.0.0.1:{port}",
             f"--timeout={timeout}", "--log-level=warning",
             "django.core.wsgi:get_wsgi_application()"],
            cwd=ROOT, env=environment, stderr=log_file if log else None,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/jobs/receive/", timeout=5)
            time.sleep(0.5)  # let every worker boot
            return process
        except requests.RequestException:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"gunicorn did not start{f'; its log: {log}' if log else ''}")


def stop(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it does not go."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def summarize(benchmark: str, rows: list[tuple[str, str, str, bool]]) -> None:
    """Record (measure, value, target, met) rows for bench/all.py's table, when it asks."""
    path = os.environ.get("BENCH_SUMMARY")
    if not path:
        return
    import json

    with open(path, "a", encoding="utf-8") as summary:
        for measure, value, target, met in rows:
            line = {"benchmark": benchmark, "measure": measure, "value": value,
                    "target": target, "met": met}  # fmt: skip
            summary.write(json.dumps(line) + "\n")
