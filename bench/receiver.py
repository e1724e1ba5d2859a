"""Deliveries per second of our receiver, against a bare view and against django-qstash's.

    python bench/receiver.py [--requests 3000] [--rounds 3] [--db postgres|sqlite]

One gunicorn (2 sync workers) serves three endpoints of the same site:
  bare view     two UPDATEs of a job row (running, then completed), nothing verified;
  ours          jobs/receive/: signature, claim, a handler that does nothing, the outcome;
  django-qstash its webhook view with a task that does nothing (when installed: make bench
                installs it in the bench environment only).
A load generator in this process posts pre-signed deliveries over keep-alive connections, the
contenders taking turns in rounds so that CPU steal hits all alike. Reported: deliveries per
second and the workers' CPU per delivery (from /proc), and the ratios. Targets: ours >= 0.9x
the bare view's rate and >= 1.1x django-qstash's, with CPU per delivery <= 1.2x the bare view's.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    ROOT,
    cpu_seconds,
    free_port,
    pids_named,
    scratch_dir,
    setup_django,
    start_gunicorn,
    stop,
    summarize,
    worker_pids,
)

RATE_TARGET_BARE = 0.9
RATE_TARGET_PEER = 1.1
CPU_TARGET_BARE = 1.2


@dataclass
class Contender:
    name: str
    path: str
    #: Builds the (body, headers) of each request, before any timing starts.
    prepare: Callable[[int], list[tuple[bytes, dict[str, str]]]]
    seconds: float = 0.0
    cpu: float = 0.0
    #: PostgreSQL's CPU, all its processes: the database's share of each delivery.
    database_cpu: float = 0.0
    sent: int = 0
    failures: int = 0
    statuses: set[int] = field(default_factory=set)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / self.sent

    @property
    def database_cpu_per_request(self) -> float:
        return self.database_cpu / self.sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="per contender, all rounds")
    parser.add_argument("--rounds", type=int, default=3)
    # Enough connections to keep both workers busy: capacity is what is measured.
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    arguments = parser.parse_args()

    port = free_port()
    site_url = f"http://127.0.0.1:{port}"
    os.environ["BENCH_SITE_URL"] = site_url
    os.environ["QSTASH_RECEIVER_URL"] = f"{site_url}/jobs/receive/"
    workdir = scratch_dir()
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.peer_settings"
    setup_django(arguments.db, workdir, settings_module="bench.peer_settings")

    from django_qstash_jobs.models import JobExecution, JobStatus
    from tests.signing_helpers import qstash_token

    def queued_rows(count: int) -> list[str]:
        rows = [
            JobExecution(job_type="noop", status=JobStatus.QUEUED, max_retries=0)
            for _ in range(count)
        ]
        JobExecution.objects.bulk_create(rows, batch_size=500)
        return [row.job_id for row in rows]

    def ours(count: int) -> list[tuple[bytes, dict[str, str]]]:
        requests = []
        for job_id in queued_rows(count):
            body = json.dumps({"job_id": job_id, "job_type": "noop"}).encode()
            token = qstash_token(body, url=f"{site_url}/jobs/receive/")
            requests.append((body, {"Upstash-Signature": token, "Upstash-Retried": "0"}))
        return requests

    def bare(count: int) -> list[tuple[bytes, dict[str, str]]]:
        return [(json.dumps({"job_id": job_id}).encode(), {}) for job_id in queued_rows(count)]

    def django_qstash(count: int) -> list[tuple[bytes, dict[str, str]]]:
        body = json.dumps(
            {"function": "noop", "module": "bench.peer_app.tasks", "args": [], "kwargs": {},
             "task_name": "bench.peer_app.tasks.noop"}
        ).encode()  # fmt: skip
        return [
            (
                body,
                {
                    "Upstash-Signature": qstash_token(body, url=f"{site_url}/qstash/webhook/"),
                    "Upstash-Message-Id": f"msg_{uuid.uuid4().hex}",
                    "Upstash-Retried": "0",
                },
            )
            for _ in range(count)
        ]

    contenders = [Contender("bare view", "/bare/", bare), Contender("ours", "/jobs/receive/", ours)]
    if importlib.util.find_spec("django_qstash"):
        contenders.append(Contender("django-qstash", "/qstash/webhook/", django_qstash))
    else:
        print("django-qstash is not installed here: `make bench` runs this in its environment.")

    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    gunicorn = start_gunicorn(port, environment)
    try:
        workers = worker_pids(gunicorn.pid)
        per_round = arguments.requests // arguments.rounds
        warm = {contender.name: contender.prepare(100) for contender in contenders}
        for contender in contenders:
            send(port, contender.path, warm[contender.name], arguments.concurrency)
        for _ in range(arguments.rounds):
            for contender in contenders:
                batch = contender.prepare(per_round)
                database = pids_named("postgres") if arguments.db == "postgres" else []
                cpu_before = cpu_seconds(workers)
                database_before = cpu_seconds(database)
                started = time.perf_counter()
                statuses = send(port, contender.path, batch, arguments.concurrency)
                contender.seconds += time.perf_counter() - started
                contender.cpu += cpu_seconds(workers) - cpu_before
                contender.database_cpu += cpu_seconds(database) - database_before
                contender.sent += len(batch)
                contender.failures += sum(1 for status in statuses if status != 200)
                contender.statuses.update(statuses)
    finally:
        stop(gunicorn)

    bare_view = contenders[0]
    print(f"database: {arguments.db}; gunicorn 2 sync workers; {arguments.requests} deliveries "
          f"each in {arguments.rounds} rounds; {arguments.concurrency} connections")  # fmt: skip
    print(f"{'contender':<16}{'req/s':>8}{'cpu ms/req':>12}{'db cpu ms/req':>15}"
          f"{'rate vs bare':>14}{'cpu vs bare':>13}")  # fmt: skip
    for contender in contenders:
        print(
            f"{contender.name:<16}{contender.rate:>8.0f}{contender.cpu_per_request * 1e3:>12.2f}"
            f"{contender.database_cpu_per_request * 1e3:>15.2f}"
            f"{contender.rate / bare_view.rate:>13.2f}x"
            f"{contender.cpu_per_request / bare_view.cpu_per_request:>12.2f}x"
            + (f"  ({contender.failures} non-200: {sorted(contender.statuses)})"
               if contender.failures else "")
        )  # fmt: skip
    ours_ = contenders[1]
    ok = (
        ours_.failures == 0
        and ours_.rate >= RATE_TARGET_BARE * bare_view.rate
        and ours_.cpu_per_request <= CPU_TARGET_BARE * bare_view.cpu_per_request
    )
    if len(contenders) == 3:
        peer = contenders[2]
        cpu_ratio = ours_.cpu_per_request / peer.cpu_per_request
        print(
            f"ours / django-qstash: {ours_.rate / peer.rate:.2f}x the rate, "
            f"{cpu_ratio:.2f}x the CPU per delivery"
        )
        ok = ok and ours_.rate >= RATE_TARGET_PEER * peer.rate
    print(f"targets: rate >= {RATE_TARGET_BARE}x bare and >= {RATE_TARGET_PEER}x django-qstash; "
          f"cpu <= {CPU_TARGET_BARE}x bare: {'met' if ok else 'MISSED'}")  # fmt: skip
    rows = [
        ("receiver rate vs bare view", f"{ours_.rate / bare_view.rate:.2f}x",
         f">= {RATE_TARGET_BARE}x", ours_.rate >= RATE_TARGET_BARE * bare_view.rate),
        ("receiver CPU/delivery vs bare view",
         f"{ours_.cpu_per_request / bare_view.cpu_per_request:.2f}x", f"<= {CPU_TARGET_BARE}x",
         ours_.cpu_per_request <= CPU_TARGET_BARE * bare_view.cpu_per_request),
    ]  # fmt: skip
    if len(contenders) == 3:
        peer = contenders[2]
        rows += [
            ("receiver rate vs django-qstash", f"{ours_.rate / peer.rate:.2f}x",
             f">= {RATE_TARGET_PEER}x", ours_.rate >= RATE_TARGET_PEER * peer.rate),
            ("receiver CPU/delivery vs django-qstash",
             f"{ours_.cpu_per_request / peer.cpu_per_request:.2f}x", "", True),
        ]  # fmt: skip
    summarize("receiver", rows)
    return 0 if ok else 1


def send(
    port: int, path: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> list[int]:
    """POST every request over ``concurrency`` keep-alive connections; return the statuses."""
    local = threading.local()

    def post(request: tuple[bytes, dict[str, str]]) -> int:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port)
        body, headers = request
        local.connection.request(
            "POST", path, body, {"Content-Type": "application/json", **headers}
        )
        response = local.connection.getresponse()
        response.read()
        return response.status

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(post, requests))


if __name__ == "__main__":
    sys.exit(main())
